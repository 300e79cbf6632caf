//! Specs made by roci-cri's conversion (`cri-shim/src/server/spec`) run by the runtime under test: a pod's
//! pause container, then a container joining its namespaces, checked from inside (user and groups,
//! capabilities, seccomp, env, mounts, the shared PID namespace).

use std::path::Path;

use roci_cri::server::spec::{self, HostFacts, PodInputs, PodNamespaces, SandboxFiles};
use roci_cri_proto::runtime_v1 as v1;
use roci_integration::{Container, Spec};
use serde_json::{json, Value};

use crate::section;

/// Run the converted spec with the test's own cgroup (never the conversion's `/k8s.io/...`).
fn install(c: &mut Container, spec: Value) {
    let mut spec = Spec(spec);
    spec.cgroups_path(&c.cgroup.clone());
    c.spec = spec;
}

fn cap_bit(status: &str, set: &str, bit: u32) -> bool {
    let line = status.lines().find_map(|l| l.strip_prefix(&format!("{set}:"))).unwrap_or_else(|| panic!("no {set} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap() & (1 << bit) != 0
}

#[test]
fn cri_spec_pod_and_container_run() {
    // The test may run where lowering oom_score_adj is denied: containerd's restrict_oom_score_adj.
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
    let host = HostFacts { oom_score_adj_floor: Some(own), ..HostFacts::detect() };
    let node = v1::NamespaceMode::Node as i32;

    // The pause container: host network (no network namespace to make), its own IPC, PID and mount.
    let mut pause = Container::new("cri-pause");
    let shm = pause.host_path("shm");
    let resolv = pause.host_path("resolv.conf");
    std::fs::create_dir_all(&shm).unwrap();
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let pod = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata { name: "web".into(), uid: "u1".into(), namespace: "default".into(), attempt: 0 }),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(v1::NamespaceOption { network: node, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pause_image = serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
        // No PATH is added to a pod's env (containerd's sandbox spec takes the image's alone), and runc
        // resolves the program with the env's PATH only: an absolute path, as pause images have.
        "config": {"Cmd": ["/bin/sleep", "1000"]}
    }))
    .unwrap();
    let seccomp_dir = pause.host_path("seccomp");
    std::fs::create_dir_all(&seccomp_dir).unwrap();
    let inputs = PodInputs {
        id: &pause.id,
        image_name: "pause",
        rootfs: &pause.rootfs,
        netns: None,
        shm: &shm,
        resolv_conf: &resolv,
        seccomp_profile_dir: &seccomp_dir,
    };
    let pause_spec = spec::pod_spec(&pod, &pause_image, &inputs, &host).unwrap_or_else(|e| panic!("pod spec: {e}"));
    install(&mut pause, serde_json::to_value(pause_spec).unwrap());
    pause.create().ok();
    pause.start().ok();
    let pid = pause.pid();

    // A container of the pod.
    let mut c = Container::new("cri-ctr");
    let data = c.host_path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "hello\n").unwrap();
    for f in ["hosts", "hostname"] {
        std::fs::write(c.host_path(f), format!("{f} of the pod\n")).unwrap();
    }
    let files =
        SandboxFiles { hostname: Some(c.host_path("hostname")), hosts: c.host_path("hosts"), resolv_conf: resolv.clone(), shm };
    let ns = PodNamespaces {
        network: format!("/proc/{pid}/ns/net").into(),
        ipc: format!("/proc/{pid}/ns/ipc").into(),
        uts: format!("/proc/{pid}/ns/uts").into(),
        pid: format!("/proc/{pid}/ns/pid").into(),
    };
    let script = "echo '== id =='; id\n\
        echo '== status =='; cat /proc/self/status\n\
        echo '== env =='; env\n\
        echo '== data =='; cat /data/f; touch /data/g 2>/dev/null && echo writable || echo readonly\n\
        echo '== hosts =='; cat /etc/hosts\n\
        echo '== pid1 =='; cat /proc/1/cmdline | tr '\\0' ' '; echo\n\
        echo '== cwd =='; pwd\n";
    let config = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: "app".into(), attempt: 0 }),
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        envs: vec![v1::KeyValue { key: "FOO".into(), value: b"bar".to_vec() }],
        mounts: vec![v1::Mount {
            container_path: "/data".into(),
            host_path: data.to_str().unwrap().into(),
            readonly: true,
            ..Default::default()
        }],
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                run_as_user: Some(v1::Int64Value { value: 1000 }),
                capabilities: Some(v1::Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["KILL".into()],
                    ..Default::default()
                }),
                seccomp: Some(v1::SecurityProfile {
                    profile_type: v1::security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                namespace_options: Some(v1::NamespaceOption { network: node, ..Default::default() }),
                ..Default::default()
            }),
            resources: None,
        }),
        ..Default::default()
    };
    let image = serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Entrypoint": ["/bin/false"], "Env": ["IMG=1"], "WorkingDir": "/tmp"}
    }))
    .unwrap();
    std::fs::create_dir_all(c.rootfs.join("tmp")).unwrap();
    let volumes = c.host_path("volumes");
    let inputs = spec::ContainerInputs {
        id: &c.id,
        sandbox_id: &pause.id,
        image_name: "busybox",
        rootfs: &c.rootfs,
        pod_namespaces: &ns,
        target_pid_namespace: None,
        sandbox_files: &files,
        volumes_dir: &volumes,
        seccomp_profile_dir: Path::new(&seccomp_dir),
    };
    let out = spec::container_spec(&config, &pod, &image, &inputs, &host).unwrap_or_else(|e| panic!("container spec: {e}"));
    assert!(out.host_dirs.is_empty() && out.image_volumes.is_empty());
    install(&mut c, serde_json::to_value(out.spec).unwrap());
    let run = c.run();
    run.ok();
    let stdout = &run.stdout;

    let id = section(stdout, "id");
    assert!(id.starts_with("uid=1000(test) gid=1000(test)"), "{id}");
    assert!(id.contains("1001(extra)"), "groups from the image's /etc/group: {id}");
    let status = section(stdout, "status");
    // CAP_NET_ADMIN is 12, CAP_KILL 5, CAP_CHOWN 0.
    assert!(cap_bit(&status, "CapBnd", 12) && !cap_bit(&status, "CapBnd", 5) && cap_bit(&status, "CapBnd", 0), "{status}");
    assert!(status.lines().any(|l| l.starts_with("Seccomp:") && l.trim_end().ends_with('2')), "RuntimeDefault filter: {status}");
    assert!(status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.trim_end().ends_with('0')), "{status}");
    let env = section(stdout, "env");
    for want in ["FOO=bar", "IMG=1", &format!("HOSTNAME={}", host.hostname), "PATH=/usr/local/sbin:"] {
        assert!(env.lines().any(|l| l.starts_with(want)), "{want} in {env}");
    }
    assert_eq!(section(stdout, "data"), "hello\nreadonly");
    assert_eq!(section(stdout, "hosts"), "hosts of the pod");
    assert_eq!(section(stdout, "pid1"), "/bin/sleep 1000", "the container is in the pause's PID namespace");
    assert_eq!(section(stdout, "cwd"), "/tmp");
    c.delete();
    c.assert_no_leaks();

    pause.kill("KILL");
    pause.wait_status("stopped", std::time::Duration::from_secs(10));
    pause.delete().ok();
    pause.assert_no_leaks();
}
