//! Signal names and numbers as `kill` accepts them.

use nix::sys::signal::Signal;

/// Parse `KILL`, `SIGKILL`, `kill` or `9` (as runc does). Real-time signals
/// are accepted by number, or as `RTMIN+N`/`RTMAX-N`.
pub fn parse(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) { Ok(n) } else { Err(format!("invalid signal number {n}")) };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+').and_then(|n| n.parse::<i32>().ok()).ok_or(format!("unknown signal {s:?}"))?
        };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() { Ok(n) } else { Err(format!("unknown signal {s:?}")) };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('-').and_then(|n| n.parse::<i32>().ok()).ok_or(format!("unknown signal {s:?}"))?
        };
        let n = libc::SIGRTMAX() - off;
        return if n >= libc::SIGRTMIN() { Ok(n) } else { Err(format!("unknown signal {s:?}")) };
    }
    let full = format!("SIG{name}");
    full.parse::<Signal>().map(|sig| sig as i32).map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGKILL"), Ok(9));
        assert_eq!(parse("term"), Ok(15));
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("SIGUSR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("RTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert!(parse("0").is_err());
        assert!(parse("NOPE").is_err());
        assert!(parse("200").is_err());
    }
}
