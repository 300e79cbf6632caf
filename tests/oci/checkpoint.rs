//! `checkpoint` and `restore` with CRIU: a process that counts keeps counting from where it was.
//!
//! CRIU does not work on every kernel: on this project's build host (kernel 6.18) `criu check` fails with
//! "vdso: Unexpected rt vDSO area bounds" / "Could not initialize kernel features detection". There the test
//! asserts the failure is clean instead: `checkpoint` fails naming CRIU and the container runs on,
//! untouched. Where `criu check` passes (the Debian 6.1 kernel of `hack/v2guest`) the whole round trip is
//! checked. CRIU needs `iptables-restore` to lock the container's network while it dumps (Debian package
//! `iptables`; the `criu` package does not pull it in).
//!
//! The counting process first moves its stdio to the container's own `/dev/null`: the harness gives the
//! runtime files of the test's temp dir as stdio, on a mount outside the container's mount namespace, and
//! CRIU cannot dump an fd on a mount it cannot see (runc fails the same: "Can't lookup mount=N for fd=1").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use roci_integration::wait::wait_until;
use roci_integration::{is_dead, Container};

const COUNTER: &str = "exec </dev/null >/dev/null 2>&1; i=0; while true; do echo $i > /tmp/count; i=$((i+1)); sleep 0.1; done";

/// CRIU on a slow (emulated) machine takes seconds per dump or restore.
const CRIU_TIMEOUT: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(30);

/// Whether CRIU can work on this kernel (`criu check` exits 0).
fn criu_works() -> bool {
    Command::new("criu").arg("check").output().map(|o| o.status.success()).unwrap_or(false)
}

/// The counter's last value, from the host through the rootfs (None while the file is being rewritten).
fn count(rootfs: &Path) -> Option<u64> {
    std::fs::read_to_string(rootfs.join("tmp/count")).ok()?.trim().parse().ok()
}

#[track_caller]
fn wait_count_at_least(c: &Container, n: u64) -> u64 {
    let mut last = None;
    wait_until(&format!("the counter of {} to reach {n}", c.id), T, || {
        last = count(&c.rootfs).or(last);
        last.is_some_and(|v| v >= n)
    });
    last.unwrap_or_default()
}

fn counting_container(name: &str) -> Container {
    let mut c = Container::new(name);
    c.spec.sh(COUNTER);
    c.run_with(&["-d"]).ok();
    assert_eq!(c.status(), "running");
    c
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn checkpoint(c: &Container, images: &Path, work: &Path) -> roci_integration::Output {
    let (images, work) = (path_str(images), path_str(work));
    c.invoke_timeout(&["checkpoint", "--image-path", &images, "--work-path", &work, &c.id], CRIU_TIMEOUT)
}

#[test]
fn checkpoint_restore_keeps_counting() {
    let c = counting_container("ckpt_count");
    let pid = c.pid();
    wait_count_at_least(&c, 10);
    let images: PathBuf = c.dir.join("images");
    let work: PathBuf = c.dir.join("work");

    if !criu_works() {
        eprintln!("checkpoint_restore_keeps_counting: `criu check` fails on this kernel: checking the failure only");
        // This kernel cannot run CRIU: the checkpoint fails, says so, and leaves the container as it was.
        let out = checkpoint(&c, &images, &work);
        out.fails().says("criu");
        if c.rt.is_roci() {
            // roci quotes the errors of CRIU's log and names it.
            out.says("criu dump failed").says("dump.log");
        }
        assert_eq!(c.status(), "running", "a failed checkpoint must leave the container running: {out}");
        assert_eq!(c.pid(), pid, "the container's init changed: {out}");
        assert!(!is_dead(pid), "the init died in a failed checkpoint: {out}");
        let before = wait_count_at_least(&c, 0);
        wait_count_at_least(&c, before + 3);
        c.delete_force().ok();
        c.assert_no_leaks();
        return;
    }

    eprintln!("checkpoint_restore_keeps_counting: `criu check` passes: full round trip");
    let out = checkpoint(&c, &images, &work);
    out.ok();
    // Without --leave-running the container is gone, as runc does it: processes dead, state removed.
    wait_until("the checkpointed init to die", T, || is_dead(pid));
    let st = c.invoke(&["state", &c.id]);
    st.fails().says("does not exist");
    let at_checkpoint = count(&c.rootfs).expect("the counter file after the checkpoint");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&c.rootfs), Some(at_checkpoint), "the counter moved after the checkpoint: {out}");
    assert!(images.join("inventory.img").is_file(), "no CRIU images in {}", images.display());

    let pid_file = c.dir.join("restore.pid");
    let (img, wk, bundle, pf) = (path_str(&images), path_str(&work), path_str(&c.bundle), path_str(&pid_file));
    let out = c.invoke_timeout(
        &["restore", "-d", "--image-path", &img, "--work-path", &wk, "--bundle", &bundle, "--pid-file", &pf, &c.id],
        CRIU_TIMEOUT,
    );
    out.ok();
    assert_eq!(c.status(), "running", "{out}");
    let restored = c.pid();
    let from_file: i32 = std::fs::read_to_string(&pid_file).expect("restore --pid-file").trim().parse().expect("a pid");
    assert_eq!(from_file, restored, "--pid-file and state disagree");
    // The counter goes on from where it was, not from 0.
    let first = wait_count_at_least(&c, 0);
    assert!(first >= at_checkpoint, "the counter restarted: {first} after restore, {at_checkpoint} at checkpoint");
    let later = wait_count_at_least(&c, first + 3);
    eprintln!("checkpoint_restore_keeps_counting: {at_checkpoint} at checkpoint, {first} first after restore, then {later}");
    // The same process tree: the restored init is PID 1 of its own PID namespace again.
    let status = std::fs::read_to_string(format!("/proc/{restored}/status")).unwrap_or_default();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap_or_default().to_string();
    assert!(nspid.split_whitespace().last() == Some("1"), "restored init is not PID 1 in its namespace: {nspid}");

    c.delete_force().ok();
    assert!(is_dead(restored) || wait_until_dead(restored), "the restored init survived delete --force");
    c.assert_no_leaks();
}

fn wait_until_dead(pid: i32) -> bool {
    roci_integration::wait_for(T, || is_dead(pid))
}

#[test]
fn checkpoint_without_criu_binary_leaves_container_running() {
    let c = counting_container("ckpt_nocriu");
    let pid = c.pid();
    let images = path_str(&c.dir.join("images"));
    // `--criu` names the binary (a global flag in runc and roci); a missing one is an error that says so.
    let out = c.invoke(&["--criu", "/nonexistent/criu", "checkpoint", "--image-path", &images, &c.id]);
    out.fails().says("/nonexistent/criu");
    if c.rt.is_roci() {
        out.says("apt-get install criu");
    }
    assert_eq!(c.status(), "running", "{out}");
    assert!(!is_dead(pid));
    let before = wait_count_at_least(&c, 0);
    wait_count_at_least(&c, before + 2);
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn checkpoint_refuses_created_container() {
    let mut c = Container::new("ckpt_created");
    c.spec.args(&["sleep", "100"]);
    c.create().ok();
    let images = c.dir.join("images");
    // runc: "Container cannot be checkpointed in created state"; roci says the same in its words.
    checkpoint(&c, &images, &c.dir.join("work")).fails().says("checkpoint").says("created");
    assert_eq!(c.status(), "created");
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn restore_of_a_bad_checkpoint_fails_cleanly() {
    let mut c = Container::new("restore_bad");
    c.spec.sh(COUNTER);
    c.write_config();
    let (img, bundle) = (c.dir.join("images"), path_str(&c.bundle));
    let work = c.dir.join("work");
    std::fs::create_dir_all(&img).expect("mkdir images");

    // No checkpoint at all.
    let out = c.invoke_timeout(&["restore", "-d", "--image-path", &path_str(&img), "--bundle", &bundle, &c.id], CRIU_TIMEOUT);
    out.fails();
    c.assert_no_leaks();

    // Files that look like one, so the runtime gets as far as running CRIU (which fails on them, or on this
    // kernel): the state, cgroup and whatever CRIU started must all be gone again.
    std::fs::write(img.join("inventory.img"), b"").expect("write inventory.img");
    std::fs::write(img.join("descriptors.json"), b"[]").expect("write descriptors.json");
    let out = c.invoke_timeout(
        &["restore", "-d", "--image-path", &path_str(&img), "--work-path", &path_str(&work), "--bundle", &bundle, &c.id],
        CRIU_TIMEOUT,
    );
    out.fails().says("criu");
    if c.rt.is_roci() {
        out.says("criu restore failed").says("restore.log");
    }
    c.assert_no_leaks();
    c.invoke(&["state", &c.id]).fails().says("does not exist");
}
