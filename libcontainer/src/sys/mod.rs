//! The syscall seam: the only module where `unsafe` is allowed.
//!
//! Each function wraps one raw syscall (or a libc call nix does not cover)
//! behind a safe signature. Everything else in the crate goes through nix or
//! std.

#![allow(unsafe_code)]

pub mod bpf;
pub mod mount;
pub mod overlay;
pub mod sched;
pub mod seccomp;

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::Pid;

/// `CLONE_NEWTIME` is newer than some libc headers.
pub const CLONE_NEWTIME: u64 = 0x0000_0080;
const CLONE_PIDFD: u64 = 0x0000_1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `clone3(2)` (the version-2 layout, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What [`clone_process`] returns to the parent.
pub struct Child {
    pub pid: Pid,
    /// A pidfd for the child when the kernel gave one.
    pub pidfd: Option<OwnedFd>,
    /// Whether the child was born inside the requested cgroup.
    pub in_cgroup: bool,
}

/// Fork the calling process into new namespaces, like `fork(2)` with
/// `flags` (a mask of `CLONE_NEW*`), optionally directly into the cgroup
/// whose directory `cgroup` is open (cgroup v2 only). The child runs `child`
/// and exits with its return value; it never returns into the caller's
/// stack frames.
///
/// The caller must be single-threaded: the child is a copy of the caller's
/// memory with only the calling thread, so a lock held by another thread
/// would stay locked forever in the child.
pub fn clone_process(flags: u64, cgroup: Option<BorrowedFd<'_>>, child: impl FnOnce() -> i32) -> io::Result<Child> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: flags | CLONE_PIDFD,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 with no CLONE_VM and no stack behaves like fork(2): the
    // child gets a private copy of the address space and resumes here. `args`
    // is a valid, fully initialised clone_args of the size passed.
    let mut ret = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    let mut in_cgroup = cgroup.is_some();
    if ret < 0 {
        let err = io::Error::last_os_error();
        // ENOSYS: no clone3 (old kernel or a seccomp filter that hides it);
        // E2BIG/EINVAL: no CLONE_INTO_CGROUP. Fall back to clone(2); the
        // caller then moves the child into its cgroup by pid.
        match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EINVAL) => {}
            _ => return Err(err),
        }
        tracing::debug!(error = %err, "clone3 unavailable, falling back to clone");
        in_cgroup = false;
        pidfd = -1;
        // SAFETY: clone(2) without CLONE_VM and with a NULL stack is fork(2)
        // with namespace flags; the remaining pointer arguments are unused.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_int>(),
                std::ptr::null_mut::<libc::c_int>(),
                0 as libc::c_ulong,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if ret == 0 {
        // In the child. A panic must not unwind into the parent's frames
        // that were copied with us.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(255);
        exit_now(code);
    }
    let pidfd = if pidfd >= 0 {
        // SAFETY: the kernel stored a new pidfd owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(pidfd) })
    } else {
        pidfd_open(Pid::from_raw(ret as i32)).ok()
    };
    Ok(Child { pid: Pid::from_raw(ret as i32), pidfd, in_cgroup })
}

/// Leave the process at once, without running atexit handlers or flushing
/// stdio buffers that belong to the parent's copy of the process.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// `pidfd_send_signal(2)`: signal exactly the process the pidfd refers to,
/// even if its pid number has been reused.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall; a NULL siginfo means "as kill(2) would".
    let ret = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null_mut::<libc::siginfo_t>(), 0)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mark every fd from `first` upwards close-on-exec (`close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC`), falling back to walking `/proc/self/fd`.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // The raw syscall: not every libc has a wrapper (musl does not).
    // SAFETY: close_range only changes fd flags of this process.
    let ret = unsafe {
        libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_uint)
    };
    if ret == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on an fd that may or may not still be
        // open is harmless; EBADF is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Clear `FD_CLOEXEC` on an fd that is to be inherited across exec.
pub fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd; errors are reported, not UB.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setdomainname(2)`; nix has no wrapper.
pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make `fd` (a terminal) the controlling terminal of the calling session.
pub fn set_controlling_terminal(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument, no pointers.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set a terminal's window size (`TIOCSWINSZ`).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a struct winsize from the valid pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Read a terminal's window size (`TIOCGWINSZ`) as (rows, cols).
pub fn window_size(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a struct winsize through the valid pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_row, ws.ws_col))
}

/// `TIOCGPTPEER`: open the slave side of the pty whose master is `master`,
/// without a path lookup (so a /dev/pts swapped by the container cannot
/// redirect it).
pub fn open_pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes open flags as an int and returns a new fd.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// `execve(2)` that keeps the process's signal mask and dispositions as
/// they are; returns only on failure.
pub fn execve(path: &CStr, argv: &[&CStr], envp: &[&CStr]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: both arrays are NULL-terminated and point at NUL-terminated
    // strings that outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Reset every signal disposition to its default and unblock all signals,
/// so the container's program starts with a clean signal state.
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always valid; invalid numbers fail with EINVAL.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None);
}

/// Take ownership of an fd the kernel just gave us (from `recvmsg` with
/// SCM_RIGHTS, for example).
pub fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass only fds that were just created for this process
    // and that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Close an inherited fd that is owned by a value the current process will
/// never drop (used in the container's init for the parent's copies).
pub fn close_inherited(fd: RawFd) {
    // SAFETY: the caller guarantees no live value will use or close it.
    unsafe { libc::close(fd) };
}

/// Join a new session keyring named `name` (`KEYCTL_JOIN_SESSION_KEYRING`),
/// so the container does not share the caller's keys. Kernels without
/// keyrings are not an error.
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: keyctl reads the NUL-terminated name; no other pointers.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(());
        }
        return Err(err);
    }
    Ok(())
}

/// `kill(2)` with any signal number, real-time ones included.
pub fn kill(pid: Pid, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::kill(pid.as_raw(), signal) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `dup2(2)` onto a fixed fd number (stdio of the container's init).
pub fn dup2(old: BorrowedFd<'_>, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on integer fds; `new` is replaced atomically.
    let ret = unsafe { libc::dup2(old.as_raw_fd(), new) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pid (in our PID namespace) of the process a pidfd refers to.
pub fn pidfd_pid(pidfd: BorrowedFd<'_>) -> io::Result<Pid> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
        .ok_or_else(|| io::Error::other("the pidfd's process has no pid here"))
}
