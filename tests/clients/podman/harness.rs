//! The per-test Podman guard: a private podman (its storage, run dir, temp dir, locks, events, network
//! config and configuration files in one temp dir), the runtime under test behind a recording wrapper,
//! and cleanup of everything podman, conmon and the runtime made, also when the test fails.
//!
//! Configuration, all inside the temp dir `D`:
//! - `CONTAINERS_CONF=D/conf/containers.conf` (then podman reads no other containers.conf): the
//!   default rlimits this host can give (no CAP_SYS_RESOURCE), the cgroupfs manager, the file events
//!   backend, file locks in `D/tmp` instead of podman's host-wide `/dev/shm/libpod_lock`, the CNI
//!   backend with its config dir in `D/net` (netavark would create `/run/containers/networks`), network
//!   mode `none` by default, no hooks dir, no default mounts file of the host, and the runtime's name in
//!   `runtime_supports_json`: podman passes `--log-format=json --log FILE` only to runtimes it knows by
//!   name, and reads a failed create's error from that file; a packaged roci is listed there as runc is.
//! - `CONTAINERS_STORAGE_CONF`, `CONTAINERS_REGISTRIES_CONF`, `TMPDIR`, and the global flags
//!   `--root --runroot --tmpdir --cgroup-manager cgroupfs --events-backend file --storage-driver`.
//! - Images are named in full (`docker.io/library/busybox:latest`), so no short-name alias cache is
//!   written under `/var/cache/containers`.
//!
//! Copying an image (`podman load`, and the pause image podman builds for its first pod) writes
//! containers/image's blob cache in `/var/lib/containers/cache`, unpacks in `/var/tmp` and reads
//! `/etc/containers/policy.json`, whatever the configuration says. Those commands run in a private mount
//! namespace (`unshare -m`) where directories of the test are mounted over those three paths; they leave no
//! process or mount behind, so the namespace goes with them. Every other podman command runs in the
//! test's own namespaces, as conmon and the containers must.
//!
//! The runtime: podman and conmon call `D/bin/<name>` (by default the runtime's own file name, so
//! podman treats it as it treats the runtime itself), a shell script that appends its arguments to
//! `D/runtime-calls.log` and `exec`s the runtime under test. conmon logs only to syslog, which this
//! host does not run; the log is how a test sees what conmon and podman asked of the runtime.
//!
//! Cgroups: containers and pods get `--cgroup-parent /roci-pm-<test pid>/<test>` (conmon then goes to
//! `<parent>/conmon`). `kube play` has no such flag: its pods go under podman's `/libpod_parent`; the
//! guard removes the cgroups of its own pods there, and the last guard of the test process removes
//! `/libpod_parent` itself if it did not exist before and is empty.
//!
//! Drop: `pod rm -af`, `rm -af`, `delete --force` of every container podman had (a conmon that died
//! leaves the runtime's state behind, with runc as with roci), SIGKILL to the test's conmons and podman
//! cleanup processes (their command lines name the temp dir) and to the container processes (their root
//! is inside it, or they sit in the test's cgroups), then the cgroups, the mounts under the temp dir
//! (overlay, shm) and the temp dir.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use roci_integration::container::mounts_below;
use roci_integration::exec::run_captured;
use roci_integration::runtime::{runtime, Runtime};
use roci_integration::{cgroups, image, is_dead, wait_for, Output};

/// The image every test runs, as loaded from [`image::busybox`].
pub const BUSYBOX: &str = image::REFERENCE;

/// Deadline of one podman command: three times the harness's runtime deadline (60 s by default).
pub fn timeout() -> Duration {
    roci_integration::exec::default_timeout() * 3
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Podman {
    /// `<test name>-<n>`: the cgroup leaf under the group parent.
    pub name: String,
    pub rt: &'static Runtime,
    /// The temp dir: everything of this podman lives below it.
    pub dir: PathBuf,
    /// The script podman and conmon run as the runtime.
    pub wrapper: PathBuf,
    /// One line per runtime invocation: `<pid> <args...>`.
    pub calls_log: PathBuf,
    /// `--cgroup-parent` of the test's containers and pods: `/roci-pm-<pid>/<name>`.
    pub cgroup_parent: String,
    driver: &'static str,
    seq: AtomicUsize,
    pods: Mutex<BTreeSet<String>>,
    tmp: Option<tempfile::TempDir>,
    _group: GroupUse,
}

impl Podman {
    /// A private podman with the busybox image loaded, calling the runtime under test by its own file name.
    pub fn new(test: &str) -> Podman {
        Self::with_runtime_name(test, &runtime_name())
    }

    /// As [`Podman::new`], with the wrapper named `runtime_name` (podman decides by the name whether
    /// the runtime takes runc's `--log-format=json`; a name it does not know gets plain stderr).
    pub fn with_runtime_name(test: &str, runtime_name: &str) -> Podman {
        Self::with_config(test, runtime_name, "")
    }

    /// As [`Podman::with_runtime_name`], with `engine` appended to the `[engine]` table of containers.conf.
    pub fn with_config(test: &str, runtime_name: &str, engine: &str) -> Podman {
        assert!(
            roci_integration::runtime::which(Path::new("podman")).is_some()
                && roci_integration::runtime::which(Path::new("conmon")).is_some(),
            "podman and conmon are needed (apt-get install podman conmon catatonit containernetworking-plugins)"
        );
        let rt = runtime();
        let group = GroupUse::take();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{test}-{n}");
        let tmp = tempfile::Builder::new().prefix("roci-pm-").tempdir().expect("create temp dir");
        let dir = tmp.path().to_path_buf();
        for d in ["conf", "root", "runroot", "tmp", "net", "hooks", "bin", "io", "host", "iso/var-tmp", "iso/var-lib"] {
            fs::create_dir_all(dir.join(d)).expect("create podman test dirs");
        }
        fs::create_dir_all(dir.join("iso/etc-containers/registries.conf.d")).expect("create iso dirs");
        let wrapper = dir.join("bin").join(runtime_name);
        let calls_log = dir.join("runtime-calls.log");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n# roci-integration: record the invocation, then run the runtime under test in its place.\n\
                 printf '%s\\n' \"$$ $*\" >> '{}'\nexec '{}' \"$@\"\n",
                calls_log.display(),
                rt.path.display()
            ),
        )
        .expect("write runtime wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod runtime wrapper");
        write_config(&dir, runtime_name, engine);
        let cgroup_parent = format!("{}/{name}", group_parent());
        let pm = Podman {
            name,
            rt,
            dir,
            wrapper,
            calls_log,
            cgroup_parent,
            driver: storage_driver(),
            seq: AtomicUsize::new(0),
            pods: Mutex::new(BTreeSet::new()),
            tmp: Some(tmp),
            _group: group,
        };
        let archive = image::busybox().docker_archive.to_string_lossy().into_owned();
        let out = pm.isolated(&["load", "-q", "-i", &archive]);
        out.ok();
        assert!(out.stdout.contains(BUSYBOX), "podman load did not report {BUSYBOX}: {out}");
        pm
    }

    /// `podman` with this test's configuration and global flags, and the wrapper as `--runtime`.
    pub fn command(&self) -> Command {
        let mut c = Command::new("podman");
        self.configure(&mut c);
        c
    }

    fn configure(&self, c: &mut Command) {
        let conf = self.dir.join("conf");
        for v in
            ["CONTAINER_HOST", "CONTAINER_CONNECTION", "REGISTRIES_CONFIG_PATH", "NOTIFY_SOCKET", "CONTAINERS_HELPER_BINARY_DIR"]
        {
            c.env_remove(v);
        }
        c.env("CONTAINERS_CONF", conf.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", conf.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", conf.join("registries.conf"))
            .env("TMPDIR", self.dir.join("tmp"));
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--storage-driver", self.driver])
            .arg("--runtime")
            .arg(&self.wrapper);
    }

    fn io_base(&self) -> PathBuf {
        self.dir.join("io").join(self.seq.fetch_add(1, Ordering::SeqCst).to_string())
    }

    /// `podman ARGS` with output capture and [`timeout`].
    pub fn podman(&self, args: &[&str]) -> Output {
        self.podman_timeout(args, timeout())
    }

    pub fn podman_timeout(&self, args: &[&str], t: Duration) -> Output {
        let mut c = self.command();
        c.args(args);
        run_captured(c, &self.io_base(), None, t)
    }

    /// `podman ARGS` started by `sh -c '<prefix>; exec podman ...'`, for stdin and fd plumbing
    /// (`exec 0<file`, `exec 3<file`).
    pub fn podman_via_shell(&self, prefix: &str, args: &[&str]) -> Output {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(format!("{prefix}\nexec \"$@\"")).arg("sh").arg("podman");
        self.configure(&mut c);
        c.args(args);
        run_captured(c, &self.io_base(), None, timeout())
    }

    /// `podman ARGS` in a private mount namespace with the test's directories over
    /// `/var/lib/containers` (or `/var/lib` when that does not exist), `/var/tmp` and `/etc/containers`
    /// (see the module comment). Only for commands that leave no process or mount behind.
    fn isolated(&self, args: &[&str]) -> Output {
        let iso = self.dir.join("iso");
        let mut script = String::from("set -e\n");
        let mut bind = |src: PathBuf, dst: &str| {
            script.push_str(&format!("mount --bind '{}' '{dst}'\n", src.display()));
        };
        if Path::new("/var/lib/containers").is_dir() {
            bind(iso.join("var-lib"), "/var/lib/containers");
        } else {
            bind(iso.join("var-lib"), "/var/lib");
        }
        bind(iso.join("var-tmp"), "/var/tmp");
        if Path::new("/etc/containers").is_dir() {
            bind(iso.join("etc-containers"), "/etc/containers");
        }
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
            .arg(format!("{script}exec \"$@\""))
            .arg("sh")
            .arg("podman");
        self.configure(&mut c);
        c.args(args);
        run_captured(c, &self.io_base(), None, timeout())
    }

    /// `podman ARGS`, panicking unless it exits 0; its stdout, trimmed.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        self.podman(args).ok().stdout.trim().to_string()
    }

    /// `podman run --cgroup-parent <ours> --network none ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut a = vec!["run", "--cgroup-parent", &self.cgroup_parent, "--network", "none"];
        a.extend_from_slice(args);
        self.podman(&a)
    }

    /// `podman create --cgroup-parent <ours> --network none ARGS`.
    pub fn create(&self, args: &[&str]) -> Output {
        let mut a = vec!["create", "--cgroup-parent", &self.cgroup_parent, "--network", "none"];
        a.extend_from_slice(args);
        self.podman(&a)
    }

    /// `podman exec CTR sh -c SCRIPT`.
    pub fn sh(&self, ctr: &str, script: &str) -> Output {
        self.podman(&["exec", ctr, "sh", "-c", script])
    }

    /// Build podman's pause image (`localhost/podman-pause`) if it is not there yet: the first
    /// `pod create` builds it, and that copy runs isolated (see the module comment).
    pub fn ensure_pause_image(&self) {
        if self.podman(&["image", "exists", "localhost/podman-pause:4.3.1-0"]).success() {
            return;
        }
        let warm = format!("{}-warmup", self.name);
        let out = self.isolated(&["pod", "create", "--name", &warm, "--cgroup-parent", &self.cgroup_parent, "--network", "none"]);
        out.ok();
        self.record_pod(out.stdout.trim());
        self.podman(&["pod", "rm", "-f", &warm]).ok();
    }

    /// `podman pod create --name NAME --cgroup-parent <ours> --network none EXTRA`; the pod id.
    #[track_caller]
    pub fn pod_create(&self, name: &str, extra: &[&str]) -> String {
        self.ensure_pause_image();
        let mut a = vec!["pod", "create", "--name", name, "--cgroup-parent", &self.cgroup_parent, "--network", "none"];
        a.extend_from_slice(extra);
        let id = self.ok(&a);
        self.record_pod(&id);
        id
    }

    /// Remember a pod id (for the cleanup of cgroups podman puts outside the test's parent).
    pub fn record_pod(&self, id: &str) {
        if is_full_id(id) {
            self.pods.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_string());
        }
    }

    /// `podman inspect NAME --format FORMAT`, trimmed.
    #[track_caller]
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", name, "--format", format])
    }

    #[track_caller]
    pub fn id_of(&self, name: &str) -> String {
        self.inspect(name, "{{.Id}}")
    }

    /// The host pid of the container's init.
    #[track_caller]
    pub fn pid_of(&self, name: &str) -> i32 {
        let s = self.inspect(name, "{{.State.Pid}}");
        s.parse().unwrap_or_else(|_| panic!("no pid for {name}: {s:?}"))
    }

    /// The `config.json` podman wrote for container `id` (it stays until the container is removed).
    #[track_caller]
    pub fn config_json(&self, id: &str) -> serde_json::Value {
        let p = self.dir.join("root").join(format!("{}-containers", self.driver)).join(id).join("userdata/config.json");
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The runtime invocations so far, each as its argument list joined by spaces (without the pid).
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.calls_log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_once(' ').map_or("", |(_, rest)| rest).to_string())
            .collect()
    }

    /// The calls log, for assertion messages.
    pub fn calls_text(&self) -> String {
        self.calls().join("\n")
    }

    /// The calls whose command (the first word after the global flags) is `verb`.
    pub fn calls_of(&self, verb: &str) -> Vec<String> {
        self.calls().into_iter().filter(|c| command_of(c) == Some(verb)).collect()
    }

    /// The ids of every container the runtime was asked to create (the last argument of `create`).
    pub fn created_ids(&self) -> Vec<String> {
        self.calls_of("create").iter().filter_map(|c| c.split_whitespace().last().map(String::from)).collect()
    }

    /// `RUNTIME state ID` with the runtime under test itself (podman passes no `--root`, so the
    /// runtime's default state dir is the one podman used).
    pub fn runtime_state(&self, id: &str) -> Output {
        let mut c = Command::new(&self.rt.path);
        c.args(["state", id]);
        run_captured(c, &self.io_base(), None, roci_integration::exec::default_timeout())
    }

    /// Cgroup dirs (any hierarchy) named `libpod-<id>` for one of `ids`, below the test's parent or
    /// below the test's pods under `/libpod_parent`.
    pub fn container_cgroups(&self, ids: &[String]) -> Vec<PathBuf> {
        let names: BTreeSet<String> = ids.iter().map(|i| format!("libpod-{i}")).collect();
        let mut roots = cgroups::dirs(&self.cgroup_parent);
        for p in self.pods.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            roots.extend(cgroups::dirs(&format!("/libpod_parent/{p}")));
        }
        let mut found = Vec::new();
        for r in roots {
            walk_dirs(&r, &mut |d| {
                if d.file_name().is_some_and(|n| names.contains(&*n.to_string_lossy())) {
                    found.push(d.to_path_buf());
                }
            });
        }
        found
    }

    /// Live processes of this test outside podman's own command: conmons and `podman container cleanup`
    /// (their command lines name the temp dir) and container processes (their root is inside it).
    pub fn own_processes(&self) -> Vec<(i32, String)> {
        // With the trailing slash: another test's dir may share this one's name as a prefix.
        let prefix = format!("{}/", self.dir.display());
        let me = std::process::id() as i32;
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != me && !is_dead(*pid))
            .filter_map(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                let rooted = fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r.to_string_lossy().starts_with(&prefix));
                (rooted || cmdline.contains(&prefix)).then_some((pid, cmdline))
            })
            .collect()
    }

    /// After the test removed its containers and pods: podman lists none, the runtime knows none of
    /// the containers it created, their cgroups are gone, no conmon or container process of the test is
    /// alive, and nothing is mounted under the temp dir.
    #[track_caller]
    pub fn assert_clean(&self) {
        let left = self.ok(&["ps", "-a", "-q"]);
        assert!(left.is_empty(), "podman still lists containers: {left}");
        let ids = self.created_ids();
        for id in &ids {
            let st = self.runtime_state(id);
            assert!(!st.success(), "leak: the runtime still has container {id} after podman removed it: {st}");
        }
        let mut cg = Vec::new();
        wait_for(Duration::from_secs(5), || {
            cg = self.container_cgroups(&ids);
            cg.is_empty()
        });
        assert!(cg.is_empty(), "leak: container cgroups left: {cg:?}");
        let mut procs = Vec::new();
        wait_for(Duration::from_secs(10), || {
            procs = self.own_processes();
            procs.is_empty()
        });
        assert!(procs.is_empty(), "leak: processes of the test still alive: {procs:?}");
        // The storage driver's home is a private bind mount of its own while any podman process has the
        // store open (a `podman container cleanup` that conmon started may still be finishing): podman's,
        // not the runtime's. Container roots (`.../merged`) and shm mounts count.
        let home = format!("{}/root/{}", self.dir.display(), self.driver);
        let mut mounts = Vec::new();
        wait_for(Duration::from_secs(5), || {
            mounts = mounts_below(&self.dir).into_iter().filter(|m| *m != home).collect();
            mounts.is_empty()
        });
        assert!(mounts.is_empty(), "leak: mounts under {}: {mounts:?}", self.dir.display());
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let short = Duration::from_secs(30);
        let mut ids: BTreeSet<String> = self.created_ids().into_iter().collect();
        let listed = self.podman_timeout(&["ps", "-a", "-q", "--no-trunc"], short);
        ids.extend(listed.stdout.lines().map(str::trim).filter(|l| is_full_id(l)).map(String::from));
        let pods = self.podman_timeout(&["pod", "ps", "-q", "--no-trunc"], short);
        for p in pods.stdout.lines() {
            self.record_pod(p.trim());
        }
        let _ = self.podman_timeout(&["pod", "rm", "-af", "-t", "0"], short);
        let _ = self.podman_timeout(&["rm", "-af", "-t", "0"], short);
        for id in &ids {
            let mut c = Command::new(&self.rt.path);
            c.args(["delete", "--force", id]);
            let _ = run_captured(c, &self.io_base(), None, Duration::from_secs(10));
        }
        let pods: Vec<String> = self.pods.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect();
        let mut cgroup_roots = vec![self.cgroup_parent.clone()];
        cgroup_roots.extend(pods.iter().map(|p| format!("/libpod_parent/{p}")));
        cgroup_roots.extend(ids.iter().map(|i| format!("/libpod_parent/libpod-{i}")));
        wait_for(Duration::from_secs(5), || {
            for (pid, _) in self.own_processes() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            for r in &cgroup_roots {
                cgroups::kill_all(r);
            }
            self.own_processes().is_empty()
        });
        for r in &cgroup_roots {
            cgroups::remove_tree(r);
        }
        let mut mounts = mounts_below(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = umount2(m.as_str(), MntFlags::MNT_DETACH);
        }
        if let Some(t) = self.tmp.take() {
            // A busy mount or a file made immutable: leave the dir rather than panic in drop.
            let _ = t.close();
        }
    }
}

/// The runtime's own file name (`roci`, `runc`): what the wrapper is called by default.
pub fn runtime_name() -> String {
    runtime().path.file_name().expect("runtime file name").to_string_lossy().into_owned()
}

fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The runtime command of one logged invocation: the first word that is not a global flag or its value.
pub fn command_of(call: &str) -> Option<&str> {
    let mut words = call.split_whitespace();
    while let Some(w) = words.next() {
        if !w.starts_with('-') {
            return Some(w);
        }
        // Global flags with a separate value.
        if matches!(w, "--root" | "--log" | "--log-format" | "--criu" | "--rootless") {
            words.next();
        }
    }
    None
}

fn walk_dirs(d: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = fs::read_dir(d) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            f(&p);
            walk_dirs(&p, f);
        }
    }
}

fn write_config(dir: &Path, runtime_name: &str, engine: &str) {
    let d = dir.display();
    let conf = dir.join("conf");
    let seccomp = if Path::new("/usr/share/containers/seccomp.json").is_file() {
        "seccomp_profile = \"/usr/share/containers/seccomp.json\"\n"
    } else {
        ""
    };
    let mut json_runtimes = vec!["crun", "runc", "kata", "runsc", "krun", "roci"];
    if !json_runtimes.contains(&runtime_name) && runtime_name != "ocirt" {
        json_runtimes.push(runtime_name);
    }
    let json_runtimes = json_runtimes.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
    fs::write(conf.join("mounts.conf"), "").expect("write mounts.conf");
    fs::write(
        conf.join("containers.conf"),
        format!(
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             netns = \"none\"\n\
             default_mounts_file = \"{d}/conf/mounts.conf\"\n\
             {seccomp}\
             [network]\n\
             network_backend = \"cni\"\n\
             network_config_dir = \"{d}/net\"\n\
             cni_plugin_dirs = [\"/usr/lib/cni\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             events_logfile_path = \"{d}/events.log\"\n\
             lock_type = \"file\"\n\
             image_copy_tmp_dir = \"{d}/tmp\"\n\
             hooks_dir = [\"{d}/hooks\"]\n\
             tmp_dir = \"{d}/tmp\"\n\
             runtime_supports_json = [{json_runtimes}]\n\
             {engine}\n"
        ),
    )
    .expect("write containers.conf");
    fs::write(
        conf.join("storage.conf"),
        format!("[storage]\ndriver = \"{}\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n", storage_driver()),
    )
    .expect("write storage.conf");
    fs::write(
        conf.join("registries.conf"),
        "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n",
    )
    .expect("write registries.conf");
    let policy = r#"{"default": [{"type": "insecureAcceptAnything"}]}"#;
    fs::write(dir.join("iso/etc-containers/policy.json"), policy).expect("write policy.json");
}

/// podman's storage driver for the tests: `overlay` when the kernel mounts an overlay whose upper dir is on
/// the temp dir's filesystem (probed once, in a private mount namespace), else `vfs`.
/// `ROCI_PODMAN_STORAGE_DRIVER` overrides.
pub fn storage_driver() -> &'static str {
    static DRIVER: OnceLock<&'static str> = OnceLock::new();
    DRIVER.get_or_init(|| {
        if let Ok(d) = std::env::var("ROCI_PODMAN_STORAGE_DRIVER") {
            return if d == "vfs" { "vfs" } else { "overlay" };
        }
        let t = tempfile::Builder::new().prefix("roci-pm-probe-").tempdir().expect("probe dir");
        let p = t.path();
        for d in ["l", "u", "w", "m"] {
            fs::create_dir_all(p.join(d)).expect("probe dirs");
        }
        let ok = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "mount", "-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={0}/l,upperdir={0}/u,workdir={0}/w", p.display()))
            .arg(p.join("m"))
            .status()
            .is_ok_and(|s| s.success());
        let driver = if ok { "overlay" } else { "vfs" };
        eprintln!("roci-integration: podman storage driver: {driver}");
        driver
    })
}

/// This test process's cgroup parent for podman: `/roci-pm-<pid>`.
pub fn group_parent() -> String {
    format!("/roci-pm-{}", std::process::id())
}

struct Group {
    users: usize,
    /// Whether `/libpod_parent` existed (in any hierarchy) when the first guard of this process began.
    libpod_parent_existed: bool,
}

static GROUP: Mutex<Group> = Mutex::new(Group { users: 0, libpod_parent_existed: true });

/// A use of the group parent; the last one removes it, and `/libpod_parent` if the group made it.
struct GroupUse(());

impl GroupUse {
    fn take() -> GroupUse {
        let mut g = GROUP.lock().unwrap_or_else(|e| e.into_inner());
        if g.users == 0 {
            sweep_stale();
            g.libpod_parent_existed = !cgroups::existing_dirs("/libpod_parent").is_empty();
        }
        g.users += 1;
        GroupUse(())
    }
}

impl Drop for GroupUse {
    fn drop(&mut self) {
        let mut g = GROUP.lock().unwrap_or_else(|e| e.into_inner());
        g.users -= 1;
        if g.users == 0 {
            // Only empty cgroups go: whatever a guard failed to remove stays visible.
            for d in cgroups::dirs(&group_parent()) {
                let _ = fs::remove_dir(d);
            }
            if !g.libpod_parent_existed {
                for h in cgroups::hierarchies() {
                    let _ = fs::remove_dir(h.mount.join("libpod_parent/conmon"));
                    let _ = fs::remove_dir(h.mount.join("libpod_parent"));
                }
            }
        }
    }
}

/// Remove the empty `/roci-pm-<pid>` trees of test processes that no longer exist.
fn sweep_stale() {
    for h in cgroups::hierarchies() {
        let Ok(entries) = fs::read_dir(&h.mount) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("roci-pm-").and_then(|p| p.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let mut dirs = Vec::new();
                walk_dirs(&e.path(), &mut |d| dirs.push(d.to_path_buf()));
                dirs.sort_by_key(|d| std::cmp::Reverse(d.as_os_str().len()));
                for d in dirs {
                    let _ = fs::remove_dir(d);
                }
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::command_of;

    #[test]
    fn podman_harness_command_of_skips_global_flags() {
        assert_eq!(command_of("--log-format=json --log /x/oci-log create --bundle /b id"), Some("create"));
        assert_eq!(command_of("--root /r --systemd-cgroup kill id 15"), Some("kill"));
        assert_eq!(command_of("start id"), Some("start"));
        assert_eq!(command_of("--version"), None);
    }
}
