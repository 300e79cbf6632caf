//! `create`: make the container's namespaces, cgroup and rootfs, and leave
//! its init waiting for `start`.
//!
//! Nothing is left behind when it fails: [`Undo`] kills the init, removes
//! the cgroup and the state directory on every error path.
//!
//! Nor when it is killed (SIGKILL, no `Undo`): the state directory's
//! `intent.json` names the cgroup (and the pid file, and the image bundle
//! through the annotations) before any of it is made, so `delete` finds
//! and removes them; the init dies with this process until the state is
//! saved (the hand-off, see [`init::die_with_runtime`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::{hook_state, Error, Result, Status};
use crate::cgroups::{self, Manager};
use crate::namespaces::{write_id_maps, ForChildren, Plan};
use crate::process::channel::{self, FromInit, ToInit};
use crate::process::init::{self, InitArgs};
use crate::rootfs::Setup;
use crate::state::{self, Dir};
use crate::{hooks, spec, sys};

/// Options of `create` (runc's flags).
#[derive(Debug)]
pub struct Options<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub console_socket: Option<&'a Path>,
    /// A socket already connected to whoever wants the pty master (used by
    /// `run` in the foreground, which proxies the terminal itself).
    pub console_fd: Option<OwnedFd>,
    /// The init's stdin, stdout and stderr, when not the caller's own (the
    /// monitor's pipes).
    pub stdio: Option<crate::process::Stdio>,
    pub pid_file: Option<&'a Path>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `bundle`'s config, when the caller has loaded it already
    /// ([`spec::load`]): `run` reads it first to learn whether the process
    /// wants a terminal, and the read, parse and validation are done once.
    pub loaded: Option<spec::Bundle>,
    /// The caller starts the container itself ([`start::release`], as
    /// `run` does): the init makes no `start.sock` and waits on the
    /// channel, which [`Created::held`] keeps.
    ///
    /// [`start::release`]: super::start::release
    pub hold: bool,
}

/// A created container.
#[derive(Debug)]
pub struct Created {
    pub pid: Pid,
    pub pidfd: Option<OwnedFd>,
    /// With [`Options::hold`]: the init, waiting for [`start::release`].
    ///
    /// [`start::release`]: super::start::release
    pub held: Option<Held>,
}

/// A created init that waits on its channel to be started, and what its
/// start needs: the state the poststart hooks are given, and the hooks.
#[derive(Debug)]
pub struct Held {
    pub(crate) channel: channel::Channel,
    pub(crate) running_state: Vec<u8>,
    pub(crate) poststart: Vec<oci_spec::runtime::Hook>,
}

/// Rolls back a half-made container.
struct Undo {
    dir: Option<Dir>,
    cgroup: Option<Box<dyn Manager>>,
    child: Option<(Pid, Option<OwnedFd>)>,
    /// The rootfs, when it is set up in the runtime's mount namespace.
    shared_rootfs: Option<PathBuf>,
}

impl Undo {
    fn done(mut self) {
        self.dir = None;
        self.cgroup = None;
        self.child = None;
        self.shared_rootfs = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some((pid, pidfd)) = self.child.take() {
            match &pidfd {
                Some(fd) => {
                    let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
                }
                None => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
            let _ = waitpid(pid, None);
        }
        if let Some(rootfs) = self.shared_rootfs.take() {
            if let Err(e) = crate::rootfs::detach_shared(&rootfs) {
                tracing::warn!(error = %e, "detach the rootfs mounts of failed container");
            }
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "remove cgroup of failed container");
            }
        }
        if let Some(dir) = self.dir.take() {
            if let Err(e) = dir.remove() {
                tracing::warn!(error = %e, "remove state of failed container");
            }
        }
    }
}

/// LISTEN_FDS passed by systemd-style socket activation to *us* are passed
/// on to the container (as runc does).
fn listen_fds() -> u32 {
    let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    if !pid_ok {
        return 0;
    }
    std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0)
}

pub fn create(opts: Options<'_>) -> Result<Created> {
    crate::selfexe::require()?;
    spec::validate_id(opts.id)?;
    let bundle = match opts.loaded {
        Some(b) => b,
        None => spec::load(opts.bundle)?,
    };
    let spec = &bundle.spec;
    let process = spec.process().as_ref().expect("validated");
    let linux = spec.linux().as_ref().expect("validated");
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && opts.console_fd.is_none() {
        return Err(Error::Usage("process.terminal is true: a --console-socket is needed to hand over the pty".into()));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Usage("--console-socket given but process.terminal is false".into()));
    }
    if !terminal && opts.console_fd.is_some() {
        return Err(Error::Usage("a console was asked for (tty) but process.terminal is false".into()));
    }

    // Compiled here, in the runtime, so a bad profile fails before anything
    // exists and the container's process only installs it.
    let seccomp = linux.seccomp().as_ref().map(|s| crate::seccomp::compile_cached(s, opts.root)).transpose()?;

    let dir = Dir::create(opts.root, opts.id)?;
    let mut undo = Undo { dir: None, cgroup: None, child: None, shared_rootfs: None };
    let dir = undo.dir.insert(dir);

    let cgroup_path = cgroups::resolve_path(linux.cgroups_path().as_deref().and_then(Path::to_str), opts.id)?;
    let annotations: std::collections::BTreeMap<String, String> =
        spec.annotations().clone().unwrap_or_default().into_iter().collect();
    let pid_file = opts
        .pid_file
        .map(|p| std::path::absolute(p).map_err(|source| Error::Io { op: "resolve pid file", path: p.to_owned(), source }))
        .transpose()?;
    // Before anything outside the state directory exists.
    dir.save_intent(&state::Intent {
        version: state::STATE_VERSION,
        id: opts.id.to_owned(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        annotations: annotations.clone(),
        cgroup_path: Some(cgroup_path.clone()),
        pid_file: pid_file.clone(),
        shared_rootfs: !crate::rootfs::has_mount_ns(spec),
    })?;
    let mut cg = cgroups::manager(&cgroup_path)?;
    let have_cgroup = match cg.create() {
        Ok(()) => true,
        // Rootless on a host that delegates no cgroup to the caller: as
        // runc does, the container runs without one unless it asks for
        // limits.
        Err(cgroups::Error::Create { ref source, ref path })
            if !nix::unistd::geteuid().is_root()
                && source.kind() == std::io::ErrorKind::PermissionDenied
                && !asks_for_limits(linux) =>
        {
            tracing::warn!(path = %path.display(), "rootless: no cgroup can be made here; the container runs in the caller's cgroups");
            false
        }
        Err(e) => return Err(e.into()),
    };
    if have_cgroup {
        super::limit(undo.cgroup.insert(cg).as_ref(), linux)?;
    }
    let cg: Option<&dyn Manager> = undo.cgroup.as_deref();
    let entry = cg.map(|c| c.entry()).transpose()?;

    let mut plan = Plan::new(linux.namespaces().as_deref().unwrap_or_default(), linux.time_offsets().as_ref())?;
    if let Some(joined) = plan.joined_user() {
        // Mappings next to a joined user namespace must be its own.
        let (uid_map, gid_map) = crate::namespaces::user_ns_maps(joined.fd.as_fd())?;
        for (field, maps, have) in
            [("linux.uidMappings", linux.uid_mappings(), uid_map), ("linux.gidMappings", linux.gid_mappings(), gid_map)]
        {
            let maps = maps.as_deref().unwrap_or_default();
            if !maps.is_empty() && !crate::namespaces::same_mappings(&crate::namespaces::id_map_text(maps), &have) {
                return Err(Error::Usage(format!(
                    "{field}: do not match the user namespace joined at {} ({})",
                    joined.path.display(),
                    have.trim()
                )));
            }
        }
        // New namespaces must belong to the joined user namespace, so the
        // init is cloned by a process already in it.
        plan.user_entered_by_parent = true;
    }

    let console = match (opts.console_fd, opts.console_socket) {
        (Some(fd), _) => Some(fd),
        (None, Some(path)) => Some(OwnedFd::from(UnixStream::connect(path).map_err(|source| Error::Io {
            op: "connect to console socket",
            path: path.to_owned(),
            source,
        })?)),
        (None, None) => None,
    };

    // Bound through the directory's fd so a long --root cannot overflow
    // sun_path.
    let listener = if opts.hold {
        None
    } else {
        let sock_path = PathBuf::from(format!("/proc/self/fd/{}/{}", dir.fd().as_raw_fd(), state::START_SOCKET));
        Some(UnixListener::bind(&sock_path).map_err(|source| Error::Io {
            op: "listen on",
            path: dir.path.join(state::START_SOCKET),
            source,
        })?)
    };

    let listen = listen_fds();
    let extra_env = if listen > 0 { vec![format!("LISTEN_FDS={listen}"), "LISTEN_PID=1".to_string()] } else { Vec::new() };
    let (mut parent_chan, init_chan) = channel::pair()?;
    let setup = Setup {
        spec,
        bundle: &bundle.dir,
        rootfs: &bundle.rootfs,
        cgroup_mounts: cg.map(|c| c.mount_sources()).unwrap_or_default(),
        cgroup_ns: plan.has_cgroup,
        terminal,
        idmapped: crate::rootfs::idmapped_sources(spec, &bundle.dir)?,
    };
    let args = InitArgs {
        id: opts.id,
        bundle: &bundle,
        channel: init_chan,
        namespaces: &plan,
        rootfs: setup,
        console,
        start: listener,
        stdio: opts.stdio,
        no_pivot: opts.no_pivot,
        new_keyring: !opts.no_new_keyring,
        keep_fds: (listen + opts.preserve_fds) as RawFd,
        extra_env,
        seccomp: seccomp.as_ref(),
        cgroup: entry.as_ref(),
    };

    let for_children = ForChildren::enter(&plan)?;
    // The init must not hold the state directory's lock or our end of the channel.
    let close = &mut [dir.fd_mut(), parent_chan.fd_mut()];
    let child = match plan.joined_user() {
        Some(j) => clone_in_user_namespace(j.fd.as_fd(), plan.clone_flags, close, move || init::run(args)),
        None => sys::clone_process(plan.clone_flags, entry.as_ref().and_then(|e| e.clone_fd()), close, move || init::run(args)),
    }
    .map_err(|source| Error::Sys { op: "clone container init".into(), source })?;
    drop(for_children);
    let pid = child.pid;
    tracing::debug!(%pid, in_cgroup = child.in_cgroup, "container init cloned");
    undo.child = Some((pid, child.pidfd));
    if !crate::rootfs::has_mount_ns(spec) {
        undo.shared_rootfs = Some(bundle.rootfs.clone());
    }

    if let (Some(cg), Some(entry)) = (cg, &entry) {
        if entry.needs_move_after(child.in_cgroup) {
            cg.add_process(pid)?;
        }
    }
    if plan.new_user {
        write_id_maps(
            pid,
            linux.uid_mappings().as_deref().unwrap_or_default(),
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?;
    }
    parent_chan.send(&ToInit::Proceed)?;
    // Everything the saved state says is known now: it is written while the
    // init sets itself up, and put in place once the init is ready.
    let held = opts.hold.then(|| {
        (
            hook_state(opts.id, Status::Running, pid.as_raw(), &bundle.dir, &annotations),
            spec.hooks().as_ref().and_then(|h| h.poststart().clone()).unwrap_or_default(),
        )
    });
    let staged =
        dir.stage(&super::saved_state(opts.id, pid, &bundle, annotations.clone(), have_cgroup.then(|| cgroup_path.clone()))?)?;
    loop {
        match parent_chan.recv::<FromInit>() {
            Ok(FromInit::RunHooks) => {
                // The init is in its namespaces now; prestart hooks see the devices moved.
                crate::netdev::move_all(linux, pid)?;
                // The runtime environment exists: "created", as crun says and the
                // runtime-tools suite expects of prestart (runc 1.1 says "creating").
                let state = hook_state(opts.id, Status::Created, pid.as_raw(), &bundle.dir, &annotations);
                let h = spec.hooks().as_ref();
                hooks::run_all("prestart", h.and_then(|h| h.prestart().as_ref()), &state)?;
                hooks::run_all("createRuntime", h.and_then(|h| h.create_runtime().as_ref()), &state)?;
                parent_chan.send(&ToInit::HooksDone { state: String::from_utf8_lossy(&state).into_owned() })?;
                // The init closed its copy at the clone; ours is the last,
                // and its grace period runs while the init pivots.
                crate::selfexe::release_view();
            }
            Ok(FromInit::Ready) => break,
            Ok(FromInit::SeccompListener { fd }) => {
                let state = hook_state(opts.id, Status::Creating, pid.as_raw(), &bundle.dir, &annotations);
                let (_, pidfd) = undo.child.as_ref().expect("set above");
                let own;
                let pidfd = match pidfd {
                    Some(fd) => fd.as_fd(),
                    None => {
                        own = sys::pidfd_open(pid).map_err(|source| Error::Sys { op: format!("pidfd_open {pid}"), source })?;
                        own.as_fd()
                    }
                };
                super::pass_listener(pidfd, fd, spec, pid, &state)?;
                parent_chan.send(&ToInit::ListenerTaken)?;
            }
            Ok(FromInit::Failed { message }) => return Err(Error::Init(message)),
            Ok(other @ FromInit::Detached) => {
                return Err(Error::Init(format!("unexpected message from the container's init: {other:?}")))
            }
            Err(channel::Error::Closed) | Err(channel::Error::Io(_)) => {
                let (pid, pidfd) = undo.child.take().expect("set above");
                drop(pidfd);
                let status = waitpid(pid, None).map(|s| format!("{s:?}")).unwrap_or_else(|e| e.to_string());
                return Err(Error::Init(format!("container init exited during setup: {status}")));
            }
            Err(e) => return Err(e.into()),
        }
    }

    staged.commit()?;
    if let Some(pid_file) = &pid_file {
        write_pid_file(pid_file, pid)?;
    }
    // The hand-off: the saved state names the init, so it may outlive us.
    // Killed before the init answers, it dies with us and the container
    // is `stopped`.
    parent_chan.send(&ToInit::StateSaved)?;
    match parent_chan.recv::<FromInit>()? {
        FromInit::Detached => {}
        FromInit::Failed { message } => return Err(Error::Init(message)),
        other => return Err(Error::Init(format!("unexpected message from the container's init: {other:?}"))),
    }
    let pidfd = undo.child.as_mut().and_then(|(_, fd)| fd.take());
    undo.done();
    let held = held.map(|(running_state, poststart)| Held { channel: parent_chan, running_state, poststart });
    Ok(Created { pid, pidfd, held })
}

/// Write the pid file atomically (clients poll for it).
pub fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
    let path = std::path::absolute(path).map_err(|source| Error::Io { op: "resolve pid file", path: path.to_owned(), source })?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Usage(format!("--pid-file {}: not a file path", path.display())))?;
    state::write_atomic(dir, name, pid.as_raw().to_string().as_bytes())?;
    Ok(())
}

/// Whether `linux.resources` sets any limit (device rules aside).
fn asks_for_limits(linux: &oci_spec::runtime::Linux) -> bool {
    let Some(r) = linux.resources() else { return false };
    r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.rdma().as_ref().is_some_and(|m| !m.is_empty())
        || r.unified().as_ref().is_some_and(|m| !m.is_empty())
}

/// Clone the init from an intermediate process that has joined `userns`,
/// so the namespaces the clone makes are owned by it. The intermediate
/// clones it with `CLONE_PARENT`, so this process is the init's parent
/// (its parent-death signal follows us, and we reap it), sends the init's
/// pidfd back and exits.
fn clone_in_user_namespace(
    userns: std::os::fd::BorrowedFd<'_>,
    flags: u64,
    close_in_init: &mut [&mut OwnedFd],
    init: impl FnOnce() -> i32,
) -> std::io::Result<sys::Child> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)?;
    let middle = sys::clone_process(0, None, &mut [], move || {
        if nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER).is_err() {
            return 1;
        }
        match sys::clone_process(flags | libc::CLONE_PARENT as u64, None, close_in_init, init) {
            Ok(c) => match c.pidfd {
                Some(fd) => i32::from(crate::tty::send_fd(theirs.as_fd(), fd.as_fd(), "init").is_err()),
                None => 1,
            },
            Err(_) => 1,
        }
    })?;
    let status = waitpid(middle.pid, None);
    let pidfd = crate::tty::recv_fd(ours.as_fd())
        .map_err(|e| std::io::Error::other(format!("the process joining the user namespace failed ({status:?}): {e}")))?;
    let pid = sys::pidfd_pid(pidfd.as_fd())?;
    Ok(sys::Child { pid, pidfd: Some(pidfd), in_cgroup: false })
}
