//! v1 `devices`: `devices.allow`, `devices.deny`, read back through
//! `devices.list`.
//!
//! The writes are the minimal transition from what `devices.list` shows to
//! the emulated target (see `cgroups/devices.rs`): on a new cgroup (which
//! inherits allow-all) that is `a` to `devices.deny`, then each allow
//! exception to `devices.allow`; on an update of an allow-list cgroup only
//! the access that changes, so running processes never see a moment of
//! deny-all. One rule per `write(2)`, as the kernel parses them.

use std::path::Path;

use crate::cgroups::devices::{DeviceRule, Emulator};
use crate::cgroups::{files, Error, Result};

const LIST: &str = "devices.list";

pub fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let target = Emulator::from_rules(rules)?;
    let current = load(dir)?;
    for rule in current.transition(&target) {
        let file = if rule.allow { "devices.allow" } else { "devices.deny" };
        files::write(dir, file, &rule.to_string())?;
    }
    // Read back what the kernel holds now: it must be the target, exactly
    // for an allow list (a deny list's exceptions cannot be read back, so
    // only its mode is checked). This catches a rule the kernel took
    // differently from the emulator, before the container runs with it.
    let after = load(dir)?;
    let same = if target.default_allow() { after.default_allow() } else { after == target };
    if !same {
        return Err(Error::Invalid {
            field: "linux.resources.devices",
            reason: format!(
                "{} does not match the requested rules after writing them (wanted {}, got {})",
                dir.join(LIST).display(),
                describe(&target),
                describe(&after)
            ),
        });
    }
    Ok(())
}

fn load(dir: &Path) -> Result<Emulator> {
    let text = files::read(dir, LIST)?;
    Emulator::from_list(&text).map_err(|reason| Error::Parse { path: dir.join(LIST), line: 0, reason })
}

fn describe(e: &Emulator) -> String {
    let mode = if e.default_allow() { "allow all except" } else { "deny all except" };
    let list: Vec<String> = e.exceptions().iter().map(ToString::to_string).collect();
    format!("{mode} [{}]", list.join(", "))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::cgroups::devices::tests::rules;

    /// A fake devices cgroup: what was written, and a `devices.list` the
    /// test sets to what the kernel would show afterwards.
    fn fake(list: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(LIST), list).unwrap();
        fs::write(t.path().join("devices.allow"), "").unwrap();
        fs::write(t.path().join("devices.deny"), "").unwrap();
        t
    }

    #[test]
    fn an_allow_list_already_in_place_is_not_written() {
        // (Which writes a change takes is tested with the transitions in
        // cgroups/devices.rs; a fake file keeps only the last write.)
        let t = fake("c 1:3 rwm\nc *:* m\n");
        apply(t.path(), &rules(&["deny a *:* rwm", "allow c *:* m", "allow c 1:3 rwm"])).unwrap();
        assert_eq!(fs::read_to_string(t.path().join("devices.allow")).unwrap(), "");
        assert_eq!(fs::read_to_string(t.path().join("devices.deny")).unwrap(), "");
    }

    #[test]
    fn a_mismatch_after_writing_is_an_error_naming_the_list() {
        // A fake kernel that ignores the writes: still allow-all.
        let t = fake("a *:* rwm\n");
        let e = apply(t.path(), &rules(&["deny a *:* rwm", "allow c 1:3 rwm"])).unwrap_err().to_string();
        assert!(e.contains("devices.list does not match"), "{e}");
        assert!(e.contains("wanted deny all except [c 1:3 rwm], got allow all except []"), "{e}");
        assert_eq!(fs::read_to_string(t.path().join("devices.allow")).unwrap(), "c 1:3 rwm");
        assert_eq!(fs::read_to_string(t.path().join("devices.deny")).unwrap(), "a *:* rwm");
        // A target deny list only needs the mode to match.
        apply(t.path(), &rules(&["allow a *:* rwm", "deny b 8:0 rwm"])).unwrap();
    }

    #[test]
    fn bad_rules_and_lists_fail_before_any_write() {
        let t = fake("a *:* rwm\n");
        let e = apply(t.path(), &rules(&["allow c *:* rwm", "deny c 1:5 r"])).unwrap_err();
        assert!(e.to_string().contains("punch a hole"), "{e}");
        let t = fake("garbage\n");
        let e = apply(t.path(), &rules(&["deny a *:* rwm"])).unwrap_err();
        assert!(e.to_string().contains("devices.list"), "{e}");
        assert_eq!(fs::read_to_string(t.path().join("devices.deny")).unwrap(), "");
    }
}
