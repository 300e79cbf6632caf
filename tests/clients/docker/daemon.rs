//! A private `dockerd` for the Docker group, and everything it leaves behind.
//!
//! Each [`Daemon`] owns:
//! - a temp dir `$TMPDIR/roci-dkr-<pid>-<n>-XXXXXX` holding `--data-root` (`data/`), `--exec-root`
//!   (`exec/`, where dockerd's managed containerd keeps its socket and state and the shim keeps the
//!   runtime's `--root`), `--pidfile`, the API socket, an empty `--config-file` (so the host's
//!   `/etc/docker/daemon.json` is never read), the docker CLI's config dir and dockerd's log;
//! - a network namespace of its own, kept by a bind mount on `<dir>/netns` (not `ip netns add`, whose
//!   `/run/netns` mount would outlive the group): dockerd runs in it (`nsenter --net`, which
//!   keeps the host's mount namespace and so `/sys/fs/cgroup`; `ip netns exec` would remount `/sys`
//!   and hide the cgroup mounts), so `docker0`, the veths, the iptables rules and `ip_forward` live
//!   there and the host's network is never touched;
//! - a cgroup parent `/roci-dkr-<pid>-<n>` (dockerd's `--cgroup-parent`), so no container lands under
//!   `/docker`.
//!
//! The runtime under test is registered with `--add-runtime NAME=PATH` (NAME is `roci` for roci, and
//! `<binary>-under-test` otherwise: dockerd reserves the name `runc`) and made the default runtime too,
//! so no container of the group can run on anything else.
//!
//! Teardown (on drop, so also when a test panics): `docker rm -f` every container; SIGTERM to dockerd
//! by pid (it stops its containerd), SIGKILL after a grace period; SIGKILL to any process left whose
//! command line names the temp dir (shims: they are reparented to PID 1, not children of dockerd),
//! whose root is inside it, or that sits in the cgroup parent; lazy unmounts of everything mounted
//! below the temp dir (overlay2 layers, the netns bind mount), deepest first; the cgroup parent in every
//! hierarchy; `/docker` if dockerd made it anyway (only when it did not exist before); the temp dir. A test process that was killed before its teardown is swept by the next
//! one ([`sweep_stale`]). With `ROCI_TEST_KEEP_LOGS=DIR`, dockerd's log (with its containerd's and the
//! shims') is copied to `DIR/<name>-dockerd.log` first.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use roci_integration::exec::{run_captured, Output};
use roci_integration::{cgroups, image, runtime, wait_for, wait_until};

/// Debian's docker.io CLI, by path: `/usr/local/bin` may hold another docker CLI that comes first
/// in `PATH`.
pub const DOCKER: &str = "/usr/bin/docker";
pub const DOCKERD: &str = "/usr/sbin/dockerd";

/// Deadline of one docker CLI invocation.
pub fn docker_timeout() -> Duration {
    roci_integration::exec::default_timeout().max(Duration::from_secs(90))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Daemon {
    /// The temp dir; everything of this daemon is below it.
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// `roci-dkr-<pid>-<n>`: the daemon's name in messages, log copies and its cgroup parent.
    pub name: String,
    /// The runtime under test as dockerd knows it (`--runtime <runtime_name>`).
    pub runtime_name: String,
    /// dockerd's `--cgroup-parent`: containers' cgroups are `<cgroup_parent>/<id>`.
    pub cgroup_parent: String,
    /// Scratch dir for bind-mount sources.
    pub host: PathBuf,
    log: PathBuf,
    dockerd: Mutex<Option<Child>>,
    /// The `/docker` cgroup dirs that existed before this daemon started (never removed).
    docker_cgroups_before: Vec<PathBuf>,
    seq: AtomicUsize,
    names: AtomicUsize,
    tmp: Mutex<Option<tempfile::TempDir>>,
}

impl Daemon {
    /// The daemon shared by the tests running at the same time: started by the first, torn down when
    /// the last one drops it (a later test starts a fresh one).
    pub fn shared() -> Arc<Daemon> {
        static SHARED: Mutex<Weak<Daemon>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = slot.upgrade() {
            return d;
        }
        let d = Arc::new(Daemon::start());
        *slot = Arc::downgrade(&d);
        d
    }

    /// A daemon of the caller's own (started, busybox loaded).
    pub fn start() -> Daemon {
        for tool in [DOCKER, DOCKERD, "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2"] {
            assert!(Path::new(tool).exists(), "{tool} missing: install Debian's docker.io (apt-get install docker.io)");
        }
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(sweep_stale);

        let rt = runtime();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("roci-dkr-{}-{n}", std::process::id());
        let tmp = tempfile::Builder::new().prefix(&format!("{name}-")).tempdir().expect("create the daemon's temp dir");
        let dir = tmp.path().to_path_buf();
        let runtime_name = if rt.is_roci() {
            "roci".to_string()
        } else {
            format!("{}-under-test", rt.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
        };
        let docker_cgroups_before = cgroups::existing_dirs("/docker");
        let d = Daemon {
            sock: dir.join("docker.sock"),
            data_root: dir.join("data"),
            exec_root: dir.join("exec"),
            host: dir.join("host"),
            log: dir.join("dockerd.log"),
            name: name.clone(),
            runtime_name,
            cgroup_parent: format!("/{name}"),
            dockerd: Mutex::new(None),
            docker_cgroups_before,
            seq: AtomicUsize::new(0),
            names: AtomicUsize::new(0),
            dir,
            tmp: Mutex::new(Some(tmp)),
        };
        // From here on, a panic drops `d`, which tears down whatever was made.
        for sub in ["io", "cli", "host"] {
            std::fs::create_dir_all(d.dir.join(sub)).expect("create daemon dirs");
        }
        std::fs::write(d.dir.join("daemon.json"), "{}\n").expect("write daemon.json");
        File::create(d.netns_path()).expect("create the netns mount point");
        let mut c = Command::new("unshare");
        c.arg(format!("--net={}", d.netns_path().display())).arg("true");
        d.expect_ok(d.run_cmd(c, Duration::from_secs(20)));
        d.expect_ok(d.in_netns(&["ip", "link", "set", "lo", "up"]));

        let log = File::create(&d.log).expect("create dockerd.log");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", d.netns_path().display()))
            .arg("--")
            .arg(DOCKERD)
            .arg("--config-file")
            .arg(d.dir.join("daemon.json"))
            .arg("--data-root")
            .arg(&d.data_root)
            .arg("--exec-root")
            .arg(&d.exec_root)
            .arg("--pidfile")
            .arg(d.dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.sock.display()))
            .arg("--cgroup-parent")
            .arg(&d.cgroup_parent)
            .arg("--add-runtime")
            .arg(format!("{}={}", d.runtime_name, rt.path.display()))
            .arg("--default-runtime")
            .arg(&d.runtime_name)
            // Published ports are not used; without the proxy no docker-proxy process can linger.
            .arg("--userland-proxy=false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn nsenter/dockerd (util-linux, docker.io): {e}"));
        let pid = child.id() as i32;
        *d.dockerd.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);

        let mut last = String::new();
        let up = wait_for(Duration::from_secs(60), || {
            if roci_integration::is_dead(pid) {
                return true;
            }
            if !d.sock.exists() {
                return false;
            }
            let out = d.docker_timeout(&["version", "--format", "{{.Server.Version}}"], Duration::from_secs(20));
            last = out.to_string();
            out.success()
        });
        assert!(up && !roci_integration::is_dead(pid), "dockerd did not come up: {last}\n{}", d.log_tail());
        let img = image::busybox();
        d.expect_ok(d.docker(&["load", "-i", &img.docker_archive.to_string_lossy()]));
        eprintln!(
            "docker: dockerd {pid} ({}) in its own netns with runtime {}={} (dir {})",
            d.name,
            d.runtime_name,
            rt.path.display(),
            d.dir.display()
        );
        d
    }

    pub fn netns_path(&self) -> PathBuf {
        self.dir.join("netns")
    }

    /// dockerd's pid while it runs.
    pub fn dockerd_pid(&self) -> Option<i32> {
        self.dockerd.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.id() as i32)
    }

    /// A unique container name for this daemon: `<hint>-<n>`.
    pub fn name(&self, hint: &str) -> String {
        format!("{hint}-{}", self.names.fetch_add(1, Ordering::SeqCst))
    }

    fn out_base(&self, what: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let what: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(24).collect();
        self.dir.join("io").join(format!("{n}-{what}"))
    }

    fn run_cmd(&self, cmd: Command, timeout: Duration) -> Output {
        let what = cmd.get_args().next().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        run_captured(cmd, &self.out_base(&what), None, timeout)
    }

    /// The docker CLI against this daemon, with its config in the temp dir.
    pub fn cli(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY");
        c
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_timeout(args, docker_timeout())
    }

    pub fn docker_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let mut c = self.cli();
        c.args(args);
        self.run_cmd(c, timeout)
    }

    /// `docker ARGS < input` (run_captured gives commands no stdin, so a shell redirects it).
    pub fn docker_stdin(&self, args: &[&str], input: &str) -> Output {
        let file = self.out_base("stdin").with_extension("in");
        std::fs::write(&file, input).expect("write stdin file");
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg("f=$1; shift; exec \"$@\" < \"$f\"").arg("sh").arg(&file);
        c.arg(DOCKER).args(args);
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display())).env("DOCKER_CONFIG", self.dir.join("cli"));
        self.run_cmd(c, docker_timeout())
    }

    /// `docker run --rm --pull never --runtime NAME FLAGS busybox CMD...`, attached.
    pub fn run(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--rm", "--pull", "never", "--runtime", &self.runtime_name];
        args.extend_from_slice(flags);
        args.push("busybox");
        args.extend_from_slice(cmd);
        self.docker(&args)
    }

    /// `docker run -d --name N --runtime NAME FLAGS busybox CMD...`; the container is removed when the
    /// guard drops.
    #[track_caller]
    pub fn run_detached(&self, hint: &str, flags: &[&str], cmd: &[&str]) -> Ctr<'_> {
        let name = self.name(hint);
        let mut args = vec!["run", "-d", "--pull", "never", "--name", &name, "--runtime", &self.runtime_name];
        args.extend_from_slice(flags);
        args.push("busybox");
        args.extend_from_slice(cmd);
        let ctr = Ctr { d: self, name: name.clone() };
        self.expect_ok(self.docker(&args));
        ctr
    }

    /// `docker inspect -f FORMAT NAME`, trimmed.
    #[track_caller]
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.expect_ok(self.docker(&["inspect", "-f", format, name])).stdout.trim().to_string()
    }

    /// Panics with the command's output and the end of dockerd's log unless it exited 0.
    #[track_caller]
    pub fn expect_ok(&self, out: Output) -> Output {
        assert!(out.success(), "command failed: {out}\n--- dockerd.log (end) ---\n{}", self.log_tail());
        out
    }

    /// The last 40 lines of dockerd's log (with its managed containerd's).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("module=grpc")).collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A command run in the daemon's network namespace (only the network namespace is switched).
    pub fn in_netns(&self, args: &[&str]) -> Output {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path().display())).arg("--").args(args);
        self.run_cmd(c, Duration::from_secs(20))
    }

    /// The address of `docker0` in the daemon's network namespace: the gateway of the default bridge.
    #[track_caller]
    pub fn bridge_gateway(&self) -> Ipv4Addr {
        let out = self.expect_ok(self.in_netns(&["ip", "-4", "-o", "addr", "show", "dev", "docker0"]));
        // `4: docker0    inet 172.17.0.1/16 brd ... scope global docker0`
        let cidr = out.stdout.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or_default().to_string();
        cidr.split('/').next().and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("no IPv4 address on docker0: {out}"))
    }

    /// The cgroup (relative to a hierarchy's mount) of a container, from its full id.
    pub fn container_cgroup(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    /// The runtime's `--root` for the containers of this daemon: `<exec-root>/runtime-<x>/moby` (the
    /// shim's runc options; the directory is named after dockerd's runc, whatever the binary).
    pub fn runtime_root(&self) -> Option<PathBuf> {
        std::fs::read_dir(&self.exec_root)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("runtime-")) && p.join("moby").is_dir())
            .map(|p| p.join("moby"))
    }

    /// The processes of this daemon: every live (non-zombie) one whose command line names the temp dir
    /// (dockerd, containerd, shims), whose root is inside it (containers), or that sits in the cgroup
    /// parent.
    pub fn processes(&self) -> Vec<i32> {
        let mut pids = processes_naming(&self.dir);
        for h in cgroups::hierarchies() {
            collect_procs(&h.mount.join(self.cgroup_parent.trim_start_matches('/')), &mut pids);
        }
        pids.retain(|p| !roci_integration::is_dead(*p) && *p != std::process::id() as i32);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Tear everything down (see the module doc); returns what could not be removed.
    pub fn teardown(&self) -> Vec<String> {
        let mut left = Vec::new();
        let child = self.dockerd.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Only a child not yet reaped is signalled: once reaped, its pid may belong to anything.
        if let Some(mut child) = child {
            if child.try_wait().ok().flatten().is_none() {
                if self.sock.exists() {
                    let ps = self.docker_timeout(&["ps", "-aq"], Duration::from_secs(30));
                    let ids: Vec<&str> = ps.stdout.split_whitespace().collect();
                    if !ids.is_empty() {
                        let mut args = vec!["rm", "-f"];
                        args.extend(ids);
                        let _ = self.docker_timeout(&args, Duration::from_secs(60));
                    }
                }
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait().ok().flatten().is_none() {
                    if Instant::now() >= deadline {
                        left.push(format!("dockerd {} ignored SIGTERM for 30 s: killed", child.id()));
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // dockerd stops its containerd on the way out; whatever is left (a shim, a container) goes now.
        wait_for(Duration::from_secs(10), || self.processes().is_empty());
        for _ in 0..3 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            wait_for(Duration::from_secs(5), || self.processes().is_empty());
        }
        let pids = self.processes();
        if !pids.is_empty() {
            left.push(format!("processes {pids:?}"));
        }
        unmount_below(&self.dir);
        let mounts = roci_integration::container::mounts_below(&self.dir);
        if !mounts.is_empty() {
            left.push(format!("mounts {mounts:?}"));
        }
        for d in cgroups::remove_tree(&self.cgroup_parent) {
            left.push(format!("cgroup {}", d.display()));
        }
        for d in cgroups::existing_dirs("/docker") {
            if !self.docker_cgroups_before.contains(&d) {
                left.push(format!("dockerd made cgroup {} (removed)", d.display()));
                remove_cgroup_tree(&d);
            }
        }
        if let Some(keep) = std::env::var_os("ROCI_TEST_KEEP_LOGS") {
            let to = Path::new(&keep).join(format!("{}-dockerd.log", self.name));
            let _ = std::fs::create_dir_all(&keep).and_then(|()| std::fs::copy(&self.log, &to));
        }
        if let Some(t) = self.tmp.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let path = t.path().to_path_buf();
            if let Err(e) = t.close() {
                left.push(format!("temp dir {}: {e}", path.display()));
            }
        }
        left
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let left = self.teardown();
        if !left.is_empty() {
            eprintln!("docker: teardown of {} left: {left:?}", self.name);
        }
    }
}

/// A container of a test; `docker rm -f` on drop.
pub struct Ctr<'a> {
    pub d: &'a Daemon,
    pub name: String,
}

impl Ctr<'_> {
    #[track_caller]
    pub fn inspect(&self, format: &str) -> String {
        self.d.inspect(&self.name, format)
    }

    #[track_caller]
    pub fn id(&self) -> String {
        self.inspect("{{.Id}}")
    }

    #[track_caller]
    pub fn pid(&self) -> i32 {
        self.inspect("{{.State.Pid}}").parse().expect("State.Pid is a number")
    }

    /// `docker exec FLAGS NAME CMD...`.
    pub fn exec(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.push(&self.name);
        args.extend_from_slice(cmd);
        self.d.docker(&args)
    }

    #[track_caller]
    pub fn logs(&self) -> String {
        let out = self.d.expect_ok(self.d.docker(&["logs", &self.name]));
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Wait until the container's log contains `needle`.
    #[track_caller]
    pub fn wait_log(&self, needle: &str) {
        let mut last = String::new();
        let ok = wait_for(Duration::from_secs(30), || {
            let out = self.d.docker(&["logs", &self.name]);
            last = format!("{}{}", out.stdout, out.stderr);
            last.contains(needle)
        });
        assert!(ok, "container {} never logged {needle:?}; log: {last:?}", self.name);
    }

    /// The container's cgroup, relative to a hierarchy's mount.
    #[track_caller]
    pub fn cgroup(&self) -> String {
        self.d.container_cgroup(&self.id())
    }
}

impl Drop for Ctr<'_> {
    fn drop(&mut self) {
        let _ = self.d.docker_timeout(&["rm", "-f", &self.name], Duration::from_secs(60));
    }
}

/// A TCP server in a network namespace: a thread that joins the namespace (only itself: `setns` of a
/// network namespace is per thread), binds `addr` on an ephemeral port and answers each connection with
/// `reply`, until dropped (or 120 s pass).
pub struct NetnsServer {
    pub port: u16,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl NetnsServer {
    #[track_caller]
    pub fn start(netns: &Path, addr: Ipv4Addr, reply: &'static str) -> NetnsServer {
        let (tx, rx) = std::sync::mpsc::channel::<Result<u16, String>>();
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2, ns) = (served.clone(), stop.clone(), netns.to_path_buf());
        let handle = std::thread::spawn(move || {
            let listener = (|| {
                let f: OwnedFd = File::open(&ns).map_err(|e| format!("open {}: {e}", ns.display()))?.into();
                setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {}: {e}", ns.display()))?;
                let l = TcpListener::bind((addr, 0)).map_err(|e| format!("bind {addr}:0 in {}: {e}", ns.display()))?;
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok::<_, String>(l)
            })();
            let l = match listener {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(l.local_addr().map(|a| a.port()).unwrap_or(0)));
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(reply.as_bytes());
                        s2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("server thread: {e}"))
            .unwrap_or_else(|e| panic!("server in {}: {e}", netns.display()));
        NetnsServer { port, served, stop, handle: Some(handle) }
    }

    /// Connections answered so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for NetnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Live pids whose command line or root directory names `dir`.
fn processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let root = std::fs::read_link(format!("/proc/{pid}/root")).map(|r| r.to_string_lossy().into_owned());
            cmdline.contains(&needle) || root.is_ok_and(|r| r.starts_with(&needle))
        })
        .filter(|pid| !roci_integration::is_dead(*pid))
        .collect()
}

fn collect_procs(d: &Path, out: &mut Vec<i32>) {
    if let Ok(p) = std::fs::read_to_string(d.join("cgroup.procs")) {
        out.extend(p.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_procs(&e.path(), out);
            }
        }
    }
}

fn remove_cgroup_tree(d: &Path) {
    if let Ok(entries) = std::fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    wait_for(Duration::from_secs(2), || std::fs::remove_dir(d).is_ok() || !d.exists());
}

/// Lazily unmount everything mounted at or below `dir`, deepest first, until nothing is left (a lazy
/// unmount can uncover a mount beneath it).
fn unmount_below(dir: &Path) {
    for _ in 0..10 {
        let mut mounts = roci_integration::container::mounts_below(dir);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = umount2(m.as_str(), MntFlags::MNT_DETACH);
        }
    }
}

/// Clean up after Docker-group test processes that died before their teardown: their temp dirs
/// (`roci-dkr-<pid>-*` with a dead pid), the processes naming them, the mounts below them (the netns
/// bind mount among them) and their cgroup parents.
pub fn sweep_stale() {
    let dead = |name: &str| -> bool {
        let Some(pid) = name.strip_prefix("roci-dkr-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok())
        else {
            return false;
        };
        pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
    };
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !dead(&name) {
                continue;
            }
            let dir = e.path();
            for pid in processes_naming(&dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            wait_for(Duration::from_secs(5), || processes_naming(&dir).is_empty());
            unmount_below(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    for h in cgroups::hierarchies() {
        let Ok(entries) = std::fs::read_dir(&h.mount) else { continue };
        for e in entries.flatten() {
            if dead(&e.file_name().to_string_lossy()) {
                let mut pids = Vec::new();
                collect_procs(&e.path(), &mut pids);
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                remove_cgroup_tree(&e.path());
            }
        }
    }
}

/// `wait_until` re-exported for the tests' convenience.
pub fn until(what: &str, cond: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(30), cond);
}
