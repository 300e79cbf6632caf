//! Per-process scheduling and memory attributes whose syscalls neither nix
//! nor libc wrap: `ioprio_set`/`ioprio_get`, `sched_setattr`/`sched_getattr`,
//! `set_mempolicy`/`get_mempolicy`, and `personality`.

use std::io;

/// `ioprio_set(2)` `which` values.
pub const IOPRIO_WHO_PROCESS: i32 = 1;
pub const IOPRIO_WHO_PGRP: i32 = 2;

/// `ioprio_set(2)`: set the I/O priority (`class << 13 | level`) of a
/// process (`who` 0: the caller) or process group.
pub fn ioprio_set(which: i32, who: i32, ioprio: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, which, who, ioprio) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioprio_get(2)`: the I/O priority of a process, `class << 13 | level`.
pub fn ioprio_get(which: i32, who: i32) -> io::Result<i32> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_get, which, who) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as i32)
}

/// `struct sched_attr` of `sched_setattr(2)` (`SCHED_ATTR_SIZE_VER1`, with
/// the utilization clamps).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// `sched_setattr(2)` on a thread (`pid` 0: the caller).
pub fn sched_setattr(pid: i32, attr: &SchedAttr) -> io::Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a fully initialised sched_attr whose `size` field is its
    // own size; the kernel only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, pid, &a as *const SchedAttr, 0u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sched_getattr(2)` of a thread (`pid` 0: the caller).
pub fn sched_getattr(pid: i32) -> io::Result<SchedAttr> {
    let mut a = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: the kernel writes at most `size` bytes into `a`, which is that large.
    let ret = unsafe { libc::syscall(libc::SYS_sched_getattr, pid, &mut a as *mut SchedAttr, size, 0u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(a)
}

/// Bits in a node mask of `set_mempolicy(2)`: enough for every node
/// number Linux supports (`CONFIG_NODES_SHIFT` is at most 10).
pub const MAX_NUMA_NODES: usize = 1024;

/// `set_mempolicy(2)` for the calling thread: `mode` with its `MPOL_F_*`
/// flags or'ed in, and the nodes (each below [`MAX_NUMA_NODES`]).
pub fn set_mempolicy(mode: i32, nodes: &[usize]) -> io::Result<()> {
    let mut mask = [0 as libc::c_ulong; MAX_NUMA_NODES / libc::c_ulong::BITS as usize];
    let bits = libc::c_ulong::BITS as usize;
    for &n in nodes {
        if n >= MAX_NUMA_NODES {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        mask[n / bits] |= 1 << (n % bits);
    }
    let (ptr, maxnode) = if nodes.is_empty() { (std::ptr::null(), 0) } else { (mask.as_ptr(), MAX_NUMA_NODES + 1) };
    // SAFETY: `ptr` is NULL (with maxnode 0) or points at `mask`, which holds
    // MAX_NUMA_NODES bits; the kernel reads maxnode - 1 bits from it.
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode as libc::c_ulong) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `get_mempolicy(2)` of the calling thread: the mode (with the `MPOL_F_*`
/// mode flags) and the node mask's set bits.
pub fn get_mempolicy() -> io::Result<(i32, Vec<usize>)> {
    let mut mode: libc::c_int = 0;
    let mut mask = [0 as libc::c_ulong; MAX_NUMA_NODES / libc::c_ulong::BITS as usize];
    // SAFETY: the kernel writes one int to `mode` and MAX_NUMA_NODES bits to `mask`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut libc::c_int,
            mask.as_mut_ptr(),
            MAX_NUMA_NODES as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            0 as libc::c_ulong,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let bits = libc::c_ulong::BITS as usize;
    let nodes = (0..MAX_NUMA_NODES).filter(|n| mask[n / bits] & (1 << (n % bits)) != 0).collect();
    Ok((mode, nodes))
}

/// `personality(2)`: set the execution domain; returns the previous one.
/// `0xffffffff` only queries.
pub fn personality(persona: u32) -> io::Result<u32> {
    // SAFETY: plain syscall with an integer argument.
    let ret = unsafe { libc::personality(persona as libc::c_ulong) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as u32)
}
