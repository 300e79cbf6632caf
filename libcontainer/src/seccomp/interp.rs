//! A classic-BPF interpreter for seccomp programs, for tests: runs a
//! generated filter on a given (arch, nr, args) and returns what the kernel
//! would return, after the same static checks the kernel makes.

use super::bpf::{Insn, MAX_INSNS};

/// `struct seccomp_data`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Data {
    pub nr: u32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

impl Data {
    pub(super) fn new(arch: u32, nr: u32, args: &[u64]) -> Data {
        let mut a = [0; 6];
        a[..args.len()].copy_from_slice(args);
        Data { nr, arch, ip: 0, args: a }
    }

    /// 32-bit load at a byte offset, little-endian layout.
    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr,
            4 => self.arch,
            8 => self.ip as u32,
            12 => (self.ip >> 32) as u32,
            16..=60 if off.is_multiple_of(4) => {
                let a = self.args[((off - 16) / 8) as usize];
                if (off - 16).is_multiple_of(8) {
                    a as u32
                } else {
                    (a >> 32) as u32
                }
            }
            _ => panic!("load at offset {off} outside seccomp_data"),
        }
    }
}

/// What the kernel's checker (bpf_check_classic + seccomp_check_filter)
/// would refuse, for the instructions this compiler emits.
pub(super) fn check(prog: &[Insn]) {
    assert!(!prog.is_empty() && prog.len() <= MAX_INSNS, "program length {}", prog.len());
    for (pc, i) in prog.iter().enumerate() {
        match i.code {
            0x20 => assert!(i.k % 4 == 0 && i.k < 64, "pc {pc}: ld offset {}", i.k),
            0x06 | 0x54 => {}
            0x05 => assert!(pc + 1 + (i.k as usize) < prog.len(), "pc {pc}: ja out of range"),
            0x15 | 0x25 | 0x35 | 0x45 => {
                assert!(pc + 1 + (i.jt as usize) < prog.len(), "pc {pc}: jt out of range");
                assert!(pc + 1 + (i.jf as usize) < prog.len(), "pc {pc}: jf out of range");
            }
            c => panic!("pc {pc}: opcode {c:#x} not expected"),
        }
    }
    assert_eq!(prog.last().unwrap().code, 0x06, "the last instruction must be a ret");
}

/// Run the filter; returns the action value and how many instructions ran.
pub(super) fn run(prog: &[Insn], d: &Data) -> (u32, usize) {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let i = &prog[pc];
        steps += 1;
        let jump = |cond: bool| pc + 1 + if cond { i.jt as usize } else { i.jf as usize };
        pc = match i.code {
            0x20 => {
                a = d.word(i.k);
                pc + 1
            }
            0x54 => {
                a &= i.k;
                pc + 1
            }
            0x05 => pc + 1 + i.k as usize,
            0x15 => jump(a == i.k),
            0x25 => jump(a > i.k),
            0x35 => jump(a >= i.k),
            0x45 => jump(a & i.k != 0),
            0x06 => return (i.k, steps),
            c => panic!("pc {pc}: opcode {c:#x}"),
        };
        assert!(pc < prog.len(), "ran off the end");
    }
}
