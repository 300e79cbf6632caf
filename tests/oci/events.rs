//! `events`: a container's cgroup statistics once (`--stats`) or as a stream (`--interval`), and `oom`
//! events from the stream when the kernel's OOM killer acts in the container's memory cgroup.
//!
//! The output is runc's: one JSON object per line, `{"type":"stats","id":ID,"data":{...}}` with `data`
//! shaped like runc's `types.Stats`, and `{"type":"oom","id":ID}`.

use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use roci_integration::Container;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

/// The keys of `data` (and of its important parts) that runc 1.1.5 prints for a running container on a
/// cgroup v1 host, which every consumer of runc's events can rely on. runc prints more on top (`cpuset`,
/// `intel_rdt`, `network_interfaces`); roci leaves those out by design (libcontainer/src/cgroups/stats.rs),
/// so only these are required.
const REQUIRED_KEYS: &[(&str, &[&str])] = &[
    ("", &["cpu", "memory", "pids", "blkio", "hugetlb"]),
    ("/cpu", &["usage", "throttling"]),
    ("/cpu/usage", &["total", "percpu", "kernel", "user"]),
    ("/memory", &["usage", "swap", "kernel", "kernelTCP", "raw"]),
    ("/memory/usage", &["limit", "usage", "max", "failcnt"]),
    ("/pids", &["current"]),
];

fn u64_at(data: &Value, pointer: &str) -> u64 {
    data.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("no number at data{pointer}: {data}"))
}

#[test]
fn events_stats_once() {
    let c = Container::running("events_stats", |_| {});
    let out = c.invoke(&["events", "--stats", &c.id]);
    out.ok();
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "--stats prints exactly one JSON object: {out}");
    let ev: Value = serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], json!(c.id), "{ev}");
    let data = &ev["data"];
    for (pointer, keys) in REQUIRED_KEYS {
        let obj =
            data.pointer(pointer).and_then(Value::as_object).unwrap_or_else(|| panic!("data{pointer} is not an object: {data}"));
        for k in *keys {
            assert!(obj.contains_key(*k), "data{pointer} lacks {k:?} (runc has it): {data}");
        }
    }
    assert!(u64_at(data, "/memory/usage/usage") > 0, "memory in use: {data}");
    assert!(u64_at(data, "/pids/current") >= 1, "the init is counted: {data}");
    assert!(u64_at(data, "/cpu/usage/total") > 0, "the init has used some CPU time: {data}");
    let percpu = data.pointer("/cpu/usage/percpu").and_then(Value::as_array).expect("percpu");
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(percpu.len() >= n, "one percpu entry per CPU ({n}): {percpu:?}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

/// `events` in the background, its stdout in a file; killed by pid on drop.
struct Stream {
    child: Child,
    out: std::path::PathBuf,
}

impl Stream {
    fn start(c: &Container, args: &[&str]) -> Stream {
        let out = c.dir.join("io").join("events.out");
        let mut cmd = c.command();
        cmd.arg("events").args(args).arg(&c.id);
        cmd.stdin(Stdio::null()).stdout(File::create(&out).unwrap()).stderr(File::create(c.dir.join("io/events.err")).unwrap());
        let child = cmd.spawn().expect("spawn events");
        Stream { child, out }
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            // A line still being written has no newline yet; serde rejects it until it is complete.
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn count(&self, typ: &str) -> usize {
        self.events().iter().filter(|e| e["type"] == typ).count()
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

#[test]
fn events_stream_interval() {
    let c = Container::running("events_stream", |_| {});
    let stream = Stream::start(&c, &["--interval", "1s"]);
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    let stats: Vec<Value> = stream.events().into_iter().filter(|e| e["type"] == "stats").collect();
    assert!(stats.len() >= 2, "at least 2 stats lines in {:?} at a 1s interval: {}", start.elapsed(), stream.text());
    assert!(stats.len() <= 4, "no more than one line per interval: {}", stream.text());
    for e in &stats {
        assert_eq!(e["id"], json!(c.id));
        assert!(u64_at(&e["data"], "/pids/current") >= 1, "{e}");
    }
    drop(stream);
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn events_oom() {
    let c = Container::running("events_oom", |c| {
        c.spec.resources("memory", json!({"limit": 32u64 << 20}));
    });
    let stream = Stream::start(&c, &["--interval", "1s"]);
    // The first stats line means the stream is set up (its OOM notification registered).
    roci_integration::wait_until("the first stats line", T, || stream.count("stats") >= 1);
    // dd's 100 MiB buffer under a 32 MiB limit: the OOM killer kills dd (the biggest process in the
    // cgroup); sh reports 128+SIGKILL.
    let out = c.invoke(&["exec", &c.id, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null; echo \"dd=$?\""]);
    out.ok();
    assert_eq!(out.stdout.trim(), "dd=137", "dd must be OOM-killed: {out}");
    let ok = roci_integration::wait_for(T, || stream.count("oom") >= 1);
    assert!(ok, "an oom event in the stream: {}", stream.text());
    let oom = stream.events().into_iter().find(|e| e["type"] == "oom").unwrap();
    assert_eq!(oom["id"], json!(c.id), "{oom}");
    drop(stream);
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn events_stopped_container_fails() {
    let mut c = Container::new("events_stopped");
    c.spec.args(&["true"]);
    c.create().ok();
    c.start().ok();
    c.wait_status("stopped", T);
    // runc: "container with id ID is not running".
    c.invoke(&["events", "--stats", &c.id]).fails().says("not running");
    let out = c.invoke(&["events", "--interval", "1s", &c.id]);
    out.fails().says("not running");
    assert!(out.stdout.trim().is_empty(), "no events for a stopped container: {out}");
    c.delete().ok();
    // runc: "container does not exist".
    c.invoke(&["events", "--stats", &c.id]).fails().says("does not exist");
    c.assert_no_leaks();
}

#[test]
fn events_stream_ends_when_container_stops() {
    let c = Container::running("events_stream_end", |_| {});
    let stream = Stream::start(&c, &["--interval", "1s"]);
    roci_integration::wait_until("the first stats line", T, || stream.count("stats") >= 1);
    c.kill("KILL").ok();
    c.wait_status("stopped", T);
    // runc 1.1's stream never checks the container's status: after the init died it keeps printing the
    // stats of the cgroup (which lives until `delete`) every interval until it is killed.
    if !c.rt.is_runc() {
        let pid = stream.child.id() as i32;
        let ended = roci_integration::wait_for(T, || roci_integration::is_dead(pid));
        assert!(ended, "the event stream ends once the container has stopped: {}", stream.text());
    }
    drop(stream);
    c.delete().ok();
    c.assert_no_leaks();
}
