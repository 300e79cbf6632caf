//! The syscall seam: the only module where `unsafe` is allowed.
//!
//! Each function wraps one raw syscall (or a libc call nix does not cover)
//! behind a safe signature. Everything else in the crate goes through nix or
//! std.
//!
//! Safe here means sound whatever the caller does, so there is no `unsafe
//! fn`: what a function's soundness would otherwise rest on is checked or
//! carried by a type. Fds come and go as `OwnedFd`/`BorrowedFd`: an fd the
//! kernel hands over (`recvmsg`, `fcntl`, a new pidfd) is owned the moment it
//! arrives, never adopted from a raw number on the caller's word; the fds a
//! clone must close are lent as `&mut OwnedFd`; `dup2` replaces only stdio
//! (no value owns 0-2), or happens just before `execve`/`_exit`.
//! [`clone_process`] refuses a multi-threaded caller instead of requiring a
//! single-threaded one.

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
/// whose directory `cgroup` is open (cgroup v2 only). The child closes the
/// fds of `close_in_child` (the caller's own, which the child must not
/// hold: a lock, the parent's end of a channel), runs `child` and exits
/// with its return value; it never returns into the caller's stack frames.
///
/// Safe to call, and sound, because it checks what its soundness rests on:
/// - The child is a copy of the caller's memory with only the calling
///   thread, so a lock another thread held (the allocator's, a `Mutex`)
///   would stay held for ever and data it was changing would stay half
///   changed. So the caller must be single-threaded, and this checks it
///   (`/proc/self/stat`, one read per clone) and fails otherwise.
/// - Closing an fd that a live value owns breaks that value (I/O safety).
///   The fds to close are lent as `&mut OwnedFd`: while the call lasts
///   nothing else, `child` included, can use or borrow their owners, and in
///   the child the call never ends, so no owner there is ever used or
///   dropped again: closing them is as if the child had taken them.
pub fn clone_process(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
    close_in_child: &mut [&mut OwnedFd],
    child: impl FnOnce() -> i32,
) -> io::Result<Child> {
    ensure_single_threaded()?;
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
        for fd in close_in_child.iter() {
            // SAFETY: the fd's owner is lent to us exclusively (`&mut`) and,
            // in the child, for good: this call never returns here, so the
            // owner is never used or dropped again and nothing else refers
            // to the fd (see the function's documentation).
            unsafe { libc::close(fd.as_raw_fd()) };
        }
        // The runtime's copy of the binary's view stays the last one open.
        crate::selfexe::release_view();
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

/// The number of threads of the calling process (`/proc/self/stat`, field
/// 20; the fields after the command name, which may hold anything, are
/// counted from its closing parenthesis).
pub fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read("/proc/self/stat")?;
    let after_comm = stat.iter().rposition(|b| *b == b')').map_or(&stat[..0], |i| &stat[i + 1..]);
    // After ")": state (field 3) ... num_threads (field 20) is the 18th.
    String::from_utf8_lossy(after_comm)
        .split_whitespace()
        .nth(17)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other("no thread count in /proc/self/stat"))
}

/// Fail unless the calling process has one thread (see [`clone_process`]).
/// libcontainer's own unit tests run on libtest's threads and clone
/// anyway: there the check is off, and their children do little but exit.
fn ensure_single_threaded() -> io::Result<()> {
    if cfg!(test) {
        return Ok(());
    }
    match thread_count()? {
        1 => Ok(()),
        n => Err(io::Error::other(format!(
            "cannot clone a process from one with {n} threads (the child would inherit locks the other threads hold); \
             libcontainer must be called from a single-threaded process for create, exec and restore"
        ))),
    }
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

/// Take over `fd`, an fd this process got across its own `execve`, if it is
/// an `O_PATH` fd open on the file `like` (same device and inode): returned
/// owned and close-on-exec. `None`, leaving `fd` alone, when it is not open
/// or names anything else. Takes over at most one fd in the life of the
/// process (see [`crate::selfexe`], its one caller, at the start of `main`).
pub fn adopt_inherited_path_fd(fd: RawFd, like: &std::fs::File) -> Option<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if fd < 3 || TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    let want = like.metadata().ok()?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat of any integer only reads the fd table (EBADF when it is
    // not open) and writes a full stat into `st`.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // SAFETY: F_GETFL of an open fd only reads its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if (st.st_dev, st.st_ino) != (want.dev(), want.ino()) || flags < 0 || flags & libc::O_PATH == 0 {
        return None;
    }
    // SAFETY: F_SETFD only changes this fd's close-on-exec flag.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: the fd came with the process image (the process that
    // executed us left it open and named it); nothing in this process
    // opened it, and `TAKEN` lets only this call take it over, so no other
    // owner exists.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Take over `fds`, fds this process got open across its own `execve` from
/// the image before it (which named them): returned owned, in order, and
/// close-on-exec. Refused (nothing taken) when one is below 3, named twice
/// or not open. Takes over at most once in the life of the process (see
/// [`crate::monitor`]'s handoff, its one caller, before anything else opens
/// fds of its own).
pub fn adopt_inherited_fds(fds: &[RawFd]) -> io::Result<Vec<OwnedFd>> {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    for (i, fd) in fds.iter().enumerate() {
        if *fd < 3 {
            return Err(invalid(format!("fd {fd} is stdio")));
        }
        if fds[..i].contains(fd) {
            return Err(invalid(format!("fd {fd} is named twice")));
        }
        // SAFETY: F_GETFD of any integer only reads the fd table (EBADF when it is not open).
        if unsafe { libc::fcntl(*fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("fd {fd}: {}", io::Error::last_os_error())));
        }
    }
    if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "inherited fds were taken over already"));
    }
    Ok(fds
        .iter()
        .map(|&fd| {
            // SAFETY: F_SETFD only changes this fd's close-on-exec flag.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            // SAFETY: the fd is open (checked above) and came with the process image: nothing
            // in this process opened it, each is named once, and `TAKEN` lets only this call
            // take them over, so no other owner exists.
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect())
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

/// Set `FD_CLOEXEC` on an fd again (after [`clear_cloexec`], when the exec did not happen).
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer fd; errors are reported, not UB.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `read(2)` into the spare capacity of `buf`, whose length grows by what
/// was read. Nothing past that is written, so the pages of a large buffer
/// that was never filled stay untouched (not resident).
pub fn read_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> nix::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the pointer and length describe `spare`, writable memory that `buf` owns; read(2)
    // writes at most that many bytes into it.
    let n = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: read(2) initialised the first `n` bytes of the spare capacity, right after the
    // current length.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(n as usize)
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

/// Receive one message on `sock` into `buf`, with the fds it carries
/// (`SCM_RIGHTS`, made close-on-exec); returns the bytes received and the
/// fds, each owned from the moment the kernel installs it (so no raw fd
/// number leaves this module to be adopted by a caller's promise).
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: recvmsg just installed `fd` in this process for this
                // message; nothing else has its number, so this is its only owner.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// A close-on-exec duplicate of `fd` numbered `min` or above (`fcntl`
/// `F_DUPFD_CLOEXEC`), to keep it clear of numbers about to be reused.
pub fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on a borrowed, open fd with an integer argument.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
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

/// `dup2(2)` onto stdin, stdout or stderr (`new` 0, 1 or 2; `EBADF` for
/// any other number). Replacing another fd number would change the file
/// under whatever value owns that number; stdio is owned by no value
/// (std keeps 0-2 open from start-up and only borrows them).
pub fn dup2_stdio(old: BorrowedFd<'_>, new: RawFd) -> io::Result<()> {
    if !(0..=2).contains(&new) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: dup2 on integer fds; `new` is a stdio fd, which no value owns.
    let ret = unsafe { libc::dup2(old.as_raw_fd(), new) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Put each `(number, fd)` of `fds` at its number and execute `path`; on
/// any failure leave with `_exit` (126 for the fds, 127 for the exec). For
/// a child about to run another program with fds at fixed numbers (CRIU's
/// inherited fds). It never returns: after the `dup2`s the values that
/// owned the replaced numbers hold other files, and no code of this
/// process runs again to use them. The fds to move must not sit at any of
/// the target numbers.
pub fn exec_with_fds(path: &CStr, argv: &[&CStr], envp: &[&CStr], fds: &[(RawFd, BorrowedFd<'_>)]) -> ! {
    for (target, fd) in fds {
        // SAFETY: dup2 on integer fds. The owners of the replaced numbers
        // are never used again: this process executes or exits below.
        if unsafe { libc::dup2(fd.as_raw_fd(), *target) } < 0 {
            exit_now(126);
        }
    }
    let _ = execve(path, argv, envp);
    exit_now(127)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn thread_count_sees_a_new_thread() {
        let before = thread_count().unwrap();
        assert!(before >= 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv().ok());
        assert_eq!(thread_count().unwrap(), before + 1);
        tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn dup2_stdio_refuses_other_numbers() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let err = dup2_stdio(r.as_fd(), r.as_raw_fd() + 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn recv_with_fds_owns_what_arrives() {
        use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};
        let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let fds = [r.as_raw_fd(), w.as_raw_fd()];
        sendmsg::<()>(a.as_raw_fd(), &[io::IoSlice::new(b"hi")], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
            .unwrap();
        let mut buf = [0u8; 16];
        let (n, got) = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(got.len(), 2);
        // The received write end works, and is not the one sent (a new number).
        assert_ne!(got[1].as_raw_fd(), w.as_raw_fd());
        nix::unistd::write(&got[1], b"x").unwrap();
        let mut one = [0u8; 1];
        nix::unistd::read(r.as_fd(), &mut one).unwrap();
        assert_eq!(&one, b"x");
        let high = dup_at_least(r.as_fd(), 500).unwrap();
        assert!(high.as_raw_fd() >= 500);
    }
}
