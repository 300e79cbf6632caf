//! The OCI profile → one cBPF program. Pure: no kernel calls, so it runs in
//! the runtime before the container process exists and is unit-tested by
//! interpreting its output.
//!
//! Shape of the program (see the module doc of `seccomp` for the rules):
//!
//! ```text
//!   ld  arch
//!   jeq AUDIT_ARCH_<native>, S1        one test per architecture family
//!   jeq AUDIT_ARCH_<compat>, S2        member listed in the profile
//!   ret KILL_THREAD                    any other ABI ("bad arch")
//! S1: ld  nr
//!   [jge X32_SYSCALL_BIT → x32 body or KILL_THREAD]     x86_64 only
//!   [jgt <largest nr in the profile> → ret ERRNO(ENOSYS)]
//!   binary search on nr (jge), leaves of up to 4 jeq → rule chain of that syscall
//!   rule chain: the syscall's rules in profile order; each rule's argument tests,
//!               all true → ret its action, one false → the next rule;
//!               none matched → ret default action
//! ```

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompFilterFlag as Flag, LinuxSeccompOperator as Operator,
};

use super::arch::{Arch, X32_SYSCALL_BIT};
use super::bpf::{Emitter, Label, AND_K, JEQ_K, JGE_K, JGT_K, LD_ABS, MAX_INSNS, OFF_ARCH, OFF_ARGS, OFF_NR};
use super::{Error, Filter};

// <linux/seccomp.h> return values.
pub(super) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(super) const RET_KILL_THREAD: u32 = 0x0000_0000;
pub(super) const RET_TRAP: u32 = 0x0003_0000;
pub(super) const RET_ERRNO: u32 = 0x0005_0000;
pub(super) const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub(super) const RET_TRACE: u32 = 0x7ff0_0000;
pub(super) const RET_LOG: u32 = 0x7ffc_0000;
pub(super) const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ACTION_FULL: u32 = 0xffff_0000;

// seccomp(2) flags.
pub(super) const FLAG_TSYNC: u32 = 1 << 0;
pub(super) const FLAG_LOG: u32 = 1 << 1;
pub(super) const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub(super) const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub(super) const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
pub(super) const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;
/// The kernel caps SECCOMP_RET_ERRNO data at MAX_ERRNO.
const MAX_ERRNO: u32 = 4095;

/// With a libseccomp-style bad-architecture action: libseccomp's default
/// (`SCMP_ACT_KILL`), which runc never changes. A syscall through an ABI the
/// profile does not list must not slip past rules written for another ABI's
/// numbers; killing is what runc and crun do.
pub(super) const RET_BAD_ARCH: u32 = RET_KILL_THREAD;

/// Syscalls that may not be sent to a seccomp agent: between installing the
/// filter and the agent receiving the listener, the container's init uses
/// them to tell the runtime about the listener (runc refuses `write` for the
/// same reason; roci's channel uses `send`/`sendto`/`sendmsg`). Notifying on
/// them would hang the container's start.
const NO_NOTIFY: &[&str] = &["write", "send", "sendto", "sendmsg"];

/// Leaves of the binary search hold at most this many syscalls.
const LEAF: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// One argument test: `args[arg] <op> value`; for MaskedEq
/// `(args[arg] & value) == value_two`, as libseccomp and runc read the OCI
/// fields.
#[derive(Clone, Copy, Debug)]
struct Cond {
    arg: u32,
    op: Op,
    value: u64,
    value_two: u64,
}

#[derive(Clone, Debug)]
struct Rule {
    /// ANDed; empty means the rule always matches.
    conds: Vec<Cond>,
    ret: u32,
}

/// One `syscalls[]` entry, checked.
struct Entry {
    names: Vec<String>,
    /// Usually one; several when runc's rule for repeated argument indexes
    /// applies (each test its own rule, so they are ORed).
    rules: Vec<Rule>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid { field: field.into(), reason: reason.into() }
}

/// The filter's return value for an action and its optional errnoRet.
fn action_ret(action_field: &str, errno_field: &str, action: Action, errno: Option<u32>) -> Result<u32, Error> {
    let ret = match action {
        Action::ScmpActErrno => {
            let e = errno.unwrap_or(EPERM);
            if e > MAX_ERRNO {
                return Err(invalid(errno_field, format!("{e} is not an errno value (at most {MAX_ERRNO})")));
            }
            RET_ERRNO | e
        }
        Action::ScmpActTrace => {
            let d = errno.unwrap_or(EPERM);
            if d > 0xffff {
                return Err(invalid(errno_field, format!("{d} does not fit the 16 bits a tracer is given")));
            }
            RET_TRACE | d
        }
        other => {
            if errno.is_some() {
                return Err(invalid(
                    errno_field,
                    format!("only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take an errno value, not {other} ({action_field})"),
                ));
            }
            match other {
                Action::ScmpActKill | Action::ScmpActKillThread => RET_KILL_THREAD,
                Action::ScmpActKillProcess => RET_KILL_PROCESS,
                Action::ScmpActTrap => RET_TRAP,
                Action::ScmpActNotify => RET_USER_NOTIF,
                Action::ScmpActLog => RET_LOG,
                Action::ScmpActAllow => RET_ALLOW,
                Action::ScmpActErrno | Action::ScmpActTrace => unreachable!(),
            }
        }
    };
    Ok(ret)
}

fn op(o: Operator) -> Op {
    match o {
        Operator::ScmpCmpNe => Op::Ne,
        Operator::ScmpCmpLt => Op::Lt,
        Operator::ScmpCmpLe => Op::Le,
        Operator::ScmpCmpEq => Op::Eq,
        Operator::ScmpCmpGe => Op::Ge,
        Operator::ScmpCmpGt => Op::Gt,
        Operator::ScmpCmpMaskedEq => Op::MaskedEq,
    }
}

/// Compile for a kernel of architecture `native` (the build's own in
/// production; tests compile for others too).
pub(super) fn compile_for(seccomp: &LinuxSeccomp, native: Arch) -> Result<Filter, Error> {
    let default = action_ret(
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
        seccomp.default_action(),
        seccomp.default_errno_ret(),
    )?;
    if seccomp.default_action() == Action::ScmpActNotify {
        return Err(invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be the default action: the container's init could not hand the listener \
             to the runtime (as in runc)",
        ));
    }
    if seccomp.listener_metadata().is_some() && seccomp.listener_path().is_none() {
        return Err(invalid("linux.seccomp.listenerMetadata", "set without listenerPath"));
    }

    // The native ABI is always filtered (libseccomp's filters always hold
    // it); listed ABIs of the same family are added.
    let family = native.family();
    let mut archs = vec![native];
    for a in seccomp.architectures().iter().flatten() {
        match Arch::from_oci(*a, native) {
            Some(arch) if family.contains(&arch) => {
                if !archs.contains(&arch) {
                    archs.push(arch);
                }
            }
            _ => {
                tracing::debug!(arch = %a, native = native.name(), "seccomp: architecture cannot occur on this kernel, no rules for it")
            }
        }
    }

    let mut flags = 0;
    let mut wait_killable = false;
    for f in seccomp.flags().iter().flatten() {
        match f {
            Flag::SeccompFilterFlagTsync => flags |= FLAG_TSYNC,
            Flag::SeccompFilterFlagLog => flags |= FLAG_LOG,
            Flag::SeccompFilterFlagSpecAllow => flags |= FLAG_SPEC_ALLOW,
            Flag::SeccompFilterFlagWaitKillableRecv => wait_killable = true,
        }
    }

    let mut entries = Vec::new();
    let mut listener = false;
    for (i, sc) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        if sc.names().is_empty() {
            return Err(invalid(format!("{field}.names"), "must name at least one syscall"));
        }
        for (j, n) in sc.names().iter().enumerate() {
            if n.is_empty() {
                return Err(invalid(format!("{field}.names[{j}]"), "empty syscall name"));
            }
        }
        let ret = action_ret(&format!("{field}.action"), &format!("{field}.errnoRet"), sc.action(), sc.errno_ret())?;
        if sc.action() == Action::ScmpActNotify {
            listener = true;
            if seccomp.listener_path().is_none() {
                return Err(invalid("linux.seccomp.listenerPath", format!("required by SCMP_ACT_NOTIFY in {field}")));
            }
            for (j, n) in sc.names().iter().enumerate() {
                if NO_NOTIFY.contains(&n.as_str()) {
                    return Err(invalid(
                        format!("{field}.names[{j}]"),
                        format!("SCMP_ACT_NOTIFY cannot be used for {n}: the container's init needs it to hand the listener to the runtime"),
                    ));
                }
            }
        }
        let mut conds = Vec::new();
        let mut per_arg = [0u8; 6];
        for (k, a) in sc.args().iter().flatten().enumerate() {
            if a.index() > 5 {
                return Err(invalid(
                    format!("{field}.args[{k}].index"),
                    format!("{} is not a syscall argument (0 to 5)", a.index()),
                ));
            }
            per_arg[a.index()] += 1;
            conds.push(Cond { arg: a.index() as u32, op: op(a.op()), value: a.value(), value_two: a.value_two().unwrap_or(0) });
        }
        let rules = if per_arg.iter().any(|&n| n > 1) {
            // runc: tests of the same argument cannot share a libseccomp
            // rule, so each becomes a rule of its own.
            conds.into_iter().map(|c| Rule { conds: vec![c], ret }).collect()
        } else {
            vec![Rule { conds, ret }]
        };
        if ret == default {
            // runc and crun skip rules whose action is the default action
            // (libseccomp refuses them), so a later rule for the same
            // syscall decides, as it does there.
            tracing::trace!(rule = %field, "seccomp: rule has the default action, skipped");
        }
        entries.push(Entry { names: sc.names().clone(), rules: rules.into_iter().filter(|r| r.ret != default).collect() });
    }

    if wait_killable {
        if listener {
            flags |= FLAG_WAIT_KILLABLE_RECV;
        } else {
            tracing::debug!("seccomp: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored, no SCMP_ACT_NOTIFY rule");
        }
    }
    if listener {
        flags |= FLAG_NEW_LISTENER;
        if flags & FLAG_TSYNC != 0 {
            // Without it TSYNC and NEW_LISTENER cannot be combined (5.7+).
            flags |= FLAG_TSYNC_ESRCH;
        }
    }

    let mut known: Vec<Vec<bool>> = entries.iter().map(|e| vec![false; e.names.len()]).collect();
    let per_arch: Vec<ArchRules> = archs.iter().map(|&a| arch_rules(&entries, a, &mut known)).collect();
    let mut unknown = BTreeSet::new();
    for (e, known) in entries.iter().zip(&known) {
        for (n, k) in e.names.iter().zip(known) {
            if !k {
                unknown.insert(n.as_str());
            }
        }
    }
    if !unknown.is_empty() {
        // As runc: a name no listed architecture knows is skipped.
        tracing::debug!(syscalls = ?unknown, "seccomp: unknown syscalls ignored");
    }

    // runc's -ENOSYS stub: syscalls newer than any the profile names get
    // ENOSYS instead of the default errno, so programs fall back (clone3 →
    // clone). Not for permissive defaults, where new syscalls just run.
    let enosys = !matches!(default & RET_ACTION_FULL, RET_ALLOW | RET_LOG | RET_TRACE) && default != RET_ERRNO | ENOSYS;

    let program = emit(&per_arch, default, enosys);
    if program.len() > MAX_INSNS {
        return Err(Error::TooLong { len: program.len(), max: MAX_INSNS });
    }
    Ok(Filter { program, flags, listener })
}

/// One architecture's rules by syscall number.
struct ArchRules<'a> {
    arch: Arch,
    by_nr: BTreeMap<u32, Vec<&'a Rule>>,
    /// The largest syscall number the profile names on this architecture.
    max: Option<u32>,
}

/// Resolve the names on `arch`; marks in `known` the names it knows.
fn arch_rules<'a>(entries: &'a [Entry], arch: Arch, known: &mut [Vec<bool>]) -> ArchRules<'a> {
    let mut by_nr: BTreeMap<u32, Vec<&Rule>> = BTreeMap::new();
    let mut max = None;
    for (e, known) in entries.iter().zip(known) {
        for (n, k) in e.names.iter().zip(known.iter_mut()) {
            let Some(nr) = arch.syscall(n) else { continue };
            *k = true;
            max = max.max(Some(nr));
            by_nr.entry(nr).or_default().extend(e.rules.iter());
        }
    }
    for rules in by_nr.values_mut() {
        // First match wins: nothing after an unconditional rule is reached.
        if let Some(p) = rules.iter().position(|r| r.conds.is_empty()) {
            rules.truncate(p + 1);
        }
    }
    by_nr.retain(|_, r| !r.is_empty());
    ArchRules { arch, by_nr, max }
}

fn emit(per_arch: &[ArchRules], default: u32, enosys: bool) -> Vec<super::bpf::Insn> {
    let mut em = Emitter::new();
    // Group by seccomp_data.arch value (x86_64 and x32 share one), keeping
    // the native architecture's group first.
    let mut groups: Vec<(u32, Vec<&ArchRules>)> = Vec::new();
    for ar in per_arch {
        match groups.iter_mut().find(|(a, _)| *a == ar.arch.audit()) {
            Some((_, g)) => g.push(ar),
            None => groups.push((ar.arch.audit(), vec![ar])),
        }
    }
    // Back to front: the last group's section first.
    let mut sections = Vec::new();
    for (audit, group) in groups.iter().rev() {
        let x32 = group.iter().find(|a| a.arch == Arch::X32);
        let main = group.iter().find(|a| a.arch != Arch::X32);
        let label = if *audit == Arch::X86_64.audit() {
            // x32 calls carry __X32_SYSCALL_BIT; without x32 in the profile
            // they get the bad-arch action, as with libseccomp.
            let x32_entry = match x32 {
                Some(x) => arch_body(&mut em, x, default, enosys),
                None => em.ret(RET_BAD_ARCH),
            };
            let main_entry = match main {
                Some(m) => arch_body(&mut em, m, default, enosys),
                None => em.ret(RET_BAD_ARCH),
            };
            let split = em.jump(JGE_K, X32_SYSCALL_BIT, x32_entry, main_entry);
            em.stmt(LD_ABS, OFF_NR, split)
        } else {
            let m = main.expect("a group has an architecture");
            let body = arch_body(&mut em, m, default, enosys);
            em.stmt(LD_ABS, OFF_NR, body)
        };
        sections.push((*audit, label));
    }
    let mut next = em.ret(RET_BAD_ARCH);
    // `sections` is last-group-first, so this emits the native test last,
    // which puts it first in the program.
    for (audit, label) in sections {
        next = em.jump(JEQ_K, audit, label, next);
    }
    em.stmt(LD_ABS, OFF_ARCH, next);
    em.finish()
}

/// The code after `ld nr` for one ABI; returns its first instruction.
fn arch_body(em: &mut Emitter, ar: &ArchRules, default: u32, enosys: bool) -> Label {
    let entries: Vec<(u32, &[&Rule])> = ar.by_nr.iter().map(|(nr, r)| (*nr, r.as_slice())).collect();
    let tree = tree(em, &entries, default, ar.arch.wide_args());
    match ar.max {
        Some(max) if enosys => {
            let nosys = em.ret(RET_ERRNO | ENOSYS);
            em.jump(JGT_K, max, nosys, tree)
        }
        _ => tree,
    }
}

/// Binary search over sorted syscall numbers (the accumulator holds nr).
fn tree(em: &mut Emitter, entries: &[(u32, &[&Rule])], default: u32, wide: bool) -> Label {
    if entries.len() <= LEAF {
        // Rule chains after the tests, so the tests' jumps stay short.
        let mut bodies: Vec<Label> = entries.iter().rev().map(|(_, rules)| chain(em, rules, default, wide)).collect();
        bodies.reverse();
        let mut next = em.ret(default);
        for ((nr, _), body) in entries.iter().zip(bodies).rev() {
            next = em.jump(JEQ_K, *nr, body, next);
        }
        return next;
    }
    let mid = entries.len() / 2;
    let right = tree(em, &entries[mid..], default, wide);
    let left = tree(em, &entries[..mid], default, wide);
    em.jump(JGE_K, entries[mid].0, right, left)
}

/// One syscall's rules, first match wins, none → default action.
fn chain(em: &mut Emitter, rules: &[&Rule], default: u32, wide: bool) -> Label {
    let mut next = em.ret(default);
    for rule in rules.iter().rev() {
        let mut t = em.ret(rule.ret);
        for c in rule.conds.iter().rev() {
            t = cond(em, c, t, next, wide);
        }
        next = t;
    }
    next
}

/// Test one argument: go to `t` when it holds, else `f`. 64-bit values are
/// compared as two 32-bit halves (cBPF loads 32 bits); on 32-bit ABIs only
/// the low half exists and the high half counts as zero.
fn cond(em: &mut Emitter, c: &Cond, t: Label, f: Label, wide: bool) -> Label {
    if t == f {
        return t;
    }
    // seccomp_data is in the CPU's byte order; every architecture with a
    // table here is little-endian, so the low half comes first.
    let lo_off = OFF_ARGS + 8 * c.arg;
    let hi_off = lo_off + 4;
    match c.op {
        Op::Eq => eq(em, lo_off, hi_off, c.value, t, f, wide),
        Op::Ne => eq(em, lo_off, hi_off, c.value, f, t, wide),
        Op::Gt => above(em, lo_off, hi_off, c.value, true, t, f, wide),
        Op::Ge => above(em, lo_off, hi_off, c.value, false, t, f, wide),
        Op::Le => above(em, lo_off, hi_off, c.value, true, f, t, wide),
        Op::Lt => above(em, lo_off, hi_off, c.value, false, f, t, wide),
        Op::MaskedEq => masked(em, lo_off, hi_off, c.value, c.value_two, t, f, wide),
    }
}

fn halves(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

/// arg == v
fn eq(em: &mut Emitter, lo_off: u32, hi_off: u32, v: u64, t: Label, f: Label, wide: bool) -> Label {
    let (lo, hi) = halves(v);
    if !wide && hi != 0 {
        return f;
    }
    let j = em.jump(JEQ_K, lo, t, f);
    let lo_test = em.stmt(LD_ABS, lo_off, j);
    if !wide {
        return lo_test;
    }
    let j = em.jump(JEQ_K, hi, lo_test, f);
    em.stmt(LD_ABS, hi_off, j)
}

/// arg > v (`strict`) or arg >= v, unsigned.
#[allow(clippy::too_many_arguments)]
fn above(em: &mut Emitter, lo_off: u32, hi_off: u32, v: u64, strict: bool, t: Label, f: Label, wide: bool) -> Label {
    let (lo, hi) = halves(v);
    if !strict && v == 0 {
        return t;
    }
    if !wide && hi != 0 {
        // A zero-extended 32-bit value is below v.
        return f;
    }
    let j = em.jump(if strict { JGT_K } else { JGE_K }, lo, t, f);
    let lo_test = em.stmt(LD_ABS, lo_off, j);
    if !wide {
        return lo_test;
    }
    // hi > v.hi → t; hi == v.hi → compare low halves; hi < v.hi → f.
    let equal = em.jump(JEQ_K, hi, lo_test, f);
    let j = em.jump(JGT_K, hi, t, equal);
    em.stmt(LD_ABS, hi_off, j)
}

/// (arg & mask) == datum
#[allow(clippy::too_many_arguments)]
fn masked(em: &mut Emitter, lo_off: u32, hi_off: u32, mask: u64, datum: u64, t: Label, f: Label, wide: bool) -> Label {
    let (mlo, mhi) = halves(mask);
    let (dlo, dhi) = halves(datum);
    if datum & !mask != 0 || (!wide && dhi != 0) {
        return f; // can never be equal
    }
    let lo_test = if mlo == 0 {
        t // 0 == dlo, as datum ⊆ mask
    } else {
        let mut next = em.jump(JEQ_K, dlo, t, f);
        if mlo != u32::MAX {
            next = em.stmt(AND_K, mlo, next);
        }
        em.stmt(LD_ABS, lo_off, next)
    };
    if !wide || mhi == 0 {
        return lo_test; // the high half is 0 & mhi == 0 == dhi
    }
    let mut next = em.jump(JEQ_K, dhi, lo_test, f);
    if mhi != u32::MAX {
        next = em.stmt(AND_K, mhi, next);
    }
    em.stmt(LD_ABS, hi_off, next)
}
