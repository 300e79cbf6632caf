//! AppArmor profiles of pods and containers, seen from inside the containers and on their
//! processes (`/proc/PID/attr/current`): the daemon's default profile for a container naming none
//! (roci-cri's `roci-cri-default`, containerd's `cri-containerd.apparmor.d`, each loaded by its
//! daemon at startup), Unconfined, privileged, a Localhost profile the test loads itself, and a
//! denial the default profile makes. On a host without AppArmor (this project's VM) the test
//! checks what is refused and what runs instead; the AppArmor half runs in the v2 guest
//! (Debian's kernel enables AppArmor; Makefile: CRI_V2GUEST_TESTS).

use std::io::Write;
use std::process::{Command, Stdio};

use roci_cri_proto::runtime_v1::{self as v1, security_profile::ProfileType, Capability, SecurityProfile};
use tonic::Code;

use crate::containers::{config, fixture, Fixture};

/// Whether AppArmor is on here, with securityfs mounted (both daemons load their profile
/// through it).
fn host_has_apparmor() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
        && std::path::Path::new("/sys/kernel/security/apparmor/profiles").exists()
}

/// A container config running `sleep 1000` whose security context asks for `apparmor` and adds
/// `caps`.
fn confined(name: &str, apparmor: Option<SecurityProfile>, caps: &[&str]) -> v1::ContainerConfig {
    let mut cfg = config(name, "sleep 1000");
    let sc = cfg.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.apparmor = apparmor;
    sc.capabilities = Some(Capability { add_capabilities: caps.iter().map(|c| c.to_string()).collect(), ..Default::default() });
    cfg
}

fn profile(typ: ProfileType, localhost_ref: &str) -> Option<SecurityProfile> {
    Some(SecurityProfile { profile_type: typ as i32, localhost_ref: localhost_ref.into() })
}

/// The AppArmor label of host process `pid` (`name (mode)` or `unconfined`).
fn label(pid: i32) -> String {
    let path = format!("/proc/{pid}/attr/current");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}")).trim_end_matches(['\n', '\0']).to_string()
}

impl Fixture {
    /// The label a process started by ExecSync in container `id` sees for itself, and the label of
    /// the container's init on the host.
    async fn labels(&mut self, id: &str) -> (String, String) {
        let out = self.exec(id, &["cat", "/proc/self/attr/current"], 10).await.expect("ExecSync cat /proc/self/attr/current");
        assert_eq!(out.exit_code, 0, "{out:?}");
        let inside = String::from_utf8_lossy(&out.stdout).trim_end_matches(['\n', '\0']).to_string();
        let pid = self.pid(id).await;
        (inside, label(pid))
    }

    /// ExecSync `sh -c script` in `id`: (exit code, stdout + stderr).
    async fn sh(&mut self, id: &str, script: &str) -> (i32, String) {
        let out = self.exec(id, &["sh", "-c", script], 10).await.unwrap_or_else(|e| panic!("ExecSync {script:?}: {e:?}"));
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.exit_code, text)
    }
}

/// A profile the test loads with `apparmor_parser -r` and removes (`-R`) when dropped, also
/// when the test fails.
struct LoadedProfile {
    name: String,
    text: String,
}

impl LoadedProfile {
    /// `name`: allows what a shell needs, but no write below /tmp.
    fn load(name: &str) -> LoadedProfile {
        let text = format!(
            "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  capability,\n  network,\n  \
             signal,\n  ptrace,\n  umount,\n  deny /tmp/** w,\n}}\n"
        );
        parser(&["-K", "-r"], &text);
        LoadedProfile { name: name.into(), text }
    }
}

impl Drop for LoadedProfile {
    fn drop(&mut self) {
        if let Err(e) = std::panic::catch_unwind(|| parser(&["-K", "-R"], &self.text)) {
            eprintln!("remove the AppArmor profile {}: {e:?}", self.name);
        }
    }
}

fn parser(args: &[&str], text: &str) {
    let mut child = Command::new("apparmor_parser")
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("apparmor_parser (Debian: apparmor, in PATH): {e}"));
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write the profile to apparmor_parser");
    let out = child.wait_with_output().expect("wait for apparmor_parser");
    assert!(out.status.success(), "apparmor_parser {args:?}: {}\n{text}", String::from_utf8_lossy(&out.stderr));
}

const MOUNT: &str = "mkdir -p /tmp/m && mount -t tmpfs t /tmp/m && echo mounted";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_seen_from_inside_the_containers() {
    let mut f = fixture("c-apparmor").await;
    let containerd = f.ps.server.is_containerd();
    if !host_has_apparmor() {
        eprintln!("no AppArmor on this host: only the refusals are checked (the v2 guest runs the rest)");
        without_apparmor(&mut f).await;
        f.end_pod().await;
        return;
    }

    // Nothing named: the daemon's default profile, in enforce mode, on the init and on an exec.
    let default = if containerd { "cri-containerd.apparmor.d" } else { "roci-cri-default" };
    let want = format!("{default} (enforce)");
    let id = f.run(confined("default", None, &["SYS_ADMIN"])).await;
    assert_eq!(f.labels(&id).await, (want.clone(), want.clone()));
    // It denies something real: a mount, which CAP_SYS_ADMIN (and no seccomp filter) would allow.
    let (code, out) = f.sh(&id, MOUNT).await;
    assert!(code != 0 && out.contains("denied"), "the default profile let a mount through: {code} {out:?}");
    f.remove(&id).await;

    // RuntimeDefault, asked for: the same.
    let id = f.run(confined("runtime-default", profile(ProfileType::RuntimeDefault, ""), &[])).await;
    assert_eq!(f.labels(&id).await, (want.clone(), want.clone()));
    f.remove(&id).await;

    // The pod's pause process.
    let pause = label(f.pause_pid().await);
    if containerd {
        // Difference: containerd 1.6 gives the pause container no AppArmor profile (it ignores
        // the pod's field); roci-cri applies the pod's, RuntimeDefault when it names none.
        assert_eq!(pause, "unconfined");
    } else {
        assert_eq!(pause, want);
    }

    // Unconfined: no profile, and the same mount goes through.
    let id = f.run(confined("unconfined", profile(ProfileType::Unconfined, ""), &["SYS_ADMIN"])).await;
    assert_eq!(f.labels(&id).await, ("unconfined".into(), "unconfined".into()));
    let (code, out) = f.sh(&id, MOUNT).await;
    assert_eq!((code, out.as_str()), (0, "mounted\n"), "unconfined, with CAP_SYS_ADMIN");
    f.remove(&id).await;

    // Localhost: a profile the test loads; it applies (its own denial, not the default's).
    let local = LoadedProfile::load(&format!("roci-cri-test-{}", std::process::id()));
    let id = f.run(confined("localhost", profile(ProfileType::Localhost, &local.name), &[])).await;
    let want_local = format!("{} (enforce)", local.name);
    assert_eq!(f.labels(&id).await, (want_local.clone(), want_local));
    let (code, out) = f.sh(&id, "echo x > /tmp/f").await;
    assert!(code != 0 && out.contains("denied"), "the Localhost profile let a write to /tmp through: {code} {out:?}");
    let (code, out) = f.sh(&id, "echo x > /f && cat /f").await;
    assert_eq!((code, out.as_str()), (0, "x\n"));
    f.remove(&id).await;
    // A Localhost profile that is not loaded.
    let missing = confined("missing", profile(ProfileType::Localhost, "roci-cri-test-not-loaded"), &[]);
    let e = f.create(missing).await.expect_err("a Localhost profile that is not loaded");
    assert!(e.message().contains("roci-cri-test-not-loaded"), "the message names the profile: {e:?}");
    if containerd {
        // containerd 1.6: Unknown, "apparmor profile not found"; roci-cri: InvalidArgument,
        // naming the field.
        assert!(e.message().contains("apparmor profile not found"), "{e:?}");
    } else {
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("security_context.apparmor.localhost_ref"), "{e:?}");
    }
    drop(local);
    f.end_pod().await;

    // A privileged pod and container: no profile on either.
    let mut pod_config = f.ps.pod_config("c-apparmor-privileged");
    pod_config.log_directory = f.pod_config.log_directory.clone();
    pod_config.linux.as_mut().unwrap().security_context.as_mut().unwrap().privileged = true;
    let run = v1::RunPodSandboxRequest { config: Some(pod_config.clone()), runtime_handler: String::new() };
    f.pod = f.client.runtime.run_pod_sandbox(run).await.expect("RunPodSandbox privileged").into_inner().pod_sandbox_id;
    f.pod_config = pod_config;
    let mut cfg = confined("privileged", None, &[]);
    cfg.linux.as_mut().unwrap().security_context.as_mut().unwrap().privileged = true;
    let id = f.run(cfg).await;
    assert_eq!(f.labels(&id).await, ("unconfined".into(), "unconfined".into()));
    assert_eq!(label(f.pause_pid().await), "unconfined");
    f.end_pod().await;
}

/// No AppArmor: nothing named and Unconfined run; RuntimeDefault and Localhost are refused (both
/// daemons: "apparmor is not supported").
async fn without_apparmor(f: &mut Fixture) {
    let id = f.run(confined("none", None, &[])).await;
    f.remove(&id).await;
    let id = f.run(confined("unconfined", profile(ProfileType::Unconfined, ""), &[])).await;
    f.remove(&id).await;
    for (name, asked) in [
        ("runtime-default", profile(ProfileType::RuntimeDefault, "")),
        ("localhost", profile(ProfileType::Localhost, "some-profile")),
    ] {
        let e = f.create(confined(name, asked, &[])).await.expect_err("an AppArmor profile without AppArmor");
        if f.ps.server.is_containerd() {
            // containerd 1.6: Unknown, "apparmor is not supported"; roci-cri: FailedPrecondition,
            // naming the field.
            assert!(e.message().contains("apparmor is not supported"), "{e:?}");
        } else {
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains("security_context.apparmor") && e.message().contains("AppArmor"), "{e:?}");
        }
    }
    assert!(f.list(None).await.is_empty(), "the refused creates left no container");
}

/// roci-cri's `apparmor_default_profile` at startup (roci only): its own profile loaded once
/// and kept over a restart, a configured profile that is loaded, one that is not (the daemon
/// stops, naming the key), an invalid name; without AppArmor, any name is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_profile_at_startup() {
    if crate::server::target() != crate::server::Target::Roci {
        return;
    }
    let refused = |name: &str| {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new(crate::server::roci_cri_binary())
            .arg("--socket")
            .arg(dir.path().join("cri.sock"))
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .args(["--apparmor-default-profile", name])
            .output()
            .expect("run roci-cri");
        assert!(!out.status.success(), "{name:?}: started");
        assert!(!dir.path().join("cri.sock").exists(), "{name:?}: a socket was made");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused("two words");
    assert!(stderr.contains("configuration: apparmor_default_profile:"), "{stderr}");

    if !host_has_apparmor() {
        let server = crate::server::CriServer::roci(&["--apparmor-default-profile", "roci-cri-test-not-loaded"]);
        let version = server.client().await.runtime.version(v1::VersionRequest::default()).await;
        assert!(version.is_ok(), "no AppArmor: the name is ignored: {version:?}");
        return;
    }

    let mut server = crate::server::CriServer::roci(&[]);
    assert!(server.log().contains("default AppArmor profile"), "{}", server.log());
    server.stop(nix::sys::signal::Signal::SIGTERM, std::time::Duration::from_secs(10)).expect("the daemon stops");
    server.restart();
    assert!(
        server.log().contains("the default AppArmor profile is loaded already"),
        "a restart reloaded the same profile: {}",
        server.log()
    );
    drop(server);

    let local = LoadedProfile::load(&format!("roci-cri-test-default-{}", std::process::id()));
    let server = crate::server::CriServer::roci(&["--apparmor-default-profile", &local.name]);
    assert!(server.log().contains("the configured default AppArmor profile is loaded"), "{}", server.log());
    drop(server);
    drop(local);

    let stderr = refused("roci-cri-test-not-loaded");
    assert!(
        stderr.contains("apparmor_default_profile") && stderr.contains("\"roci-cri-test-not-loaded\" is not loaded"),
        "{stderr}"
    );
}
