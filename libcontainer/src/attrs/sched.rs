//! `process.scheduler`: the scheduling policy and its parameters
//! (`sched_setattr(2)`), inherited by children unless
//! `SCHED_FLAG_RESET_ON_FORK` is given.

use oci_spec::runtime::{LinuxSchedulerFlag, LinuxSchedulerPolicy, Scheduler};

use super::{Error, Invalid};
use crate::sys::sched::{self as sys, SchedAttr};

/// The kernel's `SCHED_*` number; `SCHED_ISO` was reserved but never
/// implemented by Linux.
pub fn policy(p: LinuxSchedulerPolicy) -> Option<u32> {
    Some(match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => return None,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    })
}

/// The kernel's `SCHED_FLAG_*` bit.
pub fn flag(f: LinuxSchedulerFlag) -> u64 {
    match f {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

/// The runtime-spec's names of two flags that oci-spec 0.10 spells
/// otherwise (it derives them from its variant names), with oci-spec's.
const SPEC_FLAG_NAMES: [(&str, &str); 2] =
    [("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"), ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN")];

/// Whether `json` may hold a flag spelled as the runtime-spec spells it
/// (a cheap test, before [`respell_flags`]).
pub fn has_spec_flag_names(json: &[u8]) -> bool {
    SPEC_FLAG_NAMES.iter().any(|(spec, _)| json.windows(spec.len()).any(|w| w == spec.as_bytes()))
}

/// Rewrite the flags of the scheduler object at `pointer` in `v` from the
/// runtime-spec's names to the ones oci-spec decodes, so configs written
/// for runc (which uses the spec's names) are read as meant.
pub fn respell_flags(v: &mut serde_json::Value, pointer: &str) {
    let Some(flags) = v.pointer_mut(&format!("{pointer}/flags")).and_then(|f| f.as_array_mut()) else { return };
    for f in flags {
        if let Some((_, ours)) = SPEC_FLAG_NAMES.iter().find(|(spec, _)| f.as_str() == Some(spec)) {
            *f = serde_json::Value::from(*ours);
        }
    }
}

/// Decode a config (`scheduler_at` `/process/scheduler`) or a process
/// (`/scheduler`), accepting the runtime-spec's flag names.
pub fn decode<T: serde::de::DeserializeOwned>(json: &[u8], scheduler_at: &str) -> serde_json::Result<T> {
    match serde_json::from_slice(json) {
        Err(e) if has_spec_flag_names(json) => {
            let mut v: serde_json::Value = serde_json::from_slice(json).map_err(|_| e)?;
            respell_flags(&mut v, scheduler_at);
            serde_json::from_value(v)
        }
        r => r,
    }
}

/// The smallest runtime the deadline scheduler accepts, in ns.
const DL_MIN_RUNTIME: u64 = 1 << 10;

/// What the kernel would refuse with a bare EINVAL, named here instead.
pub fn validate(s: &Scheduler) -> Result<(), Invalid> {
    use LinuxSchedulerPolicy as P;
    let err = |f: &str, r: String| Err((format!("scheduler.{f}"), r));
    let p = *s.policy();
    if policy(p).is_none() {
        return err("policy", format!("{p} is not implemented by Linux"));
    }
    if let Some(n) = s.nice() {
        if !(-20..=19).contains(n) {
            return err("nice", format!("{n} is outside -20..19"));
        }
    }
    let prio = s.priority().unwrap_or(0);
    match p {
        P::SchedFifo | P::SchedRr if !(1..=99).contains(&prio) => {
            return err("priority", format!("{prio}: {p} needs a priority from 1 to 99"));
        }
        P::SchedFifo | P::SchedRr => {}
        _ if prio != 0 => return err("priority", format!("{prio}: only SCHED_FIFO and SCHED_RR take a priority")),
        _ => {}
    }
    let (runtime, deadline, period) = (s.runtime().unwrap_or(0), s.deadline().unwrap_or(0), s.period().unwrap_or(0));
    if p != P::SchedDeadline {
        if runtime != 0 || deadline != 0 || period != 0 {
            return err("runtime", format!("runtime, deadline and period are for SCHED_DEADLINE only, not {p}"));
        }
        return Ok(());
    }
    if runtime < DL_MIN_RUNTIME {
        return err("runtime", format!("{runtime} ns: SCHED_DEADLINE needs a runtime of at least {DL_MIN_RUNTIME} ns"));
    }
    if deadline < runtime {
        return err("deadline", format!("{deadline} ns is shorter than the runtime ({runtime} ns)"));
    }
    if period != 0 && period < deadline {
        return err("period", format!("{period} ns is shorter than the deadline ({deadline} ns)"));
    }
    Ok(())
}

pub fn attr(s: &Scheduler) -> SchedAttr {
    SchedAttr {
        policy: policy(*s.policy()).unwrap_or(0),
        flags: s.flags().iter().flatten().fold(0, |f, x| f | flag(*x)),
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    }
}

pub fn apply(s: &Scheduler) -> Result<(), Error> {
    let a = attr(s);
    tracing::debug!(?a, "sched_setattr");
    sys::sched_setattr(0, &a).map_err(|source| {
        let mut value = format!("{} nice {} priority {} flags {:#x}", s.policy(), a.nice, a.priority, a.flags);
        if a.policy == 6 {
            value += &format!(" runtime {} deadline {} period {}", a.runtime, a.deadline, a.period);
        }
        Error { field: "process.scheduler", value, source }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: serde_json::Value) -> Scheduler {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn sched_validation() {
        use serde_json::json;
        assert!(validate(&s(json!({"policy": "SCHED_BATCH", "nice": 5}))).is_ok());
        assert!(validate(&s(json!({"policy": "SCHED_FIFO", "priority": 10}))).is_ok());
        assert!(
            validate(&s(json!({"policy": "SCHED_DEADLINE", "runtime": 1000000, "deadline": 2000000, "period": 3000000}))).is_ok()
        );
        for (bad, field) in [
            (json!({"policy": "SCHED_ISO"}), "scheduler.policy"),
            (json!({"policy": "SCHED_OTHER", "nice": 20}), "scheduler.nice"),
            (json!({"policy": "SCHED_FIFO"}), "scheduler.priority"),
            (json!({"policy": "SCHED_OTHER", "priority": 3}), "scheduler.priority"),
            (json!({"policy": "SCHED_OTHER", "runtime": 3}), "scheduler.runtime"),
            (json!({"policy": "SCHED_DEADLINE"}), "scheduler.runtime"),
            (json!({"policy": "SCHED_DEADLINE", "runtime": 2000, "deadline": 1500}), "scheduler.deadline"),
            (json!({"policy": "SCHED_DEADLINE", "runtime": 2000, "deadline": 3000, "period": 2500}), "scheduler.period"),
        ] {
            assert_eq!(validate(&s(bad.clone())).unwrap_err().0, field, "{bad}");
        }
    }

    #[test]
    fn sched_spec_flag_names_decode() {
        let json =
            br#"{"policy":"SCHED_OTHER","flags":["SCHED_FLAG_RESET_ON_FORK","SCHED_FLAG_DL_OVERRUN","SCHED_FLAG_RECLAIM"]}"#;
        let s: Scheduler = decode(json, "").unwrap();
        assert_eq!(attr(&s).flags, 0x01 | 0x04 | 0x02);
        // A string elsewhere that happens to be a flag's name is left alone.
        let json = br#"{"args":["SCHED_FLAG_RESET_ON_FORK"],"cwd":"/","user":{"uid":0,"gid":0},
            "scheduler":{"policy":"SCHED_BATCH","flags":["SCHED_FLAG_RESET_ON_FORK"]}}"#;
        let p: oci_spec::runtime::Process = decode(json, "/scheduler").unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["SCHED_FLAG_RESET_ON_FORK"]);
        assert_eq!(attr(p.scheduler().as_ref().unwrap()).flags, 0x01);
    }
}
