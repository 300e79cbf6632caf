//! Devices, as containerd's `WithDevices` and `WithHostDevices`: a CRI device's host path (with
//! symlinks resolved) is one device node, or a directory whose device nodes are all added under
//! the container path; each gets a `linux.devices` entry (type, major, minor, mode, owner) and a
//! cgroup rule allowing it with the requested permissions. A privileged container gets every
//! device of the host's `/dev` (except `pts`, `shm`, `fd`, `mqueue` and the container runtimes'
//! own directories, `console`, and FIFOs) and all devices allowed.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};

use super::defaults::append;
use super::SpecError;

/// Directories of `/dev` that never hold devices for a container.
const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// One device node: (`linux.devices` entry, its cgroup type, major, minor).
fn node(path: &Path, container_path: &Path) -> std::io::Result<Option<(Value, &'static str, u64, u64)>> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let dev = json!({
        "type": typ, "path": container_path, "major": major, "minor": minor,
        "fileMode": meta.mode() & 0o777, "uid": meta.uid(), "gid": meta.gid(),
    });
    Ok(Some((dev, typ, major, minor)))
}

/// containerd's `getDevices`: the device at `path`, or those in the directory `path`
/// (recursively), with their container paths under `container_path`.
fn collect(path: &Path, container_path: &Path, top: bool, out: &mut Vec<(Value, &'static str, u64, u64)>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return match node(path, container_path)? {
            Some(n) => {
                out.push(n);
                Ok(())
            }
            None if top => Err(std::io::Error::other("not a device node")),
            None => Ok(()),
        };
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let ft = e.file_type()?;
        if ft.is_dir() {
            if SKIPPED_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            collect(&e.path(), &container_path.join(&name), false, out)?;
        } else if name == "console" {
            continue;
        } else {
            match node(&e.path(), &container_path.join(&name)) {
                Ok(Some(n)) if n.1 != "p" => out.push(n),
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

fn push(spec: &mut Value, found: Vec<(Value, &'static str, u64, u64)>, access: &str) {
    for (dev, typ, major, minor) in found {
        append(&mut spec["linux"]["devices"], dev);
        let rule = json!({ "allow": true, "type": typ, "major": major, "minor": minor, "access": access });
        append(&mut spec["linux"]["resources"]["devices"], rule);
    }
}

/// Add the request's devices.
pub fn add(spec: &mut Value, devices: &[v1::Device], prefix: &str) -> Result<(), SpecError> {
    for (i, d) in devices.iter().enumerate() {
        let field = format!("{prefix}.devices[{i}]");
        if d.host_path.is_empty() {
            return Err(SpecError::invalid(format!("{field}.host_path"), "empty"));
        }
        if d.permissions.is_empty() || !d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(SpecError::invalid(
                format!("{field}.permissions"),
                format!("{:?} is not some of \"rwm\"", d.permissions),
            ));
        }
        let container_path = if d.container_path.is_empty() { &d.host_path } else { &d.container_path };
        if !container_path.starts_with('/') {
            return Err(SpecError::invalid(
                format!("{field}.container_path"),
                format!("{container_path:?} is not an absolute path"),
            ));
        }
        let host = Path::new(&d.host_path)
            .canonicalize()
            .map_err(|e| SpecError::invalid(format!("{field}.host_path"), format!("{}: {e}", d.host_path)))?;
        let mut found = Vec::new();
        collect(&host, Path::new(container_path), true, &mut found)
            .map_err(|e| SpecError::invalid(format!("{field}.host_path"), format!("{}: {e}", host.display())))?;
        push(spec, found, &d.permissions);
    }
    Ok(())
}

/// A privileged container's devices: all of the host's, all allowed (`WithHostDevices`,
/// `WithAllDevicesAllowed`).
pub fn add_host_devices(spec: &mut Value) -> Result<(), SpecError> {
    let mut found = Vec::new();
    collect(Path::new("/dev"), Path::new("/dev"), false, &mut found).map_err(|source| SpecError::Io {
        op: "list the host devices in",
        path: "/dev".into(),
        source,
    })?;
    for (dev, ..) in found {
        append(&mut spec["linux"]["devices"], dev);
    }
    spec["linux"]["resources"]["devices"] = json!([{ "allow": true, "access": "rwm" }]);
    Ok(())
}
