//! A pod's network statistics, from inside its pinned network namespace.
//!
//! How: a short-lived thread of our own opens the pinned namespace file, `setns(CLONE_NEWNET)`s
//! into it, reads `/proc/thread-self/net/dev` and exits; the namespace change dies with the
//! thread. Never a pooled thread (tokio's workers or blocking pool): it would be left in the pod's
//! namespace for the next task. `/proc/self/net` would be wrong here: it shows the namespace of
//! the thread-group leader, not of the calling thread.
//!
//! Why not `/proc/<pid>/net/dev` of a process in the pod: the daemon holds the namespace by its
//! pinned file, not by a pid; the pause process is the monitor's child, may be gone while the
//! namespace lives on (it is pinned), and its pid could be reused between looking it up and
//! reading it, which would report another process's namespace. The file cannot be confused.
//!
//! containerd asks netlink (`RTM_GETLINK`, the same kernel counters `/proc/net/dev` prints:
//! `rx_bytes`, `rx_errors`, `tx_bytes`, `tx_errors`) inside the namespace the same way (on a
//! locked OS thread). Which interfaces, as containerd 2.x: every one but `lo`; the default one
//! `eth0`, else the first. containerd 1.6 reports `eth0` alone as the default interface (zeros,
//! with an error logged, when there is none) and no list.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use super::{now_nanos, Result, StatsError};

/// The name containerd takes for the pod's default interface (CNI's usual `eth0`).
const DEFAULT_INTERFACE: &str = "eth0";

/// runtime.v1 `NetworkInterfaceUsage`, with the packet and drop counters the metrics RPCs send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceUsage {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// runtime.v1 `NetworkUsage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkUsage {
    pub timestamp: i64,
    /// `eth0`, else the first of `interfaces`; `None` when the namespace has no interface but `lo`.
    pub default_interface: Option<InterfaceUsage>,
    /// Every interface but `lo`, in the kernel's order.
    pub interfaces: Vec<InterfaceUsage>,
}

/// The counters of every interface of the network namespace pinned at `netns`. Blocks for the
/// life of a short thread: from async code, call it in `spawn_blocking`.
pub fn read_network(netns: &Path) -> Result<NetworkUsage> {
    let io = |op, source| StatsError::Netns { netns: netns.to_owned(), op, source };
    // Opened here, so a missing namespace is reported before a thread is made.
    let file = File::open(netns).map_err(|e| io("open", e))?;
    let text = std::thread::Builder::new()
        .name("roci-netstats".into())
        .spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| ("setns(CLONE_NEWNET)", std::io::Error::from(e)))?;
            std::fs::read_to_string("/proc/thread-self/net/dev").map_err(|e| ("read /proc/thread-self/net/dev", e))
        })
        .map_err(|e| io("start a thread", e))?
        .join()
        .map_err(|_| StatsError::NetnsThread { netns: netns.to_owned() })?
        .map_err(|(op, e)| io(op, e))?;
    let timestamp = now_nanos();
    let interfaces: Vec<InterfaceUsage> = parse_net_dev(&text)
        .map_err(|(line, reason)| StatsError::NetDev { netns: PathBuf::from(netns), line, reason })?
        .into_iter()
        .filter(|i| i.name != "lo")
        .collect();
    tracing::debug!(netns = %netns.display(), interfaces = interfaces.len(), "read network statistics");
    let default_interface = interfaces.iter().find(|i| i.name == DEFAULT_INTERFACE).or_else(|| interfaces.first()).cloned();
    Ok(NetworkUsage { timestamp, default_interface, interfaces })
}

/// Parse `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets rx_errs rx_drop
/// rx_fifo rx_frame rx_compressed rx_multicast tx_bytes tx_packets tx_errs ...` per interface.
/// Errors give the 1-based line and why.
pub fn parse_net_dev(text: &str) -> std::result::Result<Vec<InterfaceUsage>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(2).filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |reason: String| (i + 1, reason);
        // Interface names cannot hold ':' (the kernel refuses them), so the first one ends it.
        let (name, counters) = line.split_once(':').ok_or_else(|| bad(format!("no `name:` in {line:?}")))?;
        let n: Vec<u64> = counters
            .split_whitespace()
            .map(|v| v.parse().map_err(|_| bad(format!("not a number: {v:?}"))))
            .collect::<std::result::Result<_, _>>()?;
        if n.len() < 16 {
            return Err(bad(format!("{} counters, expected 16", n.len())));
        }
        out.push(InterfaceUsage {
            name: name.trim().to_owned(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_dropped: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_dropped: n[11],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0
  eth0: 1234567     900    3    1    0     0          0         2   765432     800    4    0    0     0       0          0
vethabcdef12:12 1 0 0 0 0 0 0 34 1 5 0 0 0 0 0
";

    #[test]
    fn net_dev_columns() {
        let ifs = parse_net_dev(NET_DEV).unwrap();
        assert_eq!(ifs.len(), 3);
        assert_eq!(
            ifs[1],
            InterfaceUsage {
                name: "eth0".into(),
                rx_bytes: 1_234_567,
                rx_packets: 900,
                rx_errors: 3,
                rx_dropped: 1,
                tx_bytes: 765_432,
                tx_packets: 800,
                tx_errors: 4,
                tx_dropped: 0
            }
        );
        assert_eq!((ifs[2].name.as_str(), ifs[2].rx_bytes, ifs[2].tx_bytes, ifs[2].tx_errors), ("vethabcdef12", 12, 34, 5));
        assert_eq!(parse_net_dev("h1\nh2\n").unwrap(), []);
    }

    #[test]
    fn net_dev_errors_name_the_line() {
        let (line, reason) = parse_net_dev("h1\nh2\n  eth0: 1 2 3\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(reason.contains("3 counters"), "{reason}");
        let (line, reason) = parse_net_dev("h1\nh2\n  eth0 1 2 3\n").unwrap_err();
        assert!(line == 3 && reason.contains("no `name:`"), "{reason}");
        let (_, reason) = parse_net_dev(&NET_DEV.replace("1234567", "12x")).unwrap_err();
        assert!(reason.contains("\"12x\""), "{reason}");
    }

    #[test]
    fn a_missing_namespace_is_not_found() {
        let e = read_network(Path::new("/nonexistent/roci-netns")).unwrap_err();
        assert!(e.is_not_found() && e.to_string().contains("/nonexistent/roci-netns: open"), "{e}");
    }
}
