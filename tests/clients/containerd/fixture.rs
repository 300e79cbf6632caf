//! A private containerd for one test, with the runtime under test as the runc v2 shim's runtime.
//!
//! Each [`Containerd`] owns a temp dir that holds everything containerd and its shims write: the
//! daemon's `root` and `state` (bundles, with the rootfs mounts, live in
//! `state/io.containerd.runtime.v2.task/<ns>/<id>`), its gRPC and ttrpc sockets, the `opt` plugin's
//! directory (default `/opt/containerd`), the I/O FIFOs (`ctr --fifo-dir`), the runtime's state
//! (`ctr --runc-root`: the shim runs the runtime with `--root <runc-root>/<ns>`) and the captured output
//! of every command. Containers get the cgroup `/roci-ctr-<test pid>-<n>/<id>` (`ctr run --cgroup`), under
//! a parent of this fixture's own.
//!
//! What lands outside the temp dir, by containerd 1.6's design: each shim's socket is
//! `/run/containerd/s/<sha256(<grpc address>/<ns>/<id>)>`, whatever the state dir; a shim removes it when
//! it exits normally, and the teardown removes those of this fixture's containers.
//!
//! Teardown ([`Containerd::finish`] at the end of a test, `Drop` when a test panics): kill and delete
//! what is left through `ctr`, stop containerd by pid (SIGTERM, then SIGKILL), SIGKILL every process whose
//! command line names the temp dir (shims carry `-address <dir>/containerd.sock`) and every process left
//! in the fixture's cgroups, unmount what is mounted under the temp dir, remove the cgroups and the temp
//! dir. `finish` also asserts that the runtime and the shims had already cleaned up after themselves.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use roci_integration::exec::{default_timeout, run_captured};
use roci_integration::{cgroups, image, runtime, wait_for, wait_until, Output, Runtime};

/// The containerd namespace every test uses.
pub const NAMESPACE: &str = "roci-test";

/// Where containerd 1.6 puts shim sockets, whatever its `state` dir (`pkg/shim/util_unix.go`).
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

static FIXTURES: AtomicUsize = AtomicUsize::new(0);

pub struct Containerd {
    pub rt: &'static Runtime,
    /// The temp dir; everything below it is removed by the teardown.
    pub dir: PathBuf,
    /// containerd's gRPC socket (`ctr -a`).
    pub socket: PathBuf,
    /// `ctr --runc-root`: the runtime's state is under `<runc_root>/<NAMESPACE>`.
    pub runc_root: PathBuf,
    /// containerd's `state` dir.
    pub state: PathBuf,
    /// `/roci-ctr-<pid>-<n>`: the parent of every container's cgroup.
    pub cgroup_parent: String,
    fifo_dir: PathBuf,
    out_dir: PathBuf,
    daemon: Option<Child>,
    /// Container ids used, for the shim sockets the teardown removes.
    ids: Mutex<Vec<String>>,
    seq: AtomicUsize,
    tmp: Option<tempfile::TempDir>,
}

impl Containerd {
    /// Start containerd in a new temp dir and import the busybox image into [`NAMESPACE`].
    pub fn start() -> Containerd {
        let rt = runtime();
        sweep_stale_cgroups();
        let tmp = tempfile::Builder::new().prefix("roci-ctr-").tempdir().expect("create the containerd temp dir");
        let dir = tmp.path().to_path_buf();
        let n = FIXTURES.fetch_add(1, Ordering::SeqCst);
        let ctd = Containerd {
            rt,
            socket: dir.join("containerd.sock"),
            runc_root: dir.join("runc-root"),
            state: dir.join("state"),
            cgroup_parent: format!("/roci-ctr-{}-{n}", std::process::id()),
            fifo_dir: dir.join("fifo"),
            out_dir: dir.join("out"),
            dir,
            daemon: None,
            ids: Mutex::new(Vec::new()),
            seq: AtomicUsize::new(0),
            tmp: Some(tmp),
        };
        for d in [&ctd.fifo_dir, &ctd.out_dir, &ctd.runc_root] {
            std::fs::create_dir_all(d).expect("create a fixture dir");
        }
        ctd.launch()
    }

    fn launch(mut self) -> Containerd {
        let config = self.dir.join("config.toml");
        std::fs::write(&config, self.config()).expect("write containerd's config");
        let log = File::create(self.dir.join("containerd.log")).expect("create containerd.log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn containerd: {e} (install Debian's containerd)"));
        self.daemon = Some(child);
        let ready = wait_for(Duration::from_secs(20), || {
            if self.daemon.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                return true;
            }
            UnixStream::connect(&self.socket).is_ok()
        });
        let exited = self.daemon.as_mut().and_then(|c| c.try_wait().ok().flatten());
        assert!(ready && exited.is_none(), "containerd did not come up (exit: {exited:?}); its log:\n{}", self.daemon_log());
        self.ctr(&["images", "import", &image::busybox().docker_archive.to_string_lossy()]).ok();
        let images = self.ctr(&["images", "ls", "-q"]);
        assert!(
            images.ok().lines().iter().any(|l| l == image::REFERENCE),
            "the imported image is not {}: {images}",
            image::REFERENCE
        );
        self
    }

    /// containerd 1.6's config (version 2): everything it writes inside the temp dir, and only the
    /// plugins `ctr` needs (no CRI; the snapshotters that cannot work on ext4 stay off instead of probing).
    fn config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        )
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn out_base(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let what: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(24).collect();
        self.out_dir.join(format!("{n:03}-{what}"))
    }

    /// `ctr -a SOCK -n NAMESPACE ARGS...`
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.socket).args(["-n", NAMESPACE]).args(args);
        c
    }

    /// Run `ctr` to completion (default deadline), output captured.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_with_timeout(args, default_timeout())
    }

    pub fn ctr_with_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        run_captured(self.ctr_command(args), &self.out_base(args.first().copied().unwrap_or("ctr")), None, timeout)
    }

    /// Record a container id (for the teardown) and return it.
    pub fn id(&self, name: &str) -> String {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_string());
        name.to_string()
    }

    /// The cgroup `ctr run --cgroup` gives container `id`.
    pub fn cgroup(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    /// The runtime's state directory: the shim passes `--root <runc-root>/<namespace>`.
    pub fn runtime_root(&self) -> PathBuf {
        self.runc_root.join(NAMESPACE)
    }

    /// The bundle the shim made for `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.state.join("io.containerd.runtime.v2.task").join(NAMESPACE).join(id)
    }

    /// `ctr run` arguments up to the options: the runtime under test (`--runc-binary`, which sets the
    /// runc shim's `BinaryName` option), its state root, the FIFO dir and the container's cgroup.
    pub fn run_args(&self, id: &str) -> Vec<String> {
        vec![
            "run".into(),
            "--runc-binary".into(),
            self.rt.path.to_string_lossy().into_owned(),
            "--runc-root".into(),
            self.runc_root.to_string_lossy().into_owned(),
            "--fifo-dir".into(),
            self.fifo_dir.to_string_lossy().into_owned(),
            "--cgroup".into(),
            self.cgroup(id),
        ]
    }

    /// Full `ctr run` argument list: [`Self::run_args`], `opts`, the image, `id`, `cmd`.
    pub fn run_argv(&self, id: &str, opts: &[&str], cmd: &[&str]) -> Vec<String> {
        let mut a = self.run_args(id);
        a.extend(opts.iter().map(|s| s.to_string()));
        a.push(image::REFERENCE.to_string());
        a.push(id.to_string());
        a.extend(cmd.iter().map(|s| s.to_string()));
        a
    }

    /// `ctr run [opts] IMAGE id cmd...`, attached, to completion.
    pub fn run(&self, id: &str, opts: &[&str], cmd: &[&str]) -> Output {
        let argv = self.run_argv(id, opts, cmd);
        self.ctr(&argv.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `ctr run -d [opts] IMAGE id cmd...`; returns the task's pid once it is RUNNING.
    #[track_caller]
    pub fn run_detached(&self, id: &str, opts: &[&str], cmd: &[&str]) -> i32 {
        let mut o = vec!["-d"];
        o.extend_from_slice(opts);
        self.run(id, &o, cmd).ok();
        self.wait_status(id, "RUNNING")
    }

    /// `ctr task exec --exec-id EXEC_ID id cmd...` to completion.
    pub fn exec(&self, id: &str, exec_id: &str, opts: &[&str], cmd: &[&str]) -> Output {
        let fifo = self.fifo_dir.to_string_lossy().into_owned();
        let mut a = vec!["task", "exec", "--fifo-dir", &fifo, "--exec-id", exec_id];
        a.extend_from_slice(opts);
        a.push(id);
        a.extend_from_slice(cmd);
        self.ctr(&a)
    }

    /// The task's pid and status from `ctr task ls` (`RUNNING`, `PAUSED`, `STOPPED`, `CREATED`).
    pub fn task(&self, id: &str) -> Option<(i32, String)> {
        let out = self.ctr(&["task", "ls"]);
        out.ok();
        out.stdout.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == id).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
        })
    }

    /// Wait until `ctr task ls` shows `status` for `id`; returns the pid.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) -> i32 {
        let mut last = None;
        let ok = wait_for(default_timeout(), || {
            last = self.task(id);
            last.as_ref().is_some_and(|(_, s)| s == status)
        });
        assert!(ok, "task {id} never reached {status}; last seen: {last:?}");
        last.map(|(p, _)| p).unwrap_or(0)
    }

    /// The container ids `ctr containers ls -q` lists.
    pub fn containers(&self) -> Vec<String> {
        self.ctr(&["containers", "ls", "-q"]).ok().lines().into_iter().filter(|l| !l.is_empty()).collect()
    }

    /// Kill (SIGKILL) a task, wait for STOPPED, delete it and its container; returns `task delete`'s
    /// output (its stderr names a non-zero exit code).
    #[track_caller]
    pub fn kill_and_delete(&self, id: &str) -> Output {
        self.ctr(&["task", "kill", "-s", "SIGKILL", id]).ok();
        self.wait_status(id, "STOPPED");
        self.delete(id)
    }

    /// `ctr task delete` then `ctr container delete` of a stopped task; returns `task delete`'s output.
    #[track_caller]
    pub fn delete(&self, id: &str) -> Output {
        let out = self.ctr(&["task", "delete", id]);
        out.ok();
        self.ctr(&["containers", "delete", id]).ok();
        out
    }

    /// The runtime under test, directly, on the shim's state root: `RT --root <runc-root>/<ns> ARGS`.
    pub fn runtime_cmd(&self, args: &[&str]) -> Output {
        let mut c = Command::new(&self.rt.path);
        c.arg("--root").arg(self.runtime_root()).args(args);
        run_captured(c, &self.out_base(args.first().copied().unwrap_or("rt")), None, default_timeout())
    }

    /// `ctr ARGS` with `input` on its stdin (a file), to completion.
    pub fn ctr_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let base = self.out_base(args.first().copied().unwrap_or("ctr-stdin"));
        let infile = base.with_extension("in");
        std::fs::write(&infile, input).expect("write the stdin file");
        let mut c = Command::new("sh");
        c.args(["-c", r#"f=$1; shift; exec "$@" < "$f""#, "sh"]).arg(&infile).arg("ctr").arg("-a").arg(&self.socket);
        c.args(["-n", NAMESPACE]).args(args);
        run_captured(c, &base, None, default_timeout())
    }

    /// `ctr ARGS` with a terminal for its stdin/stdout (`ctr -t` requires one): run under util-linux
    /// `script`, which gives it a pty, copies `input` into it and exits with ctr's exit code.
    pub fn ctr_in_pty(&self, args: &[&str], input: &str) -> Output {
        let base = self.out_base(args.first().copied().unwrap_or("ctr-pty"));
        let infile = base.with_extension("in");
        std::fs::write(&infile, input).expect("write the pty input");
        let mut words =
            vec!["ctr".to_string(), "-a".into(), self.socket.to_string_lossy().into_owned(), "-n".into(), NAMESPACE.into()];
        words.extend(args.iter().map(|a| a.to_string()));
        let line = words.iter().map(|w| sh_quote(w)).collect::<Vec<_>>().join(" ");
        let mut c = Command::new("sh");
        c.args(["-c", r#"exec script -q -e -c "$1" /dev/null < "$2""#, "sh", &line]).arg(&infile).env("SHELL", "/bin/sh");
        run_captured(c, &base, None, default_timeout())
    }

    /// A `ctr` command in the background (an attached `ctr run`, `ctr events`), killed on drop.
    pub fn spawn_ctr(&self, args: &[&str]) -> Background {
        let base = self.out_base(args.first().copied().unwrap_or("ctr"));
        let stdout = base.with_extension("out");
        let stderr = base.with_extension("err");
        let mut c = self.ctr_command(args);
        c.stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create stdout file"))
            .stderr(File::create(&stderr).expect("create stderr file"));
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn ctr {args:?}: {e}"));
        Background { child, stdout, stderr, what: format!("ctr {}", args.join(" ")) }
    }

    /// A host directory under the temp dir, for bind mounts.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.join("host").join(name);
        std::fs::create_dir_all(&d).expect("create a host dir");
        d
    }

    /// What the runtime, the shim and containerd left of container `id` after `ctr task delete` and
    /// `ctr container delete`: the container record, the runtime's state, the bundle and its rootfs
    /// mount, the cgroup in every hierarchy, processes.
    #[track_caller]
    pub fn assert_container_gone(&self, id: &str) {
        assert!(!self.containers().iter().any(|c| c == id), "container {id} still listed by ctr");
        let mut left = Vec::new();
        let gone = wait_for(Duration::from_secs(5), || {
            left.clear();
            let state = self.runtime_root().join(id);
            if state.exists() {
                left.push(format!("runtime state {}", state.display()));
            }
            let bundle = self.bundle(id);
            left.extend(roci_integration::container::mounts_below(&bundle).into_iter().map(|m| format!("mount {m}")));
            if bundle.exists() {
                left.push(format!("bundle {}", bundle.display()));
            }
            left.extend(cgroups::existing_dirs(&self.cgroup(id)).into_iter().map(|d| format!("cgroup {}", d.display())));
            left.is_empty()
        });
        assert!(gone, "container {id} left behind: {left:?}");
    }

    /// Live processes (not zombies) whose command line names the temp dir: containerd, shims, ctr.
    fn own_processes(&self) -> Vec<(i32, Option<u64>, String)> {
        let needle = self.dir.to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else { return out };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if pid == me || roci_integration::is_dead(pid) {
                continue;
            }
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) {
                out.push((pid, roci_integration::proc_start_time(pid), cmd.trim().to_string()));
            }
        }
        out
    }

    /// Live processes in the fixture's cgroups (containers' processes).
    fn cgroup_processes(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for d in cgroups::existing_dirs(&self.cgroup_parent) {
            collect_procs(&d, &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|p| !roci_integration::is_dead(*p));
        pids
    }

    fn shim_sockets(&self) -> Vec<PathBuf> {
        let ids = self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ids.iter()
            .filter_map(|id| shim_socket(&format!("{}/{NAMESPACE}/{id}", self.socket.display())))
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()))
            .collect()
    }

    /// End of a test: check that everything the test ran was cleaned up by the runtime, the shims and
    /// containerd themselves, then stop containerd and check nothing at all is left.
    #[track_caller]
    pub fn finish(mut self) {
        let mut leaks = Vec::new();
        let tasks = self.ctr(&["task", "ls", "-q"]).lines().into_iter().filter(|l| !l.is_empty()).collect::<Vec<_>>();
        if !tasks.is_empty() {
            leaks.push(format!("tasks the test did not delete: {tasks:?}"));
        }
        let containers = self.containers();
        if !containers.is_empty() {
            leaks.push(format!("containers the test did not delete: {containers:?}"));
        }
        if tasks.is_empty() && containers.is_empty() {
            // Every task was deleted: the shims exit, their sockets go, the runtime's state, the rootfs
            // mounts and the cgroup leaves are gone.
            let daemon = self.daemon.as_ref().map(|c| c.id() as i32);
            let mut left = Vec::new();
            wait_for(Duration::from_secs(5), || {
                left = self.own_processes().into_iter().filter(|(p, _, _)| Some(*p) != daemon).collect();
                left.is_empty()
            });
            if !left.is_empty() {
                leaks.push(format!("processes still running after every task was deleted: {left:?}"));
            }
            // roci's cache of compiled seccomp filters is no container's state: it stays, bounded, as
            // crun's does.
            let state: Vec<_> = std::fs::read_dir(self.runtime_root())
                .map(|d| d.flatten().filter(|e| e.file_name() != libcontainer::seccomp::CACHE_DIR).map(|e| e.path()).collect())
                .unwrap_or_default();
            if !state.is_empty() {
                leaks.push(format!("runtime state left: {state:?}"));
            }
            let mounts = roci_integration::container::mounts_below(&self.dir);
            if !mounts.is_empty() {
                leaks.push(format!("mounts left: {mounts:?}"));
            }
            let leaves: Vec<_> = cgroups::existing_dirs(&self.cgroup_parent)
                .iter()
                .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            if !leaves.is_empty() {
                leaks.push(format!("cgroups left: {leaves:?}"));
            }
            let sockets = self.shim_sockets();
            if !sockets.is_empty() {
                leaks.push(format!("shim sockets left: {sockets:?}"));
            }
        }
        let log = tail(&self.daemon_log(), 30);
        leaks.extend(self.teardown());
        assert!(leaks.is_empty(), "leaks:\n{}\n--- containerd log (tail) ---\n{log}", leaks.join("\n"));
    }

    /// Clean up whatever is left; returns what had to be removed by force (besides stopping containerd).
    fn teardown(&mut self) -> Vec<String> {
        let mut forced = Vec::new();
        let daemon_alive = self.daemon.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none());
        if daemon_alive {
            let short = Duration::from_secs(10);
            let tasks = self.ctr_with_timeout(&["task", "ls", "-q"], short).lines();
            for t in tasks.iter().filter(|t| !t.is_empty()) {
                let _ = self.ctr_with_timeout(&["task", "kill", "-s", "SIGKILL", "--all", t], short);
                let _ = self.ctr_with_timeout(&["task", "delete", "-f", t], short);
            }
            let containers = self.ctr_with_timeout(&["containers", "ls", "-q"], short).lines();
            for c in containers.iter().filter(|c| !c.is_empty()) {
                let _ = self.ctr_with_timeout(&["containers", "delete", c], short);
            }
        }
        if let Some(mut child) = self.daemon.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                forced.push("containerd ignored SIGTERM for 5 s".to_string());
                let _ = kill(pid, Signal::SIGKILL);
            }
            let _ = child.wait();
        }
        // Shims, ctr clients: by pid and start time, only those naming our temp dir.
        let procs = self.own_processes();
        for (pid, start, cmd) in &procs {
            forced.push(format!("killed process {pid}: {cmd}"));
            if roci_integration::proc_start_time(*pid) == *start {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        let in_cgroups = self.cgroup_processes();
        if !in_cgroups.is_empty() {
            forced.push(format!("killed container processes {in_cgroups:?}"));
            cgroups::kill_all(&self.cgroup_parent);
        }
        wait_for(Duration::from_secs(5), || self.own_processes().is_empty() && self.cgroup_processes().is_empty());
        let mut mounts = roci_integration::container::mounts_below(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            forced.push(format!("unmounted {m}"));
            let _ = umount2(m.as_str(), MntFlags::MNT_DETACH);
        }
        for s in self.shim_sockets() {
            forced.push(format!("removed shim socket {}", s.display()));
            let _ = std::fs::remove_file(s);
        }
        let left = cgroups::remove_tree(&self.cgroup_parent);
        if !left.is_empty() {
            forced.push(format!("could not remove cgroups {left:?}"));
        }
        let left = self.own_processes();
        if !left.is_empty() {
            forced.push(format!("processes survived SIGKILL: {left:?}"));
        }
        if let Some(t) = self.tmp.take() {
            if let Err(e) = t.close() {
                forced.push(format!("could not remove {}: {e}", self.dir.display()));
            }
        }
        forced
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.tmp.is_some() {
            let forced = self.teardown();
            if !forced.is_empty() {
                eprintln!("containerd fixture {}: teardown had to: {forced:#?}", self.dir.display());
            }
        }
    }
}

/// `s` as one word for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn collect_procs(d: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&e.path(), out);
            }
        }
    }
}

/// `/run/containerd/s/<sha256 of "<address>/<ns>/<id>">`, the socket a containerd 1.6 shim listens on.
fn shim_socket(key: &str) -> Option<PathBuf> {
    let mut c = Command::new("sha256sum");
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = c.spawn().ok()?;
    {
        use std::io::Write;
        child.stdin.take()?.write_all(key.as_bytes()).ok()?;
    }
    let out = child.wait_with_output().ok()?;
    let hex = String::from_utf8_lossy(&out.stdout).split_whitespace().next()?.to_string();
    (hex.len() == 64).then(|| Path::new(SHIM_SOCKET_DIR).join(hex))
}

/// Remove the empty `/roci-ctr-<pid>-<n>` cgroups of test processes that no longer exist.
fn sweep_stale_cgroups() {
    for h in cgroups::hierarchies() {
        let Ok(entries) = std::fs::read_dir(&h.mount) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("roci-ctr-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let rel = format!("/{name}");
                // rmdir fails on a cgroup with processes: only empty leftovers go.
                let _ = cgroups::remove_tree(&rel);
            }
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A background command, SIGKILLed (by its pid) on drop if still running.
pub struct Background {
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    what: String,
}

impl Background {
    /// Wait up to `timeout` for the exit code (128+N after signal N); panics on timeout.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let mut status = None;
        wait_until(&format!("{} to exit", self.what), timeout, || {
            status = self.child.try_wait().expect("wait for a background ctr");
            status.is_some()
        });
        let status = status.expect("exit status");
        use std::os::unix::process::ExitStatusExt;
        status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    pub fn stdout_now(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_now(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}
