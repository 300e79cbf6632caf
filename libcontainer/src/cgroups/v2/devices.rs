//! v2 devices: cgroup v2 has no devices files; access is decided by a
//! `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the cgroup
//! (`BPF_CGROUP_DEVICE`, with `BPF_F_ALLOW_MULTI`), run by the kernel on
//! every open and mknod of a device node by a process of the cgroup or below
//! it. Every program attached on the way up must allow the access.
//!
//! The program is generated here from the emulated rules (see
//! `cgroups/devices.rs`) and encoded by hand: it is a dozen instruction
//! patterns, and there is no maintained pure-Rust crate for cgroup device
//! programs (aya and libbpf-rs load programs compiled from C or Rust BPF
//! sources with a BPF toolchain; what is needed here is generated at run
//! time). The raw `bpf(2)` calls are in `sys/bpf.rs`.
//!
//! The program, like runc's `devicefilter` (itself from crun's `ebpf.c`):
//!
//! ```text
//!   r2 = ctx->access_type & 0xffff    device type: 1 block, 2 char
//!   r3 = ctx->access_type >> 16       access: 1 mknod, 2 read, 4 write
//!   r4 = ctx->major; r5 = ctx->minor
//!   for each exception:               (a block; any mismatch jumps to the next)
//!       if r2 != type goto next
//!       access check                  (left out when the exception is rwm)
//!       if r4 != major goto next      (left out for *)
//!       if r5 != minor goto next      (left out for *)
//!       return verdict                (1 allow, 0 deny)
//!   return default
//! ```
//!
//! The exceptions all have the same verdict (the opposite of the default),
//! so their order does not matter. The access check follows the v1 kernel:
//! an allow exception must cover every requested bit (`r3 & access == r3`),
//! while a deny exception matches when it shares any bit with the request
//! (`r3 & access != 0`). runc uses the first test for both, which lets an
//! `O_RDWR` open through a deny list's `deny ... w` rule.
//!
//! Replacing the rules (`update`) attaches the new program before removing
//! the old one (atomically with `BPF_F_REPLACE` where the kernel has it,
//! 5.6+), so the cgroup is never without a filter.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::cgroups::devices::{Access, DeviceKind, DeviceRule, Emulator};
use crate::cgroups::{Error, Result};
use crate::sys::bpf;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The kernel's 8-byte layout: opcode, the two 4-bit registers in one
    /// byte (a C bitfield, dst first), offset, immediate, in native order.
    pub fn encode(&self) -> [u8; 8] {
        let regs = if cfg!(target_endian = "little") { self.dst | (self.src << 4) } else { (self.dst << 4) | self.src };
        let off = self.off.to_ne_bytes();
        let imm = self.imm.to_ne_bytes();
        [self.code, regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3]]
    }
}

// Opcodes: class | operation | source (see linux/bpf_common.h, linux/bpf.h).
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JEQ: u8 = 0x10;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

// struct bpf_cgroup_dev_ctx and its flags.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, dst, src, off, imm }
}

/// `dst = *(u32 *)(src + off)`
fn load_word(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}

/// 32-bit `dst op= imm`
fn alu32(op: u8, dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
}

/// 32-bit `dst = src`
fn mov32_reg(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}

fn exit() -> Insn {
    insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
}

/// A jump to the end of the block it is in; the offset is set when the
/// block is complete.
enum Op {
    Insn(Insn),
    /// `if dst op imm goto next-block`
    JumpImm(u8, u8, i32),
    /// `if dst op src goto next-block`
    JumpReg(u8, u8, u8),
}

fn block(ops: Vec<Op>) -> Vec<Insn> {
    let len = ops.len();
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| {
            let to_end = (len - i - 1) as i16;
            match op {
                Op::Insn(i) => i,
                Op::JumpImm(op, dst, imm) => insn(BPF_JMP | op | BPF_K, dst, 0, to_end, imm),
                Op::JumpReg(op, dst, src) => insn(BPF_JMP | op | BPF_X, dst, src, to_end, 0),
            }
        })
        .collect()
}

fn bpf_access(a: Access) -> i32 {
    let mut bits = 0;
    if a.contains(Access::MKNOD) {
        bits |= ACC_MKNOD;
    }
    if a.contains(Access::READ) {
        bits |= ACC_READ;
    }
    if a.contains(Access::WRITE) {
        bits |= ACC_WRITE;
    }
    bits
}

fn num(n: u32, what: &str, rule: &DeviceRule) -> Result<i32> {
    // Device numbers are 12 (major) and 20 (minor) bits; the immediate is
    // a signed 32-bit value compared against a zero-extended register.
    i32::try_from(n).map_err(|_| Error::Invalid {
        field: "linux.resources.devices",
        reason: format!("{what} {n} of {rule} cannot be a device number"),
    })
}

/// The device filter for `rules` (applied in order to a deny-all state).
pub fn program(rules: &[DeviceRule]) -> Result<Vec<Insn>> {
    let emu = Emulator::from_rules(rules)?;
    let default_allow = emu.default_allow();
    let mut p = vec![
        load_word(R2, R1, CTX_ACCESS_TYPE),
        alu32(BPF_AND, R2, 0xffff),
        load_word(R3, R1, CTX_ACCESS_TYPE),
        alu32(BPF_RSH, R3, 16),
        load_word(R4, R1, CTX_MAJOR),
        load_word(R5, R1, CTX_MINOR),
    ];
    for rule in emu.exceptions() {
        let kind = match rule.kind {
            DeviceKind::Block => DEV_BLOCK,
            DeviceKind::Char => DEV_CHAR,
            // The emulator folds every `a` rule into the default.
            DeviceKind::All => unreachable!("an `a` exception after emulation"),
        };
        let mut ops = vec![Op::JumpImm(BPF_JNE, R2, kind)];
        if rule.access != Access::RWM {
            ops.push(Op::Insn(mov32_reg(R1, R3)));
            ops.push(Op::Insn(alu32(BPF_AND, R1, bpf_access(rule.access))));
            if rule.allow {
                ops.push(Op::JumpReg(BPF_JNE, R1, R3));
            } else {
                ops.push(Op::JumpImm(BPF_JEQ, R1, 0));
            }
        }
        if let Some(major) = rule.major {
            ops.push(Op::JumpImm(BPF_JNE, R4, num(major, "major", &rule)?));
        }
        if let Some(minor) = rule.minor {
            ops.push(Op::JumpImm(BPF_JNE, R5, num(minor, "minor", &rule)?));
        }
        ops.push(Op::Insn(alu32(BPF_MOV, R0, i32::from(rule.allow))));
        ops.push(Op::Insn(exit()));
        p.extend(block(ops));
    }
    p.push(alu32(BPF_MOV, R0, i32::from(default_allow)));
    p.push(exit());
    Ok(p)
}

const LICENSE: &CStr = c"Apache-2.0";

fn syscall_error(op: String, dir: &Path, source: std::io::Error) -> Error {
    Error::Syscall { op, path: dir.to_owned(), source }
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::Open { path: dir.to_owned(), source: e.into() })
}

/// Load the filter for `rules` and make it the only device program attached
/// to the cgroup at `dir`.
pub fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let insns: Vec<[u8; 8]> = program(rules)?.iter().map(Insn::encode).collect();
    let cgroup = open_dir(dir)?;
    tracing::debug!(path = %dir.display(), instructions = insns.len(), "bpf load device filter");
    let prog = bpf::prog_load(bpf::PROG_TYPE_CGROUP_DEVICE, &insns, LICENSE, "roci_devices").map_err(|e| {
        let op = if e.log.is_empty() {
            "load the device filter (BPF_PROG_LOAD)".to_owned()
        } else {
            format!("load the device filter (BPF_PROG_LOAD; verifier: {})", e.log)
        };
        syscall_error(op, dir, e.source)
    })?;
    let old_ids = bpf::prog_query(cgroup.as_fd(), bpf::ATTACH_CGROUP_DEVICE)
        .map_err(|e| syscall_error("list the attached device filters (BPF_PROG_QUERY)".into(), dir, e))?;
    let mut old = Vec::with_capacity(old_ids.len());
    for id in old_ids {
        match bpf::prog_get_fd_by_id(id) {
            Ok(fd) => old.push(fd),
            // Detached and freed since the query.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(syscall_error(format!("open attached device filter {id} (BPF_PROG_GET_FD_BY_ID)"), dir, e)),
        }
    }
    let attach = |flags, replace: Option<&OwnedFd>| {
        tracing::debug!(path = %dir.display(), flags, replace = replace.is_some(), "bpf attach device filter");
        bpf::prog_attach(cgroup.as_fd(), prog.as_fd(), bpf::ATTACH_CGROUP_DEVICE, flags, replace.map(AsFd::as_fd))
    };
    let attach_error = |e| syscall_error("attach the device filter (BPF_PROG_ATTACH)".into(), dir, e);
    let mut to_detach: &[OwnedFd] = &old;
    if let [only] = old.as_slice() {
        match attach(bpf::F_ALLOW_MULTI | bpf::F_REPLACE, Some(only)) {
            Ok(()) => to_detach = &[],
            // No BPF_F_REPLACE (before 5.6): attach, then detach below.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => attach(bpf::F_ALLOW_MULTI, None).map_err(attach_error)?,
            Err(e) => return Err(attach_error(e)),
        }
    } else {
        attach(bpf::F_ALLOW_MULTI, None).map_err(attach_error)?;
    }
    for fd in to_detach {
        tracing::debug!(path = %dir.display(), "bpf detach old device filter");
        match bpf::prog_detach(cgroup.as_fd(), fd.as_fd(), bpf::ATTACH_CGROUP_DEVICE) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(syscall_error("detach the old device filter (BPF_PROG_DETACH)".into(), dir, e)),
        }
    }
    Ok(())
}

/// The ids of the device programs attached to the cgroup at `dir` itself.
pub fn attached(dir: &Path) -> Result<Vec<u32>> {
    let cgroup = open_dir(dir)?;
    bpf::prog_query(cgroup.as_fd(), bpf::ATTACH_CGROUP_DEVICE)
        .map_err(|e| syscall_error("list the attached device filters (BPF_PROG_QUERY)".into(), dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::devices::tests::rules;
    use crate::cgroups::devices::DEFAULT_ALLOWED;

    fn jne(dst: u8, imm: i32, off: i16) -> Insn {
        insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
    }

    fn mov_imm(dst: u8, imm: i32) -> Insn {
        alu32(BPF_MOV, dst, imm)
    }

    fn prologue() -> Vec<Insn> {
        vec![
            load_word(R2, R1, 0),
            alu32(BPF_AND, R2, 0xffff),
            load_word(R3, R1, 0),
            alu32(BPF_RSH, R3, 16),
            load_word(R4, R1, 4),
            load_word(R5, R1, 8),
        ]
    }

    #[test]
    fn an_allow_list_program_instruction_by_instruction() {
        let p = program(&rules(&["deny a *:* rwm", "allow c 1:3 rwm", "allow c *:* m"])).unwrap();
        let mut want = prologue();
        want.extend([
            // In the rules' order (each block falls through unless it allows
            // all that is asked, so the order does not change the verdict).
            // c 1:3 rwm: no access check
            jne(R2, DEV_CHAR, 4),
            jne(R4, 1, 3),
            jne(R5, 3, 2),
            mov_imm(R0, 1),
            exit(),
            // c *:* m
            jne(R2, DEV_CHAR, 5),
            mov32_reg(R1, R3),
            alu32(BPF_AND, R1, ACC_MKNOD),
            insn(BPF_JMP | BPF_JNE | BPF_X, R1, R3, 2, 0),
            mov_imm(R0, 1),
            exit(),
            // default: deny
            mov_imm(R0, 0),
            exit(),
        ]);
        assert_eq!(p, want);
    }

    #[test]
    fn a_deny_list_program_matches_any_shared_access() {
        let p = program(&rules(&["allow a *:* rwm", "deny b 8:* w"])).unwrap();
        let mut want = prologue();
        want.extend([
            jne(R2, DEV_BLOCK, 6),
            mov32_reg(R1, R3),
            alu32(BPF_AND, R1, ACC_WRITE),
            insn(BPF_JMP | BPF_JEQ | BPF_K, R1, 0, 3, 0),
            jne(R4, 8, 2),
            mov_imm(R0, 0),
            exit(),
            mov_imm(R0, 1),
            exit(),
        ]);
        assert_eq!(p, want);
        // Empty rules: deny everything.
        let mut want = prologue();
        want.extend([mov_imm(R0, 0), exit()]);
        assert_eq!(program(&[]).unwrap(), want);
    }

    #[test]
    fn encoding_is_the_kernels_struct_bpf_insn() {
        assert_eq!(load_word(R2, R1, 0).encode(), [0x61, 0x12, 0, 0, 0, 0, 0, 0]);
        assert_eq!(load_word(R4, R1, 4).encode(), [0x61, 0x14, 4, 0, 0, 0, 0, 0]);
        assert_eq!(alu32(BPF_AND, R2, 0xffff).encode(), [0x54, 0x02, 0, 0, 0xff, 0xff, 0, 0]);
        assert_eq!(alu32(BPF_RSH, R3, 16).encode(), [0x74, 0x03, 0, 0, 16, 0, 0, 0]);
        assert_eq!(mov32_reg(R1, R3).encode(), [0xbc, 0x31, 0, 0, 0, 0, 0, 0]);
        assert_eq!(insn(BPF_JMP | BPF_JNE | BPF_X, R1, R3, 2, 0).encode(), [0x5d, 0x31, 2, 0, 0, 0, 0, 0]);
        assert_eq!(jne(R4, 136, 3).encode(), [0x55, 0x04, 3, 0, 136, 0, 0, 0]);
        assert_eq!(insn(BPF_JMP | BPF_JEQ | BPF_K, R1, 0, 1, 0).encode(), [0x15, 0x01, 1, 0, 0, 0, 0, 0]);
        assert_eq!(mov_imm(R0, 1).encode(), [0xb4, 0x00, 0, 0, 1, 0, 0, 0]);
        assert_eq!(exit().encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    /// Run a program of the instructions above on one access, like the
    /// kernel would.
    fn run(p: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> bool {
        let ctx = [(access << 16 | kind) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            pc += 1;
            let (d, s) = (i.dst as usize, i.src as usize);
            match i.code {
                0x61 => {
                    assert_eq!(s, 1, "loads only from the context");
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                0x54 => r[d] = u64::from(r[d] as u32 & i.imm as u32),
                0x74 => r[d] = u64::from((r[d] as u32) >> i.imm),
                0xb4 => r[d] = u64::from(i.imm as u32),
                0xbc => r[d] = u64::from(r[s] as u32),
                0x55 | 0x5d | 0x15 => {
                    let rhs = if i.code == 0x5d { r[s] } else { i.imm as i64 as u64 };
                    let taken = if i.code == 0x15 { r[d] == rhs } else { r[d] != rhs };
                    if taken {
                        pc += i.off as usize;
                    }
                }
                0x95 => return r[0] == 1,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    /// The v1 kernel's decision for an emulated state.
    fn v1_decision(emu: &Emulator, kind: DeviceKind, access: Access, major: u32, minor: u32) -> bool {
        let hit = |r: &DeviceRule| r.kind == kind && r.major.is_none_or(|m| m == major) && r.minor.is_none_or(|m| m == minor);
        if emu.default_allow() {
            !emu.exceptions().iter().any(|r| hit(r) && !r.access.intersection(access).is_empty())
        } else {
            emu.exceptions().iter().any(|r| hit(r) && r.access.contains(access))
        }
    }

    #[test]
    fn programs_decide_like_the_v1_controller() {
        let sets: &[&[&str]] = &[
            &["deny a *:* rwm", "allow c 1:3 rwm", "allow c *:* m", "allow b 8:* r", "allow c 136:* rw", "allow c 1:5 w"],
            &["allow a *:* rwm", "deny b 8:* w", "deny c 1:5 rwm", "deny c *:3 m"],
            &["deny a *:* rwm"],
            &["allow a *:* rwm"],
        ];
        let mut with_defaults = rules(&["deny a *:* rwm"]);
        with_defaults.extend_from_slice(DEFAULT_ALLOWED);
        let mut all: Vec<Vec<DeviceRule>> = sets.iter().map(|s| rules(s)).collect();
        all.push(with_defaults);
        let accesses = [Access::READ, Access::WRITE, Access::MKNOD, Access::READ.union(Access::WRITE), Access::RWM];
        for set in &all {
            let p = program(set).unwrap();
            let emu = Emulator::from_rules(set).unwrap();
            for (kind, k) in [(DeviceKind::Block, DEV_BLOCK), (DeviceKind::Char, DEV_CHAR)] {
                for access in accesses {
                    for (major, minor) in [(1, 3), (1, 5), (1, 9), (8, 0), (8, 3), (136, 4), (5, 2), (10, 200), (2, 3)] {
                        let got = run(&p, k, bpf_access(access), major, minor);
                        let want = v1_decision(&emu, kind, access, major, minor);
                        assert_eq!(got, want, "{set:?}: {kind:?} {major}:{minor} {access}");
                    }
                }
            }
        }
    }
}
