//! Cgroups: `linux.resources` as the host and the container see them, membership, limits enforced,
//! removal. Every test here is named `cgroup_*`: `cargo test --test oci cgroup_` runs them alone (the pure
//! v2 guest does). The assertions read v1 files on a v1/hybrid host and v2 files on a pure v2 host.

use std::time::Duration;

use roci_integration::cgroups::{self, is_v2};
use roci_integration::Container;
use serde_json::json;

use crate::section;

const MEM: u64 = 64 << 20;
const MEM_RESERVATION: u64 = 32 << 20;
const SHARES: u64 = 512;
const QUOTA: i64 = 50_000;
const PERIOD: u64 = 100_000;
const PIDS: i64 = 32;

fn limited(name: &str) -> Container {
    let mut c = Container::new(name);
    c.spec
        .resources("memory", json!({"limit": MEM, "reservation": MEM_RESERVATION}))
        .resources("cpu", json!({"shares": SHARES, "quota": QUOTA, "period": PERIOD, "cpus": "0", "mems": "0"}))
        .resources("pids", json!({"limit": PIDS}));
    c
}

/// (controller, file, expected) for the limits of [`limited`], in this host's cgroup version.
fn expected_files() -> Vec<(&'static str, &'static str, String)> {
    if is_v2() {
        vec![
            ("memory", "memory.max", MEM.to_string()),
            ("memory", "memory.low", MEM_RESERVATION.to_string()),
            // runc/crun's linear shares→weight conversion: 1 + ((shares - 2) * 9999) / 262142.
            ("cpu", "cpu.weight", (1 + ((SHARES - 2) * 9999) / 262142).to_string()),
            ("cpu", "cpu.max", format!("{QUOTA} {PERIOD}")),
            ("cpuset", "cpuset.cpus", "0".to_string()),
            ("cpuset", "cpuset.mems", "0".to_string()),
            ("pids", "pids.max", PIDS.to_string()),
        ]
    } else {
        vec![
            ("memory", "memory.limit_in_bytes", MEM.to_string()),
            ("memory", "memory.soft_limit_in_bytes", MEM_RESERVATION.to_string()),
            ("cpu", "cpu.shares", SHARES.to_string()),
            ("cpu", "cpu.cfs_quota_us", QUOTA.to_string()),
            ("cpu", "cpu.cfs_period_us", PERIOD.to_string()),
            ("cpuset", "cpuset.cpus", "0".to_string()),
            ("cpuset", "cpuset.mems", "0".to_string()),
            ("pids", "pids.max", PIDS.to_string()),
        ]
    }
}

/// Shell code that prints a controller file from inside the container. The runtime's cgroup mount at
/// /sys/fs/cgroup shows either the container's own cgroup at its root (runc on v1: a bind of the leaf;
/// any runtime with a cgroup namespace) or the whole hierarchy (runc on v2 without a cgroup namespace):
/// look under the path /proc/self/cgroup names first, then at the root.
fn inside_cat(controller: &str, file: &str) -> String {
    if is_v2() {
        format!("p=$(sed -n 's/^0:://p' /proc/self/cgroup); f=/sys/fs/cgroup$p/{file}; [ -f \"$f\" ] || f=/sys/fs/cgroup/{file}; cat \"$f\"")
    } else {
        format!(
            "p=$(grep -E '^[0-9]+:([^:]*,)?{controller}(,[^:]*)?:' /proc/self/cgroup | cut -d: -f3); \
             f=/sys/fs/cgroup/{controller}$p/{file}; [ -f \"$f\" ] || f=/sys/fs/cgroup/{controller}/{file}; cat \"$f\""
        )
    }
}

#[test]
fn cgroup_resources_on_host() {
    let mut c = limited("cgroup_host");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    let pid = c.pid();
    for (controller, file, want) in expected_files() {
        let got = cgroups::read(controller, &c.cgroup, file)
            .unwrap_or_else(|| panic!("{} missing", cgroups::dir(controller, &c.cgroup).join(file).display()));
        assert_eq!(got, want, "{controller}/{file} on the host");
    }
    for controller in ["memory", "cpu", "pids", "cpuset"] {
        assert!(
            cgroups::procs(controller, &c.cgroup).contains(&pid),
            "init pid {pid} in {controller} cgroup.procs of {}",
            c.cgroup
        );
    }
    c.start().ok();
    assert!(cgroups::procs("memory", &c.cgroup).contains(&pid));
    c.delete_force().ok();
    for d in cgroups::dirs(&c.cgroup) {
        assert!(!d.exists(), "cgroup {} removed by delete", d.display());
    }
    c.assert_no_leaks();
}

fn resources_inside(name: &str, cgroupns: bool) {
    let mut c = limited(name);
    if cgroupns {
        c.spec.namespace("cgroup", None);
    }
    let files = expected_files();
    let mut script = String::new();
    for (controller, file, _) in &files {
        script.push_str(&format!("echo \"== {controller}/{file} ==\"; {}; ", inside_cat(controller, file)));
    }
    script.push_str("echo \"== self ==\"; cat /proc/self/cgroup");
    c.spec.sh(&script);
    let out = c.run();
    out.ok();
    for (controller, file, want) in &files {
        assert_eq!(&section(&out.stdout, &format!("{controller}/{file}")), want, "{controller}/{file} inside: {out}");
    }
    let own = section(&out.stdout, "self");
    if cgroupns {
        assert!(own.lines().all(|l| l.ends_with(":/")), "a cgroup namespace rooted at the container's cgroup: {own}");
    } else if is_v2() {
        assert!(own.lines().any(|l| l == format!("0::{}", c.cgroup)), "{own}");
    } else {
        assert!(own.lines().all(|l| l.ends_with(&format!(":{}", c.cgroup))), "in the cgroup in every hierarchy: {own}");
    }
    c.assert_no_leaks();
}

#[test]
fn cgroup_resources_inside() {
    resources_inside("cgroup_inside", false);
}

#[test]
fn cgroup_resources_inside_cgroupns() {
    resources_inside("cgroup_inside_ns", true);
}

#[test]
fn cgroup_namespace_hides_path() {
    let mut c = Container::new("cgroup_ns");
    c.spec.namespace("cgroup", None).sh("cat /proc/self/cgroup");
    let out = c.run();
    out.ok();
    for l in out.stdout.lines() {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        assert_eq!(path, "/", "a cgroup namespace rooted at the container's cgroup: {out}");
    }
    c.assert_no_leaks();
}

#[test]
fn cgroup_pids_limit_enforced() {
    let mut c = Container::new("cgroup_pids_limit");
    // The spawning loop runs in a child shell: busybox sh exits when a fork for `&` fails. Afterwards the
    // pids are used up, so PID 1 reports with builtins only (no fork): `read`, `set -- glob`.
    c.spec
        .resources("pids", json!({"limit": PIDS}))
        .sh("sh -c 'i=0; while [ $i -lt 40 ]; do sleep 100 & i=$((i+1)); echo $i > /tmp/n; done' 2>&1; \
         read n < /tmp/n; echo \"== spawned ==\"; echo $n; set -- /proc/[0-9]*; echo \"== count ==\"; echo $#");
    let out = c.run();
    out.ok();
    assert!(
        out.stdout.contains("Resource temporarily unavailable") || out.stdout.contains("can't fork"),
        "forking past pids.max fails with EAGAIN: {out}"
    );
    let spawned: i64 = section(&out.stdout, "spawned").parse().unwrap();
    assert!((PIDS - 4..40).contains(&spawned), "the limit of {PIDS} stops the loop near it: {spawned}");
    let n: i64 = section(&out.stdout, "count").parse().unwrap();
    assert!(n <= PIDS, "at most {PIDS} processes, saw {n}");
    c.assert_no_leaks();
}

#[test]
fn cgroup_memory_limit_enforced() {
    // dd with a 48 MiB buffer under a 16 MiB limit: the kernel OOM-kills it inside the cgroup (the
    // biggest process there); PID 1 survives to report dd's status (128+SIGKILL).
    let mut c = Container::new("cgroup_memory_oom");
    c.spec
        .resources("memory", json!({"limit": 16u64 << 20}))
        .sh("dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null; echo \"dd=$?\"");
    let out = c.run();
    out.ok();
    assert_eq!(out.stdout.trim(), "dd=137", "allocating 48 MiB under a 16 MiB limit must be OOM-killed: {out}");
    c.assert_no_leaks();
}

#[test]
fn cgroup_leaf_removed_after_run() {
    let mut c = Container::new("cgroup_removed");
    c.spec.args(&["true"]);
    c.run().ok();
    let left = cgroups::existing_dirs(&c.cgroup);
    assert!(left.is_empty(), "run removes the container's cgroup in every hierarchy: {left:?}");
    c.assert_no_leaks();
}

#[test]
fn cgroup_stopped_container_keeps_cgroup_until_delete() {
    let mut c = Container::new("cgroup_until_delete");
    c.spec.args(&["true"]);
    c.create().ok();
    c.start().ok();
    c.wait_status("stopped", Duration::from_secs(10));
    assert!(cgroups::dir("memory", &c.cgroup).exists(), "the cgroup stays until delete");
    c.delete().ok();
    c.assert_no_leaks();
}

#[test]
fn cgroup_pause_resume() {
    let mut c = Container::new("cgroup_pause");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    c.start().ok();
    let frozen = || -> bool {
        if is_v2() {
            cgroups::read("memory", &c.cgroup, "cgroup.freeze").as_deref() == Some("1")
        } else {
            cgroups::read("freezer", &c.cgroup, "freezer.state").as_deref() == Some("FROZEN")
        }
    };
    c.invoke(&["pause", &c.id]).ok();
    assert_eq!(c.status(), "paused");
    assert!(frozen(), "the container's cgroup is frozen");
    c.invoke(&["resume", &c.id]).ok();
    assert_eq!(c.status(), "running");
    assert!(!frozen());
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn cgroup_update_resources() {
    let mut c = limited("cgroup_update");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    c.invoke(&["update", "--memory", "134217728", "--pids-limit", "64", "--cpu-quota", "20000", &c.id]).ok();
    let (mem_file, quota_file) = if is_v2() { ("memory.max", "cpu.max") } else { ("memory.limit_in_bytes", "cpu.cfs_quota_us") };
    assert_eq!(cgroups::read("memory", &c.cgroup, mem_file).unwrap(), "134217728");
    assert_eq!(cgroups::read("pids", &c.cgroup, "pids.max").unwrap(), "64");
    let quota = cgroups::read("cpu", &c.cgroup, quota_file).unwrap();
    assert!(quota.starts_with("20000"), "{quota_file}: {quota}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

/// Regression (issue 10): `update -r FILE` with a JSON array, or a wrong type inside, made roci abort
/// with a Rust panic (SIGABRT, exit 134) instead of an error. Each bad document must fail with an
/// error (roci's names the field) and leave the container and its limits as they were.
#[test]
fn cgroup_update_bad_resources_file_is_an_error_not_a_crash() {
    let mut c = limited("cgroup_update_bad");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    let mem_file = if is_v2() { "memory.max" } else { "memory.limit_in_bytes" };
    let cases: &[(&str, &[&str], &str)] = &[
        ("[]", &[], "resources"),
        ("[1, {\"memory\": {}}]", &["--memory", "134217728"], "resources"),
        (r#"{"memory": "lots"}"#, &[], "resources.memory"),
        (r#"{"memory": "lots"}"#, &["--memory", "134217728"], "resources.memory"),
        (r#"{"memory": {"limit": "lots"}}"#, &[], "resources.memory.limit"),
        (r#"{"memory": {"limit": 1e400}}"#, &[], "resources"),
        (r#"{"pids": {"limit": [64]}}"#, &[], "resources.pids.limit"),
        (r#"{"cpu": {"shares": -1}}"#, &[], "resources.cpu.shares"),
        ("\"memory\"", &[], "resources"),
    ];
    for (i, (doc, flags, field)) in cases.iter().enumerate() {
        let file = c.host_path(&format!("resources-{i}.json"));
        std::fs::write(&file, doc).unwrap();
        let mut args = vec!["update", "-r", file.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.push(&c.id);
        let out = c.invoke(&args);
        out.fails();
        // 128+N is a death by signal N: a panic with panic=abort is SIGABRT (134).
        assert!(out.code < 128, "update -r with {doc} died by a signal: {out}");
        if !c.rt.is_runc() {
            // runc's message is Go's decoder's ("cannot unmarshal array into Go value of type
            // specs.LinuxResources"); roci's names the field as a JSON path.
            out.says(&format!("{field}:"));
        }
        assert_eq!(c.status(), "created", "the container is untouched");
        assert_eq!(cgroups::read("memory", &c.cgroup, mem_file).unwrap(), MEM.to_string(), "{doc}: limits unchanged");
    }
    c.delete_force().ok();
    c.assert_no_leaks();
}

/// runtime-spec: "The runtime MUST apply entries in the listed order" (runtime-tools'
/// linux_cgroups_devices reads it back from v1's `devices.list`): after the deny-all, the allow rules
/// appear in the config's order, then the defaults. A merge into an earlier rule keeps its place.
#[test]
fn cgroup_devices_list_in_config_order() {
    if is_v2() {
        return; // v2 has no devices.list: the rules become one BPF program
    }
    let mut c = Container::new("cgroup_devices_order");
    c.spec.args(&["sleep", "1000"]).resources(
        "devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": true, "type": "b", "major": 8, "minor": 20, "access": "rw"},
            {"allow": true, "type": "b", "major": 10, "minor": 200, "access": "r"},
            {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "r"},
        ]),
    );
    c.create().ok();
    let list = cgroups::read("devices", &c.cgroup, "devices.list").expect("devices.list");
    let lines: Vec<&str> = list.lines().collect();
    if c.rt.is_runc() {
        // Documented difference: runc 1.1 writes its emulated list sorted by (major, minor, type), so the
        // wildcard defaults come first (runtime-tools' linux_cgroups_devices fails on runc here).
        assert_eq!(lines[..2], ["b *:* m", "c *:* m"], "{list}");
    } else {
        assert_eq!(lines[..3], ["c 10:229 rwm", "b 8:20 rw", "b 10:200 r"], "{list}");
        // Then runc's defaults, in their order.
        assert_eq!(lines[3..5], ["c *:* m", "b *:* m"], "{list}");
    }
    for rule in ["c 10:229 rwm", "b 8:20 rw", "b 10:200 r", "c 1:3 rwm", "c 136:* rwm"] {
        assert!(lines.contains(&rule), "{rule} in {list}");
    }
    c.delete_force().ok();
    c.assert_no_leaks();
}
