//! `linux.netDevices`: network interfaces of the runtime's network namespace
//! moved into the container's, under their new names.
//!
//! The move is one `RTM_NEWLINK` carrying the new name and the target
//! namespace (`IFLA_IFNAME` + `IFLA_NET_NS_FD`), so the name never clashes
//! in between. As the spec asks, the device is taken down first, its
//! permanent global addresses are added again inside (the kernel drops them
//! on the move) and it is brought up there. Nothing is done on delete: the
//! spec forbids moving it back; when the namespace dies the kernel returns a
//! physical device to the initial namespace and destroys a virtual one.
//!
//! Hand-written rtnetlink over a raw netlink socket (through nix, no
//! `unsafe`): the four requests needed are a few dozen bytes each, while the
//! rtnetlink crates are built for an async runtime this library does not
//! have.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use oci_spec::runtime::{Linux, LinuxNamespaceType};

#[derive(Debug, thiserror::Error)]
#[error("linux.netDevices.{name}: {op}: {source}")]
pub struct Error {
    pub name: String,
    pub op: String,
    pub source: std::io::Error,
}

/// Interface names the kernel accepts (`dev_valid_name`).
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// Checks before anything is made: (field, reason).
pub fn validate(linux: &Linux) -> Result<(), (String, String)> {
    let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else { return Ok(()) };
    let new_net = linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
    if !new_net {
        return Err(("linux.netDevices".into(), "moving devices needs a new network namespace".into()));
    }
    let mut targets = std::collections::HashSet::new();
    for (host, dev) in devs {
        if !valid_name(host) {
            return Err((format!("linux.netDevices.{host}"), "not a valid interface name".into()));
        }
        let target = dev.name().as_deref().unwrap_or(host);
        if !valid_name(target) {
            return Err((format!("linux.netDevices.{host}.name"), format!("{target:?} is not a valid interface name")));
        }
        if !targets.insert(target.to_owned()) {
            return Err((format!("linux.netDevices.{host}.name"), format!("{target:?} is given to two devices")));
        }
    }
    Ok(())
}

/// Move every device into the network namespace of `pid` (the container's
/// init, which has made it).
pub fn move_all(linux: &Linux, pid: nix::unistd::Pid) -> Result<(), Error> {
    let Some(devs) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else { return Ok(()) };
    let err = |name: &str, op: &str| {
        let (name, op) = (name.to_owned(), op.to_owned());
        move |e: nix::Error| Error { name, op, source: e.into() }
    };
    let target = nix::fcntl::open(
        format!("/proc/{pid}/ns/net").as_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(err("", "open the container's network namespace"))?;
    let host = Netlink::open().map_err(err("", "open a netlink socket"))?;
    let inside = Netlink::open_in(target.as_fd()).map_err(err("", "open a netlink socket in the container's namespace"))?;
    let mut names: Vec<&String> = devs.keys().collect();
    names.sort();
    for name in names {
        let new_name = devs[name].name().clone().unwrap_or_else(|| name.clone());
        let index = host.index_of(name).map_err(err(name, "find the device in the runtime's network namespace"))?;
        tracing::debug!(device = %name, %new_name, index, "move network device into the container");
        host.set_up(index, false).map_err(err(name, "set it down"))?;
        let addrs = host.permanent_global_addresses(index).map_err(err(name, "list its addresses"))?;
        // Rename and move in one request.
        let mut attrs = Vec::new();
        push_attr(&mut attrs, IFLA_IFNAME, &nul_terminated(&new_name));
        push_attr(&mut attrs, IFLA_NET_NS_FD, &(target.as_raw_fd() as u32).to_ne_bytes());
        host.request(RTM_NEWLINK, 0, &ifinfomsg(index, 0, 0), &attrs).map_err(err(name, "move it"))?;
        // A name ending in %d is a template the kernel fills in; the move
        // keeps the index when the container's namespace has it free.
        let new_index = match inside.index_of(&new_name) {
            Err(_) if new_name.contains("%d") && inside.has_index(index) => index,
            r => r.map_err(err(name, "find it in the container"))?,
        };
        for a in &addrs {
            inside
                .request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &a.with_index(new_index), &a.attrs)
                .map_err(err(name, "add its address in the container"))?;
        }
        inside.set_up(new_index, true).map_err(err(name, "set it up in the container"))?;
    }
    Ok(())
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;
const RT_SCOPE_UNIVERSE: u8 = 0;
const IFF_UP: u32 = 0x1;

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(buf: &mut Vec<u8>, typ: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(align4(buf.len()), 0);
}

/// `struct ifinfomsg`.
fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut m = vec![0u8; 4]; // family AF_UNSPEC, pad, type
    m.extend_from_slice(&index.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&change.to_ne_bytes());
    m
}

/// Iterate the attributes in `buf`: (type, data).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let typ = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let data = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((typ, data))
    })
}

/// An address to add again after the move: its `ifaddrmsg` and the
/// attributes that define it.
struct Address {
    msg: [u8; 8],
    attrs: Vec<u8>,
}

impl Address {
    fn with_index(&self, index: i32) -> Vec<u8> {
        let mut m = self.msg.to_vec();
        m[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
        m
    }
}

struct Netlink {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

impl Netlink {
    fn open() -> nix::Result<Netlink> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        Ok(Netlink { fd, seq: std::cell::Cell::new(1) })
    }

    /// A socket bound to the namespace `ns`: made there, then this thread
    /// returns to its own namespace (the library is single-threaded).
    fn open_in(ns: std::os::fd::BorrowedFd<'_>) -> nix::Result<Netlink> {
        let own = nix::fcntl::open(
            "/proc/thread-self/ns/net",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        setns(ns, CloneFlags::CLONE_NEWNET)?;
        let sock = Netlink::open();
        setns(own.as_fd(), CloneFlags::CLONE_NEWNET)?;
        sock
    }

    fn send(&self, typ: u16, flags: u16, body: &[u8], attrs: &[u8]) -> nix::Result<u32> {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let len = 16 + body.len() + attrs.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&typ.to_ne_bytes());
        m.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m.extend_from_slice(attrs);
        send(self.fd.as_raw_fd(), &m, MsgFlags::empty())?;
        Ok(seq)
    }

    /// Read the replies to `seq`, handing each message (type, payload) to
    /// `each`, until the ack or the end of a dump; an error reply is returned.
    fn replies(&self, seq: u32, mut each: impl FnMut(u16, &[u8])) -> nix::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            let mut msgs = &buf[..n];
            while msgs.len() >= 16 {
                let len = u32::from_ne_bytes(msgs[0..4].try_into().unwrap()) as usize;
                let typ = u16::from_ne_bytes([msgs[4], msgs[5]]);
                let mseq = u32::from_ne_bytes(msgs[8..12].try_into().unwrap());
                if len < 16 || len > msgs.len() {
                    return Err(nix::Error::EBADMSG);
                }
                let payload = &msgs[16..len];
                msgs = &msgs[align4(len).min(msgs.len())..];
                if mseq != seq {
                    continue;
                }
                match typ {
                    NLMSG_ERROR => {
                        let code = i32::from_ne_bytes(payload.get(0..4).ok_or(nix::Error::EBADMSG)?.try_into().unwrap());
                        return if code == 0 { Ok(()) } else { Err(nix::Error::from_raw(-code)) };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => each(typ, payload),
                }
            }
        }
    }

    fn request(&self, typ: u16, flags: u16, body: &[u8], attrs: &[u8]) -> nix::Result<()> {
        let seq = self.send(typ, flags | NLM_F_ACK, body, attrs)?;
        self.replies(seq, |_, _| {})
    }

    fn set_up(&self, index: i32, up: bool) -> nix::Result<()> {
        self.request(RTM_NEWLINK, 0, &ifinfomsg(index, if up { IFF_UP } else { 0 }, IFF_UP), &[])
    }

    /// The index of the interface named `name` in this socket's namespace.
    fn index_of(&self, name: &str) -> nix::Result<i32> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, IFLA_IFNAME, &nul_terminated(name));
        let seq = self.send(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(0, 0, 0), &attrs)?;
        let mut index = None;
        self.replies(seq, |typ, p| {
            if typ == RTM_NEWLINK && p.len() >= 16 {
                index = Some(i32::from_ne_bytes(p[4..8].try_into().unwrap()));
            }
        })?;
        index.ok_or(nix::Error::ENODEV)
    }

    /// Whether an interface has index `index` in this socket's namespace.
    fn has_index(&self, index: i32) -> bool {
        self.send(RTM_GETLINK, NLM_F_ACK, &ifinfomsg(index, 0, 0), &[]).and_then(|seq| self.replies(seq, |_, _| {})).is_ok()
    }

    /// The device's permanent addresses of global scope (of any family).
    fn permanent_global_addresses(&self, index: i32) -> nix::Result<Vec<Address>> {
        let seq = self.send(RTM_GETADDR, NLM_F_DUMP, &[0u8; 8], &[])?;
        let mut out = Vec::new();
        self.replies(seq, |typ, p| {
            if typ != RTM_NEWADDR || p.len() < 8 {
                return;
            }
            let msg: [u8; 8] = p[0..8].try_into().unwrap();
            let (scope, ifindex) = (msg[3], u32::from_ne_bytes(msg[4..8].try_into().unwrap()));
            if ifindex != index as u32 || scope != RT_SCOPE_UNIVERSE {
                return;
            }
            let mut flags = msg[2] as u32;
            let mut keep = Vec::new();
            for (t, d) in attrs(&p[8..]) {
                match t {
                    IFA_FLAGS if d.len() == 4 => flags = u32::from_ne_bytes(d.try_into().unwrap()),
                    IFA_ADDRESS | IFA_LOCAL => push_attr(&mut keep, t, d),
                    _ => {}
                }
            }
            if flags & IFA_F_PERMANENT != 0 {
                out.push(Address { msg, attrs: keep });
            }
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netdev_names() {
        assert!(valid_name("eth0") && valid_name("a.b-c_d"));
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn netdev_attrs_round_trip() {
        let mut b = Vec::new();
        push_attr(&mut b, IFLA_IFNAME, &nul_terminated("eth1"));
        push_attr(&mut b, IFLA_NET_NS_FD, &7u32.to_ne_bytes());
        let got: Vec<(u16, Vec<u8>)> = attrs(&b).map(|(t, d)| (t, d.to_vec())).collect();
        assert_eq!(got, [(IFLA_IFNAME, b"eth1\0".to_vec()), (IFLA_NET_NS_FD, 7u32.to_ne_bytes().to_vec())]);
    }
}
