//! `process.terminal`: the runtime sends the pty master over `--console-socket`; the container's stdio is
//! the pty slave.

use std::time::Duration;

use roci_integration::console::{read_pty, ConsoleSocket};
use roci_integration::Container;

const T: Duration = Duration::from_secs(10);

fn terminal_container(name: &str) -> (Container, ConsoleSocket) {
    let mut c = Container::new(name);
    c.spec
        .terminal(true)
        .console_size(30, 100)
        .sh("tty; stty size; test -t 0 && test -t 1 && test -t 2 && echo all-tty; echo done");
    let sock = ConsoleSocket::listen(&c.dir.join("console.sock"), T);
    (c, sock)
}

fn check_output(text: &str) {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.first().is_some_and(|l| *l == "/dev/pts/0" || *l == "/dev/console"), "tty inside the container: {text:?}");
    assert!(lines.contains(&"30 100"), "consoleSize applied (stty size): {text:?}");
    assert!(lines.contains(&"all-tty"), "stdin, stdout and stderr are the terminal: {text:?}");
    assert!(text.contains("\r\n"), "output passed through a pty line discipline (onlcr): {text:?}");
}

#[test]
fn terminal_create_start() {
    let (c, sock) = terminal_container("terminal_create");
    let path = sock.path.to_string_lossy().into_owned();
    c.create_with(&["--console-socket", &path]).ok();
    let master = sock.master();
    assert_eq!(c.status(), "created");
    c.start().ok();
    let text = read_pty(&master, T, |s| s.contains("done"));
    check_output(&text);
    c.wait_status("stopped", T);
    drop(master);
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn terminal_run_detached() {
    let (c, sock) = terminal_container("terminal_run_d");
    let path = sock.path.to_string_lossy().into_owned();
    c.run_with(&["-d", "--console-socket", &path]).ok();
    let master = sock.master();
    let text = read_pty(&master, T, |s| s.contains("done"));
    check_output(&text);
    c.wait_status("stopped", T);
    drop(master);
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn terminal_input_reaches_container() {
    let mut c = Container::new("terminal_input");
    c.spec.terminal(true).sh("read line; echo \"got:$line\"");
    let sock = ConsoleSocket::listen(&c.dir.join("console.sock"), T);
    let path = sock.path.to_string_lossy().into_owned();
    c.create_with(&["--console-socket", &path]).ok();
    let master = sock.master();
    c.start().ok();
    roci_integration::console::write_pty(&master, b"hello\n");
    let text = read_pty(&master, T, |s| s.contains("got:hello"));
    assert!(text.contains("got:hello"), "{text:?}");
    c.wait_status("stopped", T);
    drop(master);
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn terminal_without_console_socket_fails() {
    // Detached with a terminal needs somewhere to send the master (runc: "cannot allocate tty if runc
    // will detach without setting console socket").
    let mut c = Container::new("terminal_nosock");
    c.spec.terminal(true).args(&["true"]);
    c.create().fails().says("console");
    c.assert_no_leaks();
}

#[test]
fn console_socket_without_terminal_fails() {
    let mut c = Container::new("nosock_noterm");
    c.spec.terminal(false).args(&["true"]);
    let sock = c.dir.join("console.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    c.create_with(&["--console-socket", sock.to_str().unwrap()]).fails().says("console");
    c.assert_no_leaks();
}
