//! The command line, flag for flag as runc's where runc has the flag.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::Format;

#[derive(Debug, Parser)]
#[command(name = "roci", disable_version_flag = true, about = "An OCI container runtime, command-line compatible with runc")]
pub struct Cli {
    /// Directory for the containers' state [default: /run/roci, or
    /// $XDG_RUNTIME_DIR/roci when not run as root]
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Write log lines to this file (appended) instead of stderr
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log line format
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: Format,
    /// Log debug lines too
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (needs a running systemd)
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Directory of images, their layers and the bundles of containers run from them
    #[arg(long = "image-root", global = true, default_value = libcontainer::image_bundle::DEFAULT_ROOT)]
    pub image_root: PathBuf,
    /// CRIU binary for checkpoint and restore [default: criu in PATH]
    #[arg(long, global = true)]
    pub criu: Option<PathBuf>,
    /// Print the version
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The global options of [`Cli`] that take a value (as `--opt VALUE` or
/// `--opt=VALUE`), for [`makes_container_processes`].
const GLOBAL_VALUED: &[&str] = &["--root", "--log", "--log-format", "--image-root", "--criu"];

/// Whether the command line (without the program name) runs `create`,
/// `run`, `exec` or `monitor`, told from the first word that is neither an option nor
/// a global option's value, without parsing it all.
pub fn makes_container_processes(args: impl IntoIterator<Item = OsString>) -> bool {
    matches!(command_word(args).as_deref(), Some("create" | "run" | "exec" | "monitor"))
}

/// The command of the command line (without the program name): the first
/// word that is neither an option nor a global option's value, without
/// parsing it all. `None` when there is none or it is not UTF-8.
pub fn command_word(args: impl IntoIterator<Item = OsString>) -> Option<String> {
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.into_string().ok()?;
        if GLOBAL_VALUED.contains(&arg.as_str()) {
            args.next();
            continue;
        }
        if arg.starts_with('-') {
            continue;
        }
        return Some(arg);
    }
    None
}

// Each subcommand's arguments are built only when it is the one given
// (`defer`): building all of them cost ~1.2M instructions per start.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create a container: set it up and wait for `start`
    Create(Create),
    /// Execute the user's program in a created container
    Start { id: String },
    /// Create and start a container, and wait for it unless detached
    Run(Run),
    /// Run a new process in a running container
    Exec(Exec),
    /// Print a container's state as JSON
    State { id: String },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Change a running container's resource limits
    Update(Update),
    /// Print a container's resource statistics and OOM events
    Events {
        /// Print the statistics once and exit
        #[arg(long)]
        stats: bool,
        /// How often to print statistics (e.g. 5s, 500ms)
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: std::time::Duration,
        id: String,
    },
    /// Send a signal to a container's init (or all its processes)
    Kill {
        /// Send the signal to every process in the container's cgroup
        #[arg(short, long)]
        all: bool,
        id: String,
        /// Signal name (KILL, SIGKILL) or number
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container's resources
    Delete {
        /// Kill the container first if it is running
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers
    List {
        #[arg(short, long, default_value = "table")]
        format: ListFormat,
        /// Print only the ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the processes of a container
    Ps {
        #[arg(short, long, default_value = "table")]
        format: ListFormat,
        id: String,
        /// Options for ps(1) in table format
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Write a default config.json
    Spec {
        /// Bundle directory to write it into
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        /// A config for rootless containers
        #[arg(long)]
        rootless: bool,
    },
    /// Print the OCI features document of this runtime
    Features,
    /// Checkpoint a running container with CRIU
    Checkpoint(Checkpoint),
    /// Restore a container from a CRIU checkpoint
    Restore(Restore),
    /// Internal to roci-cri: fork a container's monitor (its parent, log writer and ExecSync server), create the container from CONFIG (a JSON file), print {"pid":N,"monitor_pid":M} or {"error":...} and exit
    Monitor {
        /// The monitor's JSON config (libcontainer::monitor::Config)
        config: PathBuf,
    },
    /// Pull, list, inspect, remove and prune images (runs roci-image; see `roci image --help`)
    #[command(disable_help_flag = true)]
    Image {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct PullFlags {
    /// Allow plain HTTP and unverified TLS for the image's registry
    #[arg(long, requires = "image")]
    pub insecure: bool,
    /// Platform to pull from a multi-platform image (os/arch[/variant]) [default: the host's]
    #[arg(long, requires = "image")]
    pub platform: Option<String>,
    /// Registry credentials (USER:PASSWORD)
    #[arg(long, requires = "image")]
    pub creds: Option<String>,
    /// Registries configuration (insecure hosts, mirrors, credentials) [default: /etc/roci/registries.json]
    #[arg(long = "registries-config", requires = "image")]
    pub registries_config: Option<PathBuf>,
}

// `create --image` and `run --image`: make the bundle from an image. (A
// plain comment: with `defer`, a flattened struct's doc would become the
// subcommand's about.)
#[derive(Debug, Args)]
pub struct ImageFlags {
    /// Make the bundle from this image (pulled if missing) instead of --bundle
    #[arg(long)]
    pub image: Option<String>,
    /// When to pull the image: missing, always or never
    #[arg(long, default_value = "missing", requires = "image")]
    pub pull: PullPolicy,
    #[command(flatten)]
    pub pull_flags: PullFlags,
    /// Set an environment variable (KEY=VALUE) over the image's
    #[arg(short, long = "env", requires = "image")]
    pub env: Vec<String>,
    /// User (name, uid, user:group) instead of the image's
    #[arg(short, long, requires = "image")]
    pub user: Option<String>,
    /// Working directory instead of the image's
    #[arg(short, long, requires = "image")]
    pub workdir: Option<String>,
    /// Program instead of the image's entrypoint
    #[arg(long, requires = "image")]
    pub entrypoint: Option<String>,
    /// Container hostname [default: roci]
    #[arg(long, requires = "image")]
    pub hostname: Option<String>,
    /// Give the process a terminal
    #[arg(short, long, requires = "image")]
    pub tty: bool,
    /// Put the container's cgroup under this parent (cgroupsPath PARENT/ID) [default: /roci; "" for
    /// the caller's cgroup]
    #[arg(long = "cgroup-parent", requires = "image")]
    pub cgroup_parent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct Create {
    /// Bundle directory (holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket to send the pty master to when process.terminal is true
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's pid to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Enter the rootfs with MS_MOVE and chroot instead of pivot_root
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Keep the caller's session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many fds from 3 up (besides stdio and LISTEN_FDS) to the program
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    #[command(flatten)]
    pub image: ImageFlags,
    pub id: String,
    /// With --image: the command (replacing the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, requires = "image")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Run {
    #[command(flatten)]
    pub create: Create,
    /// Return once the program runs instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container after it exits (accepted; `delete` it yourself)
    #[arg(long)]
    pub keep: bool,
    /// Accepted for runc compatibility
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// With --image: delete the container and its snapshot when it exits (else it stays until `delete`)
    #[arg(long, requires = "image", conflicts_with_all = ["detach", "keep"])]
    pub rm: bool,
}

#[derive(Debug, Args)]
pub struct Exec {
    /// Unix socket to send the pty master to (with --tty)
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory of the process
    #[arg(long)]
    pub cwd: Option<String>,
    /// Set an environment variable (KEY=VALUE), repeatable
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Give the process a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// UID[:GID] to run as
    #[arg(short, long)]
    pub user: Option<String>,
    /// Supplementary group ids, repeatable
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// A process.json to run instead of the arguments
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once the process runs
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's pid to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility (SELinux is not supported)
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
    /// Accepted for runc compatibility (AppArmor is not supported)
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// Set no_new_privs for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability to the bounding, effective and permitted sets, repeatable
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Pass this many fds from 3 up to the process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Run in this sub-cgroup of the container's (PATH, or CONTROLLER:PATH), repeatable
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Exec even if the container is paused (the process runs once it is resumed)
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    pub id: String,
    /// The program and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Go-style durations as runc takes them: `5s`, `500ms`, `1m`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let mut total = std::time::Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => value / 1e9,
            "us" | "µs" => value / 1e6,
            "ms" => value / 1e3,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(format!("invalid duration {s:?}: unit {unit:?}")),
        };
        total += std::time::Duration::from_secs_f64(secs);
        rest = tail;
    }
    if total.is_zero() {
        return Err(format!("duration {s:?} must be above zero"));
    }
    Ok(total)
}

#[derive(Debug, Args)]
pub struct Update {
    /// Read the new resources from a JSON file (linux.resources format; "-" for stdin)
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory soft limit in bytes
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit in bytes (-1 for unlimited)
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// CPU CFS quota in microseconds (-1 for none)
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    /// CPU realtime period in microseconds
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds
    #[arg(long = "cpu-rt-runtime")]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use (e.g. 0-3,7)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of tasks (-1 or 0 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10 to 1000)
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

// ---- checkpoint/restore (CRIU) ---------------------------------------------------------------

// Flags `checkpoint` and `restore` share (runc's). A plain comment, as for
// ImageFlags.
#[derive(Debug, Args)]
pub struct CriuFlags {
    /// Directory of the CRIU images [default: ./checkpoint]
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    /// Directory for CRIU's log and work files [default: the image path]
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks, for safety
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// Deduplicate memory images
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// cgroups mode: soft|full|strict|ignore [default: soft]
    #[arg(long = "manage-cgroups-mode")]
    pub manage_cgroups_mode: Option<libcontainer::criu::CgroupsMode>,
}

#[derive(Debug, Args)]
pub struct Checkpoint {
    #[command(flatten)]
    pub criu: CriuFlags,
    /// Images of a previous pre-dump, relative to --image-path
    #[arg(long = "parent-path")]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Dump memory only and leave the container running
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Restore {
    #[command(flatten)]
    pub criu: CriuFlags,
    /// Bundle directory (holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Return once the container runs instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the restored init's pid to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket for the pty master (terminal containers cannot be restored by this version)
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (CRIU enters the rootfs on restore)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Accepted for runc compatibility
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    pub id: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn global_valued_lists_every_global_option_with_a_value() {
        let cmd = Cli::command();
        let mut valued: Vec<String> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set() && a.get_action().takes_values())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        valued.sort();
        let mut listed: Vec<String> = GLOBAL_VALUED.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(valued, listed);
    }

    /// Deferred subcommands keep their own about line (a flattened struct's
    /// doc comment would replace it) and still take the global options.
    #[test]
    fn deferred_subcommands_keep_their_about_and_globals() {
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name().to_string();
            // `image` hands everything, --help too, to roci-image.
            if name == "help" || sub.is_disable_help_flag_set() {
                continue;
            }
            let listed = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            let Err(e) = Cli::command().try_get_matches_from(["roci", &name, "--help"]) else {
                panic!("{name} --help parsed as a command line");
            };
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{name}");
            let help = e.to_string();
            assert_eq!(help.lines().next(), Some(listed.as_str()), "{name} --help");
            assert!(help.contains("--root"), "{name} --help lists the global --root: {help}");
        }
    }

    #[test]
    fn container_process_commands_are_told_without_clap() {
        for yes in [
            "run c",
            "--root /x monitor /c.json",
            "--root /x run c",
            "--root=/x create --bundle b c",
            "--log run exec",
            "--debug exec c ls",
        ] {
            assert!(makes_container_processes(words(yes)), "{yes}");
        }
        for no in ["state run", "--root run state c", "--log-format json kill c", "", "--debug", "delete exec"] {
            assert!(!makes_container_processes(words(no)), "{no}");
        }
    }
}
