//! `features`: the document callers read to decide what to ask for (containerd uses idmapped mounts only
//! when it says they work). Each claim is tried: every namespace listed runs a container, an idmapped
//! mount is made when `mountExtensions.idmap.enabled`, each memory policy mode listed is applied.

use std::os::unix::fs::PermissionsExt;

use roci_integration::{rootfs, Container};
use serde_json::{json, Value};

use crate::{mount_at, parse_mountinfo};

fn document() -> (Container, Value) {
    let c = Container::new("features");
    let out = c.invoke(&["features"]);
    out.ok();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("features is not JSON: {e}: {out}"));
    (c, doc)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
}

#[test]
fn features_every_namespace_listed_runs() {
    let (c, doc) = document();
    let listed = strings(&doc["linux"]["namespaces"]);
    if c.rt.is_roci() {
        // The user namespace works (tests/oci/userns.rs) and must be listed.
        for ns in ["cgroup", "ipc", "mount", "network", "pid", "time", "uts", "user"] {
            assert!(listed.iter().any(|l| l == ns), "{ns} missing from {listed:?}");
        }
    }
    for ns in &listed {
        let mut c = Container::new(&format!("features_ns_{ns}"));
        if !c.spec.namespaces().contains(ns) {
            c.spec.namespace(ns, None);
        }
        if ns == "user" {
            let map = json!([{"containerID": 0, "hostID": 100_000, "size": 65_536}]);
            c.spec.set("/linux/uidMappings", map.clone()).set("/linux/gidMappings", map);
            rootfs::chown_tree(&c.rootfs, 100_000, 100_000);
            std::fs::set_permissions(&c.dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        c.spec.sh(&format!(
            "readlink /proc/self/ns/{}",
            match ns.as_str() {
                "mount" => "mnt",
                "network" => "net",
                other => other,
            }
        ));
        let out = c.run();
        out.ok();
        c.assert_no_leaks();
    }
}

#[test]
fn features_idmap_claim_holds() {
    let (c, doc) = document();
    let enabled = doc["linux"]["mountExtensions"]["idmap"]["enabled"] == json!(true);
    if c.rt.is_runc() {
        // runc 1.1.5 has no idmapped mounts and does not claim them.
        assert!(!enabled, "{doc}");
        return;
    }
    assert!(enabled, "idmapped mounts work in this build and must be reported: {doc}");
    let mut c = Container::new("features_idmap");
    let data = c.host_path("data");
    std::fs::create_dir(&data).unwrap();
    let map = json!([{"containerID": 0, "hostID": 100_000, "size": 65_536}]);
    c.spec.bind(&data, "/idm", false).sh("cat /proc/self/mountinfo");
    let n = c.spec.get("/mounts").and_then(Value::as_array).map(|a| a.len()).unwrap();
    c.spec.set(&format!("/mounts/{}/uidMappings", n - 1), map.clone()).set(&format!("/mounts/{}/gidMappings", n - 1), map);
    let out = c.run();
    out.ok();
    let idm = mount_at(&parse_mountinfo(&out.stdout), "/idm").clone();
    assert!(idm.options.iter().any(|o| o == "idmapped"), "{idm:?}");
    c.assert_no_leaks();
}

#[test]
fn features_memory_policy_modes_listed_are_applied() {
    let (c, doc) = document();
    let modes = strings(&doc["linux"]["memoryPolicy"]["modes"]);
    if c.rt.is_roci() {
        assert_eq!(modes.len(), 7, "{doc}");
    }
    for (i, mode) in modes.iter().enumerate() {
        let nodes = if mode == "MPOL_DEFAULT" || mode == "MPOL_LOCAL" { json!(null) } else { json!("0") };
        let mut c = Container::new(&format!("features_mpol{i}"));
        let mut policy = json!({"mode": mode});
        if !nodes.is_null() {
            policy["nodes"] = nodes;
        }
        c.spec.set("/linux/memoryPolicy", policy).sh("head -1 /proc/self/numa_maps");
        let out = c.run();
        out.ok();
        let want = match mode.as_str() {
            "MPOL_DEFAULT" => "default",
            "MPOL_LOCAL" => "local",
            "MPOL_BIND" => "bind:0",
            "MPOL_INTERLEAVE" => "interleave:0",
            "MPOL_WEIGHTED_INTERLEAVE" => "weighted interleave:0",
            "MPOL_PREFERRED" => "prefer:0",
            "MPOL_PREFERRED_MANY" => "prefer (many):0",
            other => panic!("unknown mode {other} listed"),
        };
        assert!(out.stdout.contains(&format!(" {want}")), "{mode}: {out}");
        c.assert_no_leaks();
    }
}
