//! Bad input: each fails with a non-zero exit, an error that names the field or path, and nothing left
//! behind (no state entry, no cgroup, no process, no mount).

use roci_integration::Container;
use serde_json::json;

/// Create with `config.json` replaced by `text`.
fn create_raw(name: &str, text: &str) -> (Container, roci_integration::Output) {
    let c = Container::new(name);
    let b = c.bundle.to_string_lossy().into_owned();
    std::fs::write(c.bundle.join("config.json"), text).unwrap();
    let out = c.invoke(&["create", "--bundle", &b, &c.id]);
    (c, out)
}

/// Create with the default spec tweaked by `tweak`.
fn create_with(name: &str, tweak: impl FnOnce(&mut Container)) -> (Container, roci_integration::Output) {
    let mut c = Container::new(name);
    c.spec.args(&["sleep", "1000"]);
    tweak(&mut c);
    let out = c.create();
    (c, out)
}

#[test]
fn bad_malformed_json() {
    let (c, out) = create_raw("bad_json", "{\"ociVersion\": \"1.0.2\", \"process\": ");
    out.fails();
    if c.rt.is_runc() {
        // runc 1.1 prints only the decoder's "unexpected EOF", naming neither file nor position;
        // roci names config.json (documented difference).
        out.says("unexpected EOF");
    } else {
        out.says("config.json");
    }
    c.assert_no_leaks();
}

#[test]
fn bad_missing_config() {
    let c = Container::new("bad_no_config");
    let b = c.bundle.to_string_lossy().into_owned();
    let out = c.invoke(&["create", "--bundle", &b, &c.id]);
    out.fails().says("config.json");
    c.assert_no_leaks();
}

#[test]
fn bad_args_wrong_type() {
    let (c, out) = create_with("bad_args_type", |c| {
        c.spec.set("/process/args", json!("sh"));
    });
    // runc: "json: cannot unmarshal string into Go struct field Process.process.args of type []string".
    out.fails().says("args");
    c.assert_no_leaks();
}

#[test]
fn bad_uid_wrong_type() {
    let (c, out) = create_with("bad_uid_type", |c| {
        c.spec.set("/process/user/uid", json!("root"));
    });
    out.fails().says("uid");
    c.assert_no_leaks();
}

#[test]
fn bad_missing_oci_version() {
    let (c, out) = create_with("bad_no_version", |c| {
        c.spec.remove("/ociVersion");
    });
    if c.rt.is_runc() {
        // Documented difference: runc 1.1 accepts a config without ociVersion (REQUIRED by runtime-spec);
        // roci rejects it and names the field.
        out.ok();
        c.delete_force().ok();
    } else {
        out.fails().says("ociVersion");
    }
    c.assert_no_leaks();
}

#[test]
fn bad_root_path_missing() {
    let (c, out) = create_with("bad_root_path", |c| {
        c.spec.root_path("/nonexistent/roci-it-root");
    });
    // runc: "invalid rootfs: stat /nonexistent/roci-it-root: no such file or directory".
    out.fails().says("/nonexistent/roci-it-root");
    c.assert_no_leaks();
}

#[test]
fn bad_namespace_type() {
    let (c, out) = create_with("bad_ns_type", |c| {
        c.spec.namespace("bogusns", None);
    });
    // runc: "namespace {"bogusns" ""} does not exist".
    out.fails().says("bogusns");
    c.assert_no_leaks();
}

#[test]
fn bad_namespace_path() {
    let (c, out) = create_with("bad_ns_path", |c| {
        c.spec.namespace("network", Some("/nonexistent/ns/net"));
    });
    out.fails().says("/nonexistent/ns/net");
    c.assert_no_leaks();
}

#[test]
fn bad_rlimit_type() {
    let (c, out) = create_with("bad_rlimit", |c| {
        c.spec.rlimits(json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]));
    });
    // runc: "wrong rlimit value: RLIMIT_BOGUS".
    out.fails().says("RLIMIT_BOGUS");
    c.assert_no_leaks();
}

#[test]
fn bad_rlimit_above_hard_limit() {
    // Raising a hard limit needs CAP_SYS_RESOURCE, which this host's runtime does not have; on a host
    // where it has it, the create succeeds. Either way nothing is left behind.
    let host_hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap().1;
    let caps = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = caps.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    let has_sys_resource = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap() & (1 << 24) != 0;
    let (c, out) = create_with("bad_rlimit_high", |c| {
        c.spec.rlimits(json!([{"type": "RLIMIT_NOFILE", "soft": host_hard + 1000, "hard": host_hard + 1000}]));
    });
    if has_sys_resource {
        out.ok();
        c.delete_force().ok();
    } else if c.rt.is_runc() {
        // runc 1.1: "error setting rlimit type 7: operation not permitted" (a number, not the name);
        // roci names RLIMIT_NOFILE (documented difference).
        out.fails().says("rlimit");
    } else {
        out.fails().says("RLIMIT_NOFILE");
    }
    c.assert_no_leaks();
}

#[test]
fn bad_duplicate_id() {
    let mut c = Container::new("bad_dup_id");
    c.spec.args(&["sleep", "1000"]);
    c.create().ok();
    let pid = c.pid();
    // runc: "container with given ID already exists".
    c.create().fails().says("exists");
    assert_eq!(c.pid(), pid, "the first container is untouched");
    assert_eq!(c.status(), "created");
    c.delete_force().ok();
    c.assert_no_leaks();
}

#[test]
fn bad_ids() {
    let c = Container::new("bad_ids");
    c.write_config();
    let b = c.bundle.to_string_lossy().into_owned();
    for id in ["a/b", "..", "../escape", "/abs", ""] {
        let out = c.invoke(&["create", "--bundle", &b, id]);
        // runc: "invalid container ID format".
        out.fails();
        if !id.is_empty() {
            out.says("id");
        }
    }
    // Nothing created outside the state root: no `escape` next to it, no state entries at all.
    assert!(!c.dir.join("escape").exists());
    let entries: Vec<_> =
        std::fs::read_dir(&c.state_root).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(entries.is_empty(), "state root must stay empty: {entries:?}");
    c.assert_no_leaks();
}

#[test]
fn bad_bind_source_missing() {
    let (c, out) = create_with("bad_bind_src", |c| {
        c.spec.add_mount("/data", "bind", "/nonexistent/roci-it-src", &["rbind"]);
    });
    // runc: "error mounting "/nonexistent/roci-it-src" to rootfs at "/data": stat ...: no such file or directory".
    out.fails().says("/nonexistent/roci-it-src");
    c.assert_no_leaks();
}

#[test]
fn bad_device_type() {
    let (c, out) = create_with("bad_dev_type", |c| {
        c.spec.set("/linux/devices", json!([{"path": "/dev/bogus", "type": "x", "major": 1, "minor": 3}]));
    });
    // runc: "invalid device type "x"".
    out.fails().says("device");
    c.assert_no_leaks();
}

#[test]
fn bad_executable_missing() {
    let mut c = Container::new("bad_exe");
    c.spec.args(&["/no/such/program"]);
    let out = c.run();
    out.fails().says("/no/such/program");
    c.assert_no_leaks();
}

#[test]
fn bad_mount_destination_relative() {
    // runtime-spec 1.0: destination MUST be absolute. runc 1.1 accepts a relative one and resolves it
    // against / (documented difference: roci rejects it and names it).
    let (c, out) = create_with("bad_mount_rel", |c| {
        c.spec.add_mount("relative/dest", "tmpfs", "tmpfs", &[]);
    });
    if c.rt.is_runc() {
        if out.success() {
            c.delete_force().ok();
        }
    } else {
        out.fails().says("relative/dest");
    }
    c.assert_no_leaks();
}

#[test]
fn bad_unknown_command_and_flag() {
    let c = Container::new("bad_cli");
    let out = c.invoke(&["frobnicate"]);
    out.fails();
    let out = c.invoke(&["create", "--no-such-flag", &c.id]);
    out.fails();
}
