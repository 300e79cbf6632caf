//! v2 freezer: `cgroup.freeze` (the requested state, 5.2+) and the
//! `frozen` line of `cgroup.events` (the reached state).
//!
//! Two uses, as in v1: `pause` ([`freeze`], which waits for `frozen 1` and
//! thaws again when it does not come) and `destroy` ([`try_freeze`]).

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cgroups::{files, Error, Result};

const FREEZE: &str = "cgroup.freeze";
const EVENTS: &str = "cgroup.events";

/// How long [`freeze`] waits for `frozen 1` (runc waits 1000 × 10 ms).
pub(crate) const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

fn frozen(dir: &Path) -> Result<bool> {
    let events = files::read(dir, EVENTS)?;
    Ok(events.lines().any(|l| l.trim() == "frozen 1"))
}

/// Freeze the cgroup and wait until `cgroup.events` says `frozen 1`. A
/// cgroup the kernel does not freeze in [`FREEZE_TIMEOUT`] is thawed again,
/// and the error names `cgroup.events`.
pub fn freeze(dir: &Path) -> Result<()> {
    freeze_within(dir, FREEZE_TIMEOUT)
}

fn freeze_within(dir: &Path, timeout: Duration) -> Result<()> {
    if !files::exists(dir, FREEZE) {
        return Err(Error::Unsupported(format!("freezing ({} is missing: kernel before 5.2?)", dir.join(FREEZE).display())));
    }
    files::write(dir, FREEZE, "1")?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    let result = loop {
        match frozen(dir) {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() >= deadline => {
                break Err(Error::Timeout { op: "freeze", path: dir.join(EVENTS), waited: timeout, state: "frozen 0".into() })
            }
            Ok(false) => {}
            Err(e) => break Err(e),
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    if let Err(e) = files::write(dir, FREEZE, "0") {
        tracing::warn!(error = %e, "thawing after a failed freeze failed too");
    }
    result
}

/// Freeze and wait (up to a second) for `frozen 1`. `false` when the kernel
/// has no `cgroup.freeze`. Not freezing in time is not an error: the
/// caller kills anyway.
pub fn try_freeze(dir: &Path) -> Result<bool> {
    if !files::exists(dir, FREEZE) {
        return Ok(false);
    }
    files::write(dir, FREEZE, "1")?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pause = Duration::from_millis(1);
    loop {
        let events = files::read_opt(dir, EVENTS)?.unwrap_or_default();
        if events.lines().any(|l| l.trim() == "frozen 1") || Instant::now() >= deadline {
            return Ok(true);
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

pub fn thaw(dir: &Path) -> Result<()> {
    files::write(dir, FREEZE, "0")
}

/// Whether the cgroup was asked to freeze (`cgroup.freeze` 1), as runc
/// reports it; a cgroup frozen only through an ancestor is not. `false`
/// without `cgroup.freeze`.
pub fn is_frozen(dir: &Path) -> Result<bool> {
    match files::read_opt(dir, FREEZE)?.as_deref().map(str::trim) {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(Error::Parse { path: dir.join(FREEZE), line: 1, reason: format!("unknown value {other:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn freeze_waits_for_the_event_and_reads_the_request() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(FREEZE), "0\n").unwrap();
        fs::write(t.path().join(EVENTS), "populated 1\nfrozen 1\n").unwrap();
        freeze(t.path()).unwrap();
        assert!(is_frozen(t.path()).unwrap());
        thaw(t.path()).unwrap();
        assert!(!is_frozen(t.path()).unwrap());
        fs::write(t.path().join(FREEZE), "2\n").unwrap();
        assert!(is_frozen(t.path()).unwrap_err().to_string().contains("cgroup.freeze"));
    }

    #[test]
    fn a_cgroup_that_does_not_freeze_in_time_is_thawed_again() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(FREEZE), "0\n").unwrap();
        fs::write(t.path().join(EVENTS), "populated 1\nfrozen 0\n").unwrap();
        let e = freeze_within(t.path(), Duration::from_millis(30)).unwrap_err();
        assert!(e.to_string().contains("cgroup.events: still frozen 0 after 30ms"), "{e}");
        assert!(!is_frozen(t.path()).unwrap());
    }

    #[test]
    fn without_cgroup_freeze_it_is_unsupported() {
        let t = tempfile::tempdir().unwrap();
        let e = freeze(t.path()).unwrap_err();
        assert!(e.to_string().contains("cgroup.freeze is missing"), "{e}");
        assert!(!is_frozen(t.path()).unwrap());
        assert!(!try_freeze(t.path()).unwrap());
    }
}
