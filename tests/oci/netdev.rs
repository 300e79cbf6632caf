//! `linux.netDevices`: a device of the runtime's network namespace moved into the container's under its
//! new name, with its permanent global addresses, up.
//!
//! The host's network is never touched: each test makes a network namespace of its own (kept by a bind
//! mount on a file in its temp dir, as the Docker fixture does), creates a veth pair in it (this kernel has
//! no dummy driver) and runs `create` there through `nsenter --net`; the container's namespace is new, as
//! always. On delete nothing moves back (the spec forbids it): the container's namespace dies, and with it
//! the veth device and so its peer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::mount::{umount2, MntFlags};
use roci_integration::exec::default_timeout;
use roci_integration::{Container, Output};
use serde_json::json;

/// A network namespace kept by a bind mount on `<dir>/netns`; unmounted on drop.
struct Netns {
    path: PathBuf,
}

impl Netns {
    fn new(dir: &Path) -> Netns {
        let path = dir.join("netns");
        std::fs::File::create(&path).unwrap();
        let st = Command::new("unshare").arg(format!("--net={}", path.display())).arg("true").status().unwrap();
        assert!(st.success(), "unshare --net");
        let ns = Netns { path };
        ns.sh("ip link set lo up");
        ns
    }

    fn sh(&self, script: &str) -> std::process::Output {
        let out = self.sh_any(script);
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn sh_any(&self, script: &str) -> std::process::Output {
        Command::new("nsenter").arg(format!("--net={}", self.path.display())).args(["sh", "-c", script]).output().unwrap()
    }

    fn has_link(&self, name: &str) -> bool {
        self.sh_any(&format!("ip link show dev {name}")).status.success()
    }

    /// `create` of `c`, run in this namespace.
    fn create(&self, c: &Container) -> Output {
        c.write_config();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display())).arg("--").arg(&c.rt.path);
        cmd.arg("--root").arg(&c.state_root).arg("--log").arg(&c.log).arg("--log-format").arg("json");
        cmd.arg("create").arg("--bundle").arg(&c.bundle).arg(&c.id);
        let out = c.exec(cmd, default_timeout());
        if out.success() {
            c.pid();
        }
        out
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
    }
}

/// A veth pair `<prefix>a`/`<prefix>b` in `ns`, the first with an IPv4 and an IPv6 address (permanent,
/// global) and a link-local IPv6 one (not global: not carried over).
fn veth(ns: &Netns, prefix: &str) {
    ns.sh(&format!(
        "ip link add {prefix}a type veth peer name {prefix}b && ip addr add 10.123.0.1/24 dev {prefix}a && \
         ip -6 addr add fd00:123::1/64 dev {prefix}a nodad"
    ));
}

#[test]
fn netdev_moved_renamed_with_addresses() {
    let mut c = Container::new("netdev_move");
    let ns = Netns::new(&c.host);
    veth(&ns, "rt");
    c.spec.args(&["sleep", "1000"]).set("/linux/netDevices", json!({"rta": {"name": "ctr0"}}));
    ns.create(&c).ok();
    c.start().ok();
    let out = c.invoke(&["exec", &c.id, "sh", "-c", "ip -o link show dev ctr0; ip -o addr show dev ctr0"]);
    if c.rt.is_runc() {
        // runc 1.1.5 ignores linux.netDevices: the device stays where it was.
        out.fails();
        assert!(ns.has_link("rta"));
    } else {
        out.ok();
        let link = out.lines()[0].clone();
        assert!(link.contains("ctr0") && link.contains(",UP"), "renamed and up: {link}");
        assert!(out.stdout.contains("inet 10.123.0.1/24"), "IPv4 address carried over: {out}");
        assert!(out.stdout.contains("inet6 fd00:123::1/64"), "IPv6 global address carried over: {out}");
        assert!(!out.stdout.contains("fe80:"), "a link-local address is not a global one: {out}");
        assert!(!ns.has_link("rta"), "moved out of the runtime's namespace");
    }
    c.delete_force().ok();
    // Not moved back: the container's namespace is gone, and the veth pair with it (the kernel frees a
    // namespace asynchronously).
    if !c.rt.is_runc() {
        let gone = roci_integration::wait_for(Duration::from_secs(10), || !ns.has_link("rtb"));
        assert!(gone, "the peer outlived the container's namespace");
        assert!(!ns.has_link("rta") && !ns.has_link("ctr0"));
    }
    drop(ns);
    c.assert_no_leaks();
}

#[test]
fn netdev_keeps_name_when_none_given() {
    let mut c = Container::new("netdev_same_name");
    let ns = Netns::new(&c.host);
    veth(&ns, "rs");
    veth(&ns, "rt");
    // No name: the host's is kept. A name ending in %d: the kernel picks the number.
    c.spec.args(&["sleep", "1000"]).set("/linux/netDevices", json!({"rsa": {}, "rta": {"name": "net%d"}}));
    ns.create(&c).ok();
    let out = c.invoke(&["exec", &c.id, "sh", "-c", "ip -o addr show dev rsa; ip -o link show dev net0"]);
    if c.rt.is_runc() {
        out.fails();
    } else {
        out.ok();
        assert!(out.stdout.contains("inet 10.123.0.1/24"), "{out}");
        assert!(out.stdout.contains("net0") && out.stdout.contains(",UP"), "{out}");
    }
    c.delete_force().ok();
    drop(ns);
    c.assert_no_leaks();
}

#[test]
fn netdev_refused() {
    // Each case: (name, netDevices, no network namespace?, field named by roci).
    let cases = [
        ("netdev_missing", json!({"nosuchdev0": {}}), false, "linux.netDevices.nosuchdev0"),
        ("netdev_clash", json!({"rfa": {"name": "lo"}}), false, "linux.netDevices.rfa"),
        ("netdev_bad_name", json!({"rfa": {"name": "a/b"}}), false, "linux.netDevices.rfa.name"),
        ("netdev_no_netns", json!({"rfa": {}}), true, "linux.netDevices"),
    ];
    for (name, devs, no_netns, field) in cases {
        let mut c = Container::new(name);
        let ns = Netns::new(&c.host);
        veth(&ns, "rf");
        c.spec.args(&["sleep", "1000"]).set("/linux/netDevices", devs);
        if no_netns {
            c.spec.remove_namespace("network");
        }
        let out = ns.create(&c);
        if c.rt.is_runc() {
            // runc 1.1.5 ignores linux.netDevices.
            out.ok();
            c.delete_force().ok();
        } else {
            out.fails().says(field);
        }
        drop(ns);
        c.assert_no_leaks();
    }
}
