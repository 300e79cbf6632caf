//! roci-cri's images: one libimage [`ImageRoot`] at `<root>/images` (blobs, unpacked layers, image
//! records, the snapshots of containers), seen the way the CRI sees images.
//!
//! libimage keeps one record per reference pulled (`docker.io/library/busybox:1.36`,
//! `registry.k8s.io/pause@sha256:…`); the CRI's image is an image ID (the config's digest) with
//! every reference that names it. So here:
//! - an image's `repo_tags` are its records pulled by tag, its `repo_digests` `name@digest` of
//!   every record (the digest the reference resolved to: the index's when the tag named one);
//! - a reference or ID given by kubelet resolves as containerd's CRI resolves it: a reference
//!   (normalised as Docker does) names the record of that reference, or, with a digest, any record
//!   of that repository whose manifest or index has that digest; otherwise it is an image ID or a
//!   unique prefix of one;
//! - removing an image removes every record of its ID, whichever reference named it (containerd 1.6
//!   does the same), and then every blob and layer nothing else uses. The layers a container's
//!   snapshot stacks stay until that snapshot is removed (libimage's prune rule), so a running
//!   container keeps working when its image goes.
//!
//! libimage's calls block (files, `flock`): they run on tokio's blocking pool. Pulls run on the
//! daemon's runtime ([`ImageRoot::pull_async`]); two pulls of one image at once are safe (libimage
//! locks per blob and per layer, and writes records atomically).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use libimage::digest::Digest;
use libimage::images::Image;
use libimage::manager::ImageRoot;
use libimage::pull::{PullAuth, PullOptions};
use libimage::reference::Reference;
use libimage::registries::Registries;
use oci_spec::image::ImageConfiguration;

/// The image root under roci-cri's `--root`.
pub const IMAGES_DIR: &str = "images";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A reference that does not parse; `field` is the request field that carried it.
    #[error("{field}: {source}")]
    BadReference { field: &'static str, source: libimage::Error },
    /// An ID prefix that more than one image has.
    #[error("image ID prefix {prefix:?} is ambiguous: {ids}")]
    Ambiguous { prefix: String, ids: String },
    /// Pulling the image failed at the registry (or its mirrors).
    #[error("pull image {reference:?}: {source}")]
    Pull { reference: String, source: libimage::Error },
    /// Anything else the image root failed at (files, locks, records).
    #[error(transparent)]
    Image(#[from] libimage::Error),
    /// Work handed to the blocking pool did not finish.
    #[error("{op}: the blocking task failed: {reason}")]
    Blocking { op: &'static str, reason: String },
    /// The disk use walk failed.
    #[error("measure the image filesystem at {path}: {source}")]
    Usage { path: PathBuf, source: std::io::Error },
}

/// One image as the CRI reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CriImage {
    /// `sha256:<config digest>`.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// As containerd 1.6 counts it: the bytes of the blobs that make the image, as stored
    /// (compressed): the index it was picked from, its manifest, config and layers.
    pub size: u64,
    /// The configuration's `User` (`name`, `uid`, `uid:gid`, ...), empty when unset.
    pub user: String,
    /// The configured pause image is pinned: kubelet's image garbage collection keeps it.
    pub pinned: bool,
    /// The chain ID of the top layer.
    pub chain_id: String,
    /// The image configuration blob, as stored.
    pub config: serde_json::Value,
}

/// What ImageFsInfo reports for the image root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    /// When it was measured.
    pub measured: SystemTime,
    pub mountpoint: PathBuf,
    /// Bytes allocated on disk (blocks), hard links counted once.
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// How long a measurement of the image filesystem is reused. Measuring stats every file of every
/// unpacked layer, and kubelet asks every few seconds (containerd 1.6 measures its snapshots
/// every 10 s). A pull or a removal through roci-cri drops the measurement at once.
const USAGE_REUSED_FOR: Duration = Duration::from_secs(5);

pub struct Images {
    root: Arc<ImageRoot>,
    registries: Registries,
    /// The configured pause image, normalised.
    pause_image: String,
    /// The last measurement of the image filesystem.
    usage: Mutex<Option<FsUsage>>,
}

impl Images {
    /// Open (or create) the image root under `root`, with the registries configuration at
    /// `registries_config` (mirrors, insecure hosts and credentials; read once, here). A missing
    /// file is no mirrors and no credentials; a malformed one is an error.
    pub fn open(root: &Path, registries_config: &Path, pause_image: &str) -> Result<Images, ImageError> {
        let registries = match std::fs::metadata(registries_config) {
            Ok(_) => Registries::from_file(registries_config)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(path = %registries_config.display(), "no registries configuration: no mirrors, no configured credentials");
                Registries::default()
            }
            Err(source) => return Err(libimage::Error::RegistriesConfig { path: registries_config.into(), source }.into()),
        };
        let pause_image = parse("pause_image", pause_image)?;
        Ok(Images {
            root: Arc::new(ImageRoot::open(&root.join(IMAGES_DIR))?),
            registries,
            pause_image: pause_image.to_string(),
            usage: Mutex::new(None),
        })
    }

    /// libimage's image root (records, layers, snapshots and bundles).
    pub fn image_root(&self) -> &Arc<ImageRoot> {
        &self.root
    }

    /// The configured pause image, normalised.
    pub fn pause_image(&self) -> &str {
        &self.pause_image
    }

    /// Pull `reference` (given in the request field `field`); returns the image ID.
    pub async fn pull(&self, field: &'static str, reference: &str, auth: Option<PullAuth>) -> Result<String, ImageError> {
        let parsed = parse(field, reference)?;
        let opts = PullOptions { registries: self.registries.clone(), credentials: auth, ..PullOptions::default() };
        let image = self.root.pull_async(&parsed, &opts).await.map_err(|source| match source {
            source @ libimage::Error::Pull { .. } => ImageError::Pull { reference: parsed.to_string(), source },
            other => ImageError::Image(other),
        })?;
        tracing::info!(reference = %parsed, id = %image.config, "pulled");
        self.forget_usage();
        Ok(image.config.to_string())
    }

    /// Every image, one per ID, sorted by ID.
    pub async fn list(self: &Arc<Self>) -> Result<Vec<CriImage>, ImageError> {
        let me = self.clone();
        blocking("list images", move || {
            let records = me.root.images.list()?;
            let pinned = me.resolve_in(&records, &me.pause_image)?;
            by_id(records).into_values().map(|group| me.describe(&group, pinned.as_ref())).collect()
        })
        .await
    }

    /// The image `what` names (reference or ID), if there is one.
    pub async fn status(self: &Arc<Self>, what: &str) -> Result<Option<CriImage>, ImageError> {
        let (me, what) = (self.clone(), what.to_owned());
        blocking("image status", move || {
            let records = me.root.images.list()?;
            let Some(id) = me.resolve_in(&records, &what)? else { return Ok(None) };
            let pinned = me.resolve_in(&records, &me.pause_image)?;
            let group: Vec<Image> = records.into_iter().filter(|r| r.config == id).collect();
            me.describe(&group, pinned.as_ref()).map(Some)
        })
        .await
    }

    /// The image `what` names (reference or ID) if it is here: a record of its ID (the one `what`
    /// names when it is a reference) and its configuration, for a container's rootfs and spec.
    pub async fn local(self: &Arc<Self>, what: &str) -> Result<Option<(Image, ImageConfiguration)>, ImageError> {
        let (me, what) = (self.clone(), what.to_owned());
        blocking("resolve a local image", move || {
            let records = me.root.images.list()?;
            let Some(id) = me.resolve_in(&records, &what)? else { return Ok(None) };
            let named = Reference::parse(&what).map(digest_only).ok().map(|r| r.to_string());
            let record = records
                .iter()
                .find(|r| r.config == id && Some(&r.name) == named.as_ref())
                .or_else(|| records.iter().find(|r| r.config == id))
                .cloned()
                .expect("an ID resolved from the records has a record");
            let config = me.root.config(&record)?;
            Ok(Some((record, config)))
        })
        .await
    }

    /// Remove the image `what` names with every reference to it; false when there is none.
    pub async fn remove(self: &Arc<Self>, what: &str) -> Result<bool, ImageError> {
        let (me, what) = (self.clone(), what.to_owned());
        blocking("remove image", move || {
            let records = me.root.images.list()?;
            let Some(id) = me.resolve_in(&records, &what)? else { return Ok(false) };
            // By ID: every record of it goes. `force`: a container's snapshot keeps the layers it
            // stacks (prune skips them), so the container keeps running.
            let (removed, pruned) = me.root.remove(&id.to_string(), true)?;
            tracing::info!(image = %what, %id, ?removed, layers = pruned.layers, blobs = pruned.blobs, bytes = pruned.bytes, "removed");
            me.forget_usage();
            Ok(true)
        })
        .await
    }

    /// Disk use of the image root's filesystem tree (not crossing into mounts below it, such as
    /// containers' overlays), measured at most [`USAGE_REUSED_FOR`] ago.
    pub async fn fs_usage(self: &Arc<Self>) -> Result<FsUsage, ImageError> {
        if let Some(last) = self.usage.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            if last.measured.elapsed().is_ok_and(|age| age < USAGE_REUSED_FOR) {
                return Ok(last);
            }
        }
        let me = self.clone();
        blocking("measure the image filesystem", move || {
            let root = me.root.root().to_path_buf();
            let measured = SystemTime::now();
            let (used_bytes, inodes_used) = disk_usage(&root).map_err(|(path, source)| ImageError::Usage { path, source })?;
            let usage = FsUsage { measured, mountpoint: root, used_bytes, inodes_used };
            *me.usage.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage.clone());
            Ok(usage)
        })
        .await
    }

    fn forget_usage(&self) {
        self.usage.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The image ID `what` names among `records`.
    fn resolve_in(&self, records: &[Image], what: &str) -> Result<Option<Digest>, ImageError> {
        if let Ok(reference) = Reference::parse(what).map(digest_only) {
            let name = reference.to_string();
            if let Some(r) = records.iter().find(|r| r.name == name) {
                return Ok(Some(r.config.clone()));
            }
            if let Some(digest) = &reference.digest {
                let repository = reference.name();
                let found = records.iter().find(|r| {
                    (r.manifest == *digest || r.index.as_ref() == Some(digest))
                        && Reference::parse(&r.name).is_ok_and(|rr| rr.name() == repository)
                });
                if let Some(r) = found {
                    return Ok(Some(r.config.clone()));
                }
            }
        }
        let hex = what.strip_prefix("sha256:").unwrap_or(what).to_ascii_lowercase();
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let ids: BTreeSet<&Digest> = records.iter().map(|r| &r.config).filter(|c| c.hex().starts_with(&hex)).collect();
        match ids.len() {
            0 => Ok(None),
            1 => Ok(ids.into_iter().next().cloned()),
            _ => Err(ImageError::Ambiguous {
                prefix: what.to_string(),
                ids: ids.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The CRI image made of `group`, the records of one ID (not empty).
    fn describe(&self, group: &[Image], pinned: Option<&Digest>) -> Result<CriImage, ImageError> {
        let first = &group[0];
        let mut repo_tags = BTreeSet::new();
        let mut repo_digests = BTreeSet::new();
        for record in group {
            let Ok(reference) = Reference::parse(&record.name) else {
                tracing::warn!(record = record.name, "an image record whose name does not parse: skipped");
                continue;
            };
            if reference.digest.is_none() {
                repo_tags.insert(record.name.clone());
            }
            let target = record.index.as_ref().unwrap_or(&record.manifest);
            repo_digests.insert(format!("{}@{target}", reference.name()));
        }
        let config_bytes = self.root.store.read(&first.config)?;
        let config: serde_json::Value = serde_json::from_slice(&config_bytes).map_err(|e| libimage::Error::Json {
            op: format!("parse the configuration of image {}", first.name),
            path: self.root.store.blob_path(&first.config),
            source: e,
        })?;
        let user = config.pointer("/config/User").and_then(|u| u.as_str()).unwrap_or_default().to_string();
        let mut size = config_bytes.len() as u64 + first.layers.iter().map(|l| l.size).sum::<u64>();
        for blob in std::iter::once(&first.manifest).chain(first.index.as_ref()) {
            let path = self.root.store.blob_path(blob);
            size += std::fs::metadata(&path).map_err(|e| libimage::Error::Io { op: "stat".into(), path, source: e })?.len();
        }
        Ok(CriImage {
            id: first.config.to_string(),
            repo_tags: repo_tags.into_iter().collect(),
            repo_digests: repo_digests.into_iter().collect(),
            size,
            user,
            pinned: pinned == Some(&first.config),
            chain_id: first.layers.last().map(|l| l.chain.to_string()).unwrap_or_default(),
            config,
        })
    }
}

/// `reference` parsed and normalised, or an error naming the request field (or configuration key).
fn parse(field: &'static str, reference: &str) -> Result<Reference, ImageError> {
    Reference::parse(reference).map(digest_only).map_err(|source| ImageError::BadReference { field, source })
}

/// `name:tag@digest` is the digest's image: the tag says nothing more (as Docker and containerd
/// normalise it). The record of a pull is named by this form.
fn digest_only(mut reference: Reference) -> Reference {
    if reference.digest.is_some() {
        reference.tag = None;
    }
    reference
}

/// Records grouped by image ID.
fn by_id(records: Vec<Image>) -> BTreeMap<Digest, Vec<Image>> {
    let mut groups: BTreeMap<Digest, Vec<Image>> = BTreeMap::new();
    for r in records {
        groups.entry(r.config.clone()).or_default().push(r);
    }
    groups
}

/// Blocks allocated (in bytes) and inodes under `root`, on its filesystem only, each inode once
/// (the image root here; a container's writable layer in `stats`).
pub(crate) fn disk_usage(root: &Path) -> Result<(u64, u64), (PathBuf, std::io::Error)> {
    let top = std::fs::symlink_metadata(root).map_err(|e| (root.to_path_buf(), e))?;
    let mut seen: HashSet<u64> = HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    seen.insert(top.ino());
    bytes += top.blocks() * 512;
    inodes += 1;
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed meanwhile (a prune, a layer being renamed into place).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err((dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err((entry.path(), e)),
            };
            if meta.dev() != top.dev() || !seen.insert(meta.ino()) {
                continue;
            }
            bytes += meta.blocks() * 512;
            inodes += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

async fn blocking<T, F>(op: &'static str, f: F) -> Result<T, ImageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ImageError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| ImageError::Blocking { op, reason: e.to_string() })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_hard_links_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).expect("write");
        let (bytes, inodes) = disk_usage(dir.path()).expect("usage");
        std::fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).expect("link");
        assert_eq!(disk_usage(dir.path()).expect("usage"), (bytes, inodes));
        assert_eq!(inodes, 3);
        assert!(bytes >= 10_000, "{bytes}");
    }

    /// An image root with records for two images: `busybox:1.36` and `pause:3.10` of one config
    /// (the latter from an index), and `app:1` of another; returns the root and the two IDs.
    fn root_with_records(dir: &Path) -> (Arc<Images>, Digest, Digest) {
        let images = Images::open(dir, &dir.join("no-registries.json"), "registry.k8s.io/pause:3.10").expect("open");
        let store = &images.root.store;
        let blob = |text: &str| {
            let d = Digest::sha256_of(text.as_bytes());
            store.put(&d, text.as_bytes()).expect("put a blob");
            d
        };
        let (c1, c2) = (blob(r#"{"config": {"User": "1000:1000"}}"#), blob(r#"{"config": {"User": "app"}}"#));
        let layer = libimage::images::Layer {
            digest: Digest::sha256_of(b"layer"),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 100,
            diff_id: Digest::sha256_of(b"tar"),
            chain: Digest::sha256_of(b"tar"),
        };
        let record = |name: &str, manifest: &str, index: Option<&str>, config: &Digest| Image {
            name: name.into(),
            manifest: blob(manifest),
            index: index.map(blob),
            config: config.clone(),
            layers: vec![layer.clone()],
            pulled: "2026-12-07T00:00:00Z".into(),
        };
        for r in [
            record("docker.io/library/busybox:1.36", "m1", None, &c1),
            record("registry.k8s.io/pause:3.10", "m1", Some("index"), &c1),
            record("docker.io/library/app:1", "m2", None, &c2),
        ] {
            images.root.images.put(&r).expect("put a record");
        }
        (Arc::new(images), c1, c2)
    }

    #[tokio::test]
    async fn references_ids_and_digests_resolve_as_containerd_resolves_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (images, c1, c2) = root_with_records(dir.path());
        let id = |what: &str| {
            let records = images.root.images.list().expect("list");
            images.resolve_in(&records, what).expect("resolve")
        };
        let m1 = Digest::sha256_of(b"m1");
        let index = Digest::sha256_of(b"index");
        for (what, want) in [
            ("busybox:1.36", Some(&c1)),
            ("docker.io/library/busybox:1.36", Some(&c1)),
            (&format!("busybox@{m1}"), Some(&c1)),
            (&format!("busybox:other@{m1}"), Some(&c1)),
            (&format!("registry.k8s.io/pause@{index}"), Some(&c1)),
            (&format!("registry.k8s.io/pause@{m1}"), Some(&c1)),
            (&format!("docker.io/library/app@{m1}"), None),
            (&c2.to_string(), Some(&c2)),
            (&c2.hex()[..6], Some(&c2)),
            ("busybox:1.37", None),
            ("", None),
        ] {
            assert_eq!(id(what).as_ref(), want, "{what:?}");
        }
        // A prefix both IDs share (if any) is ambiguous; the empty prefix is no ID.
        let shared = c1.hex().chars().zip(c2.hex().chars()).take_while(|(a, b)| a == b).count();
        if shared > 0 {
            let records = images.root.images.list().expect("list");
            let e = images.resolve_in(&records, &c1.hex()[..shared]).expect_err("ambiguous");
            assert!(matches!(e, ImageError::Ambiguous { .. }), "{e}");
        }

        let listed = images.list().await.expect("list");
        assert_eq!(listed.len(), 2);
        let one = listed.iter().find(|i| i.id == c1.to_string()).expect("c1 listed");
        assert_eq!(one.repo_tags, ["docker.io/library/busybox:1.36", "registry.k8s.io/pause:3.10"]);
        assert_eq!(one.repo_digests, [format!("docker.io/library/busybox@{m1}"), format!("registry.k8s.io/pause@{index}")]);
        assert!(one.pinned, "the pause image is pinned");
        assert_eq!(one.user, "1000:1000");
        // The first record's blobs: config + manifest + layer (busybox's has no index).
        assert_eq!(one.size, r#"{"config": {"User": "1000:1000"}}"#.len() as u64 + 2 + 100);
        let two = images.status("app:1").await.expect("status").expect("app");
        assert!(!two.pinned);
        assert_eq!(two.user, "app");

        assert!(images.remove("registry.k8s.io/pause:3.10").await.expect("remove"));
        assert!(images.status("busybox:1.36").await.expect("status").is_none(), "every reference of the image goes");
        assert!(!images.remove("registry.k8s.io/pause:3.10").await.expect("remove again"));
        assert_eq!(images.list().await.expect("list").len(), 1);
    }

    #[test]
    fn digest_references_drop_their_tag() {
        let d = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let r = parse("image.image", &format!("busybox:1.36@{d}")).expect("parse");
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        let e = parse("image.image", "Not/Valid").expect_err("upper case").to_string();
        assert!(e.starts_with("image.image: invalid image reference \"Not/Valid\""), "{e}");
    }
}
