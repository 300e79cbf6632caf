//! User namespaces (`linux.namespaces` `user`, `linux.uidMappings`/`gidMappings`) and idmapped bind mounts
//! (`mounts[].uidMappings`/`gidMappings`): ids seen from inside and from the host, joining a user namespace
//! by path, `exec` into one, and the configurations that must be refused.
//!
//! Every container here maps its ids 0..65536 to host 100000..165536, so its rootfs is given to
//! 100000:100000 (`rootfs::chown_tree`, which first breaks busybox's hardlink to the shared cache). The
//! test's temp dir is made traversable (0711): it belongs to host root, which the user namespace does not
//! map, and the rootfs is resolved from inside the new user namespace (runc, and roci's init).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use roci_integration::{ns_id, rootfs, Container};
use serde_json::{json, Value};

use crate::{mount_at, parse_mountinfo, section};

const HOST_ID: u32 = 100_000;
const SIZE: u32 = 65_536;

fn mapping() -> Value {
    json!([{"containerID": 0, "hostID": HOST_ID, "size": SIZE}])
}

/// A container with a new user namespace mapping 0..65536 to 100000.., its rootfs owned accordingly.
fn userns_container(name: &str) -> Container {
    let mut c = Container::new(name);
    prepare_rootfs(&c);
    c.spec.namespace("user", None).set("/linux/uidMappings", mapping()).set("/linux/gidMappings", mapping());
    c
}

fn prepare_rootfs(c: &Container) {
    rootfs::chown_tree(&c.rootfs, HOST_ID, HOST_ID);
    std::fs::set_permissions(&c.dir, std::fs::Permissions::from_mode(0o711)).expect("chmod test dir");
}

/// The whitespace-normalised lines of a `/proc/PID/uid_map`.
fn map_lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect()
}

/// (real, effective, saved, fs) of the `Uid:` or `Gid:` line of `/proc/PID/status`, as the host sees them.
fn host_ids(pid: i32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} in {status}"));
    line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect()
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.uid(), m.gid())
}

#[test]
fn userns_root_is_mapped() {
    let mut c = userns_container("userns_root");
    // A file the mapping does not cover (host root's): the container sees the overflow id, nobody.
    std::fs::write(c.rootfs.join("etc/host-root-file"), "x").unwrap();
    std::os::unix::fs::chown(c.rootfs.join("etc/host-root-file"), Some(0), Some(0)).unwrap();
    c.spec.sh("echo \"== id ==\"; id -u; id -g; echo \"== uid_map ==\"; cat /proc/self/uid_map; \
         echo \"== gid_map ==\"; cat /proc/self/gid_map; echo \"== userns ==\"; readlink /proc/self/ns/user; \
         echo \"== owners ==\"; stat -c '%u %g' / /bin/busybox /etc/passwd; \
         echo \"== unmapped ==\"; stat -c '%u %g' /etc/host-root-file; \
         echo \"== created ==\"; touch /tmp/made && stat -c '%u %g' /tmp/made");
    let out = c.run();
    out.ok();
    assert_eq!(section(&out.stdout, "id"), "0\n0", "root inside the user namespace: {out}");
    let want = vec![format!("0 {HOST_ID} {SIZE}")];
    assert_eq!(map_lines(&section(&out.stdout, "uid_map")), want, "{out}");
    assert_eq!(map_lines(&section(&out.stdout, "gid_map")), want, "{out}");
    let userns = section(&out.stdout, "userns");
    assert!(userns.starts_with("user:["), "{out}");
    assert_ne!(userns, ns_id("/proc/self/ns/user"), "a new user namespace, not the host's");
    for l in section(&out.stdout, "owners").lines() {
        assert_eq!(l, "0 0", "files owned by host 100000 show as root inside: {out}");
    }
    assert_eq!(section(&out.stdout, "unmapped"), "65534 65534", "unmapped owner shows as the overflow id: {out}");
    assert_eq!(section(&out.stdout, "created"), "0 0", "{out}");
    assert_eq!(owner(&c.rootfs.join("tmp/made")), (HOST_ID, HOST_ID), "a file made by root inside belongs to host 100000");
    c.assert_no_leaks();
}

#[test]
fn userns_unprivileged_user_maps_to_host() {
    let mut c = userns_container("userns_user");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    c.start().ok();
    let init = c.pid();
    assert_eq!(host_ids(init, "Uid"), [HOST_ID; 4], "the init (root inside) is host 100000");
    assert_eq!(host_ids(init, "Gid"), [HOST_ID; 4]);
    let pid_file = c.host_path("exec.pid");
    c.invoke(&["exec", "-d", "--user", "1000:1000", "--pid-file", pid_file.to_str().unwrap(), &c.id, "sleep", "999"]).ok();
    let pid: i32 = std::fs::read_to_string(&pid_file).expect("pid file").trim().parse().unwrap();
    c.record_pid(pid);
    assert_eq!(host_ids(pid, "Uid"), [HOST_ID + 1000; 4], "user 1000 inside is host 101000");
    assert_eq!(host_ids(pid, "Gid"), [HOST_ID + 1000; 4], "group 1000 inside is host 101000");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn userns_exec_runs_as_mapped_root() {
    let mut c = userns_container("userns_exec");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    c.start().ok();
    let init = c.pid();
    let out = c.invoke(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "echo \"== id ==\"; id -u; echo \"== userns ==\"; readlink /proc/self/ns/user; echo \"== uid_map ==\"; cat /proc/self/uid_map; \
         echo \"== created ==\"; touch /tmp/by-exec && stat -c '%u %g' /tmp/by-exec",
    ]);
    out.ok();
    assert_eq!(section(&out.stdout, "id"), "0");
    assert_eq!(section(&out.stdout, "userns"), ns_id(&format!("/proc/{init}/ns/user")), "exec joins the init's user namespace");
    assert_eq!(map_lines(&section(&out.stdout, "uid_map")), [format!("0 {HOST_ID} {SIZE}")]);
    assert_eq!(section(&out.stdout, "created"), "0 0");
    assert_eq!(owner(&c.rootfs.join("tmp/by-exec")), (HOST_ID, HOST_ID), "the exec'd root is host 100000");
    c.delete_force().ok();
    c.assert_no_leaks();
}

/// A running container A with its own user namespace; B joins it (and A's network namespace) by path.
fn join_a(name: &str) -> (Container, i32) {
    let mut a = userns_container(name);
    a.spec.args(&["sleep", "1000"]);
    a.create().ok();
    a.start().ok();
    let pid = a.pid();
    (a, pid)
}

fn joiner(name: &str, apid: i32) -> Container {
    let mut b = Container::new(name);
    prepare_rootfs(&b);
    b.spec
        .namespace("user", Some(&format!("/proc/{apid}/ns/user")))
        .namespace("network", Some(&format!("/proc/{apid}/ns/net")))
        .hostname("joiner")
        .sh(
            "echo \"== userns ==\"; readlink /proc/self/ns/user; echo \"== uid_map ==\"; cat /proc/self/uid_map; \
             echo \"== id ==\"; id -u; echo \"== host ==\"; hostname; echo \"== created ==\"; touch /tmp/by-b && stat -c '%u' /tmp/by-b",
        );
    b
}

fn check_joined(a: &Container, apid: i32, b: &Container, out: &roci_integration::Output) {
    out.ok();
    assert_eq!(section(&out.stdout, "userns"), ns_id(&format!("/proc/{apid}/ns/user")), "B is in A's user namespace: {out}");
    assert_eq!(map_lines(&section(&out.stdout, "uid_map")), [format!("0 {HOST_ID} {SIZE}")], "B sees A's mapping");
    assert_eq!(section(&out.stdout, "id"), "0");
    // B's own UTS and mount namespaces must belong to the joined user namespace, or its root could not
    // set the hostname or mount anything in them.
    assert_eq!(section(&out.stdout, "host"), "joiner");
    assert_eq!(section(&out.stdout, "created"), "0");
    assert_eq!(owner(&b.rootfs.join("tmp/by-b")), (HOST_ID, HOST_ID));
    b.assert_no_leaks();
    a.delete_force().ok();
    a.assert_no_leaks();
}

#[test]
fn userns_join_by_path() {
    let (a, apid) = join_a("userns_join_a");
    let mut b = joiner("userns_join_b", apid);
    if b.rt.is_runc() {
        // runc 1.1 needs the mappings even to join ("User namespaces enabled, but no uid mappings found"):
        // it computes ids from them. Give it the ones A's namespace has.
        b.spec.set("/linux/uidMappings", mapping()).set("/linux/gidMappings", mapping());
    }
    let out = b.run();
    check_joined(&a, apid, &b, &out);
}

#[test]
fn userns_join_by_path_with_matching_mappings() {
    // containerd and CRI-O send the pod's mappings along with the user namespace path (runc issue #4133);
    // runc 1.1 requires them, runc 1.2 accepts them when they equal the namespace's own (PR #4134).
    let (a, apid) = join_a("userns_joinmap_a");
    let mut b = joiner("userns_joinmap_b", apid);
    b.spec.set("/linux/uidMappings", mapping()).set("/linux/gidMappings", mapping());
    let out = b.run();
    check_joined(&a, apid, &b, &out);
}

// --- bad input: each refused before anything is made, naming the field ---

#[test]
fn userns_mappings_without_user_namespace() {
    let mut c = Container::new("userns_map_nons");
    c.spec.set("/linux/uidMappings", mapping()).set("/linux/gidMappings", mapping()).sh("cat /proc/self/uid_map");
    if c.rt.is_runc() {
        // runc 1.1 reads the mappings only for a config with a user namespace and ignores them otherwise:
        // the container runs in the host's user namespace.
        let out = c.run();
        out.ok();
        assert_eq!(map_lines(&out.stdout), ["0 0 4294967295"], "{out}");
    } else {
        c.create().fails().says("linux.uidMappings");
    }
    c.assert_no_leaks();
}

#[test]
fn userns_without_mappings() {
    let mut c = userns_container("userns_nomap");
    c.spec.remove("/linux/uidMappings").remove("/linux/gidMappings").args(&["true"]);
    // runc: "User namespaces enabled, but no uid mappings found."
    c.create().fails().says_any(&["linux.uidMappings", "no uid mappings"]);
    c.assert_no_leaks();
    let mut c = userns_container("userns_nogidmap");
    c.spec.remove("/linux/gidMappings").args(&["true"]);
    c.create().fails().says_any(&["linux.gidMappings", "no gid mappings"]);
    c.assert_no_leaks();
}

#[test]
fn userns_process_user_not_mapped() {
    let mut c = userns_container("userns_uid_unmapped");
    c.spec.user(70_000, 0, &[]).args(&["true"]);
    let out = c.create();
    out.fails();
    if c.rt.is_runc() {
        // runc finds out in the container's init: "cannot set uid to unmapped user in user namespace".
        out.says("unmapped user");
    } else {
        out.says("process.user.uid");
    }
    c.assert_no_leaks();
    let mut c = userns_container("userns_gid_unmapped");
    c.spec.user(0, 70_000, &[]).args(&["true"]);
    let out = c.create();
    out.fails();
    if c.rt.is_runc() {
        out.says("unmapped");
    } else {
        out.says("process.user.gid");
    }
    c.assert_no_leaks();
}

#[test]
fn userns_overlapping_mappings() {
    for (name, maps) in [
        // Container ranges overlap (1000..1010 lies in 0..65536).
        (
            "userns_overlap_ct",
            json!([{"containerID": 0, "hostID": HOST_ID, "size": SIZE}, {"containerID": 1000, "hostID": 300_000, "size": 10}]),
        ),
        // Host ranges overlap (100500..100510 lies in 100000..101000).
        (
            "userns_overlap_host",
            json!([{"containerID": 0, "hostID": HOST_ID, "size": 1000}, {"containerID": 70_000, "hostID": HOST_ID + 500, "size": 10}]),
        ),
    ] {
        let mut c = userns_container(name);
        c.spec.set("/linux/uidMappings", maps).args(&["true"]);
        let out = c.create();
        out.fails();
        // runc 1.1 checks nothing itself: the kernel refuses the uid_map write (EINVAL) and runc reports
        // "failed to sync with parent: read(SYNC_USERMAP_ACK): Invalid argument", naming no field.
        if !c.rt.is_runc() {
            out.says("linux.uidMappings[1]");
        }
        c.assert_no_leaks();
    }
}

// --- idmapped bind mounts ---

/// A host dir owned by host root, with a file, bound twice: idmapped (0 ↦ 100000, like the container's
/// own mapping) at /idm and plainly at /plain.
fn idmapped_container(name: &str) -> (Container, std::path::PathBuf) {
    let mut c = userns_container(name);
    let data = c.host_path("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "hello\n").unwrap();
    // World-writable, so runc (which ignores the mount mapping) can create the file too.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let src = data.to_string_lossy().into_owned();
    // The builder has no helper for mounts with mappings: edit the list.
    let mut mounts = c.spec.get("/mounts").cloned().unwrap();
    mounts.as_array_mut().unwrap().push(json!({
        "destination": "/idm", "type": "bind", "source": src, "options": ["rbind"],
        "uidMappings": mapping(), "gidMappings": mapping()
    }));
    mounts.as_array_mut().unwrap().push(json!({"destination": "/plain", "type": "bind", "source": src, "options": ["rbind"]}));
    c.spec.set("/mounts", mounts);
    (c, data)
}

#[test]
fn userns_idmapped_bind_mount() {
    let (mut c, data) = idmapped_container("userns_idmapped");
    c.spec.sh("echo \"== idm ==\"; stat -c '%u %g' /idm/f; echo \"== plain ==\"; stat -c '%u %g' /plain/f; \
         echo \"== read ==\"; cat /idm/f; echo \"== create ==\"; touch /idm/new && stat -c '%u %g' /idm/new; \
         echo \"== mountinfo ==\"; cat /proc/self/mountinfo");
    let out = c.run();
    out.ok();
    assert_eq!(section(&out.stdout, "plain"), "65534 65534", "host root's file through a plain bind: unmapped: {out}");
    assert_eq!(section(&out.stdout, "read"), "hello");
    let idm = mount_at(&parse_mountinfo(&section(&out.stdout, "mountinfo")), "/idm").clone();
    if c.rt.is_runc() {
        // runc 1.1 has no idmapped mounts (added in 1.2) and ignores mounts[].uidMappings: /idm is a
        // plain bind, and what root inside creates belongs to host 100000.
        assert_eq!(section(&out.stdout, "idm"), "65534 65534", "{out}");
        assert!(!idm.options.iter().any(|o| o == "idmapped"), "{idm:?}");
        assert_eq!(owner(&data.join("new")), (HOST_ID, HOST_ID));
    } else {
        assert_eq!(section(&out.stdout, "idm"), "0 0", "host root's file shows as root through the idmapped mount: {out}");
        assert_eq!(section(&out.stdout, "create"), "0 0");
        assert!(idm.options.iter().any(|o| o == "idmapped"), "/idm is an idmapped mount: {idm:?}");
        assert_eq!(owner(&data.join("new")), (0, 0), "a file created through the idmapped mount belongs to host root");
    }
    assert_eq!(owner(&data.join("f")), (0, 0), "the source keeps its owner");
    c.assert_no_leaks();
}

#[test]
fn userns_idmapped_mount_not_bind() {
    let mut c = userns_container("userns_idmap_tmpfs");
    let mut mounts = c.spec.get("/mounts").cloned().unwrap();
    mounts.as_array_mut().unwrap().push(json!({
        "destination": "/idm", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"],
        "uidMappings": mapping(), "gidMappings": mapping()
    }));
    let index = mounts.as_array().unwrap().len() - 1;
    c.spec.set("/mounts", mounts).sh("grep ' /idm ' /proc/self/mountinfo");
    if c.rt.is_runc() {
        // runc 1.1 ignores mounts[].uidMappings: a plain tmpfs.
        let out = c.run();
        out.ok();
        assert!(out.stdout.contains("tmpfs"), "{out}");
    } else {
        c.create().fails().says(&format!("mounts[{index}].uidMappings"));
    }
    c.assert_no_leaks();
}

#[test]
fn userns_idmapped_mount_needs_both_mappings() {
    let (mut c, _data) = idmapped_container("userns_idmap_uidonly");
    let mut mounts = c.spec.get("/mounts").cloned().unwrap();
    let index = mounts.as_array().unwrap().iter().position(|m| m["destination"] == "/idm").unwrap();
    mounts[index].as_object_mut().unwrap().remove("gidMappings");
    c.spec.set("/mounts", mounts).sh("stat -c '%u %g' /idm/f");
    if c.rt.is_runc() {
        // runc 1.1 ignores mounts[].uidMappings: a plain bind.
        let out = c.run();
        out.ok();
        assert_eq!(out.stdout.trim(), "65534 65534", "{out}");
    } else {
        c.create().fails().says(&format!("mounts[{index}]")).says("gidMappings");
    }
    c.assert_no_leaks();
}
