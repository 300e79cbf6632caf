//! seccomp(2), the user-notification ioctls and pidfd_getfd(2): the raw calls
//! behind `crate::seccomp`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The instruction type of compiled filters (seccompiler's, which has the
/// layout of the kernel's `struct sock_filter`).
pub use seccompiler::sock_filter;

const _: () = assert!(std::mem::size_of::<sock_filter>() == std::mem::size_of::<libc::sock_filter>());

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`: attach `program` to the
/// calling thread (to every thread with `SECCOMP_FILTER_FLAG_TSYNC`). With
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER` the kernel returns the notification
/// listener, close-on-exec. Needs no_new_privs or CAP_SYS_ADMIN (EACCES).
pub fn set_mode_filter(flags: u32, program: &[sock_filter]) -> io::Result<Option<OwnedFd>> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog { len, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `len` instructions of the kernel's layout (checked
    // above) that outlive the call; the kernel copies them and keeps no pointer.
    let ret = unsafe {
        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags as libc::c_ulong, &prog as *const libc::sock_fprog)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags as libc::c_ulong & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        // SAFETY: with NEW_LISTENER the kernel returned a new fd that we own.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }));
    }
    Ok(None)
}

/// Whether the kernel knows this combination of filter flags. Asks with a
/// NULL program: the kernel checks the flags first (EINVAL) and then fails to
/// read the program (EFAULT), so nothing is installed (libseccomp's probe).
pub fn filter_flags_supported(flags: u32) -> bool {
    // SAFETY: a NULL program pointer is only read by the kernel with
    // copy_from_user, which fails cleanly.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// `pidfd_getfd(2)`: a copy of fd `target` of the process behind `pidfd`
/// (needs ptrace access to it), close-on-exec.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// A pending notification, as `SECCOMP_IOCTL_NOTIF_RECV` returns it.
pub use libc::seccomp_notif as Notif;
/// The answer to a notification, for `SECCOMP_IOCTL_NOTIF_SEND`.
pub use libc::seccomp_notif_resp as NotifResp;

/// `SECCOMP_IOCTL_NOTIF_RECV`: wait for the next notification on a listener.
/// ENOENT once no process uses the filter any more.
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<Notif> {
    // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed.
    let mut notif: Notif = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: the ioctl writes one seccomp_notif through the valid pointer.
        let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif as *mut Notif) };
        if ret == 0 {
            return Ok(notif);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: answer a notification. ENOENT when the
/// notifying syscall is gone (its process was killed, for example).
pub fn notif_send(listener: BorrowedFd<'_>, resp: &NotifResp) -> io::Result<()> {
    let mut resp = *resp;
    // SAFETY: the ioctl reads one seccomp_notif_resp through the valid pointer.
    let ret = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp as *mut NotifResp) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
