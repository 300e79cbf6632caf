//! `roci image ...` and `create/run --image`, through the `roci-image`
//! helper (beside this executable, else in PATH): it links the registry
//! client and image format code that `roci` itself leaves out.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::cli::{ImageFlags, PullPolicy};

fn helper() -> PathBuf {
    if let Some(p) = std::env::var_os("ROCI_IMAGE") {
        return PathBuf::from(p);
    }
    if let Some(exe) = libcontainer::selfexe::original_exe() {
        let sibling = exe.with_file_name("roci-image");
        if sibling.is_file() {
            return sibling;
        }
    }
    PathBuf::from("roci-image")
}

/// `roci image ARGS`: become `roci-image --image-root ROOT ARGS`.
pub fn image(root: &Path, args: &[String]) -> Result<()> {
    let helper = helper();
    let err = Command::new(&helper).arg("--image-root").arg(root).args(args).exec();
    Err(err).with_context(|| format!("run {}", helper.display()))
}

/// Make the bundle of container `id` from `--image` (pulling as `--pull`
/// says); returns its directory.
pub fn make_bundle(root: &Path, id: &str, flags: &ImageFlags, command: &[String]) -> Result<PathBuf> {
    let reference = flags.image.as_deref().context("--image missing")?;
    let helper = helper();
    let mut cmd = Command::new(&helper);
    cmd.arg("--image-root").arg(root).arg("bundle");
    let pull = match flags.pull {
        PullPolicy::Missing => "missing",
        PullPolicy::Always => "always",
        PullPolicy::Never => "never",
    };
    cmd.args(["--pull", pull]);
    let p = &flags.pull_flags;
    if p.insecure {
        cmd.arg("--insecure");
    }
    if let Some(v) = &p.platform {
        cmd.arg("--platform").arg(v);
    }
    if let Some(v) = &p.registries_config {
        cmd.arg("--registries-config").arg(v);
    }
    if let Some(c) = &p.creds {
        // Not on the helper's command line, where any user can read it.
        cmd.env("ROCI_IMAGE_CREDS", c);
    }
    for e in &flags.env {
        cmd.arg("--env").arg(e);
    }
    for (flag, value) in [
        ("--user", &flags.user),
        ("--workdir", &flags.workdir),
        ("--entrypoint", &flags.entrypoint),
        ("--hostname", &flags.hostname),
        ("--cgroup-parent", &flags.cgroup_parent),
    ] {
        if let Some(v) = value {
            cmd.arg(flag).arg(v);
        }
    }
    if flags.tty {
        cmd.arg("--tty");
    }
    cmd.arg("--").arg(id).arg(reference).args(command);
    // The helper's stderr (pull progress, errors) is the user's; its stdout is the bundle path.
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    let out = cmd.output().with_context(|| format!("run {}", helper.display()))?;
    if !out.status.success() {
        bail!("make the bundle of {id} from image {reference}: {} failed ({})", helper.display(), out.status);
    }
    let path = String::from_utf8(out.stdout).context("bundle path from roci-image")?;
    Ok(PathBuf::from(path.trim_end_matches('\n')))
}

/// Undo [`make_bundle`] after a create that failed before the container existed.
pub fn remove_bundle(root: &Path, id: &str) {
    if let Err(e) = libcontainer::image_bundle::remove(root, id) {
        tracing::warn!(error = %e, id, "remove the bundle of a container that was not created");
    }
}
