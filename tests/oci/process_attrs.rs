//! Kernel attributes of the container's processes: `process.ioPriority`, `process.scheduler`,
//! `process.execCPUAffinity`, `linux.personality`, `linux.memoryPolicy`. Each is checked from inside the
//! container (busybox's `ionice`, `uname`, `/proc/self/{stat,status,numa_maps,personality}`) or, for a
//! program that cannot look, from the host's `/proc/PID`; a bad value fails `create` naming the field.
//!
//! runc 1.1.5 predates all of these fields (runtime-spec 1.2/1.3) and ignores them silently: where it
//! does, the test asserts that it did not apply them (the gap these fields close) and roci's behaviour.

use roci_integration::{Container, Output};
use serde_json::{json, Value};

use crate::{run_sh, section};

/// `exec --process FILE` with `process` (a complete process object) in a running container.
fn exec_process(c: &Container, name: &str, process: Value) -> Output {
    let path = c.host_path(name);
    std::fs::write(&path, process.to_string()).unwrap();
    c.invoke(&["exec", "--process", path.to_str().unwrap(), &c.id])
}

/// A process object running `sh -c script` as root, with `extra` merged in.
fn process(script: &str, extra: Value) -> Value {
    let mut p = json!({
        "args": ["sh", "-c", script], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// (nice, policy) from the text of `/proc/PID/stat` (fields 19 and 41).
fn nice_policy(stat: &str) -> (i64, u32) {
    let rest: Vec<&str> = stat.rsplit_once(") ").expect("stat").1.split_whitespace().collect();
    (rest[16].parse().unwrap(), rest[38].parse().unwrap())
}

fn host_cpus() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap().trim().to_string()
}

/// Whether the first line of a `numa_maps` shows `policy` (the column after the address; it may hold a
/// space, as in `prefer (many):0`).
fn numa_policy_is(maps: &str, policy: &str) -> bool {
    let rest = maps.lines().next().and_then(|l| l.split_once(' ')).map(|(_, r)| r).unwrap_or("");
    rest == policy || rest.starts_with(&format!("{policy} "))
}

/// Create with `tweak`, expecting a refusal naming `field` and nothing left behind. runc 1.1.5 ignores
/// these fields and creates the container.
fn refused(name: &str, field: &str, tweak: impl FnOnce(&mut Container)) {
    let mut c = Container::new(name);
    c.spec.args(&["sleep", "1000"]);
    tweak(&mut c);
    let out = c.create();
    if c.rt.is_runc() {
        // runc 1.1.5 does not know the field: it creates the container as if it were absent.
        out.ok();
        c.delete_force().ok();
    } else {
        out.fails().says(field);
    }
    c.assert_no_leaks();
}

#[test]
fn attrs_io_priority_init_and_exec() {
    let c = Container::running("attrs_ioprio", |c| {
        c.spec.set("/process/ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 6}));
    });
    let pid = c.pid();
    // Seen from the host (util-linux ionice), from inside, and in a child of the exec'd process.
    let host = std::process::Command::new("ionice").arg("-p").arg(pid.to_string()).output().unwrap();
    let host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    let out = c.invoke(&["exec", &c.id, "sh", "-c", "ionice -p 1; ionice; sh -c ionice"]);
    out.ok();
    // An exec with its own ioPriority gets that one.
    let own = exec_process(&c, "p.json", process("ionice", json!({"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}})));
    own.ok();
    if c.rt.is_runc() {
        // runc 1.1.5 ignores process.ioPriority.
        assert_ne!(host, "best-effort: prio 6", "{out}");
    } else {
        assert_eq!(host, "best-effort: prio 6");
        assert_eq!(out.lines(), ["best-effort: prio 6"; 3], "init, exec'd process (config's process) and its child");
        assert_eq!(own.stdout.trim(), "idle", "{own}");
    }
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn attrs_io_priority_refused_out_of_range() {
    refused("attrs_ioprio_bad", "process.ioPriority.priority", |c| {
        c.spec.set("/process/ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 8}));
    });
}

#[test]
fn attrs_scheduler_batch_negative_nice_reset_on_fork() {
    // `; true`: the shell would otherwise exec its last command instead of forking it.
    let out = run_sh("attrs_sched_batch", "cat /proc/$$/stat; echo '== child =='; sh -c 'cat /proc/self/stat'; true", |c| {
        // The runtime-spec's flag name (oci-spec spells it otherwise; both are read).
        c.spec.set("/process/scheduler", json!({"policy": "SCHED_BATCH", "nice": -5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}));
    });
    assert!(!out.stdout.is_empty(), "no output: {out}");
    let shell = nice_policy(out.lines()[0].as_str());
    let child = nice_policy(&section(&out.stdout, "child"));
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    // runc 1.1.5 ignores process.scheduler.
    let runc = roci_integration::runtime().is_runc();
    if runc {
        assert_eq!(shell, (0, SCHED_OTHER));
    } else {
        // A negative nice needs CAP_SYS_NICE, which the default capabilities lack: the scheduler is set
        // before they are dropped.
        assert_eq!(shell, (-5, SCHED_BATCH), "the container's process");
        // Reset on fork: a child starts from nice 0 (the policy is reset only for real-time ones).
        assert_eq!(child, (0, SCHED_BATCH), "its child");
    }
}

#[test]
fn attrs_scheduler_idle_for_exec() {
    let c = Container::running("attrs_sched_exec", |_| {});
    let out = exec_process(&c, "p.json", process("cat /proc/self/stat", json!({"scheduler": {"policy": "SCHED_IDLE"}})));
    out.ok();
    let (_, policy) = nice_policy(&out.stdout);
    // runc 1.1.5 ignores process.scheduler (SCHED_OTHER); SCHED_IDLE is 5.
    assert_eq!(policy, if c.rt.is_runc() { 0 } else { 5 }, "{out}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn attrs_scheduler_deadline() {
    // A deadline task may not fork: the init is `sleep`, checked from the host.
    let c = Container::running("attrs_sched_dl", |c| {
        c.spec.set(
            "/process/scheduler",
            json!({"policy": "SCHED_DEADLINE", "runtime": 1_000_000, "deadline": 10_000_000, "period": 10_000_000}),
        );
    });
    let pid = c.pid();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, policy) = nice_policy(&stat);
    // util-linux chrt reads the parameters back with sched_getattr.
    let chrt = std::process::Command::new("chrt").arg("-p").arg(pid.to_string()).output().unwrap();
    let chrt = String::from_utf8_lossy(&chrt.stdout).into_owned();
    if c.rt.is_runc() {
        assert_eq!(policy, 0, "runc 1.1.5 ignores process.scheduler");
    } else {
        assert_eq!(policy, 6, "SCHED_DEADLINE");
        assert!(chrt.contains("SCHED_DEADLINE"), "{chrt}");
        assert!(chrt.contains("1000000/10000000/10000000"), "runtime/deadline/period: {chrt}");
    }
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn attrs_scheduler_refused() {
    refused("attrs_sched_fifo0", "process.scheduler.priority", |c| {
        c.spec.set("/process/scheduler", json!({"policy": "SCHED_FIFO"}));
    });
    refused("attrs_sched_iso", "process.scheduler.policy", |c| {
        c.spec.set("/process/scheduler", json!({"policy": "SCHED_ISO"}));
    });
    refused("attrs_sched_nice", "process.scheduler.nice", |c| {
        c.spec.set("/process/scheduler", json!({"policy": "SCHED_OTHER", "nice": 20}));
    });
    refused("attrs_sched_dl", "process.scheduler.deadline", |c| {
        c.spec.set("/process/scheduler", json!({"policy": "SCHED_DEADLINE", "runtime": 2_000_000, "deadline": 1_000_000}));
    });
    refused("attrs_sched_flag", "process.scheduler", |c| {
        c.spec.set("/process/scheduler", json!({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_BOGUS"]}));
    });
}

#[test]
fn attrs_personality_linux32() {
    let out = run_sh("attrs_personality", "uname -m; cat /proc/self/personality; sh -c 'uname -m'", |c| {
        c.spec.set("/linux/personality", json!({"domain": "LINUX32"}));
    });
    if roci_integration::runtime().is_runc() {
        // runc 1.1.5 ignores linux.personality.
        assert_eq!(out.lines()[0], std::env::consts::ARCH);
    } else {
        assert_eq!(out.lines(), ["i686", "00000008", "i686"], "PER_LINUX32, inherited by children");
    }
    let out = run_sh("attrs_personality_linux", "uname -m", |c| {
        c.spec.set("/linux/personality", json!({"domain": "LINUX"}));
    });
    assert_eq!(out.lines(), [std::env::consts::ARCH]);
}

#[test]
fn attrs_personality_refused() {
    refused("attrs_personality_flags", "linux.personality.flags", |c| {
        c.spec.set("/linux/personality", json!({"domain": "LINUX32", "flags": ["ADDR_LIMIT_3GB"]}));
    });
    refused("attrs_personality_domain", "linux.personality.domain", |c| {
        c.spec.set("/linux/personality", json!({"domain": "SVR4"}));
    });
}

#[test]
fn attrs_exec_cpu_affinity() {
    let cpus = host_cpus();
    if cpus == "0" {
        eprintln!("one CPU: nothing to pin");
        return;
    }
    let c = Container::running("attrs_affinity", |c| {
        c.spec.set("/process/execCPUAffinity", json!({"initial": "0", "final": "1"}));
    });
    let pid = c.pid();
    let status = |text: &str| {
        text.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_string()).unwrap_or_default()
    };
    // Not for the init (the spec keeps it off the container's first process).
    let init = status(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap());
    assert_eq!(init, cpus, "the init keeps every CPU");
    // An exec takes the config's process, so its execCPUAffinity.
    let out = c.invoke(&["exec", &c.id, "cat", "/proc/self/status"]);
    out.ok();
    // A process file's own affinity.
    let own = exec_process(&c, "p.json", process("cat /proc/self/status", json!({"execCPUAffinity": {"final": "0"}})));
    own.ok();
    // `initial` is applied before the process enters the container's cgroup (where a cgroup v1 cpuset
    // resets it): a CPU that does not exist is refused by the kernel then, naming the field.
    let missing = exec_process(&c, "q.json", process("true", json!({"execCPUAffinity": {"initial": "1000"}})));
    // A malformed list is refused before anything is started.
    let malformed = exec_process(&c, "r.json", process("true", json!({"execCPUAffinity": {"final": "1-0"}})));
    if c.rt.is_runc() {
        // runc 1.1.5 ignores process.execCPUAffinity.
        assert_eq!(status(&out.stdout), cpus);
        assert_eq!(status(&own.stdout), cpus);
        missing.ok();
    } else {
        assert_eq!(status(&out.stdout), "1", "final from config.json");
        assert_eq!(status(&own.stdout), "0", "final from the process file");
        missing.fails().says("process.execCPUAffinity.initial");
        malformed.fails().says("execCPUAffinity.final");
    }
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn attrs_memory_policy_modes() {
    // This host has node 0 (every NUMA kernel has it); numa_maps shows the task policy on mappings
    // without their own.
    let cases = [
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}), "interleave:0"),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), "prefer:0"),
        (json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}), "prefer (many):0"),
        (json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}), "weighted interleave:0"),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
        (json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}), "bind=static:0"),
        (json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}), "interleave=relative:0"),
        (json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}), "bind=balancing:0"),
    ];
    for (i, (policy, want)) in cases.into_iter().enumerate() {
        let out = run_sh(&format!("attrs_mempolicy{i}"), "cat /proc/self/numa_maps", |c| {
            c.spec.set("/linux/memoryPolicy", policy.clone());
        });
        // runc 1.1.5 ignores linux.memoryPolicy.
        let want = if roci_integration::runtime().is_runc() { "default" } else { want };
        assert!(numa_policy_is(&out.stdout, want), "{policy}: want {want}: {out}");
    }
}

#[test]
fn attrs_memory_policy_for_exec() {
    let c = Container::running("attrs_mempolicy_exec", |c| {
        c.spec.set("/linux/memoryPolicy", json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}));
    });
    let out = c.invoke(&["exec", &c.id, "cat", "/proc/self/numa_maps"]);
    out.ok();
    let want = if c.rt.is_runc() { "default" } else { "interleave:0" };
    assert!(numa_policy_is(&out.stdout, want), "want {want}: {out}");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn attrs_memory_policy_refused() {
    refused("attrs_mempolicy_nonodes", "linux.memoryPolicy.nodes", |c| {
        c.spec.set("/linux/memoryPolicy", json!({"mode": "MPOL_BIND"}));
    });
    refused("attrs_mempolicy_local_nodes", "linux.memoryPolicy.nodes", |c| {
        c.spec.set("/linux/memoryPolicy", json!({"mode": "MPOL_LOCAL", "nodes": "0"}));
    });
    refused("attrs_mempolicy_bad_list", "linux.memoryPolicy.nodes", |c| {
        c.spec.set("/linux/memoryPolicy", json!({"mode": "MPOL_BIND", "nodes": "0-x"}));
    });
    refused("attrs_mempolicy_flags", "linux.memoryPolicy.flags", |c| {
        c.spec.set(
            "/linux/memoryPolicy",
            json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
        );
    });
    // A node the host does not have: the kernel refuses it in the container's init, and the error
    // names the field.
    refused("attrs_mempolicy_no_node", "linux.memoryPolicy", |c| {
        c.spec.set("/linux/memoryPolicy", json!({"mode": "MPOL_BIND", "nodes": "1000"}));
    });
}

// --- LSMs and Intel RDT: this host runs neither AppArmor nor SELinux, and its kernel has no resctrl ---

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Create with `tweak`: refused by both runtimes on a host without the feature (roci when the config is
/// loaded, naming `field`; runc 1.1.5 at validation or in its init, in its own words `runc_says`).
fn refused_by_both(name: &str, field: &str, runc_says: &str, tweak: impl FnOnce(&mut Container)) {
    let mut c = Container::new(name);
    c.spec.args(&["sleep", "1000"]);
    tweak(&mut c);
    let out = c.create();
    out.fails().says(if c.rt.is_runc() { runc_says } else { field });
    c.assert_no_leaks();
}

#[test]
fn attrs_apparmor_profile() {
    if apparmor_enabled() {
        // A host with AppArmor: the profile is the program's from its exec ("unconfined" is always loaded).
        let out = run_sh("attrs_apparmor", "cat /proc/self/attr/current", |c| {
            c.spec.set("/process/apparmorProfile", json!("unconfined"));
        });
        assert_eq!(out.stdout.trim(), "unconfined");
        return;
    }
    refused_by_both("attrs_apparmor", "process.apparmorProfile", "apparmor", |c| {
        c.spec.set("/process/apparmorProfile", json!("roci-test-profile"));
    });
    // An exec asking for a profile is refused as well, and nothing runs.
    let c = Container::running("attrs_apparmor_exec", |_| {});
    let out = exec_process(&c, "p.json", process("touch /ran", json!({"apparmorProfile": "roci-test-profile"})));
    out.fails().says(if c.rt.is_runc() { "apparmor" } else { "process.apparmorProfile" });
    assert!(!c.rootfs.join("ran").exists(), "the program must not run unconfined");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn attrs_selinux_labels() {
    if selinux_enabled() {
        eprintln!("SELinux is enabled on this host: labels depend on its policy; not checked here");
        return;
    }
    refused_by_both("attrs_selinux", "process.selinuxLabel", "selinux", |c| {
        c.spec.set("/process/selinuxLabel", json!("system_u:system_r:container_t:s0"));
    });
    // A mount label without SELinux: runc adds context="..." to its mounts, which this kernel refuses
    // (EINVAL). Documented difference: roci (as crun, and as runtime-tools' linux_mount_label expects)
    // runs the container, its mounts unlabelled; no policy reads file labels here.
    let mut c = Container::new("attrs_mountlabel");
    c.spec
        .set("/linux/mountLabel", json!("system_u:object_r:container_file_t:s0"))
        .sh("grep -c context= /proc/self/mountinfo; true");
    let out = c.run();
    if c.rt.is_runc() {
        out.fails().says("context=");
    } else {
        out.ok();
        assert_eq!(out.stdout.trim(), "0", "no mount carries a label: {out}");
    }
    c.assert_no_leaks();
}

#[test]
fn attrs_intel_rdt_without_resctrl() {
    let resctrl = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.contains(" - resctrl "));
    if resctrl {
        eprintln!("resctrl is mounted on this host: not the case this test covers");
        return;
    }
    refused_by_both("attrs_rdt", "linux.intelRdt", "Intel RDT", |c| {
        c.spec.set("/linux/intelRdt", json!({"closID": "roci-test", "l3CacheSchema": "L3:0=f"}));
    });
    // A closID alone (assign to a pre-made group): the spec requires an error without resctrl. runc 1.1.5
    // checks only the schemas and runs the container outside any group (documented difference).
    let mut c = Container::new("attrs_rdt_clos");
    c.spec.args(&["sleep", "1000"]).set("/linux/intelRdt", json!({"closID": "roci-test"}));
    let out = c.create();
    if c.rt.is_runc() {
        out.ok();
        c.delete_force().ok();
    } else {
        out.fails().says("linux.intelRdt").says("no resctrl");
    }
    c.assert_no_leaks();
}
