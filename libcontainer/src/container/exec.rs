//! `exec`: run another process in a running (or created) container.
//!
//! This is the path liveness probes take, so it does the least it can: one
//! clone (born in the container's cgroup on cgroup v2), one `setns` on the
//! init's pidfd for every namespace at once, no re-exec of the runtime.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Capabilities, LinuxNamespaceType, Process};

use super::create::write_pid_file;
use super::foreground::{forwarded_signals, supervise};
use super::{init_pidfd, status, Error, Result, Status};
use crate::cgroups;
use crate::namespaces::clone_flag;
use crate::process::channel::{self, FromInit, ToInit};
use crate::process::exec::{self as exec_child, ExecArgs};
use crate::{attrs, state, sys, tty};

/// Changes `roci exec` makes to the container's process (runc's flags).
#[derive(Debug, Default)]
pub struct Overrides {
    pub args: Vec<String>,
    /// `KEY=VALUE`, replacing a variable of the same name.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub additional_gids: Vec<u32>,
    /// Added to the bounding, effective and permitted sets.
    pub caps: Vec<String>,
    pub tty: bool,
    pub no_new_privs: bool,
}

/// The process to run: the container's own, changed by `o`.
pub fn process_from(base: &Process, o: &Overrides) -> Result<Process> {
    let mut p = base.clone();
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &o.env {
        let Some((k, _)) = kv.split_once('=') else {
            return Err(Error::Usage(format!("--env {kv:?}: expected KEY=VALUE")));
        };
        env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &o.cwd {
        if !cwd.starts_with('/') {
            return Err(Error::Usage(format!("--cwd {cwd}: must be an absolute path")));
        }
        p.set_cwd(cwd.into());
    }
    let mut user = p.user().clone();
    if let Some(uid) = o.uid {
        user.set_uid(uid);
    }
    if let Some(gid) = o.gid {
        user.set_gid(gid);
    }
    if !o.additional_gids.is_empty() {
        user.set_additional_gids(Some(o.additional_gids.clone()));
    }
    p.set_user(user);
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !o.caps.is_empty() {
        let added: Capabilities =
            serde_json::from_value(serde_json::json!(o.caps)).map_err(|e| Error::Usage(format!("--cap: {e}")))?;
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for (get, set) in [(caps.bounding().clone(), 0), (caps.effective().clone(), 1), (caps.permitted().clone(), 2)] {
            let mut v = get.unwrap_or_default();
            v.extend(added.iter().copied());
            match set {
                0 => caps.set_bounding(Some(v)),
                1 => caps.set_effective(Some(v)),
                _ => caps.set_permitted(Some(v)),
            };
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

pub struct Options<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub process: Process,
    pub console_socket: Option<&'a Path>,
    pub pid_file: Option<&'a Path>,
    pub detach: bool,
    pub preserve_fds: u32,
    /// `--cgroup`: a sub-cgroup of the container's to run in (`PATH`, or
    /// `CONTROLLER[,CONTROLLER]:PATH` for one v1 hierarchy), repeatable.
    pub cgroup: Vec<String>,
    /// `--ignore-paused`: exec into a paused container too. The process
    /// joins the frozen cgroup, so it only runs once the container is
    /// resumed, and a foreground exec waits until then (as runc).
    pub ignore_paused: bool,
    /// The process's stdin, stdout and stderr, when not the caller's own
    /// (the monitor's pipes, for ExecSync).
    pub stdio: Option<crate::process::Stdio>,
}

/// A process [`spawn`] started in a container: the caller's child, which it
/// must reap.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub pidfd: Option<OwnedFd>,
    /// The pty master, when the process has a terminal and no console
    /// socket was given.
    pub master: Option<OwnedFd>,
}

/// Returns the exit code of the process (0 when detached).
pub fn exec(opts: Options<'_>) -> Result<i32> {
    let forwarded = forwarded_signals();
    let detach = opts.detach;
    if !detach {
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&forwarded), None)
            .map_err(|e| Error::Sys { op: "block signals".into(), source: e.into() })?;
    }
    let spawned = spawn(opts)?;
    if detach {
        return Ok(0);
    }
    supervise(spawned.pid, spawned.master, &forwarded)
}

/// Start the process in the container and return once it has executed the
/// program (or failed to, with its error). `opts.detach` only decides
/// whether a terminal without a console socket is an error.
pub fn spawn(opts: Options<'_>) -> Result<Spawned> {
    crate::selfexe::require()?;
    let dir = opts.root.join(opts.id);
    if !dir.is_dir() {
        return Err(state::Error::NotExist(opts.id.to_owned()).into());
    }
    let saved = state::load(&dir)?.ok_or_else(|| Error::Status(format!("container {:?} is still being created", opts.id)))?;
    match status(&dir, Some(&saved)) {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Stopped => return Err(Error::Status("cannot exec in a stopped container".into())),
        Status::Paused => {
            return Err(Error::Status("cannot exec in a paused container (use --ignore-paused to override)".into()))
        }
        Status::Creating => return Err(Error::Status("cannot exec in a container that is being created".into())),
    }
    let terminal = opts.process.terminal().unwrap_or(false);
    if terminal && opts.detach && opts.console_socket.is_none() {
        return Err(Error::Usage("cannot allocate a tty when detaching without --console-socket".into()));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Usage("--console-socket given without --tty".into()));
    }
    crate::spec::validate_process(&opts.process).map_err(|(field, reason)| Error::Usage(format!("process.{field}: {reason}")))?;
    let pidfd = init_pidfd(&saved).ok_or_else(|| Error::Status("cannot exec in a stopped container".into()))?;

    // Every namespace the container was given, new or joined.
    let mut join = CloneFlags::empty();
    let mut for_children = CloneFlags::empty();
    let config = saved.spec()?;
    for ns in config.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        let flag = CloneFlags::from_bits_retain(clone_flag(ns.typ()) as i32);
        match ns.typ() {
            LinuxNamespaceType::Pid | LinuxNamespaceType::Time => for_children |= flag,
            _ => join |= flag,
        }
    }
    // Unprivileged, the runtime has no say over the container's other
    // namespaces until it is in the container's user namespace: enter it
    // first (for good: this process only supervises from here on).
    if join.contains(CloneFlags::CLONE_NEWUSER) && !nix::unistd::geteuid().is_root() {
        setns(pidfd.as_fd(), CloneFlags::CLONE_NEWUSER)
            .map_err(|e| Error::Sys { op: "enter the container's user namespace".into(), source: e.into() })?;
        join.remove(CloneFlags::CLONE_NEWUSER);
    }
    let root_path = format!("/proc/{}/root", saved.pid);
    let root = open(root_path.as_str(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::Sys { op: format!("open {root_path}"), source: e.into() })?;

    let cg = saved.cgroup()?;
    let sub = cgroups::SubCgroup::parse(&opts.cgroup)?;
    let sub_dirs = match (&cg, sub.is_empty()) {
        (_, true) => None,
        (Some(cg), false) => Some(cg.sub_cgroup(&sub)?),
        (None, false) => return Err(Error::Usage("--cgroup: the container has no cgroup".into())),
    };
    let entry = match (&sub_dirs, &cg) {
        (Some(d), _) => Some(d.entry()?),
        (None, Some(cg)) => Some(cg.entry()?),
        (None, None) => None,
    };

    let mut proxy = None;
    let console: Option<OwnedFd> = match (terminal, opts.console_socket) {
        (false, _) => None,
        (true, Some(path)) => Some(OwnedFd::from(UnixStream::connect(path).map_err(|source| Error::Io {
            op: "connect to console socket",
            path: path.to_owned(),
            source,
        })?)),
        (true, None) => {
            let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .map_err(|e| Error::Sys { op: "console socketpair".into(), source: e.into() })?;
            proxy = Some(ours);
            Some(theirs)
        }
    };

    let seccomp = config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| crate::seccomp::compile_cached(s, opts.root))
        .transpose()?;
    let (mut parent_chan, child_chan) = channel::pair()?;
    let args = ExecArgs {
        process: &opts.process,
        channel: child_chan,
        pidfd: pidfd.as_fd(),
        namespaces: join,
        root,
        console,
        stdio: opts.stdio,
        keep_fds: opts.preserve_fds as RawFd,
        extra_env: Vec::new(),
        seccomp: seccomp.as_ref(),
        linux: config.linux().as_ref(),
        cgroup: entry.as_ref(),
    };
    let affinity = exec_affinity(&opts.process)?;
    // PID and time namespaces apply to children: enter them for the clone.
    let back = if for_children.is_empty() {
        None
    } else {
        let own = open("/proc/self/ns/pid_for_children", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok();
        let own_time = open("/proc/self/ns/time_for_children", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok();
        setns(pidfd.as_fd(), for_children)
            .map_err(|e| Error::Sys { op: "enter the container's pid namespace".into(), source: e.into() })?;
        Some((own, own_time))
    };
    let own_affinity = match affinity.initial.as_ref() {
        Some((set, text)) => {
            let own = attrs::affinity::current();
            attrs::affinity::set_initial(set, text)?;
            own
        }
        None => None,
    };
    let cgroup_fd = entry.as_ref().and_then(|e| e.clone_fd());
    let cloned = sys::clone_process(0, cgroup_fd, &mut [parent_chan.fd_mut()], move || exec_child::run(args));
    if let Some(own) = own_affinity {
        attrs::affinity::restore(&own);
    }
    if let Some((own, own_time)) = back {
        if let Some(fd) = own {
            let _ = setns(fd.as_fd(), CloneFlags::CLONE_NEWPID);
        }
        if let (Some(fd), true) = (own_time, for_children.contains(CloneFlags::from_bits_retain(sys::CLONE_NEWTIME as i32))) {
            let _ = setns(fd.as_fd(), CloneFlags::from_bits_retain(sys::CLONE_NEWTIME as i32));
        }
    }
    let child = cloned.map_err(|source| Error::Sys { op: "clone exec process".into(), source })?;
    let pid = child.pid;
    let fail = |e: Error| {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    if entry.as_ref().is_some_and(|e| e.needs_move_after(child.in_cgroup)) {
        match (&sub_dirs, &cg) {
            (Some(d), _) => d.add_process(pid).map_err(|e| fail(e.into()))?,
            (None, Some(cg)) => cg.add_process(pid).map_err(|e| fail(e.into()))?,
            (None, None) => {}
        }
    }
    if let Some((set, text)) = &affinity.last {
        attrs::affinity::set_final(pid, set, text).map_err(|e| fail(e.into()))?;
    }
    parent_chan.send(&ToInit::Proceed).map_err(|e| fail(e.into()))?;
    loop {
        match parent_chan.recv::<FromInit>() {
            Err(channel::Error::Closed) => break,
            Ok(FromInit::Failed { message }) => {
                let _ = waitpid(pid, None);
                return Err(Error::Init(message));
            }
            Ok(FromInit::SeccompListener { fd }) => {
                let state = super::hook_state(opts.id, Status::Running, saved.pid, &saved.bundle, &saved.annotations);
                let own;
                let child_pidfd = match &child.pidfd {
                    Some(fd) => fd.as_fd(),
                    None => {
                        own = sys::pidfd_open(pid)
                            .map_err(|source| fail(Error::Sys { op: format!("pidfd_open {pid}"), source }))?;
                        own.as_fd()
                    }
                };
                super::pass_listener(child_pidfd, fd, &config, pid, &state).map_err(fail)?;
                parent_chan.send(&ToInit::ListenerTaken).map_err(|e| fail(e.into()))?;
            }
            Ok(other) => return Err(fail(Error::Init(format!("unexpected message {other:?}")))),
            Err(e) => return Err(fail(e.into())),
        }
    }
    // The process runs its program: the grace period of dissolving our
    // binary's view runs beside it (crate::selfexe::release_view).
    crate::selfexe::release_view();
    if let Some(pid_file) = opts.pid_file {
        write_pid_file(pid_file, pid)?;
    }
    let master = match proxy {
        Some(sock) => {
            Some(tty::recv_fd(sock.as_fd()).map_err(|e| Error::Sys { op: "receive console".into(), source: e.source })?)
        }
        None => None,
    };
    Ok(Spawned { pid, pidfd: child.pidfd, master })
}

/// `process.execCPUAffinity` of the process to exec, each set with its text.
#[derive(Default)]
struct ExecAffinity {
    initial: Option<(nix::sched::CpuSet, String)>,
    last: Option<(nix::sched::CpuSet, String)>,
}

fn exec_affinity(p: &Process) -> Result<ExecAffinity> {
    let Some(a) = p.exec_cpu_affinity() else { return Ok(ExecAffinity::default()) };
    let (initial, last) =
        attrs::affinity::sets(a).map_err(|(field, reason)| Error::Usage(format!("process.{field}: {reason}")))?;
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    Ok(ExecAffinity { initial: initial.map(|s| (s, text(a.initial()))), last: last.map(|s| (s, text(a.cpu_affinity_final()))) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Process {
        serde_json::from_value(serde_json::json!({
            "args": ["sleep", "1"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin", "A=1"],
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
        }))
        .unwrap()
    }

    #[test]
    fn overrides_apply() {
        let o = Overrides {
            args: vec!["sh".into()],
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/tmp".into()),
            uid: Some(1000),
            gid: Some(100),
            additional_gids: vec![5],
            caps: vec!["CAP_CHOWN".into()],
            tty: true,
            no_new_privs: true,
        };
        let p = process_from(&base(), &o).unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["sh"]);
        assert_eq!(p.env().as_deref().unwrap(), ["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[5][..]));
        assert_eq!(p.capabilities().as_ref().unwrap().permitted().as_ref().unwrap().len(), 2);
        assert!(p.terminal().unwrap());
        assert!(p.no_new_privileges().unwrap());
    }

    #[test]
    fn bad_overrides() {
        assert!(
            process_from(&base(), &Overrides { args: vec!["x".into()], env: vec!["NOEQ".into()], ..Default::default() }).is_err()
        );
        assert!(
            process_from(&base(), &Overrides { args: vec!["x".into()], cwd: Some("rel".into()), ..Default::default() }).is_err()
        );
        assert!(process_from(
            &base(),
            &Overrides { args: vec!["x".into()], caps: vec!["CAP_BOGUS".into()], ..Default::default() }
        )
        .is_err());
    }
}
