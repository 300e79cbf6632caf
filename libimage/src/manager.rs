//! The image root as a whole: pull an image and unpack its layers, find,
//! remove and prune images, and make and remove the bundles of containers
//! run from images.
//!
//! Concurrency: `<root>/lock` is taken shared by everything that adds or
//! uses content (pull, making a bundle) and exclusive by everything that
//! deletes it (image removal, prune), so a prune never removes a blob or
//! layer that a pull or a starting container is about to use. Within the
//! shared side, blobs and layers have locks of their own (store, unpack).
//!
//! A container made from an image has its bundle at `<root>/bundles/<id>`:
//! `config.json`, `rootfs/` (its snapshot's overlay mount) and `volumes/`
//! (a directory per image volume). Its config carries the annotation
//! [`ANNOTATION_ROOT`], which `delete` follows to remove the bundle and the
//! snapshot with the container.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::ImageConfiguration;
use serde_json::Value;

use crate::convert::{self, Overrides};
use crate::digest::Digest;
use crate::images::Layer;
use crate::images::{Image, Images};
use crate::pull::{self, PullOptions, Pulled};
use crate::reference::Reference;
use crate::snapshot::Snapshots;
use crate::store::Store;
use crate::unpack::chain_ids;
use crate::unpack::Layers;
use crate::{blocking, create_dir_all, write_atomic, Error, Result};

pub use libcontainer::image_bundle::{ANNOTATION_ROOT, DEFAULT_ROOT};
/// The annotation naming the image a container was made from.
pub const ANNOTATION_IMAGE: &str = "dev.roci.image.name";

pub struct ImageRoot {
    root: PathBuf,
    pub store: Store,
    pub layers: Layers,
    pub snapshots: Snapshots,
    pub images: Images,
}

/// What a prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub layers: usize,
    pub blobs: usize,
    pub bytes: u64,
    /// Temp files and half-unpacked layers of writers that were killed.
    pub leftovers: usize,
}

/// An image's disk use, for `image ls`.
#[derive(Debug, Clone)]
pub struct Usage {
    pub image: Image,
    /// Unpacked layers, in bytes on disk.
    pub size: u64,
    /// The part of `size` in layers that other images use too.
    pub shared: u64,
    /// The part only this image uses.
    pub unique: u64,
    /// Containers whose snapshots stack this image's layers.
    pub containers: usize,
}

impl ImageRoot {
    pub fn open(root: &Path) -> Result<ImageRoot> {
        create_dir_all(root)?;
        let root = root.canonicalize().map_err(|e| Error::io("resolve image root", root, e))?;
        Ok(ImageRoot {
            store: Store::open(&root)?,
            layers: Layers::open(&root)?,
            snapshots: Snapshots::open(&root)?,
            images: Images::open(&root)?,
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self, exclusive: bool) -> Result<Flock<File>> {
        lock_root(&self.root, exclusive)
    }

    /// [`ImageRoot::pull_async`] on a current-thread runtime built for this
    /// call, for a synchronous caller (see [`pull::pull`]).
    pub fn pull(&self, reference: &Reference, opts: &PullOptions) -> Result<Image> {
        pull::runtime(reference)?.block_on(self.pull_async(reference, opts))
    }

    /// Pull `reference` (blobs into the store), unpack its layers, and record
    /// it, on the caller's tokio runtime (current-thread or multi-threaded).
    /// The root's shared lock is held throughout, so that a prune (in any
    /// process) waits; it is taken, and the layers unpacked and the image
    /// recorded, on the blocking pool.
    pub async fn pull_async(&self, reference: &Reference, opts: &PullOptions) -> Result<Image> {
        let root = self.root.clone();
        let _lock = blocking(format!("lock image root {}", root.display()), move || lock_root(&root, false)).await?;
        let pulled = pull::pull_async(&self.store, reference, opts).await?;
        if pulled.diff_ids.len() != pulled.layers.len() {
            return Err(Error::Mismatch {
                what: format!("layers of {reference}: the config's rootfs.diff_ids"),
                expected: pulled.layers.len().to_string(),
                actual: pulled.diff_ids.len().to_string(),
            });
        }
        let (store, layers, images) = (self.store.clone(), self.layers.clone(), self.images.clone());
        let name = reference.to_string();
        blocking(format!("unpack and record image {name}"), move || {
            let chains = chain_ids(&pulled.diff_ids);
            unpack_layers(&store, &layers, &pulled, &chains)?;
            let layers = pulled
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| Layer {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size,
                    diff_id: pulled.diff_ids[i].clone(),
                    chain: chains[i].clone(),
                })
                .collect();
            let image = Image {
                name,
                manifest: pulled.manifest_digest,
                index: pulled.index_digest,
                config: pulled.config_digest,
                layers,
                pulled: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            };
            images.put(&image)?;
            Ok(image)
        })
        .await
    }

    /// The images a user means by `what`: a reference (normalised as
    /// Docker does) or an image ID or ID prefix.
    pub fn find(&self, what: &str) -> Result<Vec<Image>> {
        let name = Reference::parse(what).ok().map(|r| r.to_string());
        self.images.find(name.as_deref(), what)
    }

    /// Exactly one image for `what`, or an error naming it.
    pub fn resolve(&self, what: &str) -> Result<Image> {
        let mut found = self.find(what)?;
        match found.len() {
            0 => Err(Error::Invalid(format!("image {what:?} not found (pull it with `roci image pull`)"))),
            1 => Ok(found.remove(0)),
            _ => Err(Error::Invalid(format!(
                "image {what:?} is ambiguous: {}",
                found.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The image's configuration blob, parsed.
    pub fn config(&self, image: &Image) -> Result<ImageConfiguration> {
        let data = self.store.read(&image.config)?;
        serde_json::from_slice(&data).map_err(|e| Error::Json {
            op: format!("parse the configuration of image {}", image.name),
            path: self.store.blob_path(&image.config),
            source: e,
        })
    }

    /// Remove the images `what` names, then the layers and blobs no image
    /// or container uses any more. An image whose layers a container still
    /// stacks is refused unless `force` (the layers stay until that
    /// container is deleted and the next prune).
    pub fn remove(&self, what: &str, force: bool) -> Result<(Vec<String>, Pruned)> {
        let _lock = self.lock(true)?;
        let found = self.find(what)?;
        if found.is_empty() {
            return Err(Error::Invalid(format!("image {what:?} not found")));
        }
        let snapshots = self.snapshots.list()?;
        let mut removed = Vec::new();
        for image in &found {
            let top = image.layers.last().map(|l| &l.chain);
            let users: Vec<&str> = snapshots
                .iter()
                .filter(|(_, chains)| top.is_some_and(|t| chains.contains(t)))
                .map(|(id, _)| id.as_str())
                .collect();
            if !users.is_empty() && !force {
                return Err(Error::Invalid(format!(
                    "image {} is in use by container {} (delete it first, or force the removal)",
                    image.name,
                    users.join(", ")
                )));
            }
        }
        for image in found {
            if self.images.remove(&image.name)? {
                removed.push(image.name);
            }
        }
        let pruned = self.collect()?;
        Ok((removed, pruned))
    }

    /// Remove every layer and blob that no image record and no container's
    /// snapshot uses.
    pub fn prune(&self) -> Result<Pruned> {
        let _lock = self.lock(true)?;
        self.collect()
    }

    /// Garbage collection; the caller holds the exclusive lock.
    fn collect(&self) -> Result<Pruned> {
        let images = self.images.list()?;
        let mut chains: BTreeSet<Digest> = images.iter().flat_map(|i| i.layers.iter().map(|l| l.chain.clone())).collect();
        for (_, used) in self.snapshots.list()? {
            chains.extend(used);
        }
        let blobs: BTreeSet<Digest> = images.iter().flat_map(Image::blobs).collect();
        let mut pruned = Pruned::default();
        for layer in self.layers.list()? {
            if !chains.contains(&layer.chain) {
                self.layers.remove(&layer.chain)?;
                pruned.layers += 1;
                pruned.bytes += layer.size;
            }
        }
        for (digest, size) in self.store.list()? {
            if !blobs.contains(&digest) {
                self.store.delete(&digest)?;
                pruned.blobs += 1;
                pruned.bytes += size;
            }
        }
        // What writers killed midway left: blobs being ingested, layers being unpacked, image records
        // being written. Every writer holds the shared lock, so under the exclusive one none is in use.
        for (dir, leftover) in [
            (self.root.join("ingest"), (|_: &str| true) as fn(&str) -> bool),
            (self.root.join("layers"), |n: &str| n.starts_with('.') && n.ends_with(".tmp")),
            (self.root.join("images"), |n: &str| n.ends_with(".tmp")),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !leftover(&name) {
                    continue;
                }
                let path = entry.path();
                let removed = match entry.file_type() {
                    Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                    _ => std::fs::remove_file(&path),
                };
                match removed {
                    Ok(()) => pruned.leftovers += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove leftover", &path, e)),
                }
            }
        }
        Ok(pruned)
    }

    /// Each image's disk use: its layers, split into those it shares with
    /// another image and those only it has.
    pub fn usage(&self) -> Result<Vec<Usage>> {
        let images = self.images.list()?;
        let sizes: BTreeMap<Digest, u64> = self.layers.list()?.into_iter().map(|l| (l.chain, l.size)).collect();
        let mut users: BTreeMap<&Digest, usize> = BTreeMap::new();
        for image in &images {
            let mine: BTreeSet<&Digest> = image.layers.iter().map(|l| &l.chain).collect();
            for c in mine {
                *users.entry(c).or_default() += 1;
            }
        }
        let snapshots = self.snapshots.list()?;
        let mut out = Vec::new();
        for image in &images {
            let mine: BTreeSet<&Digest> = image.layers.iter().map(|l| &l.chain).collect();
            let (mut shared, mut unique) = (0, 0);
            for c in &mine {
                let size = sizes.get(*c).copied().unwrap_or(0);
                if users.get(c).copied().unwrap_or(0) > 1 {
                    shared += size;
                } else {
                    unique += size;
                }
            }
            let top = image.layers.last().map(|l| &l.chain);
            let containers = snapshots.iter().filter(|(_, c)| top.is_some_and(|t| c.contains(t))).count();
            out.push(Usage { image: image.clone(), size: shared + unique, shared, unique, containers });
        }
        Ok(out)
    }

    /// Where the bundle of container `id` lives.
    pub fn bundle_path(&self, id: &str) -> PathBuf {
        libcontainer::image_bundle::bundle_dir(&self.root, id)
    }

    /// Make the bundle of container `id` from `image`: the snapshot mounted
    /// at `rootfs/`, a directory per volume seeded from the image, and
    /// `config.json` from `template` (runc's default config), the image's
    /// configuration and `ov`. On failure nothing is left.
    pub fn make_bundle(
        &self,
        id: &str,
        image: &Image,
        template: Value,
        ov: &Overrides,
        cgroups_path: Option<&str>,
    ) -> Result<PathBuf> {
        self.new_bundle(id, |bundle| self.fill_bundle(id, image, template, ov, cgroups_path, bundle))
    }

    /// Make the bundle directory of container `id` with `image`'s snapshot
    /// mounted at `rootfs/` and nothing else: the caller writes
    /// `config.json` (roci-cri builds its specs itself). Removed as any
    /// bundle is ([`ImageRoot::remove_bundle`]). On failure nothing is left.
    pub fn make_rootfs(&self, id: &str, image: &Image) -> Result<PathBuf> {
        self.new_bundle(id, |bundle| self.mount_snapshot(id, image, bundle).map(drop))
    }

    /// Create `bundles/<id>` and fill it with `fill`; undo all of it when
    /// `fill` fails.
    fn new_bundle(&self, id: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        libcontainer::spec::validate_id(id).map_err(|e| Error::Invalid(e.to_string()))?;
        let _lock = self.lock(false)?;
        let bundle = self.bundle_path(id);
        create_dir_all(&self.root.join("bundles"))?;
        match std::fs::create_dir(&bundle) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Invalid(format!("container {id}: bundle {} already exists", bundle.display())));
            }
            Err(e) => return Err(Error::io("create bundle", &bundle, e)),
        }
        if let Err(e) = fill(&bundle) {
            if let Err(undo) = self.remove_bundle(id) {
                tracing::warn!(error = %undo, id, "remove the half-made bundle");
            }
            return Err(e);
        }
        Ok(bundle)
    }

    /// Mount `image`'s layers with snapshot `id` on top at `<bundle>/rootfs`.
    fn mount_snapshot(&self, id: &str, image: &Image, bundle: &Path) -> Result<PathBuf> {
        for layer in &image.layers {
            if !self.layers.has(&layer.chain) {
                return Err(Error::Invalid(format!(
                    "image {}: layer {} is not unpacked (pull the image again)",
                    image.name, layer.chain
                )));
            }
        }
        let rootfs = bundle.join("rootfs");
        create_dir_all(&rootfs)?;
        let chains = image.chains_top_first();
        let lowers: Vec<PathBuf> = chains.iter().map(|c| self.layers.fs_path(c)).collect();
        self.snapshots.prepare(id, &chains, &lowers, &rootfs)?;
        Ok(rootfs)
    }

    fn fill_bundle(
        &self,
        id: &str,
        image: &Image,
        template: Value,
        ov: &Overrides,
        cgroups_path: Option<&str>,
        bundle: &Path,
    ) -> Result<()> {
        let config = self.config(image)?;
        let rootfs = self.mount_snapshot(id, image, bundle)?;

        let root_dir = File::open(&rootfs).map_err(|e| Error::io("open", &rootfs, e))?;
        let passwd = read_in_root(&root_dir, &rootfs, "/etc/passwd")?;
        let group = read_in_root(&root_dir, &rootfs, "/etc/group")?;
        let user_spec = ov.user.clone().or_else(|| config.config().as_ref().and_then(|c| c.user().clone())).unwrap_or_default();
        let user = convert::resolve_user(&user_spec, passwd.as_deref(), group.as_deref())?;

        let mut volumes = Vec::new();
        for (n, dest) in convert::volumes(&config).into_iter().enumerate() {
            let dir = bundle.join("volumes").join(n.to_string());
            create_dir_all(&dir)?;
            seed_volume(&root_dir, &rootfs, &dest, &dir)?;
            volumes.push((dest, dir));
        }

        let mut spec = convert::config_json(template, &config, ov, &user, &volumes)?;
        if let Some(cg) = cgroups_path {
            spec["linux"]["cgroupsPath"] = Value::from(cg);
        }
        spec["annotations"][ANNOTATION_ROOT] = Value::from(self.root.to_string_lossy().into_owned());
        spec["annotations"][ANNOTATION_IMAGE] = Value::from(image.name.clone());
        let data = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Json {
            op: "serialize".into(),
            path: bundle.join("config.json"),
            source: e,
        })?;
        write_atomic(&bundle.join("config.json"), &data)
    }

    /// Fill the existing directory `dir` with what the image at `rootfs` (a mounted snapshot)
    /// holds at `dest` (owners, modes, links kept), as an image volume is seeded; nothing when
    /// `dest` is missing or not a directory there.
    pub fn seed_volume(&self, rootfs: &Path, dest: &str, dir: &Path) -> Result<()> {
        let root_dir = File::open(rootfs).map_err(|e| Error::io("open", rootfs, e))?;
        seed_volume(&root_dir, rootfs, dest, dir)
    }

    /// Remove container `id`'s bundle and snapshot: see [`remove_bundle`].
    pub fn remove_bundle(&self, id: &str) -> Result<()> {
        remove_bundle(&self.root, id)
    }
}

/// Take `<root>/lock`, shared or exclusive (see the module's doc), waiting for it.
fn lock_root(root: &Path, exclusive: bool) -> Result<Flock<File>> {
    let path = root.join("lock");
    let file =
        File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("open lock", &path, e))?;
    let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
    Flock::lock(file, arg).map_err(|(_, errno)| Error::io("lock", &path, errno.into()))
}

/// Unpack the pulled layers (with their `chains`). Each layer unpacks into a
/// directory of its own (overlayfs stacks them), so they unpack in parallel,
/// as many at once as there are CPUs.
fn unpack_layers(store: &Store, layers: &Layers, pulled: &Pulled, chains: &[Digest]) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(pulled.layers.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let work = || -> Result<()> {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(l) = pulled.layers.get(i) else { return Ok(()) };
                let parent = i.checked_sub(1).map(|p| &chains[p]);
                layers.unpack(store, &l.digest, &l.media_type, &pulled.diff_ids[i], &chains[i], parent)?;
            }
        };
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    results.into_iter().collect()
}

/// Remove container `id`'s bundle and snapshot under the image root `root`
/// (unmounting its rootfs), as `delete` does: see
/// [`libcontainer::image_bundle::remove`].
pub fn remove_bundle(root: &Path, id: &str) -> Result<()> {
    Ok(libcontainer::image_bundle::remove(root, id)?)
}

/// Read a small file of the image (passwd, group) by its path inside the
/// rootfs, resolved as if the rootfs were `/`; None if it is missing or not
/// a regular file.
fn read_in_root(root: &File, root_path: &Path, path: &str) -> Result<Option<String>> {
    use libcontainer::rootfs::path::{proc_fd_path, resolve, Create};
    let Ok(fd) = resolve(root.as_fd(), root_path, Path::new(path), Create::Nothing, true) else {
        return Ok(None);
    };
    let p = proc_fd_path(fd.as_fd());
    let Ok(meta) = std::fs::metadata(&p) else { return Ok(None) };
    if !meta.is_file() {
        return Ok(None);
    }
    let mut s = String::new();
    File::open(&p)
        .and_then(|mut f| f.by_ref().take(1 << 20).read_to_string(&mut s))
        .map_err(|e| Error::io("read", root_path.join(path.trim_start_matches('/')), e))?;
    Ok(Some(s))
}

/// Seed a volume directory with what the image has at `dest` (as Docker
/// does): ownership and mode of the directory, and a copy of its contents.
/// Symlinks are copied as links, never followed.
fn seed_volume(root: &File, root_path: &Path, dest: &str, dir: &Path) -> Result<()> {
    use libcontainer::rootfs::path::{proc_fd_path, resolve, Create};
    let Ok(fd) = resolve(root.as_fd(), root_path, Path::new(dest), Create::Nothing, true) else {
        return Ok(());
    };
    let src = proc_fd_path(fd.as_fd());
    let Ok(meta) = std::fs::metadata(&src) else { return Ok(()) };
    if !meta.is_dir() {
        return Ok(());
    }
    copy_tree(&src, dir, &meta, &mut BTreeMap::new())
}

/// Copy `src`'s contents into `dst`; `links` maps (dev, inode) of files
/// with several links to their first copy, so hard links stay hard links.
fn copy_tree(src: &Path, dst: &Path, meta: &std::fs::Metadata, links: &mut BTreeMap<(u64, u64), PathBuf>) -> Result<()> {
    use std::os::unix::fs::{lchown, PermissionsExt};
    lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(|e| Error::io("chown", dst, e))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| Error::io("chmod", dst, e))?;
    let entries = std::fs::read_dir(src).map_err(|e| Error::io("read directory", src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", src, e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let m = std::fs::symlink_metadata(&from).map_err(|e| Error::io("stat", &from, e))?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).map_err(|e| Error::io("create directory", &to, e))?;
            copy_tree(&from, &to, &m, links)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(|e| Error::io("read link", &from, e))?;
            std::os::unix::fs::symlink(&target, &to).map_err(|e| Error::io("create symlink", &to, e))?;
            lchown(&to, Some(m.uid()), Some(m.gid())).map_err(|e| Error::io("chown", &to, e))?;
        } else if ft.is_file() && m.nlink() > 1 && links.contains_key(&(m.dev(), m.ino())) {
            let first = &links[&(m.dev(), m.ino())];
            std::fs::hard_link(first, &to).map_err(|e| Error::io(format!("link {} to", first.display()), &to, e))?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                links.insert((m.dev(), m.ino()), to.clone());
            }
            std::fs::copy(&from, &to).map_err(|e| Error::io(format!("copy {} to", from.display()), &to, e))?;
            lchown(&to, Some(m.uid()), Some(m.gid())).map_err(|e| Error::io("chown", &to, e))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(|e| Error::io("chmod", &to, e))?;
        }
        // Devices, fifos and sockets in a volume's seed are left out.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_removes_what_killed_writers_left() {
        let dir = tempfile::tempdir().unwrap();
        let images = ImageRoot::open(dir.path()).unwrap();
        let root = images.root().to_owned();
        std::fs::write(root.join("ingest/sha256-00.tmp"), b"half a blob").unwrap();
        std::fs::create_dir_all(root.join("layers/.abc.tmp/fs/etc")).unwrap();
        std::fs::create_dir_all(root.join("layers/keep")).unwrap();
        std::fs::write(root.join("images/0123.json.42-0.tmp"), b"{").unwrap();
        let unused = Digest::sha256_of(b"unused");
        images.store.put(&unused, b"unused").unwrap();
        let pruned = images.prune().unwrap();
        assert_eq!((pruned.blobs, pruned.leftovers), (1, 3), "{pruned:?}");
        assert!(std::fs::read_dir(root.join("ingest")).unwrap().next().is_none());
        assert!(!root.join("layers/.abc.tmp").exists());
        assert!(root.join("layers/keep").exists(), "only leftovers go");
        assert!(!images.store.has(&unused));
    }
}
