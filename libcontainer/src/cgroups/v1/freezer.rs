//! v1 `freezer`: `freezer.state` (`THAWED`, `FREEZING`, `FROZEN`) and
//! `freezer.self_freezing`.
//!
//! Two uses: `pause` ([`freeze`], which must succeed or leave the cgroup
//! thawed) and `destroy` ([`try_freeze`], which stops the tasks while they
//! are listed and killed, so none can fork one the list misses, and goes on
//! killing when freezing does not finish).

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::cgroups::{files, Error, Result};

const STATE: &str = "freezer.state";
const SELF_FREEZING: &str = "freezer.self_freezing";

/// How long [`freeze`] keeps trying before it gives up and thaws.
pub(crate) const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Freeze the cgroup and wait until `freezer.state` reads `FROZEN`.
///
/// A v1 cgroup whose tasks keep forking (or that processes keep joining)
/// can stay in `FREEZING`. As runc does, the write is repeated, with an
/// occasional thaw and pause to let the newcomers settle (every 50 tries),
/// until [`FREEZE_TIMEOUT`]; then the cgroup is thawed (a half-frozen
/// container is worse than a running one) and the error names the file.
pub fn freeze(dir: &Path) -> Result<()> {
    freeze_within(dir, FREEZE_TIMEOUT)
}

fn freeze_within(dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    let mut tries = 0u32;
    let result = loop {
        tries += 1;
        if tries.is_multiple_of(50) {
            files::write(dir, STATE, "THAWED")?;
            sleep(Duration::from_millis(10));
        }
        if let Err(e) = files::write(dir, STATE, "FROZEN") {
            break Err(e);
        }
        match files::read(dir, STATE) {
            Ok(s) if s.trim() == "FROZEN" => {
                if tries > 1 {
                    tracing::debug!(path = %dir.display(), tries, "frozen after retries");
                }
                return Ok(());
            }
            Ok(s) if s.trim() == "FREEZING" => {}
            Ok(s) => {
                break Err(Error::Parse {
                    path: dir.join(STATE),
                    line: 1,
                    reason: format!("unexpected state {s:?} while freezing"),
                })
            }
            Err(e) => break Err(e),
        }
        if Instant::now() >= deadline {
            break Err(Error::Timeout { op: "freeze", path: dir.join(STATE), waited: timeout, state: "FREEZING".into() });
        }
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    if let Err(e) = files::write(dir, STATE, "THAWED") {
        tracing::warn!(error = %e, "thawing after a failed freeze failed too");
    }
    result
}

/// Freeze and wait (up to a second) until the kernel reports it frozen.
/// `false` when `dir` has no freezer (not a freezer hierarchy, or gone).
/// Not freezing in time is not an error: the caller kills anyway.
pub fn try_freeze(dir: &Path) -> Result<bool> {
    if !files::exists(dir, STATE) {
        return Ok(false);
    }
    files::write(dir, STATE, "FROZEN")?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pause = Duration::from_millis(1);
    while files::read_opt(dir, STATE)?.is_some_and(|s| s != "FROZEN") && Instant::now() < deadline {
        sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    Ok(true)
}

pub fn thaw(dir: &Path) -> Result<()> {
    files::write(dir, STATE, "THAWED")
}

/// Whether the cgroup itself was frozen (`pause`d). A cgroup frozen only
/// because an ancestor is (`freezer.self_freezing` 0) is not, as in runc;
/// `FREEZING` is waited out (a few milliseconds, up to a second).
pub fn is_frozen(dir: &Path) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let state = files::read(dir, STATE)?;
        match state.trim() {
            "THAWED" => return Ok(false),
            "FROZEN" => {
                return match files::read_opt(dir, SELF_FREEZING)?.as_deref().map(str::trim) {
                    None | Some("1") => Ok(true),
                    Some("0") => Ok(false),
                    Some(other) => {
                        Err(Error::Parse { path: dir.join(SELF_FREEZING), line: 1, reason: format!("unknown value {other:?}") })
                    }
                }
            }
            "FREEZING" if Instant::now() < deadline => sleep(Duration::from_millis(1)),
            "FREEZING" => return Ok(true),
            other => return Err(Error::Parse { path: dir.join(STATE), line: 1, reason: format!("unknown state {other:?}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn fake(state: &str, self_freezing: Option<&str>) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(STATE), state).unwrap();
        if let Some(s) = self_freezing {
            fs::write(t.path().join(SELF_FREEZING), s).unwrap();
        }
        t
    }

    #[test]
    fn state_and_self_freezing() {
        assert!(!is_frozen(fake("THAWED\n", Some("0\n")).path()).unwrap());
        assert!(is_frozen(fake("FROZEN\n", Some("1\n")).path()).unwrap());
        assert!(!is_frozen(fake("FROZEN\n", Some("0\n")).path()).unwrap(), "frozen by a parent");
        assert!(is_frozen(fake("FROZEN\n", None).path()).unwrap(), "old kernel");
        let e = is_frozen(fake("MELTING\n", None).path()).unwrap_err();
        assert!(e.to_string().contains("freezer.state"), "{e}");
        assert!(is_frozen(Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn a_file_that_takes_the_write_is_frozen_at_once() {
        let t = fake("THAWED\n", Some("0\n"));
        freeze(t.path()).unwrap();
        assert_eq!(files::read(t.path(), STATE).unwrap(), "FROZEN");
        thaw(t.path()).unwrap();
        assert_eq!(files::read(t.path(), STATE).unwrap(), "THAWED");
    }

    #[test]
    fn a_missing_freezer_fails_naming_the_file() {
        let t = tempfile::tempdir().unwrap();
        let e = freeze(t.path()).unwrap_err();
        assert!(e.to_string().contains("freezer.state"), "{e}");
        assert!(!try_freeze(t.path()).unwrap());
    }
}
