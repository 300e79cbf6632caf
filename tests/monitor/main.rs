//! The monitor suite (roci only): `roci monitor` through roci-cri's own client
//! (`roci_cri::monitor`), with real containers from the harness's busybox bundles.
//!
//! Each test spawns a monitor for one container, drives it over its control socket and reads what
//! it leaves: the CRI log, the exit record. Every test ends with `delete` and the harness's leak
//! check, plus the monitor's own traces (its process and socket).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use libcontainer::monitor::{Config, ErrorKind, ExitRecord, Status};
use roci_cri::monitor::{self as client, Client, MonitorError, Spawned};
use roci_integration::{is_dead, wait_for, wait_until, Container};
use serde_json::json;

/// A container under a monitor.
struct Monitored {
    c: Container,
    config: Config,
    config_path: PathBuf,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Monitored {
    fn new(name: &str, tweak: impl FnOnce(&mut Container, &mut Config)) -> Monitored {
        let mut c = Container::new(name);
        let mut config = Config {
            version: libcontainer::monitor::proto::VERSION,
            id: c.id.clone(),
            root: c.state_root.clone(),
            bundle: c.bundle.clone(),
            log_path: Some(c.dir.join("logs/pod/ctr/0.log")),
            exit_path: c.dir.join("exits").join(&c.id),
            socket_path: c.dir.join("sock/monitor.sock"),
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        tweak(&mut c, &mut config);
        let client = Client::new(&config.socket_path);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let config_path = c.dir.join("monitor.json");
        Monitored { c, config, config_path, client, rt }
    }

    fn spawn(&self) -> Result<Spawned, MonitorError> {
        self.c.write_config();
        let log = self.c.dir.join("monitor.log");
        let r = self.rt.block_on(client::spawn(&self.c.rt.path, &self.config_path, &self.config, Some(&log)));
        if let Ok(s) = &r {
            // For the guard's cleanup if the test fails half-way.
            self.c.record_pid(s.pid);
            self.c.record_pid(s.monitor_pid);
        }
        r
    }

    #[track_caller]
    fn spawned(&self) -> Spawned {
        self.spawn().unwrap_or_else(|e| panic!("spawn the monitor: {e}; its log: {}", self.monitor_log()))
    }

    fn monitor_log(&self) -> String {
        std::fs::read_to_string(self.c.dir.join("monitor.log")).unwrap_or_default()
    }

    #[track_caller]
    fn start(&self) -> String {
        self.rt.block_on(self.client.start()).unwrap_or_else(|e| panic!("start: {e}"))
    }

    fn exec(&self, argv: &[&str], timeout: Duration) -> Result<client::ExecOutput, MonitorError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.rt.block_on(self.client.exec_sync(&argv, &[], timeout))
    }

    fn log_path(&self) -> PathBuf {
        self.config.log_path.clone().expect("a log path")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The exit record, once the monitor wrote it.
    #[track_caller]
    fn exit_record(&self, timeout: Duration) -> ExitRecord {
        let mut rec = None;
        wait_for(timeout, || {
            rec = self.rt.block_on(client::read_exit_record(&self.config.exit_path)).expect("read exit record");
            rec.is_some()
        });
        rec.unwrap_or_else(|| panic!("no exit record after {timeout:?}; monitor log: {}", self.monitor_log()))
    }

    /// After the init exited: the monitor is gone with its socket; `delete` leaves nothing.
    #[track_caller]
    fn finish(&self, s: Spawned) {
        wait_until("the monitor to exit", Duration::from_secs(5), || is_dead(s.monitor_pid));
        assert!(!self.config.socket_path.exists(), "the monitor left its socket");
        self.c.delete().ok();
        self.c.assert_no_leaks();
    }
}

/// One parsed CRI log record.
#[derive(Debug)]
struct Record {
    time: chrono::DateTime<chrono::FixedOffset>,
    stream: String,
    tag: String,
    msg: String,
}

/// Every line of a CRI log, checked against kubelet's format: `RFC3339Nano SP stream SP tag SP msg`.
#[track_caller]
fn parse_log(text: &str) -> Vec<Record> {
    assert!(text.is_empty() || text.ends_with('\n'), "log does not end with a newline: {text:?}");
    text.lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (ts, stream, tag, msg) = (parts.next().unwrap(), parts.next(), parts.next(), parts.next());
            let (Some(stream), Some(tag), Some(msg)) = (stream, tag, msg) else { panic!("short record {l:?}") };
            let time = chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("timestamp {ts:?}: {e}"));
            assert!(ts.ends_with('Z') && ts.len() == "2016-10-06T00:17:09.669794202Z".len(), "not RFC3339Nano UTC: {ts}");
            assert!(stream == "stdout" || stream == "stderr", "stream {stream:?} in {l:?}");
            assert!(tag == "P" || tag == "F", "tag {tag:?} in {l:?}");
            Record { time, stream: stream.into(), tag: tag.into(), msg: msg.into() }
        })
        .collect()
}

fn of(records: &[Record], stream: &str) -> Vec<(String, String)> {
    records.iter().filter(|r| r.stream == stream).map(|r| (r.tag.clone(), r.msg.clone())).collect()
}

#[test]
fn monitor_logs_stdout_and_stderr_in_cri_format() {
    let m = Monitored::new("monitor-log", |c, _| {
        // 40 KiB on one line, then output without a final newline.
        c.spec.sh("echo one; echo two >&2; echo three; head -c 40960 /dev/zero | tr '\\0' x; echo; echo err2 >&2; printf tail");
    });
    let s = m.spawned();
    assert_eq!(m.rt.block_on(m.client.state()).unwrap().status, Status::Created);
    let started = m.start();
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!((rec.exit_code, rec.signal, rec.oom_killed), (0, None, false), "{rec:?}");
    assert_eq!(rec.pid, s.pid);
    assert_eq!(rec.started_at.as_deref(), Some(started.as_str()));
    let finished = chrono::DateTime::parse_from_rfc3339(&rec.finished_at).expect("finished_at is RFC 3339");
    assert!(finished >= chrono::DateTime::parse_from_rfc3339(&started).unwrap());

    let text = m.log();
    let records = parse_log(&text);
    for w in records.windows(2) {
        assert!(w[0].time <= w[1].time, "timestamps go back: {:?} then {:?}", w[0], w[1]);
    }
    let x = |n: usize| "x".repeat(n);
    let want: Vec<(String, String)> = [
        ("F", "one".to_string()),
        ("F", "three".into()),
        ("P", x(16384)),
        ("P", x(16384)),
        ("F", x(40960 - 2 * 16384)),
        ("P", "tail".into()),
    ]
    .into_iter()
    .map(|(t, m)| (t.to_string(), m))
    .collect();
    assert_eq!(of(&records, "stdout"), want, "stdout records");
    assert_eq!(of(&records, "stderr"), [("F".to_string(), "two".to_string()), ("F".into(), "err2".into())]);
    m.finish(s);
}

#[test]
fn monitor_records_exit_code_and_signal() {
    let m = Monitored::new("monitor-exit", |c, _| {
        c.spec.sh("exit 7");
    });
    let s = m.spawned();
    m.start();
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!((rec.exit_code, rec.signal, rec.oom_killed), (7, None, false), "{rec:?}");
    m.finish(s);

    let m = Monitored::new("monitor-signal", |c, _| {
        c.spec.args(&["sleep", "1000"]);
    });
    let s = m.spawned();
    m.start();
    assert!(m.c.kill("KILL").success());
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!((rec.exit_code, rec.signal, rec.oom_killed), (137, Some(9), false), "{rec:?}");
    m.finish(s);
}

#[test]
fn a_stop_signal_to_the_monitor_stops_the_container_with_its_exit_recorded() {
    // The container traps SIGTERM, says so and exits 7: what the monitor passes on is seen, and
    // its exit recorded, instead of a monitor gone and a container orphaned with no record.
    let m = Monitored::new("monitor-sigterm", |c, _| {
        c.spec.sh("trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done");
    });
    let s = m.spawned();
    m.start();
    wait_until("the container's output", Duration::from_secs(5), || m.log().contains("stdout F ready"));
    let monitor = nix::unistd::Pid::from_raw(s.monitor_pid);
    // A hang-up is not a stop: the container goes on.
    nix::sys::signal::kill(monitor, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP the monitor");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!is_dead(s.pid) && !is_dead(s.monitor_pid), "SIGHUP stopped something");
    nix::sys::signal::kill(monitor, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM the monitor");
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!((rec.exit_code, rec.signal), (7, None), "{rec:?}");
    assert!(m.log().contains("stdout F got-term"), "{}", m.log());
    m.finish(s);
}

#[test]
fn monitor_sees_an_oom_kill() {
    let m = Monitored::new("monitor-oom", |c, _| {
        let limit = 16 * 1024 * 1024;
        c.spec.resources("memory", json!({"limit": limit, "swap": limit}));
        // dd's buffer alone is four times the limit.
        c.spec.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    });
    let s = m.spawned();
    m.start();
    let rec = m.exit_record(Duration::from_secs(10));
    assert!(rec.oom_killed, "{rec:?}");
    assert_eq!((rec.exit_code, rec.signal), (137, Some(9)), "{rec:?}");
    m.finish(s);
}

#[test]
fn monitor_is_not_the_spawners_child_and_outlives_it() {
    // With `stdin` the init reads a pipe the monitor holds open: `read` waits.
    let m = Monitored::new("monitor-orphan", |c, cfg| {
        c.spec.sh("echo started; read line; echo never");
        cfg.stdin = true;
    });
    m.c.write_config();
    std::fs::write(&m.config_path, serde_json::to_vec(&m.config).unwrap()).unwrap();
    // The spawner: a shell that runs `roci monitor` and stays, until we SIGKILL it.
    let out = m.c.dir.join("spawn.out");
    let mut spawner = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" --root \"$1\" monitor \"$2\" > \"$3\"; exec sleep 1000")
        .arg(&m.c.rt.path)
        .arg(&m.config.root)
        .arg(&m.config_path)
        .arg(&out)
        .spawn()
        .expect("run the spawner");
    let report = roci_integration::wait::wait_file(&out, Duration::from_secs(10), |s| s.ends_with('\n'));
    let report: serde_json::Value = serde_json::from_str(&report).expect("report is JSON");
    let (pid, monitor_pid) = (report["pid"].as_i64().unwrap() as i32, report["monitor_pid"].as_i64().unwrap() as i32);
    m.c.record_pid(pid);
    m.c.record_pid(monitor_pid);
    let s = Spawned { pid, monitor_pid };
    let ppid = |p: i32| -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].split(' ').nth(1).unwrap().parse().unwrap()
    };
    assert_ne!(ppid(monitor_pid), spawner.id() as i32, "the monitor is the spawner's child");
    assert_ne!(ppid(monitor_pid), std::process::id() as i32);
    assert_eq!(ppid(pid), monitor_pid, "the init is the monitor's child");
    spawner.kill().expect("SIGKILL the spawner");
    spawner.wait().ok();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!is_dead(monitor_pid), "the monitor died with its spawner");
    let state = m.rt.block_on(m.client.state()).expect("the monitor still answers");
    assert_eq!((state.pid, state.status), (pid, Status::Created));
    m.start();
    wait_until("the container's output", Duration::from_secs(5), || m.log().contains("stdout F started"));
    m.c.kill("KILL");
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!(rec.signal, Some(9));
    assert!(!m.log().contains("never"));
    m.finish(s);
}

#[test]
fn monitor_exec_sync_output_exit_code_and_timeout() {
    let m = Monitored::new("monitor-exec", |c, _| {
        c.spec.sh("while true; do echo tick; sleep 0.1; done");
    });
    let s = m.spawned();
    // ExecSync works in a created container too (as `exec` does).
    let out = m.exec(&["sh", "-c", "echo out; echo err >&2; exit 3"], Duration::from_secs(5)).expect("exec_sync");
    assert_eq!((out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()), (3, &b"out\n"[..], &b"err\n"[..]));
    m.start();
    let big = m.exec(&["head", "-c", "300000", "/dev/zero"], Duration::from_secs(5)).expect("exec_sync");
    assert_eq!((big.exit_code, big.stdout.len()), (0, 300000));

    // A process past its timeout is killed, and the container's output is logged meanwhile.
    let ticks_before = m.log().matches("tick").count();
    let t = Instant::now();
    let r = m.exec(&["sleep", "100"], Duration::from_secs(2));
    let took = t.elapsed();
    assert!(matches!(r, Err(MonitorError::Timeout(_))), "{r:?}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "timed out after {took:?}");
    let ticks = m.log().matches("tick").count() - ticks_before;
    assert!(ticks >= 10, "only {ticks} lines logged during a 2 s exec_sync");
    // The timed-out process is gone: the container's cgroup holds the init and its loop's sleep only.
    let ps = m.c.invoke(&["ps", "--format", "json", &m.c.id]);
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).expect("ps json");
    let comms: Vec<String> = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
        .map(|c| c.replace('\0', " "))
        .collect();
    assert!(!comms.iter().any(|c| c.contains("sleep 100")), "the timed-out process survived: {comms:?}");

    // Two at once: each answered when its own process is done.
    let slow_argv: Vec<String> = ["sh", "-c", "sleep 1; echo slow"].map(String::from).to_vec();
    let fast_argv: Vec<String> = ["echo", "fast"].map(String::from).to_vec();
    let (slow, fast) = m.rt.block_on(async {
        let slow = async {
            let r = m.client.exec_sync(&slow_argv, &[], Duration::from_secs(5)).await;
            (r, Instant::now())
        };
        let fast = async {
            let r = m.client.exec_sync(&fast_argv, &[], Duration::from_secs(5)).await;
            (r, Instant::now())
        };
        tokio::join!(slow, fast)
    });
    assert_eq!(slow.0.expect("slow exec_sync").stdout, b"slow\n");
    assert_eq!(fast.0.expect("fast exec_sync").stdout, b"fast\n");
    assert!(fast.1 < slow.1, "the fast exec_sync waited for the slow one");

    let bad = m.exec(&["/no/such/program"], Duration::from_secs(5));
    assert!(
        matches!(&bad, Err(MonitorError::Refused { kind: ErrorKind::Failed, message }) if message.contains("/no/such/program")),
        "{bad:?}"
    );
    m.c.kill("KILL");
    m.exit_record(Duration::from_secs(10));
    m.finish(s);
}

#[test]
fn monitor_reopens_the_log_after_rename() {
    let m = Monitored::new("monitor-reopen", |c, _| {
        c.spec.sh("i=0; while true; do i=$((i+1)); echo line$i; sleep 0.05; done");
    });
    let s = m.spawned();
    m.start();
    wait_until("log lines", Duration::from_secs(5), || m.log().lines().count() >= 3);
    let rotated = m.log_path().with_extension("log.1");
    std::fs::rename(m.log_path(), &rotated).unwrap();
    m.rt.block_on(m.client.reopen_log()).expect("reopen_log");
    wait_until("lines in the new log", Duration::from_secs(5), || m.log().lines().count() >= 3);
    let old = std::fs::read_to_string(&rotated).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), old, "the rotated file is still written");
    // Nothing lost or doubled across the rotation: the numbers follow on.
    let n = |text: &str| -> Vec<u64> {
        parse_log(text).iter().map(|r| r.msg.trim_start_matches("line").parse().unwrap()).collect::<Vec<_>>()
    };
    let (a, b) = (n(&old), n(&m.log()));
    assert_eq!(b[0], a.last().unwrap() + 1, "old ends {:?}, new starts {:?}", a.last(), b.first());
    m.c.kill("KILL");
    m.exit_record(Duration::from_secs(10));
    m.finish(s);
}

#[test]
fn monitor_tty_mode_logs_the_terminal_as_stdout() {
    let m = Monitored::new("monitor-tty", |c, cfg| {
        c.spec.terminal(true);
        c.spec.sh("echo hello; test -t 1 && echo isatty; echo to-stderr >&2");
        cfg.tty = true;
    });
    let s = m.spawned();
    m.start();
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!(rec.exit_code, 0);
    let records = parse_log(&m.log());
    let msgs: Vec<(String, String)> = of(&records, "stdout");
    assert!(of(&records, "stderr").is_empty(), "{records:?}");
    let full: Vec<&str> = msgs.iter().filter(|(t, _)| t == "F").map(|(_, m)| m.as_str()).collect();
    assert_eq!(full, ["hello", "isatty", "to-stderr"], "{msgs:?}");
    m.finish(s);
}

/// A pause container's monitor: no log file; its output is read and dropped, the rest works.
#[test]
fn monitor_without_a_log_path() {
    let m = Monitored::new("monitor-nolog", |c, cfg| {
        c.spec.sh("echo dropped; sleep 1000");
        cfg.log_path = None;
    });
    let s = m.spawned();
    m.start();
    let out = m.exec(&["echo", "hi"], Duration::from_secs(5)).expect("exec_sync");
    assert_eq!(out.stdout, b"hi\n");
    m.rt.block_on(m.client.reopen_log()).expect("reopen_log without a log is a no-op");
    assert!(m.c.kill("KILL").success());
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!(rec.signal, Some(9));
    assert!(!m.c.dir.join("logs").exists(), "a log was written");
    m.finish(s);
}

#[test]
fn monitor_create_failure_leaves_nothing() {
    let m = Monitored::new("monitor-fail", |c, _| {
        c.spec.set("/process/args", json!("sh"));
    });
    let r = m.spawn();
    assert!(matches!(&r, Err(MonitorError::Create { message, .. }) if message.contains("process.args")), "{r:?}");
    assert!(!m.config.socket_path.exists(), "socket left");
    assert!(!m.config.exit_path.exists(), "exit record for a container never made");
    m.c.assert_no_leaks();

    // A tty config for a bundle without a terminal: refused, the container removed again.
    let m = Monitored::new("monitor-fail-tty", |c, cfg| {
        c.spec.args(&["true"]);
        cfg.tty = true;
    });
    let r = m.spawn();
    assert!(matches!(&r, Err(MonitorError::Create { message, .. }) if message.contains("process.terminal")), "{r:?}");
    assert!(!m.config.socket_path.exists(), "socket left");
    m.c.assert_no_leaks();
}

/// Once it made the container the monitor executes its binary again and serves from the new image
/// (`libcontainer::monitor::handoff`), which holds only the fds it serves: the setup's memory is
/// given back, nothing the setup opened leaks into the image that lives as long as the container,
/// and the image still runs from the protected view of the runtime (CVE-2019-5736), since the
/// ExecSync processes it clones would otherwise reach a writable binary.
#[test]
fn the_monitor_serves_from_a_fresh_image_holding_only_its_fds() {
    let m = Monitored::new("monitor-handoff", |c, cfg| {
        c.spec.sh("echo started; read line; echo got $line");
        cfg.stdin = true;
    });
    let s = m.spawned();
    let environ = std::fs::read(format!("/proc/{}/environ", s.monitor_pid)).expect("the monitor's environ");
    assert!(
        environ.split(|b| *b == 0).any(|kv| kv.starts_with(b"_ROCI_MONITOR_HANDOFF_FD=")),
        "the monitor did not start over in a new image; its log: {}",
        m.monitor_log()
    );
    // Its fds: stdio on /dev/null, its own log (`roci --log`), the signalfd, the init's pidfd, the
    // control socket, the container's log file, the read ends of stdout and stderr and the write
    // end of stdin; nothing else (nothing the setup or the spawner left open).
    let mut fds: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{}/fd", s.monitor_pid))
        .expect("the monitor's fds")
        .map(|e| {
            let e = e.unwrap();
            let target = std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
            (e.file_name().to_str().unwrap().parse().unwrap(), target)
        })
        .collect();
    fds.sort();
    let kinds: Vec<&str> = fds
        .iter()
        .map(|(_, t)| match t.as_str() {
            "/dev/null" => "null",
            t if t.starts_with("anon_inode:[signalfd]") => "signalfd",
            t if t.starts_with("anon_inode:[pidfd]") => "pidfd",
            t if t.starts_with("socket:") => "socket",
            t if t.starts_with("pipe:") => "pipe",
            t if t == m.log_path().display().to_string() => "log",
            t if t == m.c.dir.join("monitor.log").display().to_string() => "own log",
            _ => "other",
        })
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(
        (
            count("null"),
            count("own log"),
            count("signalfd"),
            count("pidfd"),
            count("socket"),
            count("log"),
            count("pipe"),
            count("other")
        ),
        (3, 1, 1, 1, 1, 1, 3, 0),
        "the monitor's fds: {fds:?}"
    );
    // Its binary is the read-only view it was executed from (or the sealed memfd copy where no
    // view can be made), not the writable file.
    let exe = format!("/proc/{}/exe", s.monitor_pid);
    let read_only =
        nix::sys::statvfs::statvfs(exe.as_str()).is_ok_and(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let target = std::fs::read_link(&exe).map(|t| t.display().to_string()).unwrap_or_default();
    assert!(read_only || target.starts_with("/memfd:"), "the monitor's new image runs from a writable binary: {target}");
    // And it serves: start, the output logged, an ExecSync, the exit recorded.
    m.start();
    wait_until("the container's output", Duration::from_secs(5), || m.log().contains("stdout F started"));
    let out = m.exec(&["echo", "probe"], Duration::from_secs(10)).expect("exec_sync");
    assert_eq!((out.exit_code, out.stdout.as_slice()), (0, &b"probe\n"[..]));
    m.c.kill("KILL");
    let rec = m.exit_record(Duration::from_secs(10));
    assert_eq!((rec.pid, rec.signal), (s.pid, Some(9)));
    m.finish(s);
}
