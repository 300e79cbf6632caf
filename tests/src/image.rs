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

/// An image made for the `roci image` tests on top of [`busybox`] (whose base layer it shares): a
/// second layer with a user `app` (1234:2345, also in group `extra` 3456), a seeded volume dir
/// `/data` owned by it (`seed`, its hard link `seed-link`, a symlink `latest -> seed`) and
/// `/etc/conf.d/{a,b}`; a third with a whiteout of `/bin/vi`, `/opt/marker`, and an opaque
/// `/etc/conf.d` holding only `c`; its config has an entrypoint, cmd, env, working dir,
/// user, volume, exposed port, stop signal and a label. Built once per test process, in the cache.
pub fn app() -> &'static Path {
    static APP: OnceLock<PathBuf> = OnceLock::new();
    APP.get_or_init(|| {
        let base = busybox();
        let cache = std::env::temp_dir().join("roci-it-cache");
        let done = cache.join("app-image-2");
        if !done.join("oci").join("index.json").exists() {
            let tmp = cache.join(format!(".app-image-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).expect("create the image build dir");
            let layout = tmp.join("oci");
            run(Command::new("cp").arg("-a").arg(&base.oci_layout).arg(&layout));
            let image = format!("{}:latest", layout.display());
            // Layers are written with GNU tar and added verbatim: umoci 0.4's `insert` writes small layers
            // without their final padding and end-of-archive blocks, which a strict unpacker refuses.
            let one = tmp.join("one");
            std::fs::create_dir_all(one.join("etc")).unwrap();
            std::fs::create_dir_all(one.join("data")).unwrap();
            std::fs::write(
                one.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1234:2345:app:/data:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(one.join("etc/group"), "root:x:0:\nnogroup:x:65534:\napp:x:2345:\nextra:x:3456:app\n").unwrap();
            std::fs::write(one.join("data/seed"), "seeded\n").unwrap();
            std::fs::hard_link(one.join("data/seed"), one.join("data/seed-link")).unwrap();
            std::os::unix::fs::symlink("seed", one.join("data/latest")).unwrap();
            std::fs::create_dir_all(one.join("etc/conf.d")).unwrap();
            std::fs::write(one.join("etc/conf.d/a"), "a\n").unwrap();
            std::fs::write(one.join("etc/conf.d/b"), "b\n").unwrap();
            run(Command::new("chown").arg("-R").arg("1234:2345").arg(one.join("data")));
            let two = tmp.join("two");
            std::fs::create_dir_all(two.join("bin")).unwrap();
            std::fs::create_dir_all(two.join("opt")).unwrap();
            std::fs::write(two.join("bin/.wh.vi"), "").unwrap();
            std::fs::write(two.join("opt/marker"), "two\n").unwrap();
            // An opaque directory: conf.d of this layer replaces the one below it.
            std::fs::create_dir_all(two.join("etc/conf.d")).unwrap();
            std::fs::write(two.join("etc/conf.d/.wh..wh..opq"), "").unwrap();
            std::fs::write(two.join("etc/conf.d/c"), "c\n").unwrap();
            for dir in [&one, &two] {
                let tar = dir.with_extension("tar");
                run(Command::new("tar").arg("--numeric-owner").arg("-C").arg(dir).arg("-cf").arg(&tar).arg("."));
                run(Command::new("umoci").args(["raw", "add-layer", "--image", &image]).arg(&tar));
                let _ = std::fs::remove_file(&tar);
                let _ = std::fs::remove_dir_all(dir);
            }
            run(Command::new("umoci").args([
                "config",
                "--image",
                &image,
                "--config.entrypoint",
                "/bin/sh",
                "--config.entrypoint",
                "-c",
                "--config.cmd",
                "echo from-image-cmd",
                "--config.env",
                "APP_MODE=test",
                "--config.workingdir",
                "/data",
                "--config.user",
                "app",
                "--config.volume",
                "/data",
                "--config.exposedports",
                "8080/tcp",
                "--config.stopsignal",
                "SIGQUIT",
                "--config.label",
                "dev.roci.test=app",
            ]));
            // umoci keeps every intermediate manifest; drop what the tag no longer names.
            run(Command::new("umoci").args(["gc", "--layout"]).arg(&layout));
            if std::fs::rename(&tmp, &done).is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        done.join("oci")
    })
}

/// Adds to the OCI layout at `layout` (a copy of [`busybox`]'s, say) an arm64 variant of `latest`
/// and an index `multi` over both, arm64 first; returns the (amd64, arm64) manifest digests.
pub fn add_two_platform_index(layout: &Path) -> (String, String) {
    let image = format!("{}:latest", layout.display());
    let out = Command::new("umoci")
        .args(["config", "--image", &image, "--tag", "arm64", "--architecture", "arm64"])
        .output()
        .expect("run umoci");
    assert!(out.status.success(), "umoci config: {}", String::from_utf8_lossy(&out.stderr));
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let by_name = |name: &str| -> serde_json::Value {
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {index_path:?}"))
            .clone()
    };
    let entry = |mut m: serde_json::Value, arch: &str| {
        m.as_object_mut().unwrap().remove("annotations");
        m["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        m
    };
    let (amd64, arm64) = (by_name("latest"), by_name("arm64"));
    let digests = (amd64["digest"].as_str().unwrap().to_string(), arm64["digest"].as_str().unwrap().to_string());
    let multi = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": libimage::pull::MEDIA_TYPE_OCI_INDEX,
        // arm64 first, so picking the first entry would be wrong.
        "manifests": [entry(arm64, "arm64"), entry(amd64, "amd64")],
    });
    let bytes = serde_json::to_vec(&multi).unwrap();
    let d = libimage::digest::Digest::sha256_of(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(d.hex()), &bytes).unwrap();
    index["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": libimage::pull::MEDIA_TYPE_OCI_INDEX,
        "digest": d.to_string(),
        "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    digests
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
