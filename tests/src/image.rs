//! A busybox image the client suites load into containerd, Docker and Podman: built once per test
//! process (and cached across processes) from Debian's busybox-static, with umoci (OCI layout) and
//! skopeo (docker-archive tarball), no network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The image's reference in every client: `docker.io/library/busybox:latest` (Docker and Podman
/// normalise `busybox` to it).
pub const REFERENCE: &str = "docker.io/library/busybox:latest";

pub struct Image {
    /// An OCI image layout directory holding the image under the tag `latest`.
    pub oci_layout: PathBuf,
    /// The same image as a `docker save` tarball tagged [`REFERENCE`] (for `docker load`,
    /// `podman load` and `ctr images import`).
    pub docker_archive: PathBuf,
}

impl Image {
    /// `oci:<layout>:latest`, for skopeo.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:latest", self.oci_layout.display())
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (install Debian's umoci and skopeo)"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn build(dir: &Path) {
    let rootfs = dir.join("rootfs");
    crate::rootfs::build(&rootfs);
    let layout = dir.join("oci");
    let image = format!("{}:latest", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci").args(["insert", "--rootless", "--image", &image]).arg(&rootfs).arg("/"));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.workingdir",
        "/",
        "--architecture",
        "amd64",
        "--os",
        "linux",
    ]));
    let archive = dir.join("busybox.tar");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", &format!("oci:{image}")])
        .arg(format!("docker-archive:{}:{REFERENCE}", archive.display())));
}

/// The busybox image, built on first use.
pub fn busybox() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let cache = std::env::temp_dir().join("roci-it-cache");
        std::fs::create_dir_all(&cache).expect("create the image cache dir");
        let done = cache.join("busybox-image");
        if !done.join("busybox.tar").exists() {
            // Build aside and rename, so a concurrent test process never sees half an image.
            let tmp = cache.join(format!(".busybox-image-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).expect("create the image build dir");
            build(&tmp);
            let _ = std::fs::remove_dir_all(tmp.join("rootfs"));
            if std::fs::rename(&tmp, &done).is_err() {
                // Another process won the race; its image is as good as ours.
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Image { oci_layout: done.join("oci"), docker_archive: done.join("busybox.tar") }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn busybox_image_builds() {
        let img = super::busybox();
        assert!(img.oci_layout.join("index.json").is_file());
        assert!(std::fs::metadata(&img.docker_archive).unwrap().len() > 100_000);
    }
}
