//! Syscall numbers per architecture, generated from the kernel's UAPI headers
//! by `generate.py` (see there for the sources). seccompiler knows one target
//! architecture per build and keeps its tables private, so roci carries its
//! own; they are small (about 400 names each) and looked up by binary search.

mod aarch64;
mod arm;
mod i386;
mod riscv64;
mod x32;
mod x86_64;

pub(super) use aarch64::AARCH64;
pub(super) use arm::ARM;
pub(super) use i386::I386;
pub(super) use riscv64::RISCV64;
pub(super) use x32::X32;
pub(super) use x86_64::X86_64;

/// The number of `name` in `table`, if that architecture has it.
pub(super) fn lookup(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| table[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_tables_sorted_and_known_numbers() {
        for t in [X86_64, I386, X32, AARCH64, ARM, RISCV64] {
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "table not sorted by name");
        }
        // Spot checks against arch/x86/entry/syscalls/syscall_{64,32}.tbl and
        // include/uapi/asm-generic/unistd.h.
        assert_eq!(lookup(X86_64, "read"), Some(0));
        assert_eq!(lookup(X86_64, "mkdir"), Some(83));
        assert_eq!(lookup(X86_64, "clone3"), Some(435));
        assert_eq!(lookup(X86_64, "listns"), Some(470));
        assert_eq!(lookup(I386, "socketcall"), Some(102));
        assert_eq!(lookup(I386, "socket"), Some(359));
        assert_eq!(lookup(X32, "read"), Some(0x4000_0000));
        assert_eq!(lookup(X32, "execve"), Some(0x4000_0000 + 520));
        assert_eq!(lookup(X32, "rt_sigaction"), Some(0x4000_0000 + 512));
        assert_eq!(lookup(AARCH64, "openat"), Some(56));
        assert_eq!(lookup(AARCH64, "open"), None);
        assert_eq!(lookup(ARM, "set_tls"), Some(0xf0005));
        assert_eq!(lookup(RISCV64, "riscv_flush_icache"), Some(259));
        assert_eq!(lookup(X86_64, "no_such_syscall"), None);
    }
}
