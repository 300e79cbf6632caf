//! `list`, `ps`, `spec`, `--pid-file`: output formats runc users and tools parse.

use roci_integration::Container;
use serde_json::Value;

#[test]
fn list_table_and_json() {
    let mut c = Container::new("list");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    let pid = c.pid();

    let out = c.invoke(&["list"]);
    out.ok();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], "{out}");
    let row: Vec<&str> = lines.next().expect("one row").split_whitespace().collect();
    assert_eq!(row.len(), 6, "{out}");
    assert_eq!(row[0], c.id);
    assert_eq!(row[1], pid.to_string());
    assert_eq!(row[2], "created");
    assert_eq!(row[3], c.bundle.to_str().unwrap());
    chrono::DateTime::parse_from_rfc3339(row[4]).expect("CREATED is RFC3339");
    assert_eq!(row[5], "root");
    assert!(lines.next().is_none(), "one container, one row: {out}");

    let out = c.invoke(&["list", "--format", "json"]);
    out.ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("list json: {e}: {out}"));
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 1, "{v}");
    let e = &arr[0];
    assert_eq!(e["id"], c.id.as_str());
    assert_eq!(e["pid"], pid);
    assert_eq!(e["status"], "created");
    assert_eq!(e["bundle"], c.bundle.to_str().unwrap());
    assert_eq!(e["rootfs"], c.rootfs.to_str().unwrap());
    assert_eq!(e["owner"], "root");
    assert!(e["created"].is_string());

    let out = c.invoke(&["list", "-q"]);
    out.ok();
    assert_eq!(out.stdout.trim(), c.id);

    c.start().ok();
    let out = c.invoke(&["list", "--format", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap()[0]["status"], "running");

    c.delete_force().ok();
    let out = c.invoke(&["list", "--format", "json"]);
    out.ok();
    // runc prints `null` for no containers; an empty array is as good.
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    assert!(v.is_null() || v.as_array().is_some_and(Vec::is_empty), "{out}");
    c.assert_no_leaks();
}

#[test]
fn list_empty_root() {
    let c = Container::new("list_empty");
    let out = c.invoke(&["list"]);
    out.ok();
    let header: Vec<&str> = out.stdout.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], "{out}");
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
}

#[test]
fn ps_json_and_table() {
    let mut c = Container::new("ps");
    c.spec.sh("sleep 1000 & exec sleep 1001");
    c.create().ok();
    c.start().ok();
    let init = c.pid();
    roci_integration::wait_until("two processes", std::time::Duration::from_secs(10), || {
        roci_integration::cgroups::procs("pids", &c.cgroup).len() == 2
    });

    let out = c.invoke(&["ps", "--format", "json", &c.id]);
    out.ok();
    let pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ps json: {e}: {out}"));
    assert_eq!(pids.len(), 2, "{out}");
    assert!(pids.contains(&(init as i64)), "ps lists host pids including the init pid {init}: {out}");

    // The table is ps(1)'s `-ef` output filtered to the container's processes.
    let out = c.invoke(&["ps", &c.id]);
    out.ok();
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert!(header.contains(&"PID") && header.contains(&"CMD"), "{out}");
    let pid_col = header.iter().position(|h| *h == "PID").unwrap();
    let listed: Vec<i64> = lines.filter_map(|l| l.split_whitespace().nth(pid_col)?.parse().ok()).collect();
    let mut a = listed.clone();
    a.sort();
    let mut b = pids.clone();
    b.sort();
    assert_eq!(a, b, "{out}");
    assert!(out.stdout.contains("sleep 1001"), "{out}");

    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn spec_writes_default_config() {
    let c = Container::new("spec");
    let dir = c.host_path("specbundle");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    c.invoke(&["spec", "--bundle", d]).ok();
    let text = std::fs::read_to_string(dir.join("config.json")).expect("spec writes config.json");
    let v: Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert!(v["ociVersion"].as_str().is_some_and(|s| s.starts_with("1.")), "{v}");
    assert_eq!(v["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(v["root"]["path"], "rootfs");
    let ns: Vec<&str> = v["linux"]["namespaces"].as_array().unwrap().iter().filter_map(|n| n["type"].as_str()).collect();
    for t in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&t), "namespace {t} in {ns:?}");
    }
    assert!(v["mounts"].as_array().is_some_and(|m| m.iter().any(|m| m["destination"] == "/proc")));

    // A second spec refuses to overwrite (runc: "File config.json exists. Remove it first").
    std::fs::write(dir.join("config.json"), "keep").unwrap();
    c.invoke(&["spec", "--bundle", d]).fails().says("exists");
    assert_eq!(std::fs::read_to_string(dir.join("config.json")).unwrap(), "keep");
}

#[test]
fn pid_file_matches_state() {
    let mut c = Container::new("pid_file");
    c.spec.args(&["sleep", "1000"]);
    let pid_file = c.host_path("init.pid");
    c.create_with(&["--pid-file", pid_file.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(text.trim().parse::<i32>().expect("pid file holds a pid"), c.pid(), "pid file {text:?}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn run_detached_pid_file() {
    let mut c = Container::new("run_pid_file");
    c.spec.args(&["sleep", "1000"]);
    let pid_file = c.host_path("run.pid");
    c.run_with(&["-d", "--pid-file", pid_file.to_str().unwrap()]).ok();
    let text = std::fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(text.trim().parse::<i32>().unwrap(), c.pid());
    c.delete_force().ok();
    c.assert_no_leaks();
}
