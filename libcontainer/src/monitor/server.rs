//! The monitor process itself: set up, create the container, then one
//! `poll` loop until the init has exited (see the module diagram in
//! [`super`]).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::handoff::{self, Fds, Handoff};
use super::log::{timestamp, Lines, LogFile, Stream};
use super::proto::{self, Config, ErrorKind, ExitRecord, Request, Response, SpawnReport, Status};
use super::{report, sys, write_durable, Error, Result};
use crate::cgroups::CgroupPath;
use crate::container::{self, create, exec};
use crate::process::Stdio;
use crate::state;

/// How long the container's output is still read after its init exited
/// (processes it left behind may hold the pipes open for ever), and an
/// ExecSync process's after it exited.
const DRAIN: Duration = Duration::from_secs(1);
/// The longest the loop sleeps: strays (orphans reparented to us) are
/// reaped at least this often.
const TICK: Duration = Duration::from_secs(1);
/// The longest a pending answer is written for when the monitor exits.
const LAST_WRITE: Duration = Duration::from_secs(1);

/// The forked monitor's life; returns its exit code.
pub(super) fn main(config: Config, report_to: OwnedFd) -> i32 {
    if let Err(e) = detach() {
        report(report_to, &SpawnReport::Failed { error: e.to_string() });
        return 1;
    }
    // Blocked before the container is made (its processes start with every signal unblocked,
    // see `sys::reset_signals`), taken from a signalfd by the loop.
    let signals = match stop_signals() {
        Ok(fd) => fd,
        Err(e) => {
            report(report_to, &SpawnReport::Failed { error: e.to_string() });
            return 1;
        }
    };
    let m = match Monitor::setup(config, signals) {
        Ok(m) => m,
        Err(e) => {
            report(report_to, &SpawnReport::Failed { error: e.to_string() });
            return 1;
        }
    };
    // The loop runs in a new image of the binary, which gives back what the setup left in memory
    // (see `handoff`); only if that cannot be, in this one.
    let e = handoff::exec(&m.handoff(&report_to));
    tracing::warn!(error = %e, "monitor: serving without starting over (it keeps the setup's memory)");
    serve(m, report_to)
}

/// Report the container created and serve until it has exited.
fn serve(mut m: Monitor, report_to: OwnedFd) -> i32 {
    report(report_to, &SpawnReport::Created { pid: m.init.as_raw(), monitor_pid: std::process::id() as i32 });
    tracing::debug!(id = %m.config.id, init = %m.init, "monitor serving");
    m.run();
    0
}

/// The new image of a monitor (see [`handoff`]): take over from the old one and serve; its exit
/// code. `None` in any other process.
pub(super) fn resume() -> Option<i32> {
    let (h, fds) = match handoff::take()? {
        Ok(taken) => taken,
        Err(e) => {
            // Without the handoff there is no report pipe to say it on: `roci monitor` sees the
            // monitor die and says so.
            tracing::error!(error = %e, "monitor: take over from the image before");
            return Some(1);
        }
    };
    let (root, id) = (h.config.root.clone(), h.config.id.clone());
    match Monitor::resume(h, fds) {
        Ok((m, report_to)) => Some(serve(m, report_to)),
        Err((e, report_to)) => {
            if let Err(d) = container::delete::delete(&root, &id, true) {
                tracing::warn!(error = %d, "delete the container the monitor could not watch");
            }
            report(report_to, &SpawnReport::Failed { error: e.to_string() });
            Some(1)
        }
    }
}

/// Leave the caller's session and stdio, so nothing ties us to it: a new
/// session (no terminal, no job-control signals), stdio on /dev/null (the
/// caller reads `roci monitor`'s stdout to its end), `/` as cwd; and adopt
/// the container's orphans.
fn detach() -> Result<()> {
    nix::unistd::setsid().map_err(sys("setsid"))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(sys("become a child subreaper"))?;
    let null = dev_null()?;
    for fd in 0..=2 {
        crate::sys::dup2_stdio(null.as_fd(), fd)
            .map_err(|source| Error::Sys { op: "point stdio at /dev/null".into(), source })?;
    }
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    Ok(())
}

/// The signals an operator or a service manager stops a monitor with: SIGTERM, SIGINT and SIGQUIT
/// are passed on to the container's init (the monitor keeps logging, reaps it and writes the exit
/// record, so the container ends as if stopped, not orphaned with its exit unknown); SIGHUP is
/// ignored (the monitor has no terminal; a hang-up is not a stop). Blocked here and read from the
/// returned signalfd.
fn stop_signals() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGHUP] {
        mask.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(sys("block the stop signals"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(sys("signalfd"))
}

fn dev_null() -> Result<OwnedFd> {
    let f = File::options().read(true).write(true).open("/dev/null").map_err(|source| Error::Io {
        op: "open",
        path: "/dev/null".into(),
        source,
    })?;
    Ok(f.into())
}

fn nonblocking(fd: BorrowedFd<'_>) -> Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(sys("fcntl F_GETFL"))?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK)).map_err(sys("fcntl F_SETFL"))?;
    Ok(())
}

/// A pipe whose read end (ours) does not block.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    nonblocking(r.as_fd())?;
    Ok((r, w))
}

fn now() -> String {
    timestamp(chrono::Utc::now())
}

/// One of the container's output streams (with a terminal: the pty master).
struct Output {
    fd: OwnedFd,
    lines: Lines,
}

/// The loop's read buffer, touched only as far as reads fill it: a monitor
/// whose container is quiet does not keep 64 KiB of zeroes resident.
struct ReadBuf(Vec<u8>);

impl ReadBuf {
    fn new() -> ReadBuf {
        ReadBuf(Vec::with_capacity(64 * 1024))
    }

    /// One `read(2)` of `fd`: what it read (empty at the end of the stream).
    fn read(&mut self, fd: BorrowedFd<'_>) -> nix::Result<&[u8]> {
        self.0.clear();
        crate::sys::read_spare(fd, &mut self.0)?;
        Ok(&self.0)
    }
}

/// A control connection.
struct Conn {
    id: u64,
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    phase: Phase,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Reading,
    /// Its ExecSync runs.
    Waiting,
    Writing,
}

/// A running ExecSync.
struct Job {
    conn: u64,
    pid: Pid,
    pidfd: Option<OwnedFd>,
    out: [Option<OwnedFd>; 2],
    buf: [Vec<u8>; 2],
    timeout_secs: u64,
    deadline: Option<Instant>,
    timed_out: bool,
    exit_code: Option<i32>,
    drain_until: Option<Instant>,
}

impl Job {
    /// SIGKILL, through the pidfd when there is one (it cannot hit a reused pid).
    fn kill(&self) {
        let _ = match &self.pidfd {
            Some(fd) => crate::sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL),
            None => crate::sys::kill(self.pid, libc::SIGKILL),
        };
    }

    fn done(&self, now: Instant) -> bool {
        self.exit_code.is_some() && (self.out.iter().all(Option::is_none) || self.drain_until.is_some_and(|d| now >= d))
    }
}

/// How the init ended.
#[derive(Clone, Copy)]
struct Exit {
    code: i32,
    signal: Option<i32>,
}

struct Monitor {
    config: Config,
    init: Pid,
    init_pidfd: Option<OwnedFd>,
    outputs: [Option<Output>; 2],
    /// Our end of the container's stdin (the pty master's copy with a
    /// terminal), kept for an attach.
    stdin: Option<OwnedFd>,
    log: Option<LogFile>,
    log_failed: bool,
    listener: Listener,
    conns: Vec<Conn>,
    next_conn: u64,
    jobs: Vec<Job>,
    /// The container's process, which ExecSync processes are made from.
    base_process: Process,
    /// The container's cgroup (its manager is made again for the OOM count at the end: the
    /// loop has no other use for it).
    cgroup_path: Option<CgroupPath>,
    oom_at_start: Option<u64>,
    started_at: Option<String>,
    exit: Option<Exit>,
    drain_until: Option<Instant>,
    /// SIGTERM, SIGINT, SIGQUIT and SIGHUP sent to the monitor (see [`stop_signals`]).
    signals: SignalFd,
}

impl Monitor {
    fn setup(config: Config, signals: SignalFd) -> Result<Monitor> {
        let listener = bind(&config.socket_path)?;
        let log = config.log_path.as_deref().map(LogFile::open).transpose()?;
        if let Some(dir) = config.exit_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { op: "create directory", path: dir.to_owned(), source })?;
        }
        let (stdio, outputs, stdin, console) = if config.tty {
            let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC)
                .map_err(sys("console socketpair"))?;
            (None, [None, None], None, Some((ours, theirs)))
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (stdin_theirs, stdin_ours) = if config.stdin {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
                (r, Some(w))
            } else {
                (dev_null()?, None)
            };
            let outputs = [
                Some(Output { fd: out_r, lines: Lines::new(Stream::Stdout) }),
                Some(Output { fd: err_r, lines: Lines::new(Stream::Stderr) }),
            ];
            (Some(Stdio { stdin: stdin_theirs, stdout: out_w, stderr: err_w }), outputs, stdin_ours, None)
        };
        let (console_ours, console_theirs) = match console {
            Some((o, t)) => (Some(o), Some(t)),
            None => (None, None),
        };
        // The pipes' write ends go with the init (closed here once it is cloned).
        let created = create::create(create::Options {
            root: &config.root,
            id: &config.id,
            bundle: &config.bundle,
            console_socket: None,
            console_fd: console_theirs,
            stdio,
            pid_file: None,
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
            loaded: None,
            hold: false,
        })?;
        // From here on a failure removes the container again.
        let undo = |e: Error| {
            if let Err(d) = container::delete::delete(&config.root, &config.id, true) {
                tracing::warn!(error = %d, "delete the container the monitor could not watch");
            }
            e
        };
        let mut outputs = outputs;
        let mut stdin = stdin;
        if let Some(sock) = console_ours {
            // The init sent the master before it reported ready (create refuses a console for a
            // process without a terminal), so this does not wait.
            nonblocking(sock.as_fd()).map_err(undo)?;
            let master = crate::tty::recv_fd(sock.as_fd())
                .map_err(|e| undo(Error::Sys { op: "receive the container's pty master".into(), source: e.source }))?;
            nonblocking(master.as_fd()).map_err(undo)?;
            stdin = Some(master.try_clone().map_err(|source| undo(Error::Sys { op: "dup pty master".into(), source }))?);
            outputs[0] = Some(Output { fd: master, lines: Lines::new(Stream::Stdout) });
        }
        let dir = config.root.join(&config.id);
        let saved = state::load(&dir)
            .map_err(|e| undo(e.into()))?
            .ok_or_else(|| undo(Error::State(state::Error::NotExist(config.id.clone()))))?;
        let base_process = saved
            .spec()
            .map_err(|e| undo(e.into()))?
            .process()
            .clone()
            .ok_or_else(|| undo(Error::Container(container::Error::Usage("config.json has no process".into()))))?;
        let cgroup = saved.cgroup().map_err(|e| undo(Error::Container(e.into())))?;
        let cgroup_path = saved.cgroup_path.clone();
        let oom_at_start = cgroup.as_ref().and_then(|cg| match cg.oom_kill_count() {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "no OOM kill count: oom_killed will be false");
                None
            }
        });
        let init_pidfd = match created.pidfd {
            Some(fd) => Some(fd),
            None => crate::sys::pidfd_open(created.pid).ok(),
        };
        Ok(Monitor {
            init: created.pid,
            init_pidfd,
            outputs,
            stdin,
            log,
            log_failed: false,
            listener,
            conns: Vec::new(),
            next_conn: 0,
            jobs: Vec::new(),
            base_process,
            cgroup_path,
            oom_at_start,
            started_at: None,
            exit: None,
            drain_until: None,
            signals,
            config,
        })
    }

    /// What a new image needs to go on as this monitor (see [`handoff`]); `report_to` is the
    /// pipe the report is owed on.
    fn handoff(&self, report_to: &OwnedFd) -> Handoff {
        let raw = |fd: &Option<OwnedFd>| fd.as_ref().map(AsRawFd::as_raw_fd);
        let output = |i: usize| self.outputs[i].as_ref().map(|o| o.fd.as_raw_fd());
        Handoff {
            config: self.config.clone(),
            init: self.init.as_raw(),
            base_process: self.base_process.clone(),
            cgroup_path: self.cgroup_path.clone(),
            oom_at_start: self.oom_at_start,
            fds: Fds {
                report: report_to.as_raw_fd(),
                listener: self.listener.sock.as_raw_fd(),
                init_pidfd: raw(&self.init_pidfd),
                outputs: [output(0), output(1)],
                stdin: raw(&self.stdin),
                log: self.log.as_ref().map(|l| l.as_fd().as_raw_fd()),
            },
        }
    }

    /// The monitor the old image handed over, with the pipe its report is owed on; or why not,
    /// with that pipe.
    fn resume(h: Handoff, fds: Fds<OwnedFd>) -> std::result::Result<(Monitor, OwnedFd), (Error, OwnedFd)> {
        let report_to = fds.report;
        // The process's own settings crossed the execve: the session, the subreaper flag, the
        // blocked stop signals (still pending if one came meanwhile); the signalfd did not.
        let signals = match stop_signals() {
            Ok(s) => s,
            Err(e) => return Err((e, report_to)),
        };
        let log = match (fds.log, &h.config.log_path) {
            (Some(fd), Some(path)) => Some(LogFile::adopt(path.clone(), fd)),
            _ => None,
        };
        let [out, err] = fds.outputs;
        let m = Monitor {
            init: Pid::from_raw(h.init),
            init_pidfd: fds.init_pidfd,
            outputs: [
                out.map(|fd| Output { fd, lines: Lines::new(Stream::Stdout) }),
                err.map(|fd| Output { fd, lines: Lines::new(Stream::Stderr) }),
            ],
            stdin: fds.stdin,
            log,
            log_failed: false,
            listener: Listener { sock: UnixListener::from(fds.listener), path: h.config.socket_path.clone() },
            conns: Vec::new(),
            next_conn: 0,
            jobs: Vec::new(),
            base_process: h.base_process,
            cgroup_path: h.cgroup_path,
            oom_at_start: h.oom_at_start,
            started_at: None,
            exit: None,
            drain_until: None,
            signals,
            config: h.config,
        };
        Ok((m, report_to))
    }

    fn run(&mut self) {
        let mut buf = ReadBuf::new();
        loop {
            self.reap();
            let now = Instant::now();
            self.check_jobs(now);
            if let (Some(_), None) = (self.exit, self.drain_until) {
                self.drain_until = Some(now + DRAIN);
                // Nobody can write to the container any more.
                self.stdin = None;
            }
            if let Some(until) = self.drain_until {
                if now >= until || self.outputs.iter().all(Option::is_none) {
                    break;
                }
            }
            let ready = match self.wait(now) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "monitor poll failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for (what, revents) in ready {
                self.handle(what, revents, &mut buf);
            }
        }
        self.finish(&mut buf);
    }

    /// Poll everything; what is ready.
    fn wait<'a>(&'a self, now: Instant) -> Result<Vec<(Source, PollFlags)>> {
        let mut sources = Vec::new();
        let mut fds: Vec<PollFd<'a>> = Vec::new();
        let mut add = |s: Source, fd: BorrowedFd<'a>, events: PollFlags| {
            sources.push(s);
            fds.push(PollFd::new(fd, events));
        };
        if self.exit.is_none() {
            if let Some(fd) = &self.init_pidfd {
                add(Source::Init, fd.as_fd(), PollFlags::POLLIN);
            }
        }
        for (i, o) in self.outputs.iter().enumerate() {
            if let Some(o) = o {
                add(Source::Output(i), o.fd.as_fd(), PollFlags::POLLIN);
            }
        }
        add(Source::Listener, self.listener.sock.as_fd(), PollFlags::POLLIN);
        add(Source::Signal, self.signals.as_fd(), PollFlags::POLLIN);
        for c in &self.conns {
            let ev = match c.phase {
                Phase::Reading => PollFlags::POLLIN,
                Phase::Waiting => continue,
                Phase::Writing => PollFlags::POLLOUT,
            };
            add(Source::Conn(c.id), c.sock.as_fd(), ev);
        }
        let mut deadline = now + TICK;
        for j in &self.jobs {
            if let (Some(fd), None) = (&j.pidfd, j.exit_code) {
                add(Source::JobPid, fd.as_fd(), PollFlags::POLLIN);
            }
            for (i, o) in j.out.iter().enumerate() {
                if let Some(fd) = o {
                    add(Source::JobOutput(j.conn, i), fd.as_fd(), PollFlags::POLLIN);
                }
            }
            for d in [j.deadline, j.drain_until].into_iter().flatten() {
                deadline = deadline.min(d);
            }
        }
        if let Some(d) = self.drain_until {
            deadline = deadline.min(d);
        }
        // Rounded up, so a deadline is past when poll returns.
        let wait = deadline.saturating_duration_since(now) + Duration::from_millis(1);
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::Sys { op: "poll".into(), source: e.into() }),
        }
        Ok(fds.iter().zip(sources).filter_map(|(p, s)| p.revents().filter(|r| !r.is_empty()).map(|r| (s, r))).collect())
    }

    fn handle(&mut self, what: Source, revents: PollFlags, buf: &mut ReadBuf) {
        match what {
            // Reaped with everything else at the top of the loop.
            Source::Init | Source::JobPid => {}
            Source::Output(i) => self.read_output(i, buf),
            Source::Listener => self.accept(),
            Source::Signal => self.signalled(),
            Source::Conn(id) => {
                if revents.intersects(PollFlags::POLLOUT) {
                    self.write_conn(id);
                } else {
                    self.read_conn(id, buf);
                }
            }
            Source::JobOutput(conn, i) => self.read_job(conn, i, buf),
        }
    }

    /// Pass a stop signal sent to the monitor on to the init (see [`stop_signals`]).
    fn signalled(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == libc::SIGHUP || self.exit.is_some() {
                tracing::debug!(signal = signo, "monitor: signal ignored");
                continue;
            }
            let sent = match &self.init_pidfd {
                Some(fd) => crate::sys::pidfd_send_signal(fd.as_fd(), signo),
                None => nix::sys::signal::kill(self.init, Signal::try_from(signo).ok()).map_err(std::io::Error::from),
            };
            match sent {
                Ok(()) => tracing::info!(signal = signo, init = %self.init, "monitor: signal passed on to the container"),
                Err(e) => tracing::warn!(signal = signo, error = %e, "monitor: pass a signal on to the container"),
            }
        }
    }

    /// Log what the container wrote; at the end of a stream, its last partial line.
    fn read_output(&mut self, i: usize, buf: &mut ReadBuf) {
        let Some(o) = self.outputs[i].as_mut() else { return };
        let mut records = Vec::new();
        let closed = match buf.read(o.fd.as_fd()) {
            Ok([]) => true,
            Ok(data) => {
                o.lines.feed(data, &now(), &mut records);
                false
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => false,
            // EIO: the pty's last slave was closed.
            Err(_) => true,
        };
        if closed {
            o.lines.finish(&now(), &mut records);
            self.outputs[i] = None;
        }
        self.write_log(&records);
    }

    fn write_log(&mut self, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        let Some(log) = self.log.as_mut() else { return };
        match log.write(records) {
            Ok(()) => self.log_failed = false,
            // Logged once per run of failures; the output keeps being drained.
            Err(e) if !self.log_failed => {
                tracing::error!(error = %e, "container log");
                self.log_failed = true;
            }
            Err(_) => {}
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.sock.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.next_conn += 1;
                    let id = self.next_conn;
                    self.conns.push(Conn { id, sock, inbuf: Vec::new(), out: Vec::new(), sent: 0, phase: Phase::Reading });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn conn(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }

    fn drop_conn(&mut self, id: u64) {
        self.conns.retain(|c| c.id != id);
    }

    fn read_conn(&mut self, id: u64, buf: &mut ReadBuf) {
        let Some(c) = self.conn(id) else { return };
        let line = match buf.read(c.sock.as_fd()) {
            Ok([]) => return self.drop_conn(id),
            Ok(data) => {
                c.inbuf.extend_from_slice(data);
                match c.inbuf.iter().position(|b| *b == b'\n') {
                    Some(end) => c.inbuf[..end].to_vec(),
                    None if c.inbuf.len() > proto::MAX_REQUEST => {
                        let r =
                            Response::error(ErrorKind::BadRequest, format!("request longer than {} bytes", proto::MAX_REQUEST));
                        return self.respond(id, r, &[]);
                    }
                    None => return,
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR) => return,
            Err(_) => return self.drop_conn(id),
        };
        match Request::decode(&line) {
            Ok(req) => self.request(id, req),
            Err(e) => self.respond(id, Response::error(ErrorKind::BadRequest, e), &[]),
        }
    }

    /// Queue `r` (and the bytes that follow it) on connection `id`.
    fn respond(&mut self, id: u64, r: Response, tail: &[&[u8]]) {
        let Some(c) = self.conn(id) else { return };
        c.out = r.encode();
        for t in tail {
            c.out.extend_from_slice(t);
        }
        c.sent = 0;
        c.phase = Phase::Writing;
        self.write_conn(id);
    }

    fn write_conn(&mut self, id: u64) {
        let Some(c) = self.conn(id) else { return };
        while c.sent < c.out.len() {
            match send(c.sock.as_raw_fd(), &c.out[c.sent..], MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT) {
                Ok(n) => c.sent += n,
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        self.drop_conn(id);
    }

    fn request(&mut self, id: u64, req: Request) {
        tracing::debug!(?req, "monitor request");
        let r = match req {
            Request::Start => self.start(),
            Request::State => {
                Response::State { pid: self.init.as_raw(), status: self.status(), started_at: self.started_at.clone() }
            }
            Request::ReopenLog => match self.log.as_mut().map(LogFile::reopen).transpose() {
                Ok(_) => Response::LogReopened,
                Err(e) => Response::error(ErrorKind::Failed, e.to_string()),
            },
            Request::ExecSync { argv, env, timeout_secs } => match self.exec_sync(id, argv, env, timeout_secs) {
                Ok(()) => {
                    if let Some(c) = self.conn(id) {
                        c.phase = Phase::Waiting;
                    }
                    return;
                }
                Err(r) => r,
            },
        };
        self.respond(id, r, &[]);
    }

    fn status(&self) -> Status {
        if self.exit.is_some() {
            return Status::Exited;
        }
        let dir = self.config.root.join(&self.config.id);
        let saved = state::load(&dir).ok().flatten();
        match container::status(&dir, saved.as_ref()) {
            container::Status::Creating | container::Status::Created => Status::Created,
            container::Status::Running | container::Status::Paused => Status::Running,
            container::Status::Stopped => Status::Exited,
        }
    }

    fn start(&mut self) -> Response {
        if self.exit.is_some() {
            return Response::error(ErrorKind::FailedPrecondition, "cannot start a container that has exited");
        }
        match start_in_child(&self.config.root, &self.config.id) {
            Ok(()) => {
                let at = now();
                self.started_at = Some(at.clone());
                Response::Started { started_at: at }
            }
            Err((kind, message)) => Response::error(kind, message),
        }
    }

    /// Start an ExecSync process; its answer goes out when it has exited.
    fn exec_sync(
        &mut self,
        conn: u64,
        argv: Vec<String>,
        env: Vec<String>,
        timeout_secs: u64,
    ) -> std::result::Result<(), Response> {
        if self.exit.is_some() {
            return Err(Response::error(ErrorKind::FailedPrecondition, "cannot exec in a container that has exited"));
        }
        if argv.is_empty() {
            return Err(Response::error(ErrorKind::BadRequest, "exec_sync: argv is empty"));
        }
        let failed = |e: Error| Response::error(ErrorKind::Failed, e.to_string());
        let (mut out_r, out_w) = pipe().map_err(failed)?;
        let (mut err_r, err_w) = pipe().map_err(failed)?;
        let (root, id, base) = (&self.config.root, &self.config.id, &self.base_process);
        // The process is cloned by a helper (see `in_child`); when the helper exits, the process
        // is reparented to the monitor, the child subreaper, which reaps it as before.
        let spawned = in_child(&mut [&mut out_r, &mut err_r], move || {
            let overrides = exec::Overrides { args: argv, env, ..Default::default() };
            let process = exec::process_from(base, &overrides).map_err(|e| (ErrorKind::BadRequest, e.to_string()))?;
            let stdin = dev_null().map_err(|e| (ErrorKind::Failed, e.to_string()))?;
            let stdio = Stdio { stdin, stdout: out_w, stderr: err_w };
            let spawned = exec::spawn(exec::Options {
                root,
                id,
                process,
                console_socket: None,
                pid_file: None,
                detach: true,
                preserve_fds: 0,
                cgroup: Vec::new(),
                ignore_paused: false,
                stdio: Some(stdio),
            })
            .map_err(|e| match e {
                container::Error::Status(_) => (ErrorKind::FailedPrecondition, e.to_string()),
                e => (ErrorKind::Failed, e.to_string()),
            })?;
            Ok(spawned.pid.as_raw().to_string())
        })
        .map_err(|(kind, message)| Response::error(kind, message))?;
        let pid = spawned
            .parse()
            .map(Pid::from_raw)
            .map_err(|_| Response::error(ErrorKind::Failed, format!("exec_sync: the helper said {spawned:?}, not a pid")))?;
        // Our child now: nobody else can reap it, so the pid cannot have been reused.
        let pidfd = crate::sys::pidfd_open(pid).ok();
        tracing::debug!(%pid, "exec_sync process started");
        let deadline = (timeout_secs > 0).then(|| Instant::now() + Duration::from_secs(timeout_secs));
        self.jobs.push(Job {
            conn,
            pid,
            pidfd,
            out: [Some(out_r), Some(err_r)],
            buf: [Vec::new(), Vec::new()],
            timeout_secs,
            deadline,
            timed_out: false,
            exit_code: None,
            drain_until: None,
        });
        Ok(())
    }

    fn read_job(&mut self, conn: u64, i: usize, buf: &mut ReadBuf) {
        let Some(j) = self.jobs.iter_mut().find(|j| j.conn == conn) else { return };
        let Some(fd) = j.out[i].as_ref() else { return };
        match buf.read(fd.as_fd()) {
            Ok([]) => j.out[i] = None,
            Ok(data) => {
                // Beyond the cap the output is read and dropped, so the process never blocks on a full pipe.
                let room = proto::EXEC_OUTPUT_CAP.saturating_sub(j.buf[i].len());
                j.buf[i].extend_from_slice(&data[..data.len().min(room)]);
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => j.out[i] = None,
        }
    }

    /// Kill ExecSync processes past their deadline, and answer those done.
    fn check_jobs(&mut self, now: Instant) {
        for j in &mut self.jobs {
            if j.exit_code.is_none() && j.deadline.is_some_and(|d| now >= d) {
                tracing::debug!(pid = %j.pid, "exec_sync timed out: killing it");
                j.kill();
                j.timed_out = true;
                j.deadline = None;
            }
            if j.exit_code.is_some() && j.drain_until.is_none() {
                j.drain_until = Some(now + DRAIN);
            }
        }
        let (done, running): (Vec<Job>, Vec<Job>) = std::mem::take(&mut self.jobs).into_iter().partition(|j| j.done(now));
        self.jobs = running;
        for j in done {
            let r = if j.timed_out {
                Response::error(ErrorKind::Timeout, format!("command timed out after {}s (killed)", j.timeout_secs))
            } else {
                Response::ExecSync {
                    exit_code: j.exit_code.unwrap_or(-1),
                    stdout_len: j.buf[0].len(),
                    stderr_len: j.buf[1].len(),
                }
            };
            let tail: [&[u8]; 2] = if j.timed_out { [&[], &[]] } else { [&j.buf[0], &j.buf[1]] };
            self.respond(j.conn, r, &tail);
        }
    }

    /// Reap every child that has exited: the init, ExecSync processes, and
    /// orphans reparented to us.
    fn reap(&mut self) {
        loop {
            let (pid, code, signal) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code, None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32, Some(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid");
                    return;
                }
            };
            if pid == self.init {
                tracing::debug!(%pid, code, ?signal, "container init exited");
                self.exit = Some(Exit { code, signal });
            } else if let Some(j) = self.jobs.iter_mut().find(|j| j.pid == pid) {
                j.exit_code = Some(code);
            } else {
                tracing::debug!(%pid, code, "reaped an orphan");
            }
        }
    }

    /// The init has exited and its output is drained: the exit record, the
    /// answers still owed, then nothing is left.
    fn finish(&mut self, buf: &mut ReadBuf) {
        let ts = now();
        for i in 0..2 {
            if let Some(mut o) = self.outputs[i].take() {
                // What is in the pipe now, then the last partial line.
                let mut records = Vec::new();
                while let Ok(data @ [_, ..]) = buf.read(o.fd.as_fd()) {
                    o.lines.feed(data, &ts, &mut records);
                }
                o.lines.finish(&ts, &mut records);
                self.write_log(&records);
            }
        }
        let exit = self.exit.unwrap_or(Exit { code: -1, signal: None });
        let oom_killed = match (&self.cgroup_path, self.oom_at_start) {
            (Some(path), Some(before)) => match crate::cgroups::manager(path).and_then(|cg| cg.oom_kill_count()) {
                Ok(n) => n > before,
                Err(e) => {
                    tracing::warn!(error = %e, "no OOM kill count: oom_killed will be false");
                    false
                }
            },
            _ => false,
        };
        let record = ExitRecord {
            version: proto::VERSION,
            pid: self.init.as_raw(),
            exit_code: exit.code,
            signal: exit.signal,
            started_at: self.started_at.clone(),
            finished_at: ts,
            oom_killed,
        };
        let data = serde_json::to_vec(&record).expect("exit record serialises");
        if let Err(e) = write_durable(&self.config.exit_path, &data) {
            tracing::error!(error = %e, "write the exit record");
        }
        // ExecSync processes still running (the container had no PID namespace of its own).
        for j in std::mem::take(&mut self.jobs) {
            if j.exit_code.is_none() {
                j.kill();
                let _ = waitpid(j.pid, None);
            }
            self.respond(j.conn, Response::error(ErrorKind::FailedPrecondition, "the container exited during exec_sync"), &[]);
        }
        // No request is taken from here on; the socket file goes when the listener is dropped.
        // The answers queued last get a short while to go out.
        for c in std::mem::take(&mut self.conns) {
            if c.phase == Phase::Writing {
                let _ = c.sock.set_nonblocking(false);
                let _ = c.sock.set_write_timeout(Some(LAST_WRITE));
                let _ = std::io::Write::write_all(&mut &c.sock, &c.out[c.sent..]);
            }
        }
        self.reap();
        tracing::debug!(id = %self.config.id, code = exit.code, oom_killed, "monitor done");
    }
}

/// libcontainer's `start` of the container, in a helper (see [`in_child`]).
fn start_in_child(root: &Path, id: &str) -> std::result::Result<(), (ErrorKind, String)> {
    in_child(&mut [], || match container::start::start(root, id) {
        Ok(()) => Ok(String::new()),
        Err(e @ container::Error::Status(_)) => Err((ErrorKind::FailedPrecondition, e.to_string())),
        Err(e) => Err((ErrorKind::Failed, e.to_string())),
    })
    .map(drop)
}

/// Run `work` in a child of the monitor that exits when it is done, and wait for it: what
/// `start` and `exec` parse and load (the state, the spec, the seccomp program) and the stack
/// they go deep into are touched in that child's copy of the memory, which goes with it, not in
/// memory the monitor keeps resident for the rest of its life (see [`handoff`]). What `work`
/// returns comes back over a pipe. `close` are fds of the monitor's the child must not hold.
fn in_child(
    close: &mut [&mut OwnedFd],
    work: impl FnOnce() -> std::result::Result<String, (ErrorKind, String)>,
) -> std::result::Result<String, (ErrorKind, String)> {
    let failed = |what: String| (ErrorKind::Failed, what);
    let (mut answer_r, answer_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| failed(format!("pipe: {e}")))?;
    let mut close_in_child: Vec<&mut OwnedFd> = close.iter_mut().map(|fd| &mut **fd).collect();
    close_in_child.push(&mut answer_r);
    let child = crate::sys::clone_process(0, None, &mut close_in_child, move || {
        let answer = serde_json::to_vec(&work()).unwrap_or_default();
        let _ = std::io::Write::write_all(&mut File::from(answer_w), &answer);
        0
    })
    .map_err(|e| failed(format!("fork a helper: {e}")))?;
    // The write end went with the child (dropped here with the closure): EOF when it exits.
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut File::from(answer_r), &mut answer);
    let status = loop {
        match waitpid(child.pid, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    match serde_json::from_slice(&answer) {
        Ok(result) => result,
        Err(_) => Err(failed(format!("the helper process ended without an answer: {status:?}"))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Init,
    Signal,
    Output(usize),
    Listener,
    Conn(u64),
    JobPid,
    JobOutput(u64, usize),
}

/// The control socket, removed when dropped (when the monitor exits or its
/// setup failed).
struct Listener {
    sock: UnixListener,
    path: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listen on `path` (through its directory's fd, so a long path fits
/// `sun_path`). A socket left by a monitor that is gone is replaced; one a
/// live monitor answers on is not.
fn bind(path: &Path) -> Result<Listener> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { op: "create directory", path: dir.to_owned(), source })?;
    let dirfd = File::open(dir).map_err(|source| Error::Io { op: "open", path: dir.to_owned(), source })?;
    let name = path.file_name().unwrap_or_default();
    let via = PathBuf::from(format!("/proc/self/fd/{}", dirfd.as_raw_fd())).join(name);
    if via.exists() {
        if UnixStream::connect(&via).is_ok() {
            return Err(Error::Io {
                op: "listen on",
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "another monitor serves this socket"),
            });
        }
        let _ = std::fs::remove_file(&via);
    }
    let listener = UnixListener::bind(&via).map_err(|source| Error::Io { op: "listen on", path: path.to_owned(), source })?;
    let listener = Listener { sock: listener, path: path.to_owned() };
    listener.sock.set_nonblocking(true).map_err(|source| Error::Io { op: "listen on", path: path.to_owned(), source })?;
    Ok(listener)
}
