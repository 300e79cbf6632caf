//! `roci-image`: roci's images — pull from registries, list with disk use,
//! inspect, remove, prune — and the bundle of a container run from an image.
//!
//! `roci image ARGS` runs `roci-image ARGS`, and `roci create/run --image`
//! runs `roci-image bundle ...`, so that `roci`, which starts every
//! container, links no HTTP client, TLS stack, async runtime or image
//! format code: its resident set is mostly its own code, and stays as small
//! as the runtime alone. The library underneath, `libimage`, is
//! what the CRI server calls in-process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use libimage::convert::Overrides;
use libimage::images::Image;
use libimage::manager::{ImageRoot, DEFAULT_ROOT};
use libimage::pull::{Platform, PullAuth, PullOptions};
use libimage::reference::Reference;
use libimage::registries::Registries;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(name = "roci-image", about = "roci's images: pull, list, inspect, remove, prune")]
struct Cli {
    /// Directory of images, their layers and the bundles of containers run from them
    #[arg(long = "image-root", global = true, default_value = DEFAULT_ROOT)]
    image_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pull an image from a registry and unpack its layers
    Pull {
        #[command(flatten)]
        pull: PullFlags,
        /// Print only the image ID
        #[arg(short, long)]
        quiet: bool,
        /// Image reference (busybox, docker.io/library/busybox:latest, host:port/name@sha256:...)
        reference: String,
    },
    /// List images with their disk use
    #[command(alias = "list")]
    Ls {
        #[arg(short, long, default_value = "table")]
        format: Format,
        /// Print only the names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print an image's record, manifest and configuration as JSON
    Inspect { reference: String },
    /// Remove images, then the layers and blobs nothing uses any more
    #[command(alias = "remove")]
    Rm {
        /// Remove an image even while containers run on its layers
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove every layer and blob that no image and no container uses
    Prune,
    /// Make the bundle of container ID from an image; prints its directory (used by `roci create/run --image`)
    Bundle(Bundle),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct PullFlags {
    /// Allow plain HTTP and unverified TLS for this registry
    #[arg(long)]
    insecure: bool,
    /// Platform to pull from a multi-platform image (os/arch[/variant]) [default: the host's]
    #[arg(long)]
    platform: Option<String>,
    /// Registry credentials (USER:PASSWORD); also read from $ROCI_IMAGE_CREDS
    #[arg(long)]
    creds: Option<String>,
    /// Registries configuration (insecure hosts, mirrors, credentials) [default: /etc/roci/registries.json]
    #[arg(long = "registries-config")]
    registries_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Bundle {
    #[command(flatten)]
    pull_flags: PullFlags,
    /// When to pull the image: missing, always or never
    #[arg(long, default_value = "missing")]
    pull: PullPolicy,
    /// Set an environment variable (KEY=VALUE) over the image's
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// User (name, uid, user:group) instead of the image's
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory instead of the image's
    #[arg(short, long)]
    workdir: Option<String>,
    /// Program instead of the image's entrypoint
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container hostname [default: roci]
    #[arg(long)]
    hostname: Option<String>,
    /// Give the process a terminal
    #[arg(short, long)]
    tty: bool,
    /// Put the container's cgroup under this parent (cgroupsPath PARENT/ID) [default: /roci; "" for
    /// the caller's cgroup]
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    id: String,
    reference: String,
    /// The command, replacing the image's Cmd
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PullPolicy {
    Missing,
    Always,
    Never,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.image_root, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(root: &Path, command: Command) -> Result<()> {
    let images = ImageRoot::open(root)?;
    let mut out = std::io::stdout().lock();
    match command {
        Command::Pull { pull, quiet, reference } => {
            let image = pull_image(&images, &reference, &pull)?;
            if quiet {
                writeln!(out, "{}", image.config)?;
            } else {
                writeln!(out, "{} {}", image.name, image.config)?;
            }
        }
        Command::Ls { format, quiet } => list(&images, format, quiet, &mut out)?,
        Command::Inspect { reference } => {
            let image = images.resolve(&reference)?;
            let manifest: serde_json::Value = serde_json::from_slice(&images.store.read(&image.manifest)?)
                .with_context(|| format!("parse the manifest of {}", image.name))?;
            let config: serde_json::Value = serde_json::from_slice(&images.store.read(&image.config)?)
                .with_context(|| format!("parse the configuration of {}", image.name))?;
            let doc = json!({
                "name": image.name, "id": image.config.to_string(), "digest": image.manifest.to_string(),
                "index": image.index.as_ref().map(ToString::to_string), "pulled": image.pulled,
                "layers": image.layers, "manifest": manifest, "config": config,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Command::Rm { force, references } => {
            for r in references {
                let (removed, pruned) = images.remove(&r, force)?;
                for name in removed {
                    writeln!(out, "Untagged: {name}")?;
                }
                if pruned.layers + pruned.blobs > 0 {
                    writeln!(out, "Deleted: {} layers, {} blobs, {}", pruned.layers, pruned.blobs, human(pruned.bytes))?;
                }
            }
        }
        Command::Prune => {
            let pruned = images.prune()?;
            writeln!(out, "Deleted: {} layers, {} blobs, {}", pruned.layers, pruned.blobs, human(pruned.bytes))?;
            if pruned.leftovers > 0 {
                writeln!(out, "Deleted: {} leftovers of interrupted pulls", pruned.leftovers)?;
            }
        }
        Command::Bundle(b) => {
            let bundle = make_bundle(&images, &b)?;
            writeln!(out, "{}", bundle.display())?;
        }
    }
    Ok(())
}

fn list(images: &ImageRoot, format: Format, quiet: bool, out: &mut impl Write) -> Result<()> {
    let usage = images.usage()?;
    if quiet {
        for u in &usage {
            writeln!(out, "{}", u.image.name)?;
        }
        return Ok(());
    }
    match format {
        Format::Json => {
            let list: Vec<_> = usage
                .iter()
                .map(|u| {
                    json!({
                        "name": u.image.name, "id": u.image.config.to_string(),
                        "digest": u.image.manifest.to_string(), "pulled": u.image.pulled,
                        "size": u.size, "sharedSize": u.shared, "uniqueSize": u.unique,
                        "containers": u.containers,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string(&list)?)?;
        }
        Format::Table => {
            let mut rows = vec![["NAME", "IMAGE ID", "SIZE", "SHARED", "UNIQUE", "CONTAINERS"].map(String::from)];
            for u in &usage {
                rows.push([
                    u.image.name.clone(),
                    u.image.short_id().to_owned(),
                    human(u.size),
                    human(u.shared),
                    human(u.unique),
                    u.containers.to_string(),
                ]);
            }
            let mut widths = [0usize; 6];
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.len());
                }
            }
            for row in &rows {
                let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
    }
    Ok(())
}

fn pull_image(images: &ImageRoot, reference: &str, flags: &PullFlags) -> Result<Image> {
    let r = Reference::parse(reference)?;
    let registries = Registries::load(flags.registries_config.as_deref())?;
    let platform = flags.platform.as_deref().map(Platform::parse).transpose()?;
    // `roci` passes credentials in the environment rather than on a command line others can read.
    let creds = flags.creds.clone().or_else(|| std::env::var("ROCI_IMAGE_CREDS").ok());
    let credentials = match creds {
        Some(c) => {
            let (u, p) = c.split_once(':').context("--creds: expected USER:PASSWORD")?;
            Some(PullAuth::basic(u, p))
        }
        None => None,
    };
    let opts = PullOptions { insecure: flags.insecure, platform, progress: true, registries, credentials };
    Ok(images.pull(&r, &opts)?)
}

fn make_bundle(images: &ImageRoot, b: &Bundle) -> Result<PathBuf> {
    for e in &b.env {
        if !e.contains('=') || e.starts_with('=') {
            bail!("--env {e:?}: expected KEY=VALUE");
        }
    }
    let image = match b.pull {
        PullPolicy::Always => pull_image(images, &b.reference, &b.pull_flags)?,
        PullPolicy::Never => images.resolve(&b.reference)?,
        PullPolicy::Missing => match images.resolve(&b.reference) {
            Ok(image) => image,
            Err(_) => pull_image(images, &b.reference, &b.pull_flags)?,
        },
    };
    let ov = Overrides {
        cmd: (!b.command.is_empty()).then(|| b.command.clone()),
        entrypoint: b.entrypoint.clone().map(|e| vec![e]),
        env: b.env.clone(),
        user: b.user.clone(),
        workdir: b.workdir.clone(),
        terminal: b.tty,
        hostname: b.hostname.clone(),
    };
    // Without --cgroup-parent the container goes under roci's own parent, not the caller's cgroup (see
    // DEFAULT_CGROUP_PARENT); `--cgroup-parent ""` asks for runc's way (no cgroupsPath: the caller's cgroup).
    let parent = b.cgroup_parent.as_deref().unwrap_or(libimage::DEFAULT_CGROUP_PARENT);
    let cgroups_path = (!parent.is_empty()).then(|| format!("{}/{}", parent.trim_end_matches('/'), b.id));
    Ok(images.make_bundle(&b.id, &image, libcontainer::template::config(false), &ov, cgroups_path.as_deref())?)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes}B");
    }
    let n = format!("{v:.3}");
    format!("{}{}", n.trim_end_matches('0').trim_end_matches('.'), UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human(999), "999B");
        assert_eq!(super::human(1_500_000), "1.5MB");
        assert_eq!(super::human(2_000_000_000), "2GB");
    }
}
