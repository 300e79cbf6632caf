//! Classic BPF for seccomp: the opcodes the compiler uses and an emitter that
//! builds a program back to front.
//!
//! cBPF jumps only forward, and a conditional jump reaches at most 255
//! instructions ahead. Emitting from the last instruction to the first means
//! every jump target already exists when the jump is written, so its offset
//! is known; a target too far away gets a `ja` trampoline (32-bit offset)
//! placed right after the conditional jump.

use std::collections::HashMap;

/// One instruction, laid out as the kernel's `struct sock_filter`.
pub(super) use seccompiler::sock_filter as Insn;

/// `BPF_LD | BPF_W | BPF_ABS`: load 32 bits of `seccomp_data` at offset k.
pub(super) const LD_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub(super) const AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`: unconditional jump by k.
pub(super) const JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(super) const JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K` (unsigned).
pub(super) const JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K` (unsigned).
pub(super) const JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`.
pub(super) const RET_K: u16 = 0x06;

/// `BPF_MAXINSNS`: the kernel refuses longer programs.
pub(super) const MAX_INSNS: usize = 4096;

/// Offsets in `struct seccomp_data`.
pub(super) const OFF_NR: u32 = 0;
pub(super) const OFF_ARCH: u32 = 4;
pub(super) const OFF_ARGS: u32 = 16;

/// An instruction already emitted, counted from the end of the program.
pub(super) type Label = usize;

/// A `ret` is shared by jumps at most this far before it; past that a new
/// one (one instruction) is cheaper than a trampoline.
const RET_REUSE: usize = 200;

#[derive(Default)]
pub(super) struct Emitter {
    /// The program in reverse: `rev[0]` is the last instruction.
    rev: Vec<Insn>,
    /// The nearest `ret k` emitted so far, by k.
    rets: HashMap<u32, Label>,
}

impl Emitter {
    pub(super) fn new() -> Emitter {
        Emitter::default()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rev.len()
    }

    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.rev.push(Insn { code, jt, jf, k });
        self.rev.len() - 1
    }

    /// How many instructions a jump emitted now would skip to reach `to`.
    fn distance(&self, to: Label) -> usize {
        self.rev.len() - to - 1
    }

    /// `ret k`, shared with an earlier identical one when it is near.
    pub(super) fn ret(&mut self, k: u32) -> Label {
        if let Some(&l) = self.rets.get(&k) {
            if self.distance(l) <= RET_REUSE {
                return l;
            }
        }
        let l = self.push(RET_K, 0, 0, k);
        self.rets.insert(k, l);
        l
    }

    /// A statement (load, ALU) that continues with `next`: directly when
    /// `next` is the instruction emitted last, else through a `ja`.
    pub(super) fn stmt(&mut self, code: u16, k: u32, next: Label) -> Label {
        if self.rev.len().checked_sub(1) != Some(next) {
            self.ja(next);
        }
        self.push(code, 0, 0, k)
    }

    /// `ja` to `to`.
    pub(super) fn ja(&mut self, to: Label) -> Label {
        let k = self.distance(to) as u32;
        self.push(JA, 0, 0, k)
    }

    /// A conditional jump: to `jt` when the test holds, else to `jf`. When
    /// both go to the same place no test is needed and nothing is emitted.
    pub(super) fn jump(&mut self, code: u16, k: u32, mut jt: Label, mut jf: Label) -> Label {
        if jt == jf {
            return jt;
        }
        loop {
            let (dt, df) = (self.distance(jt), self.distance(jf));
            if dt <= 255 && df <= 255 {
                return self.push(code, dt as u8, df as u8, k);
            }
            // A trampoline right after the jump; adding one moves the other
            // target one further away, hence the loop.
            if dt > 255 {
                jt = self.ja(jt);
            } else {
                jf = self.ja(jf);
            }
        }
    }

    /// The program, first instruction first.
    pub(super) fn finish(mut self) -> Vec<Insn> {
        self.rev.reverse();
        self.rev
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_emitter_offsets_and_trampolines() {
        let mut em = Emitter::new();
        let allow = em.ret(0x7fff_0000);
        // 300 filler rets between the jump and its target.
        for i in 0..300 {
            em.ret(1000 + i);
        }
        let deny = em.ret(0);
        let j = em.jump(JEQ_K, 7, allow, deny);
        let prog = em.finish();
        // The jump is first; its true branch goes through a trampoline.
        let first = prog.len() - 1 - j;
        assert_eq!(first, 0);
        let ins = &prog[0];
        assert_eq!(ins.code, JEQ_K);
        let t = 1 + ins.jt as usize;
        assert_eq!(prog[t].code, JA);
        assert_eq!(t + 1 + prog[t].k as usize, prog.len() - 1, "trampoline lands on the allow ret");
        let f = 1 + ins.jf as usize;
        assert_eq!(prog[f], Insn { code: RET_K, jt: 0, jf: 0, k: 0 });
    }

    #[test]
    fn seccomp_emitter_same_targets_emit_nothing() {
        let mut em = Emitter::new();
        let r = em.ret(1);
        assert_eq!(em.jump(JEQ_K, 3, r, r), r);
        assert_eq!(em.len(), 1);
    }

    #[test]
    fn seccomp_emitter_statement_reaches_an_older_instruction_through_ja() {
        let mut em = Emitter::new();
        let allow = em.ret(0x7fff_0000);
        em.ret(0);
        let ld = em.stmt(LD_ABS, OFF_NR, allow);
        assert_eq!(ld, 3);
        let prog = em.finish();
        assert_eq!(prog[0].code, LD_ABS);
        assert_eq!(prog[1], Insn { code: JA, jt: 0, jf: 0, k: 1 });
        assert_eq!(prog[3].k, 0x7fff_0000);
    }
}
