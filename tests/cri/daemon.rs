//! roci-cri as a daemon: who owns the socket, what the signals do, the configuration file and the
//! flags over it. roci-cri's own behaviour, so these run in the roci leg only.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use roci_cri_proto::runtime_v1::{StatusRequest, VersionRequest};

use crate::server::{describe, roci_cri_binary, target, CriServer, Target};

fn roci_leg() -> bool {
    let roci = target() == Target::Roci;
    if !roci {
        eprintln!("roci-cri's daemon behaviour: tested in the roci leg");
    }
    roci
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_it_and_remove_the_socket() {
    if !roci_leg() {
        return;
    }
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut server = CriServer::roci(&[]);
        server.client().await.runtime.version(VersionRequest::default()).await.expect("Version");
        let status = server.stop(signal, Duration::from_secs(10)).unwrap_or_else(|| panic!("still running 10 s after {signal}"));
        assert!(status.success(), "exit after {signal}: {}; log:\n{}", describe(status), server.log());
        assert!(!server.socket.exists(), "the socket is left after {signal}");
        assert!(server.log().contains(&format!("shutting down signal=\"{}\"", signal.as_str())), "{}", server.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_socket_is_refused() {
    if !roci_leg() {
        return;
    }
    let server = CriServer::roci(&[]);
    let other_root = server.dir.join("other-root");
    let out = Command::new(roci_cri_binary())
        .arg("--socket")
        .arg(&server.socket)
        .arg("--root")
        .arg(&other_root)
        .arg("--state")
        .arg(server.dir.join("other-state"))
        .output()
        .expect("run a second roci-cri");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon started: {stderr}");
    assert!(stderr.contains("another roci-cri is serving it"), "{stderr}");
    // The first one still serves on its socket.
    server.client().await.runtime.version(VersionRequest::default()).await.expect("Version on the first daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_root_is_refused() {
    if !roci_leg() {
        return;
    }
    // Its recovery would undo what the first is making: it must not start at all.
    let server = CriServer::roci(&[]);
    let other_socket = server.dir.join("other.sock");
    let out = Command::new(roci_cri_binary())
        .arg("--socket")
        .arg(&other_socket)
        .arg("--root")
        .arg(server.dir.join("root"))
        .arg("--state")
        .arg(server.dir.join("other-state"))
        .output()
        .expect("run a second roci-cri");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon started: {stderr}");
    assert!(stderr.contains("roci-cri.lock: another roci-cri holds it"), "{stderr}");
    assert!(!other_socket.exists(), "the refused daemon made a socket");
    assert!(!server.dir.join("other-state").join("roci").exists(), "the refused daemon recovered something");
    server.client().await.runtime.version(VersionRequest::default()).await.expect("Version on the first daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced() {
    if !roci_leg() {
        return;
    }
    // A socket with no one behind it, where the daemon is to serve.
    let server = CriServer::roci_prepared(&[], |dir| {
        drop(std::os::unix::net::UnixListener::bind(dir.join("cri.sock")).expect("bind a socket to leave behind"));
    });
    server.client().await.runtime.version(VersionRequest::default()).await.expect("Version");
    assert!(server.log().contains("removing a stale socket"), "{}", server.log());

    // As a killed daemon leaves it: the socket and the lock file, no one holding the lock.
    let mut server = server;
    let status = server.stop(Signal::SIGKILL, Duration::from_secs(10)).expect("SIGKILL");
    assert_eq!(describe(status), "signal 9");
    assert!(server.socket.exists(), "SIGKILL leaves the socket");
    server.restart();
    server.client().await.runtime.version(VersionRequest::default()).await.expect("Version on the restarted daemon");
    assert!(server.log().contains("removing a stale socket"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_configuration_file() {
    if !roci_leg() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cri.toml");
    std::fs::write(&file, "pause_image = \"example.com/pause:9\"\nstream_server_address = \"127.0.0.1:10010\"\n[cni]\nconf_dir = \"/from-the-file\"\n")
        .expect("write cri.toml");
    let file_arg = file.to_string_lossy().into_owned();
    // CriServer::roci passes --cni-conf-dir (its own dir), which must win over the file's.
    let server = CriServer::roci(&["--config", &file_arg, "--stream-server-address", "127.0.0.1:10011"]);
    let info = server.client().await.runtime.status(StatusRequest { verbose: true }).await.expect("Status").into_inner().info;
    let config: serde_json::Value = serde_json::from_str(&info["config"]).expect("info[config] is JSON");
    assert_eq!(config["cni"]["conf_dir"].as_str(), Some(&*server.cni_conf_dir.to_string_lossy()), "{config}");
    assert_eq!(config["pause_image"], "example.com/pause:9", "{config}");
    assert_eq!(config["stream_server_address"], "127.0.0.1:10011", "{config}");
    assert_eq!(config["cgroup_driver"], "cgroupfs", "{config}");
}

#[test]
fn a_bad_configuration_stops_it_with_the_key_named() {
    if !roci_leg() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cri.toml");
    let socket = dir.path().join("cri.sock");
    for (text, key) in [("cgroup_driver = \"systemd\"\n", "systemd"), ("[cni]\nbindir = \"/x\"\n", "bindir")] {
        std::fs::write(&file, text).expect("write cri.toml");
        let out = Command::new(roci_cri_binary())
            .arg("--config")
            .arg(&file)
            .arg("--socket")
            .arg(&socket)
            .output()
            .expect("run roci-cri");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}: started");
        assert!(stderr.contains(&*file.to_string_lossy()) && stderr.contains(key), "{text}: {stderr}");
        assert!(!socket.exists(), "{text}: a socket was made");
    }
}

#[test]
fn a_malformed_registries_configuration_stops_it() {
    if !roci_leg() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let registries = dir.path().join("registries.json");
    std::fs::write(&registries, "{\"mirrors\": 5}").expect("write registries.json");
    let socket = dir.path().join("cri.sock");
    let out = Command::new(roci_cri_binary())
        .arg("--socket")
        .arg(&socket)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--registries-config")
        .arg(&registries)
        .output()
        .expect("run roci-cri");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(stderr.contains(&*registries.to_string_lossy()) && stderr.contains("invalid type"), "{stderr}");
    assert!(!socket.exists(), "a socket was made");
}
