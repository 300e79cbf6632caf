//! Poll a condition until a deadline instead of sleeping a fixed time.

use std::time::{Duration, Instant};

/// Poll `cond` (every 10 ms, backing off to 50 ms) until it holds or `timeout` passes.
/// Returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut step = Duration::from_millis(10);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
        step = (step * 2).min(Duration::from_millis(50));
    }
}

/// Like [`wait_for`], but panics naming what was awaited.
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(wait_for(timeout, cond), "timed out after {timeout:?} waiting for {what}");
}

/// Read a file once it exists and `accept` agrees it is complete (for files a container writes).
pub fn wait_file(path: &std::path::Path, timeout: Duration, accept: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let ok = wait_for(timeout, || match std::fs::read_to_string(path) {
        Ok(s) => {
            let done = accept(&s);
            last = s;
            done
        }
        Err(_) => false,
    });
    assert!(ok, "timed out after {timeout:?} waiting for {} (last content: {last:?})", path.display());
    last
}
