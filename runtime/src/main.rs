//! `roci`: parse the command line, set up logging, call libcontainer, map
//! the result to an exit code.

#![deny(unsafe_code)]

mod cli;
mod image_cmd;
mod logging;
mod spec_template;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use libcontainer::container::{self, create, delete, kill, run, start};
use oci_spec::runtime::Process;

use cli::{Cli, Command, ListFormat};

#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// What `--version` prints, shaped like runc's (clients parse the first line).
const VERSION_TEXT: &str = concat!("roci version ", env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0");

/// `roci monitor`'s logging settings (`FORMAT,DEBUG,PATH`), for the monitor's new image: see
/// [`resumed_monitor`].
const MONITOR_LOG_ENV: &str = "_ROCI_MONITOR_LOG";

fn main() -> ExitCode {
    if let Some(code) = resumed_monitor() {
        return code;
    }
    // Re-executed from the protected view before the command line is
    // parsed, which would otherwise be done twice (clap builds every
    // subcommand's arguments: a millisecond of a `run`). An error here is
    // met again below, where it is reported.
    let protected_early =
        cli::makes_container_processes(std::env::args_os().skip(1)) && libcontainer::selfexe::ensure_protected().is_ok();
    let cli = Cli::parse();
    let log_to_stderr = cli.log.is_none();
    if let Err(e) = logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("roci: {e}");
        return ExitCode::from(1);
    }
    // Commands that make container processes run from a view of the binary
    // that cannot be written (libcontainer::selfexe; create and exec refuse
    // to run otherwise). Normally done above already.
    if !protected_early
        && matches!(cli.command, Some(Command::Create(_) | Command::Run(_) | Command::Exec(_) | Command::Monitor { .. }))
    {
        if let Err(e) = libcontainer::selfexe::ensure_protected() {
            return fail(&e.to_string(), log_to_stderr);
        }
    }
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(&error_text(&e), log_to_stderr),
    }
}

/// As runc reports a fatal error: to the log, and also as a plain line on
/// stderr when the log is a file (shims match that stderr text, e.g.
/// "does not exist", "container not running").
fn fail(msg: &str, log_to_stderr: bool) -> ExitCode {
    tracing::error!("{msg}");
    if !log_to_stderr {
        eprintln!("{msg}");
    }
    ExitCode::from(1)
}

fn dispatch(cli: Cli) -> Result<u8> {
    // `monitor` takes its root from its config; a --root given must agree.
    let explicit_root = cli.root.clone();
    let root_dir = match cli.root {
        Some(r) => r,
        None => default_root()?,
    };
    let root = root_dir.as_path();
    let Some(command) = cli.command else {
        if cli.version {
            out(VERSION_TEXT);
            return Ok(0);
        }
        bail!("no command given; see roci --help");
    };
    match command {
        Command::Create(mut c) => {
            check_systemd(cli.systemd_cgroup)?;
            let from_image = image_bundle(root, &cli.image_root, &mut c)?;
            if let Err(e) = container::create::create(create_options(root, &c)) {
                if from_image {
                    image_cmd::remove_bundle(&cli.image_root, &c.id);
                }
                return Err(e.into());
            }
        }
        Command::Run(mut r) => {
            check_systemd(cli.systemd_cgroup)?;
            let from_image = image_bundle(root, &cli.image_root, &mut r.create)?;
            // A container run from an image stays after it exits, as with Docker, unless --rm.
            let keep = if from_image { !r.rm } else { r.keep };
            let result = run::run(run::Options { create: create_options(root, &r.create), detach: r.detach, keep });
            if from_image && result.is_err() && !root.join(&r.create.id).exists() {
                image_cmd::remove_bundle(&cli.image_root, &r.create.id);
            }
            return Ok(result?.clamp(0, 255) as u8);
        }
        Command::Image { args } => image_cmd::image(&cli.image_root, &args)?,
        Command::Start { id } => start::start(root, &id)?,
        Command::Exec(e) => {
            let code = exec(root, e)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::State { id } => {
            let report = container::report(root, &id)?;
            out(&serde_json::to_string_pretty(&report)?);
        }
        Command::Pause { id } => container::pause::pause(root, &id)?,
        Command::Resume { id } => container::pause::resume(root, &id)?,
        Command::Update(u) => {
            let resources = update_resources(&u)?;
            container::update::update(root, &u.id, &resources)?;
        }
        Command::Events { stats, interval, id } => {
            if stats {
                out(&container::events::stats(root, &id)?.to_string());
            } else {
                container::events::stream(root, &id, interval, &mut std::io::stdout().lock())?;
            }
        }
        Command::Kill { all, id, signal } => {
            let sig = libcontainer::signal::parse(&signal).map_err(anyhow::Error::msg)?;
            kill::kill(root, &id, sig, all)?;
        }
        Command::Delete { force, id } => delete::delete(root, &id, force)?,
        Command::List { format, quiet } => list(root, format, quiet)?,
        Command::Ps { format, id, ps_args } => ps(root, &id, format, &ps_args)?,
        Command::Spec { bundle, rootless } => {
            let dir = bundle.unwrap_or_else(|| ".".into());
            spec_template::write(&dir, rootless)?;
        }
        Command::Checkpoint(c) => checkpoint(root, cli.criu.as_deref(), &c)?,
        Command::Restore(r) => {
            let code = restore(root, cli.criu.as_deref(), &r)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::Monitor { config } => {
            return Ok(monitor(&config, explicit_root.as_deref(), (cli.log.as_deref(), cli.log_format, cli.debug)))
        }
        Command::Features => {
            out(&serde_json::to_string_pretty(&libcontainer::features::document())?);
        }
    }
    Ok(0)
}

/// The new image of a monitor (`libcontainer::monitor::resume`: it executes itself once it made
/// its container) serves that container, and skips the command line: clap's parser would leave
/// tens of KiB on the heap of a process that lives as long as its container. Its logging settings
/// are `roci monitor`'s, from [`MONITOR_LOG_ENV`]. `None` in any other process.
fn resumed_monitor() -> Option<ExitCode> {
    std::env::var_os(libcontainer::monitor::HANDOFF_FD_ENV)?;
    if cli::command_word(std::env::args_os().skip(1)).as_deref() != Some("monitor") {
        return None;
    }
    let settings = std::env::var_os(MONITOR_LOG_ENV).unwrap_or_default().into_vec();
    std::env::remove_var(MONITOR_LOG_ENV);
    let mut parts = settings.splitn(3, |b| *b == b',');
    let format = match parts.next() {
        Some(b"json") => logging::Format::Json,
        _ => logging::Format::Text,
    };
    let debug = parts.next() == Some(b"1");
    let path = parts.next().filter(|p| !p.is_empty()).map(|p| PathBuf::from(OsString::from_vec(p.to_vec())));
    if let Err(e) = logging::init(path.as_deref(), format, debug) {
        eprintln!("roci: {e}");
    }
    libcontainer::monitor::resume().map(|code| ExitCode::from(code.clamp(0, 255) as u8))
}

/// `roci monitor CONFIG`: the monitor is forked and creates the container; this process prints
/// what it reported, one JSON line, and exits (so the daemon that ran it is never the monitor's
/// parent). The exit code says which: 0 created, 1 not.
fn monitor(config: &Path, root: Option<&Path>, log: (Option<&Path>, logging::Format, bool)) -> u8 {
    // Inherited by the monitor, so its new image logs as this process does.
    let (path, format, debug) = log;
    let mut settings =
        OsString::from(format!("{},{},", if format == logging::Format::Json { "json" } else { "text" }, u8::from(debug)));
    settings.push(path.map(Path::as_os_str).unwrap_or_default());
    std::env::set_var(MONITOR_LOG_ENV, settings);
    let report = libcontainer::monitor::spawn(config, root);
    let code = match &report {
        libcontainer::monitor::SpawnReport::Created { .. } => 0,
        libcontainer::monitor::SpawnReport::Failed { error } => {
            tracing::error!("monitor: {error}");
            1
        }
    };
    out(&serde_json::to_string(&report).unwrap_or_default());
    code
}

/// With `--image`, make the container's bundle from the image and point
/// `--bundle` at it; true if it did.
fn image_bundle(root: &Path, image_root: &Path, c: &mut cli::Create) -> Result<bool> {
    if c.image.image.is_none() {
        return Ok(false);
    }
    libcontainer::spec::validate_id(&c.id)?;
    if root.join(&c.id).exists() {
        return Err(libcontainer::state::Error::Exists(c.id.clone()).into());
    }
    c.bundle = image_cmd::make_bundle(image_root, &c.id, &c.image, &c.command)?;
    Ok(true)
}

fn create_options<'a>(root: &'a Path, c: &'a cli::Create) -> create::Options<'a> {
    create::Options {
        root,
        id: &c.id,
        bundle: &c.bundle,
        console_socket: c.console_socket.as_deref(),
        console_fd: None,
        stdio: None,
        pid_file: c.pid_file.as_deref(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
        loaded: None,
        hold: false,
    }
}

/// roci manages cgroups through cgroupfs; the systemd driver needs a
/// running systemd to talk to.
fn check_systemd(requested: bool) -> Result<()> {
    if !requested {
        return Ok(());
    }
    if !Path::new("/run/systemd/system").is_dir() {
        bail!("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); use the cgroupfs driver (omit the flag)");
    }
    bail!("--systemd-cgroup: the systemd cgroup driver is not available in this roci build; omit the flag to use cgroupfs");
}

fn list(root: &Path, format: ListFormat, quiet: bool) -> Result<()> {
    let mut reports = Vec::new();
    for id in libcontainer::state::list_ids(root)? {
        match container::report(root, &id) {
            Ok(r) => reports.push(r),
            // Deleted while we were listing.
            Err(container::Error::State(libcontainer::state::Error::NotExist(_))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut out = std::io::stdout().lock();
    if quiet {
        for r in &reports {
            writeln!(out, "{}", r.id)?;
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&reports)?)?,
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = reports
                .iter()
                .map(|r| {
                    [
                        r.id.clone(),
                        r.pid.to_string(),
                        r.status.to_string(),
                        r.bundle.display().to_string(),
                        r.created.clone(),
                        r.owner.clone(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = header.clone().map(|h| h.len());
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.len());
                }
            }
            for row in std::iter::once(&header).chain(rows.iter()) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .enumerate()
                    .map(|(i, (c, w))| if i == 5 { c.clone() } else { format!("{c:<w$}") })
                    .collect();
                writeln!(out, "{}", line.join("   "))?;
            }
        }
    }
    Ok(())
}

fn ps(root: &Path, id: &str, format: ListFormat, ps_args: &[String]) -> Result<()> {
    let pids = container::pids(root, id)?;
    if format == ListFormat::Json {
        out(&serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args: Vec<String> = if ps_args.is_empty() { vec!["-ef".into()] } else { ps_args.to_vec() };
    let out = std::process::Command::new("ps").args(&args).output().context("run ps")?;
    if !out.status.success() {
        bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header.split_whitespace().position(|h| h == "PID").context("ps output has no PID column")?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{header}")?;
    for line in lines {
        let pid = line.split_whitespace().nth(pid_col).and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(stdout, "{line}")?;
        }
    }
    Ok(())
}

fn exec(root: &Path, e: cli::Exec) -> Result<i32> {
    let process: Process = match &e.process {
        Some(path) => {
            let data = std::fs::read(path).with_context(|| format!("read --process {}", path.display()))?;
            // A valid file takes the plain decoder (with the runtime-spec's
            // scheduler flag names); a failing one is decoded again to name
            // the field (`args[0]`), as config.json's errors do.
            let mut p: Process = match libcontainer::attrs::sched::decode(&data, "/scheduler") {
                Ok(p) => p,
                Err(plain) => serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&data))
                    .map_err(|err| anyhow::anyhow!("parse --process {}: {}: {}", path.display(), err.path(), err.inner()))
                    .and_then(|_: Process| Err(anyhow::anyhow!("parse --process {}: {plain}", path.display())))?,
            };
            if e.tty {
                p.set_terminal(Some(true));
            }
            p
        }
        None => {
            if e.args.is_empty() {
                bail!("exec: no command given (arguments or --process)");
            }
            let dir = root.join(&e.id);
            let saved = libcontainer::state::load(&dir)?.ok_or_else(|| libcontainer::state::Error::NotExist(e.id.clone()))?;
            let base = saved.spec()?.process().clone().context("container config has no process")?;
            let (uid, gid) = match &e.user {
                None => (None, None),
                Some(u) => {
                    let (uid, gid) = match u.split_once(':') {
                        Some((a, b)) => (a, Some(b)),
                        None => (u.as_str(), None),
                    };
                    let uid: u32 = uid.parse().with_context(|| format!("--user {u}: uid must be a number"))?;
                    let gid: Option<u32> =
                        gid.map(|g| g.parse().with_context(|| format!("--user {u}: gid must be a number"))).transpose()?;
                    (Some(uid), gid)
                }
            };
            let o = container::exec::Overrides {
                args: e.args.clone(),
                env: e.env.clone(),
                cwd: e.cwd.clone(),
                uid,
                gid,
                additional_gids: e.additional_gids.clone(),
                caps: e.cap.clone(),
                tty: e.tty,
                no_new_privs: e.no_new_privs,
            };
            container::exec::process_from(&base, &o)?
        }
    };
    Ok(container::exec::exec(container::exec::Options {
        root,
        id: &e.id,
        process,
        console_socket: e.console_socket.as_deref(),
        pid_file: e.pid_file.as_deref(),
        detach: e.detach,
        preserve_fds: e.preserve_fds,
        cgroup: e.cgroup.clone(),
        ignore_paused: e.ignore_paused,
        stdio: None,
    })?)
}

/// Print a line to stdout; a reader that went away (`roci state x | head`)
/// is not an error worth a panic.
fn out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// The resources of `roci update`: the `-r` file, then the flags over it.
fn update_resources(u: &cli::Update) -> Result<oci_spec::runtime::LinuxResources> {
    let (source, doc) = match &u.resources {
        Some(p) if p.as_os_str() == "-" => {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut data).context("read resources from stdin")?;
            (Path::new("<stdin>").to_owned(), Some(data))
        }
        Some(p) => (p.clone(), Some(std::fs::read(p).with_context(|| format!("read {}", p.display()))?)),
        None => (Path::new("<flags>").to_owned(), None),
    };
    let mut flags: Vec<(&[&str], serde_json::Value)> = Vec::new();
    let mut set = |path: &'static [&'static str], value: serde_json::Value| flags.push((path, value));
    if let Some(x) = u.memory {
        set(&["memory", "limit"], x.into());
    }
    if let Some(x) = u.memory_reservation {
        set(&["memory", "reservation"], x.into());
    }
    if let Some(x) = u.memory_swap {
        set(&["memory", "swap"], x.into());
    }
    if let Some(x) = u.cpu_quota {
        set(&["cpu", "quota"], x.into());
    }
    if let Some(x) = u.cpu_period {
        set(&["cpu", "period"], x.into());
    }
    if let Some(x) = u.cpu_share {
        set(&["cpu", "shares"], x.into());
    }
    if let Some(x) = u.cpu_rt_period {
        set(&["cpu", "realtimePeriod"], x.into());
    }
    if let Some(x) = u.cpu_rt_runtime {
        set(&["cpu", "realtimeRuntime"], x.into());
    }
    if let Some(x) = &u.cpuset_cpus {
        set(&["cpu", "cpus"], x.clone().into());
    }
    if let Some(x) = &u.cpuset_mems {
        set(&["cpu", "mems"], x.clone().into());
    }
    if let Some(x) = u.pids_limit {
        set(&["pids", "limit"], x.into());
    }
    if let Some(x) = u.blkio_weight {
        set(&["blockIO", "weight"], x.into());
    }
    Ok(container::update::parse_resources(&source, doc.as_deref(), &flags)?)
}

/// The error and its causes on one line. libcontainer's messages already
/// carry their cause's text, so a cause already in the line is not repeated.
fn error_text(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

/// `/run/roci` for root; an unprivileged user's state goes under its
/// runtime directory, as runc's does.
fn default_root() -> Result<std::path::PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok("/run/roci".into());
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Ok(std::path::PathBuf::from(d).join("roci")),
        None => bail!("not running as root and XDG_RUNTIME_DIR is not set: give --root"),
    }
}

// ---- checkpoint/restore (CRIU) ---------------------------------------------------------------

fn criu_common(f: &cli::CriuFlags) -> libcontainer::criu::Common {
    libcontainer::criu::Common {
        work_dir: f.work_path.clone(),
        tcp_established: f.tcp_established,
        ext_unix_sk: f.ext_unix_sk,
        shell_job: f.shell_job,
        file_locks: f.file_locks,
        auto_dedup: f.auto_dedup,
        cgroups_mode: f.manage_cgroups_mode.unwrap_or_default(),
        config_file: None,
    }
}

fn checkpoint(root: &Path, criu: Option<&Path>, c: &cli::Checkpoint) -> Result<()> {
    let image_path = c.criu.image_path.clone().unwrap_or_else(container::checkpoint::default_image_path);
    container::checkpoint::checkpoint(container::checkpoint::Options {
        root,
        id: &c.id,
        criu,
        image_path: &image_path,
        parent_path: c.parent_path.as_deref(),
        leave_running: c.leave_running,
        pre_dump: c.pre_dump,
        criu_opts: criu_common(&c.criu),
    })?;
    Ok(())
}

fn restore(root: &Path, criu: Option<&Path>, r: &cli::Restore) -> Result<i32> {
    let image_path = r.criu.image_path.clone().unwrap_or_else(container::checkpoint::default_image_path);
    Ok(container::restore::restore(container::restore::Options {
        root,
        id: &r.id,
        bundle: &r.bundle,
        criu,
        image_path: &image_path,
        detach: r.detach,
        pid_file: r.pid_file.as_deref(),
        console_socket: r.console_socket.as_deref(),
        no_pivot: r.no_pivot,
        criu_opts: criu_common(&r.criu),
    })?)
}
