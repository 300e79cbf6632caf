//! Pod networking against the real CNI plugins (Debian's containernetworking-plugins in
//! /usr/lib/cni) and the real kernel. Needs root.
//!
//! Every test runs on a thread of its own that first enters a new network namespace (with `lo`
//! up) and runs its async body on a current-thread runtime there: the plugins it starts inherit
//! that namespace, so the bridge, the host side of the veths, portmap's iptables rules and the
//! sysctls the plugins set (`ip_forward`, `route_localnet`) live and die with the test's
//! namespace, never the host's. host-local's data, the pinned namespaces and the result cache are
//! in the test's temp dir; a guard unpins every namespace left when a test fails, and each test
//! ends by checking that no mount is left under its temp dir.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use roci_cri::network::cni::{Attachment, Cni, CniError, PodIdentity, DEFAULT_IFNAME};
use roci_cri::network::{conf, netns, Bandwidth, NetworkError, PodNetworks, PodRequest, PortMapping, Protocol, RuntimeArgs};
use serde_json::Value;

const PLUGINS: &str = "/usr/lib/cni";

/// Run `body` in a network namespace of its own (see the module's doc).
fn in_test_netns<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    assert!(nix::unistd::geteuid().is_root(), "the CNI tests need root");
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        ip(&["link", "set", "lo", "up"]);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(body());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// `ip ARGS` in the calling thread's network namespace; its stdout.
fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `f` on a thread inside the pinned network namespace `netns`. A socket made there stays in
/// that namespace whatever thread uses it later.
fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(netns).expect("open the pinned namespace");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns into the pod");
            f()
        })
        .join()
        .expect("the thread in the pod's namespace")
    })
}

/// A listener in the pod, on `port` of all its addresses.
fn listen_in(netns: &Path, port: u16) -> TcpListener {
    in_netns(netns, || TcpListener::bind(("0.0.0.0", port)).expect("listen in the pod"))
}

/// Connect to `addr` and exchange a line with `server` (the kernel completes the handshake
/// without accept(), so one thread does both ends).
fn exchange(server: &TcpListener, addr: SocketAddr) -> Result<(), String> {
    let mut client = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut conn, _) = server.accept().map_err(|e| format!("accept: {e}"))?;
    conn.write_all(b"pong").map_err(|e| e.to_string())?;
    let mut got = [0u8; 4];
    client.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    client.read_exact(&mut got).map_err(|e| format!("read from {addr}: {e}"))?;
    (&got == b"pong").then_some(()).ok_or_else(|| format!("read {got:?}"))
}

/// The test's files: configuration, fake plugins, host-local's data, pinned namespaces, cache.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env { dir: tempfile::tempdir().expect("temp dir") };
        for sub in ["net.d", "bin", "ipam", "netns", "cni", "record"] {
            std::fs::create_dir(env.path(sub)).expect("mkdir");
        }
        env
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// A bridge network on `bridge` with `subnet` (host-local's data in the temp dir), then
    /// `more` plugins.
    fn write_bridge_network(&self, name: &str, bridge: &str, subnet: &str, more: &[Value]) {
        let mut plugins = vec![serde_json::json!({
            "type": "bridge", "bridge": bridge, "isGateway": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": self.path("ipam")}
        })];
        plugins.extend_from_slice(more);
        let list = serde_json::json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        std::fs::write(self.path("net.d").join("10-test.conflist"), list.to_string()).expect("write the conflist");
    }

    /// A fake plugin: a shell script in the test's bin dir.
    fn fake_plugin(&self, name: &str, script: &str) {
        let path = self.path("bin").join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write a fake plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn cni(&self) -> Cni {
        Cni::new(vec![self.path("bin"), PLUGINS.into()], self.path("cni"))
    }

    fn networks(&self) -> PodNetworks {
        PodNetworks::with_parts(self.path("net.d"), self.path("netns"), self.cni())
    }

    /// host-local's allocations: files named after an address in its network directory.
    fn allocations(&self, network: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path("ipam").join(network)) else { return Vec::new() };
        entries
            .map(|e| e.expect("read the ipam dir").file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<IpAddr>().is_ok())
            .collect()
    }

    fn files(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(sub))
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Nothing of the test is left on the host: no mount under its dir, no host-local data
    /// outside it.
    fn assert_clean(&self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let dir = self.dir.path().to_string_lossy();
        assert!(!mounts.contains(dir.as_ref()), "mounts left under {dir}:\n{mounts}");
        assert!(self.files("netns").is_empty(), "namespace files left: {:?}", self.files("netns"));
        assert!(self.files("cni").is_empty(), "cache files left: {:?}", self.files("cni"));
        for network in std::fs::read_dir(self.path("ipam")).expect("read the ipam dir").flatten() {
            let host = Path::new("/var/lib/cni/networks").join(network.file_name());
            assert!(!host.exists(), "host-local wrote to the host's {}", host.display());
        }
    }
}

impl Drop for Env {
    /// A failed test still unpins its namespaces.
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.path("netns")) {
            for entry in entries.flatten() {
                let _ = netns::remove(&entry.path());
            }
        }
    }
}

fn pod(id: &str, runtime: RuntimeArgs) -> PodRequest {
    PodRequest {
        id: id.into(),
        pod: PodIdentity { namespace: "default".into(), name: format!("pod-{id}"), uid: format!("uid-{id}") },
        runtime,
    }
}

/// The veths in the calling thread's network namespace.
fn veths() -> String {
    ip(&["-o", "link", "show", "type", "veth"])
}

#[test]
fn two_pods_on_one_bridge_reach_each_other_and_their_loopback() {
    in_test_netns(|| async {
        let env = Env::new();
        env.write_bridge_network("roci-two", "cni-two", "10.91.0.0/24", &[]);
        let networks = env.networks();
        let (a, b) = (pod("pod-a", RuntimeArgs::default()), pod("pod-b", RuntimeArgs::default()));
        let own_netns = std::fs::metadata("/proc/thread-self/ns/net").expect("stat").ino();
        // Both at once: the plugins share the bridge and host-local's data under their locks.
        let (net_a, net_b) = tokio::join!(networks.setup(&a), networks.setup(&b));
        let (net_a, net_b) = (net_a.expect("setup a"), net_b.expect("setup b"));
        let own_after = std::fs::metadata("/proc/thread-self/ns/net").expect("stat").ino();
        assert_eq!(own_netns, own_after, "making the pods' namespaces left the caller's thread where it was");
        assert_ne!(std::fs::metadata(&net_a.netns).expect("stat").ino(), own_netns, "a new namespace");
        assert_eq!(net_a.netns, env.path("netns").join("pod-a"));
        assert!(netns::is_pinned(&net_a.netns) && netns::is_pinned(&net_b.netns));
        assert_eq!(net_a.network, "roci-two");
        let (ip_a, ip_b) = (net_a.ips[0], net_b.ips[0]);
        assert!(ip_a.to_string().starts_with("10.91.0.") && ip_b.to_string().starts_with("10.91.0.") && ip_a != ip_b);
        let eth0 = net_a.result.interfaces.iter().find(|i| i.name == DEFAULT_IFNAME).expect("eth0 in the result");
        assert_eq!(Path::new(&eth0.sandbox), net_a.netns);
        assert_eq!(env.allocations("roci-two").len(), 2);
        assert_eq!(networks.status("pod-a").expect("status").expect("attached").ips, net_a.ips);

        // b reaches a over the bridge; a reaches itself over lo (up: the loopback plugin ran).
        let server = listen_in(&net_a.netns, 8080);
        let from_b = in_netns(&net_b.netns, || exchange(&server, SocketAddr::new(ip_a, 8080)));
        from_b.expect("pod b to pod a");
        let over_lo = in_netns(&net_a.netns, || exchange(&server, "127.0.0.1:8080".parse().expect("addr")));
        over_lo.expect("pod a over its loopback");
        drop(server);
        let lo = std::process::Command::new("nsenter")
            .arg(format!("--net={}", net_b.netns.display()))
            .args(["ip", "-o", "link", "show", "lo"])
            .output()
            .expect("nsenter");
        assert!(String::from_utf8_lossy(&lo.stdout).contains(",UP"), "lo of pod b: {lo:?}");

        networks.check(&a).await.expect("CHECK a");
        assert_eq!(veths().lines().count(), 2, "the host sides: {}", veths());

        for request in [&a, &b] {
            assert!(networks.has_remains(&request.id), "{}: attached, so remains", request.id);
            networks.teardown(request).await.expect("teardown");
            assert!(!networks.has_remains(&request.id), "{}: nothing left after a teardown", request.id);
            networks.teardown(request).await.expect("teardown again: nothing to do");
        }
        assert!(networks.status("pod-a").expect("status").is_none());
        assert!(matches!(networks.check(&a).await, Err(NetworkError::Cni(CniError::NotAttached { .. }))));
        assert_eq!(veths(), "", "no veth left");
        assert!(env.allocations("roci-two").is_empty(), "addresses released");
        env.assert_clean();
    });
}

#[test]
fn a_host_port_reaches_a_server_in_the_pod() {
    in_test_netns(|| async {
        let env = Env::new();
        env.write_bridge_network(
            "roci-ports",
            "cni-ports",
            "10.92.0.0/24",
            &[serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}})],
        );
        let networks = env.networks();
        let mapping = PortMapping { host_port: 18080, container_port: 8080, protocol: Protocol::Tcp, host_ip: String::new() };
        let web = pod("web", RuntimeArgs { port_mappings: vec![mapping], bandwidth: None });
        let net = networks.setup(&web).await.expect("setup");
        let server = listen_in(&net.netns, 8080);
        // portmap DNATs locally made connections to a local address (the OUTPUT chain): the
        // bridge's address, and 127.0.0.1 because it sets route_localnet on the bridge and
        // masquerades (its default snat), all in the test's namespace.
        let gateway = net.result.ips[0].gateway.expect("the bridge's gateway");
        exchange(&server, SocketAddr::new(gateway, 18080)).expect("hostPort on the gateway address");
        exchange(&server, "127.0.0.1:18080".parse().expect("addr")).expect("hostPort on 127.0.0.1");
        drop(server);
        assert!(ip(&["-o", "addr"]).contains("cni-ports"));

        // A restarted daemon (a new runner on the same state) and a namespace already gone, its
        // file left unpinned (as a crash in teardown leaves it): DEL still runs what ADD ran
        // (portmap's DEL needs the cached port mappings), with an empty CNI_NETNS.
        nix::mount::umount2(&net.netns, nix::mount::MntFlags::MNT_DETACH).expect("unpin the namespace first");
        assert!(net.netns.exists() && !netns::is_pinned(&net.netns));
        let restarted = env.networks();
        restarted.teardown(&web).await.expect("teardown after a restart, the namespace gone");
        let nat = std::process::Command::new("iptables-save").args(["-t", "nat"]).output().expect("iptables-save");
        let nat = String::from_utf8_lossy(&nat.stdout);
        assert!(!nat.contains("18080"), "portmap's rules are gone:\n{nat}");
        assert!(env.allocations("roci-ports").is_empty(), "address released");
        assert!(TcpStream::connect_timeout(&SocketAddr::new(gateway, 18080), Duration::from_secs(2)).is_err());
        env.assert_clean();
    });
}

#[test]
fn a_failing_plugin_leaves_no_veth_address_or_cache() {
    in_test_netns(|| async {
        let env = Env::new();
        env.fake_plugin(
            "fail",
            r#"cat >/dev/null
[ "$CNI_COMMAND" = ADD ] || exit 0
echo '{"cniVersion": "1.0.0", "code": 100, "msg": "fake failure", "details": "on purpose"}'
exit 1"#,
        );
        env.write_bridge_network("roci-fail", "cni-fail", "10.93.0.0/24", &[serde_json::json!({"type": "fail"})]);
        let networks = env.networks();
        let doomed = pod("doomed", RuntimeArgs::default());
        let e = networks.setup(&doomed).await.expect_err("the fake plugin fails ADD");
        match &e {
            NetworkError::Cni(CniError::Plugin { call, code, msg, details }) => {
                assert_eq!(
                    (call.plugin.as_str(), call.network.as_str(), *code, msg.as_str()),
                    ("fail", "roci-fail", 100, "fake failure")
                );
                assert_eq!(details.as_deref(), Some("on purpose"));
            }
            other => panic!("not the plugin's error: {other}"),
        }
        assert!(e.to_string().contains("plugin fail: error 100: fake failure"), "{e}");
        assert_eq!(veths(), "", "the bridge plugin's veth is gone");
        assert!(env.allocations("roci-fail").is_empty(), "host-local's address released");
        env.assert_clean();
        // The pod's teardown after a failed setup (kubelet stops what failed to run) succeeds:
        // no cache, no namespace, DEL of the configured list finds nothing.
        networks.teardown(&doomed).await.expect("teardown after a failed setup");
        env.assert_clean();

        // A plugin that fails without the error object is reported with its exit and stderr.
        env.fake_plugin("fail", "cat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho 'out of luck' >&2\nexit 3");
        match networks.setup(&doomed).await {
            Err(NetworkError::Cni(CniError::PluginFailed { call, output, .. })) => {
                assert_eq!((call.plugin.as_str(), output.as_str()), ("fail", "out of luck"));
            }
            other => panic!("not PluginFailed: {other:?}"),
        }
        assert_eq!(veths(), "");
        assert!(env.allocations("roci-fail").is_empty());
        env.assert_clean();

        // A plugin that is not there: the undo runs DEL of the plugins before it (whose DEL
        // would otherwise never run: the missing plugin's DEL fails first, the list in reverse).
        env.write_bridge_network("roci-fail", "cni-fail", "10.93.0.0/24", &[serde_json::json!({"type": "roci-absent"})]);
        match networks.setup(&doomed).await {
            Err(NetworkError::Cni(CniError::PluginNotFound { call, .. })) => assert_eq!(call.plugin, "roci-absent"),
            other => panic!("not PluginNotFound: {other:?}"),
        }
        assert_eq!(veths(), "", "the bridge's veth is gone");
        assert!(env.allocations("roci-fail").is_empty(), "host-local's address released");
        env.assert_clean();
    });
}

#[test]
fn a_hanging_plugin_is_killed_with_what_it_started() {
    in_test_netns(|| async {
        let env = Env::new();
        let pids = env.path("record").join("pids");
        env.fake_plugin(
            "hang",
            &format!("cat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\nsleep 1000 &\necho $$ $! > {}\nwait", pids.display()),
        );
        let list = r#"{"cniVersion": "1.0.0", "name": "roci-hang", "plugins": [{"type": "hang"}]}"#;
        let network = conf::parse(Path::new("hang.conflist"), list).expect("parse");
        let cni = env.cni().with_timeout(Duration::from_secs(1));
        let att = attachment(&env, "hung");
        let started = std::time::Instant::now();
        let e = cni.add(&network, &att).await.expect_err("the plugin hangs");
        assert!(matches!(&e, CniError::Timeout { call, .. } if call.plugin == "hang"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        let pids = std::fs::read_to_string(&pids).expect("the plugin's pids");
        for pid in pids.split_whitespace() {
            // Dead: gone, or a zombie not yet reaped by init (the sleep was re-parented). SIGKILL
            // takes effect when the process next runs, a moment later on a busy machine.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next()).unwrap_or(None);
                if matches!(state, None | Some('Z') | Some('X')) {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "process {pid} still runs: {stat}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert!(env.files("cni").is_empty());
    });
}

fn attachment(env: &Env, id: &str) -> Attachment {
    Attachment {
        container_id: id.into(),
        // The fake plugins never enter it.
        netns: env.path("netns").join(id),
        if_name: DEFAULT_IFNAME.into(),
        pod: PodIdentity { namespace: "ns1".into(), name: "p1".into(), uid: "u1".into() },
        runtime: RuntimeArgs::default(),
    }
}

/// The calls the recording plugins saw, in order: (plugin, command, stdin, CNI_* environment).
fn recorded(env: &Env) -> Vec<(String, String, Value, String)> {
    let dir = env.path("record");
    let mut calls: Vec<(u32, String, String, Value, String)> = std::fs::read_dir(&dir)
        .expect("read the records")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".json")?;
            let mut parts = stem.splitn(3, '-');
            let (n, plugin, command) = (parts.next()?.parse().ok()?, parts.next()?.to_string(), parts.next()?.to_string());
            let stdin = serde_json::from_str(&std::fs::read_to_string(dir.join(&name)).expect("read")).expect("stdin is JSON");
            let vars = std::fs::read_to_string(dir.join(format!("{stem}.env"))).expect("read env");
            Some((n, plugin, command, stdin, vars))
        })
        .collect();
    calls.sort_by_key(|c| c.0);
    calls.into_iter().map(|(_, p, c, s, v)| (p, c, s, v)).collect()
}

#[test]
fn runtime_args_reach_only_the_plugins_that_ask_and_del_replays_the_cache() {
    // No kernel networking here: the plugins are fakes that record what they get.
    in_test_netns(|| async {
        let env = Env::new();
        let record = env.path("record");
        for (name, ip) in [("shaper", "10.94.0.5/24"), ("mapper", "10.94.0.6/24")] {
            std::fs::write(
                env.path("bin").join(format!("{name}.result")),
                format!(r#"{{"cniVersion": "1.0.0", "interfaces": [{{"name": "eth0", "sandbox": "/x"}}], "ips": [{{"address": "{ip}", "interface": 0}}]}}"#),
            )
            .expect("write a result");
            env.fake_plugin(
                name,
                &format!(
                    r#"n=$(ls {r} | wc -l)
cat > {r}/$n-{name}-$CNI_COMMAND.json
env | grep ^CNI_ | sort > {r}/$n-{name}-$CNI_COMMAND.env
[ "$CNI_COMMAND" = ADD ] && cat "$0.result"
exit 0"#,
                    r = record.display()
                ),
            );
        }
        let list = r#"{"cniVersion": "1.0.0", "name": "roci-args", "plugins": [
            {"type": "shaper", "capabilities": {"bandwidth": true}},
            {"type": "mapper", "capabilities": {"portMappings": true, "bandwidth": false}}]}"#;
        let network = conf::parse(Path::new("args.conflist"), list).expect("parse");
        let bandwidth =
            Bandwidth { ingress_rate: 1_000_000, ingress_burst: 2_000_000, egress_rate: 3_000_000, egress_burst: 4_000_000 };
        let mapping = PortMapping { host_port: 8443, container_port: 443, protocol: Protocol::Udp, host_ip: "127.0.0.1".into() };
        let mut att = attachment(&env, "args");
        att.runtime = RuntimeArgs { port_mappings: vec![mapping], bandwidth: Some(bandwidth) };
        let cni = env.cni();
        let result = cni.add(&network, &att).await.expect("ADD");
        assert_eq!(result.ips[0].address.to_string(), "10.94.0.6/24", "the last plugin's result");

        let calls = recorded(&env);
        assert_eq!(
            calls.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect::<Vec<_>>(),
            [("shaper", "ADD"), ("mapper", "ADD")]
        );
        let (shaper, mapper) = (&calls[0].2, &calls[1].2);
        assert_eq!(
            shaper,
            &serde_json::json!({"type": "shaper", "name": "roci-args", "cniVersion": "1.0.0", "runtimeConfig": {"bandwidth":
                {"ingressRate": 1_000_000, "ingressBurst": 2_000_000, "egressRate": 3_000_000, "egressBurst": 4_000_000}}})
        );
        assert_eq!(
            mapper["runtimeConfig"],
            serde_json::json!({"portMappings": [{"hostPort": 8443, "containerPort": 443, "protocol": "udp", "hostIP": "127.0.0.1"}]})
        );
        assert_eq!(mapper["prevResult"]["ips"][0]["address"], "10.94.0.5/24", "the shaper's result chained");
        assert!(mapper.get("capabilities").is_none());
        let vars = &calls[0].3;
        for expected in [
            "CNI_COMMAND=ADD".to_string(),
            "CNI_CONTAINERID=args".into(),
            format!("CNI_NETNS={}", att.netns.display()),
            "CNI_IFNAME=eth0".into(),
            format!("CNI_PATH={}:{PLUGINS}", env.path("bin").display()),
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p1;K8S_POD_INFRA_CONTAINER_ID=args;K8S_POD_UID=u1"
                .into(),
        ] {
            assert!(vars.lines().any(|l| l == expected), "{expected} not in:\n{vars}");
        }

        cni.check(&att).await.expect("CHECK");
        // A restarted daemon, no configuration given, the caller's runtime args forgotten: DEL
        // runs the cached list in reverse with the cached result and runtime args.
        let restarted = env.cni();
        assert_eq!(restarted.cached("args", DEFAULT_IFNAME).expect("read").expect("cached").result, result);
        restarted.del(None, &attachment(&env, "args")).await.expect("DEL");
        let calls = recorded(&env);
        let order: Vec<(&str, &str)> = calls.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect();
        assert_eq!(order[2..], [("shaper", "CHECK"), ("mapper", "CHECK"), ("mapper", "DEL"), ("shaper", "DEL")]);
        for (_, command, stdin, _) in &calls[2..] {
            assert_eq!(stdin["prevResult"]["ips"][0]["address"], "10.94.0.6/24", "{command} gets the final result");
        }
        assert_eq!(calls[4].2["runtimeConfig"]["portMappings"][0]["hostPort"], 8443, "DEL gets ADD's port mappings");
        assert!(calls[4].3.lines().any(|l| l == "CNI_NETNS="), "DEL of a namespace that is gone: empty CNI_NETNS");
        assert!(env.files("cni").is_empty(), "the cache is dropped");

        // DEL again: without a cache and without a configuration, nothing runs; with the
        // configuration, DEL runs it without prevResult.
        restarted.del(None, &att).await.expect("DEL twice");
        assert_eq!(recorded(&env).len(), 6);
        restarted.del(Some(&network), &att).await.expect("DEL with the configuration");
        let calls = recorded(&env);
        assert_eq!(calls.len(), 8);
        assert!(calls[6].2.get("prevResult").is_none());
    });
}

#[test]
fn a_pinned_namespace_outlives_its_thread_and_is_removed_twice() {
    in_test_netns(|| async {
        let env = Env::new();
        let path = netns::create(&env.path("netns"), "pinned").expect("create");
        assert!(netns::is_pinned(&path));
        // A new, empty namespace: only lo, down.
        let links = std::process::Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "-o", "link"])
            .output()
            .expect("nsenter");
        let links = String::from_utf8_lossy(&links.stdout).into_owned();
        assert_eq!(links.lines().count(), 1, "{links}");
        assert!(links.contains(": lo:") && links.contains("state DOWN"), "{links}");
        assert!(matches!(netns::create(&env.path("netns"), "pinned"), Err(netns::NetnsError::CreateFile { .. })), "made once");
        assert!(netns::is_pinned(&path), "a refused second create leaves the first alone");
        netns::remove(&path).expect("remove");
        assert!(!path.exists());
        netns::remove(&path).expect("remove again");
        env.assert_clean();
    });
}

#[test]
fn the_bandwidth_plugin_shapes_the_pod_from_its_annotations() {
    // The plugin shapes egress through an ifb device. Where the ifb driver is a module not yet
    // loaded, its first use would load it, and loading it adds ifb0 and ifb1 to the host's
    // namespace: then this test does not run (sysfs here shows the host's devices).
    if !Path::new("/sys/class/net/ifb0").exists() && !Path::new("/sys/module/ifb").exists() {
        eprintln!("skipped: the ifb driver is not in the kernel, and loading it would change the host's network");
        return;
    }
    in_test_netns(|| async {
        let env = Env::new();
        env.write_bridge_network(
            "roci-shaped",
            "cni-shaped",
            "10.95.0.0/24",
            &[serde_json::json!({"type": "bandwidth", "capabilities": {"bandwidth": true}})],
        );
        let networks = env.networks();
        let annotations = [
            ("kubernetes.io/ingress-bandwidth".to_string(), "1M".to_string()),
            ("kubernetes.io/egress-bandwidth".to_string(), "2M".to_string()),
        ]
        .into();
        let bandwidth = Bandwidth::from_pod_annotations(&annotations).expect("annotations").expect("shaping");
        let shaped = pod("shaped", RuntimeArgs { port_mappings: Vec::new(), bandwidth: Some(bandwidth) });
        networks.setup(&shaped).await.expect("setup");
        // Ingress (to the pod) is shaped by a token bucket on the host's veth; egress by one on an
        // ifb device the plugin makes, fed from the veth.
        let qdiscs = std::process::Command::new("tc").args(["qdisc", "show"]).output().expect("tc");
        let qdiscs = String::from_utf8_lossy(&qdiscs.stdout).into_owned();
        assert_eq!(qdiscs.matches("qdisc tbf").count(), 2, "{qdiscs}");
        assert!(qdiscs.contains("rate 1Mbit") && qdiscs.contains("rate 2Mbit"), "{qdiscs}");
        assert_eq!(ip(&["-o", "link", "show", "type", "ifb"]).lines().count(), 1);
        networks.teardown(&shaped).await.expect("teardown");
        assert_eq!(ip(&["-o", "link", "show", "type", "ifb"]), "", "the plugin's ifb device is gone");
        assert_eq!(veths(), "");
        env.assert_clean();
    });
}
