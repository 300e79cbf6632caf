//! Device access rules (`linux.resources.devices`), the same for both
//! cgroup versions: the rule type, the effective list a container gets
//! ([`device_rules`]), and an emulator of the v1 devices controller that
//! turns any rule list into a normalised state.
//!
//! # Security
//!
//! The device rules are what stops a root process in a container from
//! opening the host's disks (`b 8:0`) or `/dev/mem`, or `mknod`-ing and then
//! opening them. Two choices here are made for that:
//!
//! - Both versions go through the [`Emulator`], as runc's do: the v1 writes
//!   are the minimal transition from the cgroup's current `devices.list` to
//!   the emulated target, and the v2 BPF program is generated from the
//!   emulated target. So a rule list means the same on both versions, and a
//!   rule the kernel would silently ignore — a deny that punches a hole into a
//!   wildcard allow (`allow c *:* rwm` then `deny c 1:5 rwm`: v1 keeps only
//!   whole exceptions) — is refused instead of leaving the container with
//!   more access than its config reads.
//! - After the v1 writes, `devices.list` is read back and must equal the
//!   target (allow-list mode), or at least be in the target's mode.
//!
//! # The effective list
//!
//! As runc does, [`device_rules`] appends its default allow list after the
//! spec's rules, so a config cannot take away `/dev/null` and friends (nor
//! `mknod` of any node: access to a node still needs its own rule). Unlike
//! runc 1.1 (checked on the test host: it adds no rule for `linux.devices`,
//! and drops a default whose path a `linux.devices` entry repeats, so
//! `linux.devices: [/dev/tty]` ends up denying `/dev/tty`), roci adds an
//! `rwm` allow rule for every `linux.devices` entry: the runtime spec says
//! those devices MUST be available in the container.

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::{Error, Result};

/// Which devices a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceKind {
    /// `a`: every device, whatever the numbers and access in the rule (the
    /// kernel's v1 controller reads nothing after the `a`).
    All,
    /// `b`
    Block,
    /// `c` (and `u` in `linux.devices`)
    Char,
}

impl DeviceKind {
    fn letter(self) -> char {
        match self {
            DeviceKind::All => 'a',
            DeviceKind::Block => 'b',
            DeviceKind::Char => 'c',
        }
    }
}

/// A set of `r` (read), `w` (write), `m` (mknod).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(u8);

impl Access {
    pub const NONE: Access = Access(0);
    pub const READ: Access = Access(1);
    pub const WRITE: Access = Access(2);
    pub const MKNOD: Access = Access(4);
    pub const RWM: Access = Access(7);

    /// Parse `rwm`-style text (any order, repeats allowed); `None` for an
    /// empty string or any other character.
    pub fn parse(s: &str) -> Option<Access> {
        let mut a = Access::NONE;
        for c in s.chars() {
            a = a.union(match c {
                'r' => Access::READ,
                'w' => Access::WRITE,
                'm' => Access::MKNOD,
                _ => return None,
            });
        }
        (!a.is_empty()).then_some(a)
    }

    pub const fn union(self, o: Access) -> Access {
        Access(self.0 | o.0)
    }

    pub const fn intersection(self, o: Access) -> Access {
        Access(self.0 & o.0)
    }

    pub const fn difference(self, o: Access) -> Access {
        Access(self.0 & !o.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn contains(self, o: Access) -> bool {
        self.0 & o.0 == o.0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [(Access::READ, 'r'), (Access::WRITE, 'w'), (Access::MKNOD, 'm')] {
            if self.contains(bit) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Access({self})")
    }
}

/// One device cgroup rule: allow or deny `access` to the devices of `kind`
/// with these numbers (`None`: any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

impl DeviceRule {
    const fn allow_char(major: u32, minor: Option<u32>, access: Access) -> DeviceRule {
        DeviceRule { allow: true, kind: DeviceKind::Char, major: Some(major), minor, access }
    }
}

/// The v1 `devices.allow`/`devices.deny` syntax: `c 1:3 rwm`, `a *:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        write!(f, "{} {}:{} {}", self.kind.letter(), num(self.major), num(self.minor), self.access)
    }
}

/// The devices every container may use, appended after the spec's rules:
/// runc's `AllowedDevices`, as runc 1.1.5 writes them on the test host
/// (`devices.list` of a `runc run` container): mknod of any char or block
/// node, `/dev/null` 1:3, `/dev/random` 1:8, `/dev/full` 1:7, `/dev/tty`
/// 5:0, `/dev/zero` 1:5, `/dev/urandom` 1:9, the pty slaves 136:*,
/// `/dev/ptmx` 5:2, and `/dev/net/tun` 10:200 (runc 1.2.0-rc dropped tun
/// and 1.2.0 put it back). No `/dev/console` 5:1: the console a container
/// gets is a pty slave, covered by 136:*.
pub const DEFAULT_ALLOWED: &[DeviceRule] = &[
    DeviceRule { allow: true, kind: DeviceKind::Char, major: None, minor: None, access: Access::MKNOD },
    DeviceRule { allow: true, kind: DeviceKind::Block, major: None, minor: None, access: Access::MKNOD },
    DeviceRule::allow_char(1, Some(3), Access::RWM),
    DeviceRule::allow_char(1, Some(8), Access::RWM),
    DeviceRule::allow_char(1, Some(7), Access::RWM),
    DeviceRule::allow_char(5, Some(0), Access::RWM),
    DeviceRule::allow_char(1, Some(5), Access::RWM),
    DeviceRule::allow_char(1, Some(9), Access::RWM),
    DeviceRule::allow_char(136, None, Access::RWM),
    DeviceRule::allow_char(5, Some(2), Access::RWM),
    DeviceRule::allow_char(10, Some(200), Access::RWM),
];

const RESOURCES_FIELD: &str = "linux.resources.devices";
const DEVICES_FIELD: &str = "linux.devices";

/// The rules a container's cgroup gets, in order: `linux.resources.devices`
/// as written, then [`DEFAULT_ALLOWED`], then an `rwm` allow rule for each
/// `linux.devices` entry (fifos need none). Errors name the field and the
/// entry's index: an empty or unknown `access` (runc refuses an empty one
/// too), a type other than `a`, `b`, `c` in a rule, a negative number (other
/// than runc's `-1`, taken as "any" in a rule) or one above 2^32-1.
pub fn device_rules(resources_devices: &[LinuxDeviceCgroup], linux_devices: &[LinuxDevice]) -> Result<Vec<DeviceRule>> {
    let mut out = Vec::with_capacity(resources_devices.len() + DEFAULT_ALLOWED.len() + linux_devices.len());
    for (i, d) in resources_devices.iter().enumerate() {
        let invalid = |reason: String| Error::Invalid { field: RESOURCES_FIELD, reason: format!("entry {i} ({d}): {reason}") };
        let kind = match d.typ() {
            None | Some(LinuxDeviceType::A) => DeviceKind::All,
            Some(LinuxDeviceType::B) => DeviceKind::Block,
            Some(LinuxDeviceType::C) => DeviceKind::Char,
            Some(t) => return Err(invalid(format!("type {:?} is not one of a, b, c", t.as_str()))),
        };
        let access = d.access().as_deref().unwrap_or("");
        let access =
            Access::parse(access).ok_or_else(|| invalid(format!("access {access:?} is not a non-empty mix of r, w, m")))?;
        let num = |n: Option<i64>, what: &str| match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| invalid(format!("{what} {n} is out of range"))),
        };
        out.push(DeviceRule { allow: d.allow(), kind, major: num(d.major(), "major")?, minor: num(d.minor(), "minor")?, access });
    }
    out.extend_from_slice(DEFAULT_ALLOWED);
    for (i, d) in linux_devices.iter().enumerate() {
        let invalid = |reason: String| Error::Invalid {
            field: DEVICES_FIELD,
            reason: format!("entry {i} ({}): {reason}", d.path().display()),
        };
        let kind = match d.typ() {
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::P => continue,
            LinuxDeviceType::A => return Err(invalid("type \"a\" is not a device node type (b, c, u, p)".into())),
        };
        let num = |n: i64, what: &str| u32::try_from(n).map_err(|_| invalid(format!("{what} {n} is out of range")));
        out.push(DeviceRule {
            allow: true,
            kind,
            major: Some(num(d.major(), "major")?),
            minor: Some(num(d.minor(), "minor")?),
            access: Access::RWM,
        });
    }
    Ok(out)
}

/// What a non-`a` rule matches: type and numbers. Ordered as runc orders
/// its output (major, minor, type; "any" first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Meta {
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub kind: DeviceKind,
}

/// The state of a v1 devices cgroup: a default (allow all, "deny list"
/// mode; or deny all, "allow list" mode) and the exceptions to it, each with
/// the access it covers. A rule is applied as the kernel's v1 controller
/// applies a write to `devices.allow`/`devices.deny` (runc's
/// `devices.Emulator`, rewritten from its documented behaviour):
///
/// - an `a` rule resets everything: allow → allow-all, deny → deny-all;
/// - a rule in the default's direction removes its access from the
///   exception with exactly its type and numbers, and is refused when a
///   wildcard exception covering it shares any of that access (v1 would
///   keep the wildcard and silently ignore the rule);
/// - a rule against the default adds its access to that exception.
///
/// It also keeps the exceptions in the order the kernel lists them: a new
/// exception goes to the end, one merged into an existing exception keeps
/// its place, an emptied one leaves the list. So a new cgroup's
/// `devices.list` shows the rules in the order the config gives them, as
/// runtime-spec asks ("the runtime MUST apply entries in the listed
/// order"). Two states are equal when they allow the same, in any order.
#[derive(Debug, Clone, Default)]
pub struct Emulator {
    default_allow: bool,
    exceptions: BTreeMap<Meta, Access>,
    /// The keys of `exceptions`, in list order.
    order: Vec<Meta>,
}

impl PartialEq for Emulator {
    fn eq(&self, other: &Emulator) -> bool {
        self.default_allow == other.default_allow && self.exceptions == other.exceptions
    }
}

impl Eq for Emulator {}

impl Emulator {
    /// The state of a fresh allow-list: deny everything.
    pub fn deny_all() -> Emulator {
        Emulator::default()
    }

    /// The state after applying `rules`, in order, to a deny-all cgroup.
    pub fn from_rules(rules: &[DeviceRule]) -> Result<Emulator> {
        let mut e = Emulator::deny_all();
        for r in rules {
            e.apply(r)?;
        }
        Ok(e)
    }

    /// Whether everything not excepted is allowed ("deny list" mode).
    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// The exceptions to the default, in list order, each as a rule with
    /// the opposite verdict.
    pub fn exceptions(&self) -> Vec<DeviceRule> {
        self.order
            .iter()
            .map(|m| DeviceRule {
                allow: !self.default_allow,
                kind: m.kind,
                major: m.major,
                minor: m.minor,
                access: self.exceptions[m],
            })
            .collect()
    }

    pub fn apply(&mut self, rule: &DeviceRule) -> Result<()> {
        if rule.kind == DeviceKind::All {
            *self = Emulator { default_allow: rule.allow, ..Emulator::default() };
            return Ok(());
        }
        let meta = Meta { major: rule.major, minor: rule.minor, kind: rule.kind };
        if rule.allow == self.default_allow {
            self.remove(meta, rule)
        } else {
            let e = self.exceptions.entry(meta).or_insert_with(|| {
                self.order.push(meta);
                Access::NONE
            });
            *e = e.union(rule.access);
            Ok(())
        }
    }

    fn remove(&mut self, meta: Meta, rule: &DeviceRule) -> Result<()> {
        let wider = [Meta { major: None, ..meta }, Meta { minor: None, ..meta }, Meta { major: None, minor: None, ..meta }];
        for w in wider {
            if w == meta {
                continue;
            }
            let shared = self.exceptions.get(&w).copied().unwrap_or_default().intersection(rule.access);
            if !shared.is_empty() {
                let wide = DeviceRule {
                    allow: !self.default_allow,
                    kind: w.kind,
                    major: w.major,
                    minor: w.minor,
                    access: self.exceptions[&w],
                };
                return Err(Error::Invalid {
                    field: RESOURCES_FIELD,
                    reason: format!(
                        "{} {rule} would punch a hole into the earlier wildcard {} {wide}, which cgroup v1 cannot represent \
                         (it would silently keep the wildcard)",
                        verdict(rule.allow),
                        verdict(wide.allow)
                    ),
                });
            }
        }
        if let Some(old) = self.exceptions.get_mut(&meta) {
            *old = old.difference(rule.access);
            if old.is_empty() {
                self.exceptions.remove(&meta);
                self.order.retain(|m| *m != meta);
            }
        }
        Ok(())
    }

    /// The state a v1 `devices.list` shows. A deny-list cgroup lists only
    /// `a *:* rwm`, whatever its deny exceptions: they cannot be read back,
    /// so [`Emulator::transition`] always resets such a cgroup.
    pub fn from_list(text: &str) -> std::result::Result<Emulator, String> {
        let mut e = Emulator::deny_all();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let rule = parse_list_line(line).ok_or_else(|| format!("malformed line {line:?}"))?;
            e.apply(&rule).map_err(|err| format!("line {line:?}: {err}"))?;
        }
        Ok(e)
    }

    /// The fewest writes that take a v1 cgroup from `self` to `target`: a
    /// reset (`a`) only when the mode changes or `self` is a deny list, then
    /// the access `target` drops, then the access it gains, in `target`'s
    /// list order (after a reset the kernel's list then has that order).
    pub fn transition(&self, target: &Emulator) -> Vec<DeviceRule> {
        let mut out = Vec::new();
        let empty = BTreeMap::new();
        let old = if self.default_allow || self.default_allow != target.default_allow {
            out.push(DeviceRule {
                allow: target.default_allow,
                kind: DeviceKind::All,
                major: None,
                minor: None,
                access: Access::RWM,
            });
            &empty
        } else {
            &self.exceptions
        };
        let rule = |m: &Meta, access, allow| DeviceRule { allow, kind: m.kind, major: m.major, minor: m.minor, access };
        for (m, &had) in old {
            let dropped = had.difference(target.exceptions.get(m).copied().unwrap_or_default());
            if !dropped.is_empty() {
                out.push(rule(m, dropped, target.default_allow));
            }
        }
        for m in &target.order {
            let wants = target.exceptions[m];
            let gained = wants.difference(old.get(m).copied().unwrap_or_default());
            if !gained.is_empty() {
                out.push(rule(m, gained, !target.default_allow));
            }
        }
        out
    }
}

fn verdict(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}

/// One line of `devices.list`: `c 1:3 rwm`, `b *:* m`, `a *:* rwm`.
fn parse_list_line(line: &str) -> Option<DeviceRule> {
    let mut parts = line.split_whitespace();
    let (kind, nums, access) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let kind = match kind {
        "a" => DeviceKind::All,
        "b" => DeviceKind::Block,
        "c" => DeviceKind::Char,
        _ => return None,
    };
    let (major, minor) = nums.split_once(':')?;
    let num = |s: &str| -> Option<Option<u32>> {
        if s == "*" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    Some(DeviceRule { allow: true, kind, major: num(major)?, minor: num(minor)?, access: Access::parse(access)? })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Parse `allow c 1:3 rwm` / `deny a *:* rwm`.
    pub(crate) fn rule(s: &str) -> DeviceRule {
        let (verdict, rest) = s.split_once(' ').unwrap();
        let mut r = parse_list_line(rest).unwrap_or_else(|| panic!("bad rule {s:?}"));
        r.allow = verdict == "allow";
        r
    }

    pub(crate) fn rules(list: &[&str]) -> Vec<DeviceRule> {
        list.iter().map(|s| rule(s)).collect()
    }

    fn shown(rules: &[DeviceRule]) -> Vec<String> {
        rules.iter().map(|r| format!("{} {r}", verdict(r.allow))).collect()
    }

    #[test]
    fn access_parses_and_prints_in_rwm_order() {
        assert_eq!(Access::parse("mwr").unwrap().to_string(), "rwm");
        assert_eq!(Access::parse("rr").unwrap(), Access::READ);
        assert_eq!(Access::parse("m").unwrap(), Access::MKNOD);
        assert_eq!(Access::parse(""), None);
        assert_eq!(Access::parse("rwx"), None);
        assert_eq!(Access::parse("RW"), None);
        assert_eq!(Access::RWM.difference(Access::WRITE).to_string(), "rm");
    }

    #[test]
    fn display_is_the_v1_syntax() {
        assert_eq!(DEFAULT_ALLOWED[0].to_string(), "c *:* m");
        assert_eq!(DEFAULT_ALLOWED[8].to_string(), "c 136:* rwm");
        assert_eq!(rule("deny a *:* rwm").to_string(), "a *:* rwm");
        assert_eq!(rule("allow b 8:* r").to_string(), "b 8:* r");
    }

    fn cgroup_rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    fn devices(json: &str) -> Vec<LinuxDevice> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn spec_rules_then_defaults_then_linux_devices() {
        let r = cgroup_rules(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":10,"minor":229,"access":"rw"},
                {"allow":true,"type":"b","major":-1,"access":"r"}]"#,
        );
        let d = devices(
            r#"[{"path":"/dev/fuse","type":"c","major":10,"minor":229},{"path":"/dev/sda","type":"b","major":8,"minor":0},
                {"path":"/dev/uu","type":"u","major":4,"minor":1},{"path":"/dev/fifo","type":"p"}]"#,
        );
        let got = shown(&device_rules(&r, &d).unwrap());
        let want = [
            "deny a *:* rwm",
            "allow c 10:229 rw",
            "allow b *:* r",
            // runc's defaults, in its order
            "allow c *:* m",
            "allow b *:* m",
            "allow c 1:3 rwm",
            "allow c 1:8 rwm",
            "allow c 1:7 rwm",
            "allow c 5:0 rwm",
            "allow c 1:5 rwm",
            "allow c 1:9 rwm",
            "allow c 136:* rwm",
            "allow c 5:2 rwm",
            "allow c 10:200 rwm",
            // linux.devices; the fifo needs no rule
            "allow c 10:229 rwm",
            "allow b 8:0 rwm",
            "allow c 4:1 rwm",
        ];
        assert_eq!(got, want);
        // Nothing given: only the defaults.
        assert_eq!(device_rules(&[], &[]).unwrap(), DEFAULT_ALLOWED);
    }

    #[test]
    fn bad_entries_name_the_field_and_index() {
        for (json, want) in [
            (r#"[{"allow":true,"type":"c","major":1,"minor":3}]"#, "access \"\""),
            (r#"[{"allow":true,"type":"c","access":""}]"#, "access \"\""),
            (r#"[{"allow":true,"type":"c","access":"rwx"}]"#, "access \"rwx\""),
            (r#"[{"allow":true,"type":"p","access":"rwm"}]"#, "type \"p\""),
            (r#"[{"allow":true,"type":"u","access":"rwm"}]"#, "type \"u\""),
            (r#"[{"allow":true,"type":"c","major":-2,"access":"rwm"}]"#, "major -2"),
            (r#"[{"allow":true,"type":"c","minor":4294967296,"access":"rwm"}]"#, "minor 4294967296"),
        ] {
            let e = device_rules(&cgroup_rules(json), &[]).unwrap_err().to_string();
            assert!(e.starts_with("invalid linux.resources.devices: entry 0"), "{json}: {e}");
            assert!(e.contains(want), "{json}: {e}");
        }
        let e = device_rules(&[], &devices(r#"[{"path":"/dev/x","type":"c","major":-1,"minor":0}]"#)).unwrap_err();
        assert!(e.to_string().contains("linux.devices: entry 0 (/dev/x): major -1"), "{e}");
        let e = device_rules(&[], &devices(r#"[{"path":"/dev/y","type":"a","major":1,"minor":0}]"#)).unwrap_err();
        assert!(e.to_string().contains("linux.devices"), "{e}");
    }

    #[test]
    fn emulator_resets_on_a_and_merges_exceptions() {
        let e = Emulator::from_rules(&rules(&[
            "deny a *:* rwm",
            "allow c 1:3 r",
            "allow c 1:3 w",
            "allow c 1:5 rwm",
            "deny c 1:5 w",
        ]))
        .unwrap();
        assert!(!e.default_allow());
        assert_eq!(shown(&e.exceptions()), ["allow c 1:3 rw", "allow c 1:5 rm"]);
        // A later `a` throws away everything before it.
        let e = Emulator::from_rules(&rules(&["allow c 1:3 rwm", "allow a *:* rwm", "deny b 8:0 w"])).unwrap();
        assert!(e.default_allow());
        assert_eq!(shown(&e.exceptions()), ["deny b 8:0 w"]);
        // `a` ignores numbers and access, as the kernel does.
        let e = Emulator::from_rules(&rules(&["allow a 1:3 r"])).unwrap();
        assert!(e.default_allow() && e.exceptions().is_empty());
        // Removing what is not there is harmless.
        let e = Emulator::from_rules(&rules(&["deny c 4:4 rwm"])).unwrap();
        assert_eq!(e, Emulator::deny_all());
    }

    #[test]
    fn punching_a_hole_into_a_wildcard_is_refused() {
        let e = Emulator::from_rules(&rules(&["deny a *:* rwm", "allow c *:* rwm", "deny c 1:5 rwm"])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("deny c 1:5 rwm would punch a hole into the earlier wildcard allow c *:* rwm"), "{msg}");
        Emulator::from_rules(&rules(&["allow a *:* rwm", "deny c 1:* w", "allow c 1:5 w"])).unwrap_err();
        // No shared access, or no wildcard covering it: fine.
        Emulator::from_rules(&rules(&["deny a *:* rwm", "allow c *:* m", "deny c 1:5 rw"])).unwrap();
        Emulator::from_rules(&rules(&["deny a *:* rwm", "allow b *:* rwm", "deny c 1:5 rwm"])).unwrap();
    }

    #[test]
    fn the_defaults_emulate_to_runcs_devices_list() {
        // runc 1.1.5's devices.list on the test host for a default config.
        let runc = "b *:* m\nc *:* m\nc 1:3 rwm\nc 1:5 rwm\nc 1:7 rwm\nc 1:8 rwm\nc 1:9 rwm\nc 5:0 rwm\nc 5:2 rwm\nc 10:200 rwm\nc 136:* rwm\n";
        let ours =
            Emulator::from_rules(&device_rules(&cgroup_rules(r#"[{"allow":false,"access":"rwm"}]"#), &[]).unwrap()).unwrap();
        assert_eq!(ours, Emulator::from_list(runc).unwrap());
        // Equal in what they allow, not in order: runc's list is sorted by
        // (major, minor, type), ours keeps the order of the rules.
        let first: Vec<String> = ours.exceptions().iter().take(3).map(ToString::to_string).collect();
        assert_eq!(first, ["c *:* m", "b *:* m", "c 1:3 rwm"]);
        let first: Vec<String> =
            Emulator::from_list(runc).unwrap().exceptions().iter().take(2).map(ToString::to_string).collect();
        assert_eq!(first, ["b *:* m", "c *:* m"]);
    }

    #[test]
    fn exceptions_keep_the_kernels_list_order() {
        // New ones at the end, a merge keeps its place, an emptied one leaves.
        let e = Emulator::from_rules(&rules(&[
            "deny a *:* rwm",
            "allow c 10:229 rwm",
            "allow b 8:20 rw",
            "allow c 1:3 r",
            "allow b 8:20 m",
            "deny c 10:229 rwm",
            "allow c 10:229 r",
        ]))
        .unwrap();
        assert_eq!(shown(&e.exceptions()), ["allow b 8:20 rwm", "allow c 1:3 r", "allow c 10:229 r"]);
        // A reset forgets the order with the exceptions.
        let e = Emulator::from_rules(&rules(&["deny a *:* rwm", "allow c 5:0 r", "deny a *:* rwm", "allow c 1:3 r"])).unwrap();
        assert_eq!(shown(&e.exceptions()), ["allow c 1:3 r"]);
    }

    #[test]
    fn devices_list_parsing() {
        let e = Emulator::from_list("a *:* rwm\n").unwrap();
        assert!(e.default_allow());
        assert!(Emulator::from_list("").unwrap() == Emulator::deny_all());
        for bad in ["x 1:3 rwm", "c 1:3", "c 1-3 rwm", "c 1:3 rwz", "c a:3 r", "c 1:3 r extra"] {
            assert!(Emulator::from_list(bad).is_err(), "{bad:?}");
        }
    }

    fn transition(from: &str, to: &[&str]) -> Vec<String> {
        let source = Emulator::from_list(from).unwrap();
        let target = Emulator::from_rules(&rules(to)).unwrap();
        shown(&source.transition(&target))
    }

    #[test]
    fn transitions_are_minimal_and_start_from_a_reset_when_needed() {
        // A new v1 cgroup (allow all): deny all first, then the allows.
        assert_eq!(
            transition("a *:* rwm", &["deny a *:* rwm", "allow c 1:3 rwm", "allow c *:* m"]),
            ["deny a *:* rwm", "allow c 1:3 rwm", "allow c *:* m"]
        );
        // The gains in the rules' order, so the list shows that order.
        assert_eq!(
            transition("a *:* rwm", &["deny a *:* rwm", "allow c 10:229 rwm", "allow b 8:20 rw", "allow b 10:200 r"]),
            ["deny a *:* rwm", "allow c 10:229 rwm", "allow b 8:20 rw", "allow b 10:200 r"]
        );
        // Already an allow-list: only the difference, nothing disruptive.
        assert_eq!(
            transition("c *:* m\nc 1:3 rwm\nc 1:5 rwm\n", &["allow c *:* m", "allow c 1:3 rw", "allow c 1:9 rwm"]),
            ["deny c 1:3 m", "deny c 1:5 rwm", "allow c 1:9 rwm"]
        );
        assert!(transition("c 1:3 rwm\n", &["allow c 1:3 rwm"]).is_empty());
        // Leading allow-all: reset to allow, then the deny exceptions.
        assert_eq!(transition("c 1:3 rwm\n", &["allow a *:* rwm", "deny b 8:0 rwm"]), ["allow a *:* rwm", "deny b 8:0 rwm"]);
        // From a deny list the exceptions are unknown: always reset.
        assert_eq!(transition("a *:* rwm", &["allow a *:* rwm"]), ["allow a *:* rwm"]);
    }
}
