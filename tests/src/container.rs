//! The per-test container guard.
//!
//! Each [`Container`] owns a temp dir holding its bundle (`bundle/rootfs`, `bundle/config.json`), the
//! runtime's `--root` state dir, its `--log` file, the captured output of each invocation and a scratch dir
//! (`host/`) for bind sources and hook output. Its cgroup is `/roci-it-<test pid>/<id>`.
//!
//! On drop it cleans up whatever the test left, whether it passed or not: `delete --force`, SIGKILL to the
//! container processes it recorded (by pid and start time, never by name), the processes of its own cgroup
//! leaf, the leaf itself in every hierarchy, lazy unmounts of anything still mounted under its temp dir, and
//! the temp dir. [`Container::assert_no_leaks`] checks the runtime did all that itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::cgroups::{self, ParentUse};
use crate::exec::{default_timeout, run_captured, Output};
use crate::runtime::{runtime, Runtime};
use crate::spec::Spec;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Container {
    /// Unique per test process: `<name>-<counter>`.
    pub id: String,
    /// Written to `bundle/config.json` by every command that takes a bundle.
    pub spec: Spec,
    pub rt: &'static Runtime,
    /// The test's temp dir; everything below is removed on drop.
    pub dir: PathBuf,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The runtime's `--root`.
    pub state_root: PathBuf,
    /// The runtime's `--log` (JSON).
    pub log: PathBuf,
    /// Scratch dir on the host for bind sources, hook scripts and hook output.
    pub host: PathBuf,
    /// `linux.cgroupsPath`: `/roci-it-<pid>/<id>`.
    pub cgroup: String,
    pids: Mutex<Vec<(i32, Option<u64>)>>,
    seq: AtomicUsize,
    tmp: Option<tempfile::TempDir>,
    _parent: ParentUse,
}

impl Container {
    /// A container running `sleep 1000`, created and started after `tweak` has adjusted it; what
    /// create and start said is for the test to check (through `pid`, `state`, ...).
    pub fn running(name: &str, tweak: impl FnOnce(&mut Container)) -> Container {
        let mut c = Container::new(name);
        c.spec.args(&["sleep", "1000"]);
        tweak(&mut c);
        c.create().ok();
        c.start().ok();
        c
    }

    /// A fresh bundle with the default spec and a busybox rootfs. `name` should be the test's name.
    pub fn new(name: &str) -> Container {
        let rt = runtime();
        let parent = ParentUse::take();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{name}-{n}");
        let tmp = tempfile::Builder::new().prefix("roci-it-").tempdir().expect("create temp dir");
        let dir = tmp.path().to_path_buf();
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        let state_root = dir.join("state");
        let host = dir.join("host");
        for d in [&rootfs, &host, &dir.join("io")] {
            std::fs::create_dir_all(d).expect("create test dirs");
        }
        crate::rootfs::build(&rootfs);
        let cgroup = format!("{}/{id}", cgroups::suite_parent());
        let mut spec = Spec::new();
        spec.cgroups_path(&cgroup);
        Container {
            id,
            spec,
            rt,
            log: dir.join("runtime.log"),
            dir,
            bundle,
            rootfs,
            state_root,
            host,
            cgroup,
            pids: Mutex::new(Vec::new()),
            seq: AtomicUsize::new(0),
            tmp: Some(tmp),
            _parent: parent,
        }
    }

    /// A path in the host scratch dir.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.host.join(name)
    }

    pub fn write_config(&self) {
        std::fs::write(self.bundle.join("config.json"), self.spec.to_json()).expect("write config.json");
    }

    /// The runtime with this container's global flags: `--root STATE --log LOG --log-format json`.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.rt.path);
        c.arg("--root").arg(&self.state_root).arg("--log").arg(&self.log).arg("--log-format").arg("json");
        c
    }

    /// Run a prepared command (usually from [`Container::command`]) with output capture and a timeout.
    pub fn exec(&self, cmd: Command, timeout: Duration) -> Output {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        run_captured(cmd, &self.dir.join("io").join(format!("{n}")), Some(&self.log), timeout)
    }

    /// `RT --root .. --log .. --log-format json ARGS...` (ARGS include the id where the command needs it).
    pub fn invoke(&self, args: &[&str]) -> Output {
        self.invoke_timeout(args, default_timeout())
    }

    pub fn invoke_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let mut c = self.command();
        c.args(args);
        self.exec(c, timeout)
    }

    /// Run the runtime through `sh -c '<prefix>; exec RT ARGS'`, for fd plumbing (`exec 3<file`) and
    /// environment that must be set up by a shell (`LISTEN_PID=$$`).
    pub fn invoke_via_shell(&self, prefix: &str, args: &[&str]) -> Output {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(format!("{prefix}\nexec \"$@\"")).arg("sh").arg(&self.rt.path);
        c.arg("--root").arg(&self.state_root).arg("--log").arg(&self.log).arg("--log-format").arg("json");
        c.args(args);
        self.exec(c, default_timeout())
    }

    fn bundle_str(&self) -> String {
        self.bundle.to_string_lossy().into_owned()
    }

    /// `run --bundle B ID` in the foreground: returns when the container exits.
    pub fn run(&self) -> Output {
        self.run_with(&[])
    }

    /// `run FLAGS --bundle B ID`.
    pub fn run_with(&self, flags: &[&str]) -> Output {
        self.write_config();
        let b = self.bundle_str();
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--bundle", &b, &self.id]);
        let out = self.invoke(&args);
        if flags.contains(&"-d") || flags.contains(&"--detach") {
            self.record_from_state();
        }
        out
    }

    /// `create --bundle B ID`; records the init pid when it succeeds.
    pub fn create(&self) -> Output {
        self.create_with(&[])
    }

    pub fn create_with(&self, flags: &[&str]) -> Output {
        self.write_config();
        let b = self.bundle_str();
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--bundle", &b, &self.id]);
        let out = self.invoke(&args);
        self.record_from_state();
        out
    }

    pub fn start(&self) -> Output {
        self.invoke(&["start", &self.id])
    }

    /// `state ID`, parsed. Err carries the failed invocation.
    #[allow(clippy::result_large_err)] // test code: the error is the whole invocation, for messages
    pub fn try_state(&self) -> Result<Value, Output> {
        let out = self.invoke(&["state", &self.id]);
        if !out.success() {
            return Err(out);
        }
        serde_json::from_str(&out.stdout).map_err(|e| {
            let mut o = out.clone();
            o.stderr.push_str(&format!("\n(harness: state output is not JSON: {e})"));
            o
        })
    }

    #[track_caller]
    pub fn state(&self) -> Value {
        self.try_state().unwrap_or_else(|o| panic!("state failed: {o}"))
    }

    #[track_caller]
    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap_or("").to_string()
    }

    /// The init pid from `state`.
    #[track_caller]
    pub fn pid(&self) -> i32 {
        let s = self.state();
        let pid = s["pid"].as_i64().unwrap_or_else(|| panic!("state has no pid: {s}")) as i32;
        self.record_pid(pid);
        pid
    }

    pub fn kill(&self, signal: &str) -> Output {
        self.invoke(&["kill", &self.id, signal])
    }

    pub fn delete(&self) -> Output {
        self.invoke(&["delete", &self.id])
    }

    pub fn delete_force(&self) -> Output {
        self.invoke(&["delete", "--force", &self.id])
    }

    /// Wait until `state` reports `status`.
    #[track_caller]
    pub fn wait_status(&self, status: &str, timeout: Duration) {
        let mut last = String::new();
        let ok = crate::wait_for(timeout, || {
            last = self.try_state().map(|s| s["status"].as_str().unwrap_or("").to_string()).unwrap_or_else(|o| o.to_string());
            last == status
        });
        assert!(ok, "container {} did not reach status {status:?} within {timeout:?}; last: {last}", self.id);
    }

    /// Remember a pid of this container for cleanup and leak checks.
    pub fn record_pid(&self, pid: i32) {
        if pid <= 0 {
            return;
        }
        let mut p = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        if !p.iter().any(|(q, _)| *q == pid) {
            p.push((pid, crate::proc_start_time(pid)));
        }
    }

    fn record_from_state(&self) {
        if let Ok(s) = self.try_state() {
            if let Some(pid) = s["pid"].as_i64() {
                self.record_pid(pid as i32);
            }
        }
    }

    /// The recorded pids that are still the same live (non-zombie) process.
    pub fn live_pids(&self) -> Vec<i32> {
        let p = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        p.iter()
            .filter(|(pid, start)| !crate::is_dead(*pid) && crate::proc_start_time(*pid) == *start)
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Live processes whose root directory is inside this test's dir (the container's processes, found
    /// without knowing their pids: a leaked `init` of a failed create shows up here).
    pub fn processes_rooted_here(&self) -> Vec<i32> {
        let prefix = self.dir.to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.to_string_lossy().starts_with(&prefix))
                    && !crate::is_dead(*pid)
            })
            .collect()
    }

    /// Mount points (host view) at or below this test's temp dir.
    pub fn mounts_below(&self) -> Vec<String> {
        mounts_below(&self.dir)
    }

    /// After `delete`: the state entry, the cgroup leaf in every hierarchy, every mount below the test's
    /// dirs and every recorded container process are gone (a zombie counts as gone).
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        // runc keeps `<root>/<id>/`; whatever the layout, no entry may still name the container.
        let entries: Vec<String> = std::fs::read_dir(&self.state_root)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let left: Vec<&String> = entries.iter().filter(|e| e.contains(&self.id)).collect();
        assert!(left.is_empty(), "leak: state entries {left:?} in {} after delete", self.state_root.display());
        let mut left = Vec::new();
        crate::wait_for(Duration::from_secs(2), || {
            left = cgroups::existing_dirs(&self.cgroup);
            left.is_empty()
        });
        assert!(left.is_empty(), "leak: cgroup dirs still exist after delete: {left:?}");
        let mounts = self.mounts_below();
        assert!(mounts.is_empty(), "leak: mounts left under {}: {mounts:?}", self.dir.display());
        let mut live = Vec::new();
        crate::wait_for(Duration::from_secs(2), || {
            live = self.live_pids();
            live.extend(self.processes_rooted_here());
            live.is_empty()
        });
        assert!(live.is_empty(), "leak: container processes still alive after delete: {live:?}");
    }
}

pub fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    crate::host_mount_points().into_iter().filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/"))).collect()
}

impl Drop for Container {
    fn drop(&mut self) {
        // Always: the state layout under --root is the runtime's business.
        let mut c = self.command();
        c.args(["delete", "--force", &self.id]);
        let _ = self.exec(c, Duration::from_secs(10));
        for (pid, start) in self.pids.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if !crate::is_dead(*pid) && crate::proc_start_time(*pid) == *start {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        for pid in self.processes_rooted_here() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        cgroups::kill_all(&self.cgroup);
        cgroups::remove_tree(&self.cgroup);
        let mut mounts = self.mounts_below();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = umount2(m.as_str(), MntFlags::MNT_DETACH);
        }
        if let Some(t) = self.tmp.take() {
            if t.close().is_err() {
                // A file made immutable or a busy mount; leave the dir rather than fail the test in drop.
            }
        }
    }
}
