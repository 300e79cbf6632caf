//! File descriptors passed into the container: `--preserve-fds N` and systemd socket activation
//! (`LISTEN_FDS`/`LISTEN_PID`). Everything else the runtime was given must not leak in.

use roci_integration::Container;

use crate::section;

// `ls` of the shell's own fd dir, no pipeline: a pipeline would show the shell's pipe fds too.
const SCRIPT: &str = "echo \"== fds ==\"; ls /proc/$$/fd; \
                      echo \"== read ==\"; cat <&3 2>&1; echo written >&3 2>&1; \
                      echo \"== env ==\"; echo \"$LISTEN_FDS,$LISTEN_PID\"";

/// The fds the container's shell had open, sorted, space-separated.
fn fds(out: &roci_integration::Output) -> String {
    let mut v: Vec<u32> = section(&out.stdout, "fds").lines().filter_map(|l| l.trim().parse().ok()).collect();
    v.sort();
    v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ")
}

fn setup(name: &str) -> (Container, std::path::PathBuf) {
    let mut c = Container::new(name);
    let f = c.host_path("fd3.txt");
    std::fs::write(&f, "hello from fd 3\n").unwrap();
    c.spec.sh(SCRIPT);
    c.write_config();
    (c, f)
}

fn run_args(c: &Container, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["run".to_string()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(["--bundle".to_string(), c.bundle.to_string_lossy().into_owned(), c.id.clone()]);
    a
}

#[test]
fn preserve_fds_passes_fd3() {
    let (c, f) = setup("preserve_fds");
    let args = run_args(&c, &["--preserve-fds", "1"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.invoke_via_shell(&format!("exec 3<>'{}'", f.display()), &args);
    out.ok();
    assert_eq!(fds(&out), "0 1 2 3", "{out}");
    assert_eq!(section(&out.stdout, "read"), "hello from fd 3");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hello from fd 3\nwritten\n", "writes through fd 3 reach the file");
    c.assert_no_leaks();
}

#[test]
fn fds_not_preserved_are_closed() {
    let (c, f) = setup("no_preserve_fds");
    let args = run_args(&c, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // fds 3 and 9 are open (not close-on-exec) in the runtime; neither may reach the container.
    let out = c.invoke_via_shell(&format!("exec 3<>'{}' 9<'{}'", f.display(), f.display()), &args);
    out.ok();
    assert_eq!(fds(&out), "0 1 2", "{out}");
    assert!(out.stderr.contains("3: Bad file descriptor"), "{out}");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "hello from fd 3\n");
    c.assert_no_leaks();
}

#[test]
fn listen_fds_passed_through() {
    // Socket activation: LISTEN_PID is the runtime's pid (the shell's $$, which `exec` turns into the
    // runtime). The runtime passes fds 3..3+LISTEN_FDS and sets LISTEN_FDS=N, LISTEN_PID=1 inside.
    let (c, f) = setup("listen_fds");
    let args = run_args(&c, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.invoke_via_shell(&format!("exec 3<>'{}'; export LISTEN_FDS=1 LISTEN_PID=$$", f.display()), &args);
    out.ok();
    assert_eq!(fds(&out), "0 1 2 3", "{out}");
    assert_eq!(section(&out.stdout, "read"), "hello from fd 3");
    assert_eq!(section(&out.stdout, "env"), "1,1");
    c.assert_no_leaks();
}

#[test]
fn listen_fds_for_another_pid_ignored() {
    let (c, f) = setup("listen_fds_other");
    let args = run_args(&c, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = c.invoke_via_shell(&format!("exec 3<>'{}'; export LISTEN_FDS=1 LISTEN_PID=1", f.display()), &args);
    out.ok();
    assert_eq!(fds(&out), "0 1 2", "{out}");
    assert_eq!(section(&out.stdout, "env"), ",", "{out}");
    c.assert_no_leaks();
}
