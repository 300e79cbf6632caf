//! `events`: the container's cgroup statistics, once (`--stats`) or as a
//! stream every interval, with an `oom` event whenever the OOM killer acts
//! in the container (runc's JSON lines).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{status, Error, Result, Status};
use crate::state;

fn load(root: &Path, id: &str) -> Result<state::Saved> {
    let dir = root.join(id);
    if !dir.is_dir() {
        return Err(state::Error::NotExist(id.to_owned()).into());
    }
    let saved = state::load(&dir)?.ok_or_else(|| Error::Status(format!("container {id} is still being created")))?;
    if status(&dir, Some(&saved)) == Status::Stopped {
        return Err(Error::Status("container not running".into()));
    }
    Ok(saved)
}

/// One `{"type":"stats"}` event.
pub fn stats(root: &Path, id: &str) -> Result<serde_json::Value> {
    let saved = load(root, id)?;
    let s = super::need_cgroup(&saved, "read statistics of")?.stats()?;
    Ok(json!({ "type": "stats", "id": id, "data": s }))
}

/// Write stats every `interval` and OOM events as they happen to `out`,
/// until the container stops.
pub fn stream(root: &Path, id: &str, interval: Duration, out: &mut impl Write) -> Result<()> {
    let saved = load(root, id)?;
    let cg = super::need_cgroup(&saved, "read statistics of")?;
    let mut oom = cg.oom_notifier().ok();
    let dir = root.join(id);
    let mut next = Instant::now();
    loop {
        if !dir.is_dir() || status(&dir, Some(&saved)) == Status::Stopped {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next {
            let s = cg.stats()?;
            emit(out, &json!({ "type": "stats", "id": id, "data": s }))?;
            next = now + interval;
        }
        // Wake for OOM events or the next tick, whichever is first; check
        // the container's liveness at least every second.
        let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        match oom.as_mut() {
            Some(n) => {
                let ev = n.wait(Some(wait))?;
                for _ in 0..ev.count {
                    emit(out, &json!({ "type": "oom", "id": id }))?;
                }
                if ev.cgroup_removed {
                    oom = None;
                }
            }
            None => std::thread::sleep(wait),
        }
    }
}

fn emit(out: &mut impl Write, v: &serde_json::Value) -> Result<()> {
    writeln!(out, "{v}").and_then(|_| out.flush()).map_err(|source| Error::Io {
        op: "write event to",
        path: "stdout".into(),
        source,
    })
}
