//! The architectures roci builds filter sections for.
//!
//! The kernel tells the filter which syscall ABI a call came through in
//! `seccomp_data.arch` (an `AUDIT_ARCH_*` value); the syscall numbers mean
//! something different in each. A kernel reports only the ABIs it can run:
//! an x86_64 kernel reports x86_64, i386 and x32 (x32 shares
//! `AUDIT_ARCH_X86_64` and sets bit 30 of the syscall number,
//! `__X32_SYSCALL_BIT`); an arm64 kernel reports aarch64 and arm. That set is
//! the native architecture's *family*: architectures of another family named
//! in a profile can never be seen and need no code.

use oci_spec::runtime::Arch as OciArch;

use super::tables;

/// `<linux/audit.h>`: EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;
const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;
const AUDIT_ARCH_RISCV64: u32 = 243 | 0x8000_0000 | 0x4000_0000;

/// `__X32_SYSCALL_BIT`.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Arch {
    X86_64,
    X86,
    X32,
    Aarch64,
    Arm,
    Riscv64,
}

impl Arch {
    pub(super) const ALL: [Arch; 6] = [Arch::X86_64, Arch::X86, Arch::X32, Arch::Aarch64, Arch::Arm, Arch::Riscv64];

    /// The architecture this roci was built for, if it has a table.
    pub(super) fn native() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else if cfg!(target_arch = "riscv64") {
            Some(Arch::Riscv64)
        } else if cfg!(target_arch = "x86") {
            Some(Arch::X86)
        } else if cfg!(target_arch = "arm") {
            Some(Arch::Arm)
        } else {
            None
        }
    }

    /// The ABIs a kernel of this (native) architecture can report.
    pub(super) fn family(self) -> &'static [Arch] {
        match self {
            Arch::X86_64 | Arch::X32 => &[Arch::X86_64, Arch::X86, Arch::X32],
            Arch::X86 => &[Arch::X86],
            Arch::Aarch64 => &[Arch::Aarch64, Arch::Arm],
            Arch::Arm => &[Arch::Arm],
            Arch::Riscv64 => &[Arch::Riscv64],
        }
    }

    /// The value of `seccomp_data.arch` for this ABI.
    pub(super) fn audit(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => AUDIT_ARCH_X86_64,
            Arch::X86 => AUDIT_ARCH_I386,
            Arch::Aarch64 => AUDIT_ARCH_AARCH64,
            Arch::Arm => AUDIT_ARCH_ARM,
            Arch::Riscv64 => AUDIT_ARCH_RISCV64,
        }
    }

    /// Whether syscall arguments are compared as 64-bit values. libseccomp
    /// treats x32 as a 32-bit architecture (its pointers and longs are), so
    /// does roci: only the low 32 bits of an argument are looked at.
    pub(super) fn wide_args(self) -> bool {
        matches!(self, Arch::X86_64 | Arch::Aarch64 | Arch::Riscv64)
    }

    pub(super) fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => tables::X86_64,
            Arch::X86 => tables::I386,
            Arch::X32 => tables::X32,
            Arch::Aarch64 => tables::AARCH64,
            Arch::Arm => tables::ARM,
            Arch::Riscv64 => tables::RISCV64,
        }
    }

    pub(super) fn syscall(self, name: &str) -> Option<u32> {
        tables::lookup(self.table(), name)
    }

    /// The OCI (libseccomp) name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "SCMP_ARCH_X86_64",
            Arch::X86 => "SCMP_ARCH_X86",
            Arch::X32 => "SCMP_ARCH_X32",
            Arch::Aarch64 => "SCMP_ARCH_AARCH64",
            Arch::Arm => "SCMP_ARCH_ARM",
            Arch::Riscv64 => "SCMP_ARCH_RISCV64",
        }
    }

    /// The OCI name's architecture, `None` for one roci has no table for
    /// (and that, being of no family roci builds for, it cannot meet).
    pub(super) fn from_oci(arch: OciArch, native: Arch) -> Option<Arch> {
        Some(match arch {
            OciArch::ScmpArchNative => native,
            OciArch::ScmpArchX86_64 => Arch::X86_64,
            OciArch::ScmpArchX86 => Arch::X86,
            OciArch::ScmpArchX32 => Arch::X32,
            OciArch::ScmpArchAarch64 => Arch::Aarch64,
            OciArch::ScmpArchArm => Arch::Arm,
            OciArch::ScmpArchRiscv64 => Arch::Riscv64,
            _ => return None,
        })
    }
}
