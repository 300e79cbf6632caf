//! Rootless: an unprivileged user (nobody, 65534) runs a container from the runtime's own
//! `spec --rootless` config: a user namespace mapping its root to the user, no cgroup of its own on a
//! host that delegates none.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use roci_integration::exec::{default_timeout, run_captured};
use roci_integration::{runtime, wait_until, Output};

const NOBODY: u32 = 65534;

/// A bundle and a state root owned by nobody in a temp dir everyone may enter.
struct Rootless {
    dir: tempfile::TempDir,
    id: String,
}

impl Rootless {
    fn new(name: &str) -> Rootless {
        let dir = tempfile::Builder::new().prefix("roci-it-rootless-").tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let bundle = dir.path().join("bundle");
        roci_integration::rootfs::build(&bundle.join("rootfs"));
        for p in [dir.path().to_path_buf(), bundle.clone()] {
            std::os::unix::fs::chown(&p, Some(NOBODY), Some(NOBODY)).expect("chown");
        }
        let r = Rootless { dir, id: format!("{name}-{}", std::process::id()) };
        r.as_nobody(&["spec", "--rootless", "--bundle", bundle.to_str().unwrap()]).ok();
        // Run without a terminal, with the program the test asks for.
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = false.into();
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        r
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn args(&self, args: &[&str]) {
        let cfg_path = self.bundle().join("config.json");
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["args"] = serde_json::json!(args);
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    }

    /// The runtime as nobody, with its state in the test's dir.
    fn as_nobody(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&runtime().path)
            .arg("--root")
            .arg(self.dir.path().join("state"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("XDG_RUNTIME_DIR");
        run_captured(cmd, &self.dir.path().join(format!("out-{}", args[0])), None, default_timeout())
    }

    fn run(&self) -> Output {
        self.as_nobody(&["run", "--bundle", self.bundle().to_str().unwrap(), &self.id])
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        let _ = self.as_nobody(&["delete", "--force", &self.id]);
    }
}

fn host_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
fn rootless_run_maps_root_to_the_user() {
    let r = Rootless::new("rootless_run");
    r.args(&["sh", "-c", "id -u; id -g; cat /proc/self/uid_map; hostname"]);
    let out = r.run();
    out.ok();
    let lines = out.lines();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "0", "{out}");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "{out}");
    assert!(!r.dir.path().join("state").join(&r.id).exists(), "run removes its state");
}

#[test]
fn rootless_lifecycle_and_exec() {
    let r = Rootless::new("rootless_life");
    r.args(&["sleep", "100"]);
    let b = r.bundle();
    r.as_nobody(&["create", "--bundle", b.to_str().unwrap(), &r.id]).ok();
    r.as_nobody(&["start", &r.id]).ok();
    let state: serde_json::Value = serde_json::from_str(&r.as_nobody(&["state", &r.id]).ok().stdout).unwrap();
    assert_eq!(state["status"], "running");
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert_eq!(host_uid(pid), Some(NOBODY), "the container's root is nobody on the host");
    let ex = r.as_nobody(&["exec", &r.id, "sh", "-c", "id -u; echo $$"]);
    ex.ok();
    assert_eq!(ex.lines()[0], "0", "{ex}");
    let ps = r.as_nobody(&["ps", "--format", "json", &r.id]);
    if runtime().is_runc() {
        // runc lists processes only through the container's cgroup, which a rootless container on this
        // host does not have ("unable to get all container pids"); roci falls back to the init.
        ps.fails();
    } else {
        ps.ok();
        let pids: Vec<i32> = serde_json::from_str(&ps.stdout).unwrap();
        assert!(pids.contains(&pid), "{ps}");
    }
    r.as_nobody(&["kill", &r.id, "KILL"]).ok();
    wait_until("the rootless container to stop", Duration::from_secs(10), || {
        r.as_nobody(&["state", &r.id]).stdout.contains("\"stopped\"")
    });
    r.as_nobody(&["delete", &r.id]).ok();
    assert!(r.as_nobody(&["state", &r.id]).code != 0);
    assert!(roci_integration::is_dead(pid));
}

#[test]
fn rootless_limits_without_a_delegated_cgroup_fail_clearly() {
    // This host delegates no cgroup to nobody: a config asking for a limit cannot be honoured, and
    // says so instead of running unlimited.
    let r = Rootless::new("rootless_limits");
    r.args(&["true"]);
    let cfg_path = r.bundle().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["linux"]["resources"] = serde_json::json!({"pids": {"limit": 10}});
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let out = r.run();
    out.fails();
    out.says_any(&["cgroup", "permission denied", "Permission denied"]);
    assert!(!r.dir.path().join("state").join(&r.id).exists() || runtime().is_runc(), "nothing left: {out}");
}
