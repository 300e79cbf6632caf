//! A panic in a container process reaches the caller as text (issue 10).
//!
//! The container's init and exec'd processes are clones of the runtime; with `panic = "abort"` a
//! panic there used to kill them with SIGABRT, and `roci` could only say the channel closed. These
//! tests run this package's `roci` (built with libcontainer's `fault-injection` feature, which the
//! dev-dependency turns on) with a panic injected through `process.env`, and check that the panic's
//! message is on `roci`'s stderr: from `create` (a panic in the init before it is ready), from
//! `start` (after `start` connected) and from `exec`.
//!
//! Root only (they make real containers); each container's cgroup is `/roci-panic-test-<pid>/<id>`,
//! removed with its parent afterwards in every hierarchy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROCI: &str = env!("CARGO_BIN_EXE_roci");

struct Bundle {
    dir: tempfile::TempDir,
    root: PathBuf,
    id: String,
}

fn cgroup_parent() -> String {
    format!("roci-panic-test-{}", std::process::id())
}

impl Bundle {
    /// A busybox bundle running `args`, with `env` added to `process.env`.
    fn new(id: &str, args: &[&str], env: &[&str]) -> Option<Bundle> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "these tests need busybox-static at /bin/busybox");
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox, bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "true"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let root = dir.path().join("state");
        let b = Bundle { root, id: id.to_string(), dir };
        b.roci(&["spec", "--bundle", b.dir.path().to_str().unwrap()]);
        let path = b.dir.path().join("config.json");
        let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.into();
        config["process"]["env"].as_array_mut().unwrap().extend(env.iter().map(|e| serde_json::Value::from(*e)));
        config["linux"]["cgroupsPath"] = format!("/{}/{id}", cgroup_parent()).into();
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        Some(b)
    }

    /// Run roci; its stdout and stderr go to files, not pipes: a container
    /// process inherits them and would hold a pipe open long after roci exits.
    fn roci(&self, args: &[&str]) -> Output {
        let (out, err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
        let mut cmd = Command::new(ROCI);
        cmd.arg("--root").arg(&self.root).args(args);
        cmd.stdin(std::process::Stdio::null()).stdout(out.try_clone().unwrap()).stderr(err.try_clone().unwrap());
        let status = cmd.status().unwrap();
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut v = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut v).unwrap();
            v
        };
        Output { status, stdout: read(out), stderr: read(err) }
    }

    fn create(&self) -> Output {
        self.roci(&["create", "--bundle", self.dir.path().to_str().unwrap(), &self.id])
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.roci(&["delete", "--force", &self.id]);
        // The container's cgroup and the test's parent, in every hierarchy.
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else { continue };
            if !right.starts_with("cgroup") {
                continue;
            }
            let Some(mount) = left.split(' ').nth(4) else { continue };
            let parent = Path::new(mount).join(cgroup_parent());
            let _ = std::fs::remove_dir(parent.join(&self.id));
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

/// Not killed by a signal, failed, and the panic's message on stderr.
#[track_caller]
fn assert_reported(out: &Output, point: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "roci died of a signal: {:?}; stderr: {stderr}", out.status);
    assert!(!out.status.success(), "roci succeeded although the container process panicked");
    assert!(
        stderr.contains("container process panicked") && stderr.contains(&format!("fault injection: {point}")),
        "the panic's message is not on roci's stderr: {stderr}"
    );
}

#[test]
fn panic_in_init_reaches_create_as_text() {
    let Some(b) = Bundle::new("panic-init", &["true"], &["ROCI_FAULT_INJECTION=panic-in-init"]) else { return };
    let out = b.create();
    assert_reported(&out, "panic-in-init");
    // A failed create leaves no container.
    assert!(!b.root.join(&b.id).exists(), "create failed but left its state");
}

#[test]
fn panic_after_start_reaches_start_as_text() {
    let Some(b) = Bundle::new("panic-start", &["true"], &["ROCI_FAULT_INJECTION=panic-after-start"]) else { return };
    let out = b.create();
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    let out = b.roci(&["start", &b.id]);
    assert_reported(&out, "panic-after-start");
}

#[test]
fn panic_in_exec_reaches_exec_as_text() {
    let Some(b) = Bundle::new("panic-exec", &["sleep", "1000"], &[]) else { return };
    let out = b.create();
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    let out = b.roci(&["start", &b.id]);
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    let out = b.roci(&["exec", "--env", "ROCI_FAULT_INJECTION=panic-in-exec", &b.id, "true"]);
    assert_reported(&out, "panic-in-exec");
    // The container itself is unharmed.
    let out = b.roci(&["exec", &b.id, "true"]);
    assert!(out.status.success(), "exec after the panic: {}", String::from_utf8_lossy(&out.stderr));
}
