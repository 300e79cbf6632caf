//! `roci-cri`: parses the flags, reads the configuration, sets up logging and serves the CRI.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use roci_cri::config::{CgroupDriver, Config, LogLevel, Overrides, DEFAULT_CONFIG_FILE};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The Kubernetes CRI (runtime.v1) server of roci. Every flag overrides the configuration file's
/// key of the same name (see cri.toml.example).
#[derive(Debug, Parser)]
#[command(name = "roci-cri", version)]
struct Args {
    /// Configuration file [default: /etc/roci/cri.toml, when it exists]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Unix socket to serve on [default: /run/roci/roci-cri.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Persistent state directory [default: /var/lib/roci/cri]
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime state directory [default: /run/roci/cri]
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// CNI network configuration directory [default: /etc/cni/net.d]
    #[arg(long, value_name = "DIR")]
    cni_conf_dir: Option<PathBuf>,
    /// CNI plugin directory [default: /usr/lib/cni]
    #[arg(long, value_name = "DIR")]
    cni_bin_dir: Option<PathBuf>,
    /// Image of the pods' infra container [default: registry.k8s.io/pause:3.10]
    #[arg(long, value_name = "REF")]
    pause_image: Option<String>,
    /// Registries configuration, as roci image's [default: /etc/roci/registries.json]
    #[arg(long, value_name = "FILE")]
    registries_config: Option<PathBuf>,
    /// Log level [default: info]
    #[arg(long, value_enum, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    /// Cgroup driver [default: cgroupfs]
    #[arg(long, value_enum, value_name = "DRIVER")]
    cgroup_driver: Option<CgroupDriver>,
    /// Streaming server address [default: 127.0.0.1:0]
    #[arg(long, value_name = "ADDR:PORT")]
    stream_server_address: Option<String>,
    /// The roci binary that creates containers [default: roci, beside roci-cri or in PATH]
    #[arg(long, value_name = "PATH")]
    runtime_path: Option<PathBuf>,
    /// Directory Localhost seccomp profiles must be in [default: /var/lib/kubelet/seccomp]
    #[arg(long, value_name = "DIR")]
    seccomp_profile_root: Option<PathBuf>,
    /// No oom_score_adj below the daemon's own (containerd's restrict_oom_score_adj) [default: off]
    #[arg(long)]
    restrict_oom_score_adj: bool,
    /// AppArmor profile for RuntimeDefault; "" for none [default: roci-cri-default, loaded at start]
    #[arg(long, value_name = "NAME")]
    apparmor_default_profile: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let overrides = Overrides {
        socket: args.socket,
        root: args.root,
        state: args.state,
        cni_conf_dir: args.cni_conf_dir,
        cni_bin_dir: args.cni_bin_dir,
        pause_image: args.pause_image,
        registries_config: args.registries_config,
        log_level: args.log_level,
        cgroup_driver: args.cgroup_driver,
        stream_server_address: args.stream_server_address,
        runtime_path: args.runtime_path,
        seccomp_profile_root: args.seccomp_profile_root,
        restrict_oom_score_adj: args.restrict_oom_score_adj.then_some(true),
        apparmor_default_profile: args.apparmor_default_profile,
    };
    let config = Config::load(args.config.as_deref(), overrides)?;
    // The level applies to roci-cri's own events; the libraries' (tonic, h2, hyper) debug output
    // is per HTTP/2 frame, so they log warnings and errors only.
    let level = tracing::Level::from(config.log_level);
    let filter = Targets::new().with_target("roci_cri", level).with_default(level.min(tracing::Level::WARN));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false))
        .with(filter)
        .init();
    let file = args.config.or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|f| f.exists()));
    let file = file.map_or_else(|| "none (the defaults)".to_string(), |f| f.display().to_string());
    tracing::debug!(config_file = file, ?config, "configuration");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the tokio runtime")?;
    runtime.block_on(roci_cri::serve(config))?;
    Ok(())
}
