//! Unpacking layer tarballs into `layers/<chain-hex>/fs`, once per chain ID.
//!
//! Each layer is unpacked into its own directory, not on top of its parent:
//! overlayfs stacks them when a container starts (snapshot.rs). So OCI
//! whiteouts are translated into overlayfs's form rather than applied:
//! `.wh.<name>` becomes a 0:0 character device `<name>`, and `.wh..wh..opq`
//! sets `trusted.overlay.opaque=y` on its directory.
//!
//! Security: a layer is untrusted input, and roci unpacks it as root. Every
//! entry is created relative to a directory fd that was reached one component
//! at a time with `O_NOFOLLOW|O_DIRECTORY`, with the `*at` syscalls and
//! without following the final component, so no entry can be written through
//! a symlink (one the layer itself created earlier, say `evil -> /` followed
//! by `evil/etc/passwd`), and `..` that would climb above the layer root is
//! refused. Hard links are resolved the same way, so their target is always
//! inside the layer. `trusted.overlay.*` xattrs in the archive are dropped:
//! they would let a layer forge overlayfs metadata (redirects, metacopy).
//!
//! Crash safety: a layer is unpacked into `layers/.<chain-hex>.tmp` under a
//! per-chain lock, checked against its diff ID, synced (`syncfs`), and renamed
//! to `layers/<chain-hex>`; a layer is complete iff its `meta.json` exists.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{self, fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::store::Store;
use crate::{create_dir_all, sync_dir, write_atomic, Error, PathLock, Result};

/// OCI chain IDs: `chain[0] = diff[0]`, `chain[i] = sha256("<chain[i-1]> <diff[i]>")`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// What `layers/<chain-hex>/meta.json` says about an unpacked layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub chain: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Bytes on disk of the unpacked tree (allocated blocks, hard links counted once).
    pub size: u64,
}

/// The on-disk form of `meta.json`.
#[derive(Serialize, Deserialize)]
struct Meta {
    version: u32,
    #[serde(flatten)]
    info: LayerInfo,
    /// The blob it was unpacked from, and its media type.
    blob: Digest,
    media_type: String,
}

const META_VERSION: u32 = 1;

/// The unpacked layers under `<root>/layers/`.
#[derive(Clone, Debug)]
pub struct Layers {
    dir: PathBuf,
}

impl Layers {
    /// Open the layers of the image root `root` (the same root as the [`Store`]'s).
    pub fn open(root: &Path) -> Result<Layers> {
        let dir = root.join("layers");
        create_dir_all(&dir)?;
        // Layers hold setuid binaries and files readable only by their
        // owners inside the container: keep host users out of the tree.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io("chmod 0700", &dir, e))?;
        Ok(Layers { dir })
    }

    /// `<root>/layers/<hex>/fs`.
    pub fn fs_path(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex()).join("fs")
    }

    fn meta_path(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex()).join("meta.json")
    }

    /// Whether the layer is unpacked completely.
    pub fn has(&self, chain: &Digest) -> bool {
        self.meta_path(chain).is_file()
    }

    /// Unpack blob `blob` of `media_type` from `store` as the layer `chain`
    /// (whose parent chain ID is `parent`), checking that the uncompressed tar
    /// hashes to `diff_id`. Does nothing if the layer is already there; two
    /// callers unpacking the same chain ID serialise on a lock and the second
    /// finds it done. Returns the layer's `fs` directory.
    pub fn unpack(
        &self,
        store: &Store,
        blob: &Digest,
        media_type: &str,
        diff_id: &Digest,
        chain: &Digest,
        parent: Option<&Digest>,
    ) -> Result<PathBuf> {
        let expected = match parent {
            None => diff_id.clone(),
            Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
        };
        if expected != *chain {
            return Err(Error::Mismatch {
                what: format!(
                    "chain ID of layer {diff_id} on {}",
                    parent.map(|p| format!("parent {p}")).unwrap_or_else(|| "no parent".into())
                ),
                expected: expected.to_string(),
                actual: chain.to_string(),
            });
        }
        let fs_path = self.fs_path(chain);
        if self.has(chain) {
            return Ok(fs_path);
        }
        let _lock = PathLock::acquire(&self.dir.join(format!(".{}.lock", chain.hex())))?;
        if self.has(chain) {
            return Ok(fs_path);
        }
        let tmp = self.dir.join(format!(".{}.tmp", chain.hex()));
        let dest = self.dir.join(chain.hex());
        // Leftovers of a crashed unpack (or an interrupted remove).
        remove_tree(&tmp)?;
        remove_tree(&dest)?;
        tracing::debug!(chain = %chain, blob = %blob, media_type, "unpack layer");
        let meta = Meta {
            version: META_VERSION,
            info: LayerInfo { chain: chain.clone(), diff_id: diff_id.clone(), parent: parent.cloned(), size: 0 },
            blob: blob.clone(),
            media_type: media_type.to_owned(),
        };
        if let Err(e) = unpack_into(&tmp, store, meta) {
            if let Err(rm) = remove_tree(&tmp) {
                tracing::warn!(error = %rm, "remove half-unpacked layer");
            }
            return Err(e);
        }
        fs::rename(&tmp, &dest).map_err(|e| Error::io(format!("rename unpacked layer {} to", tmp.display()), &dest, e))?;
        sync_dir(&self.dir)?;
        Ok(fs_path)
    }

    /// Remove the layer `chain` (whether or not a snapshot uses it: that is
    /// the caller's check); a missing layer is not an error.
    pub fn remove(&self, chain: &Digest) -> Result<()> {
        let _lock = PathLock::acquire(&self.dir.join(format!(".{}.lock", chain.hex())))?;
        let dir = self.dir.join(chain.hex());
        let doomed = self.dir.join(format!(".{}.tmp", chain.hex()));
        // Rename first so that the layer stops being visible at once.
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return remove_tree(&doomed),
            Err(e) => return Err(Error::io(format!("rename layer {} to", dir.display()), doomed, e)),
        }
        sync_dir(&self.dir)?;
        remove_tree(&doomed)
    }

    /// Every complete layer, sorted by chain ID.
    pub fn list(&self) -> Result<Vec<LayerInfo>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io("list layers in", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list layers in", &self.dir, e))?;
            let name = entry.file_name();
            if name.as_bytes().starts_with(b".") {
                continue;
            }
            let path = entry.path().join("meta.json");
            let text = match fs::read(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read layer metadata", path, e)),
            };
            let meta: Meta =
                serde_json::from_slice(&text).map_err(|e| Error::Json { op: "parse layer metadata".into(), path, source: e })?;
            out.push(meta.info);
        }
        out.sort_by(|a, b| a.chain.cmp(&b.chain));
        Ok(out)
    }
}

/// `rm -rf`; missing is Ok. (std's `remove_dir_all` does not follow symlinks.)
fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", path, e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(|e| Error::io("remove directory tree", path, e)),
        Ok(_) => fs::remove_file(path).map_err(|e| Error::io("remove", path, e)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a blob: its magic bytes decide; the media type must
/// be a layer type and must not claim a compression the bytes do not have.
fn compression(media_type: &str, magic: &[u8], blob: &Digest) -> Result<Compression> {
    let sniffed = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let m = media_type;
    let declared = if m.is_empty() {
        sniffed
    } else if m.ends_with(".tar+gzip") || m.ends_with(".tar.gzip") {
        Compression::Gzip
    } else if m.ends_with(".tar+zstd") {
        Compression::Zstd
    } else if m.ends_with(".tar") {
        Compression::None
    } else {
        return Err(Error::MediaType(m.to_owned()));
    };
    if declared != Compression::None && declared != sniffed {
        return Err(Error::Mismatch {
            what: format!("compression of layer blob {blob} (media type {m})"),
            expected: format!("{declared:?}"),
            actual: format!("{sniffed:?}"),
        });
    }
    Ok(sniffed)
}

/// A reader that hashes what passes through it (the uncompressed tar).
struct HashReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpack into `tmp/fs`, verify the diff ID, write `tmp/meta.json`, sync.
fn unpack_into(tmp: &Path, store: &Store, mut meta: Meta) -> Result<()> {
    let blob = meta.blob.clone();
    let blob_path = store.blob_path(&blob);
    let fs_dir = tmp.join("fs");
    create_dir_all(&fs_dir)?;
    let mut buf = BufReader::with_capacity(1 << 20, store.open_blob(&blob)?);
    let magic = buf.fill_buf().map_err(|e| Error::io(format!("read layer blob {blob}"), &blob_path, e))?;
    let reader: Box<dyn Read> = match compression(&meta.media_type, magic, &blob)? {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(|e| Error::io(format!("start zstd decoder for layer blob {blob}"), &blob_path, e))?,
        ),
    };
    let read_err = |e: io::Error| Error::io(format!("read layer blob {blob}"), &blob_path, e);
    let mut archive = tar::Archive::new(HashReader { inner: reader, hasher: Hasher::new(meta.info.diff_id.algorithm()) });
    let root = openat(nix::fcntl::AT_FDCWD, &fs_dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open layer directory", &fs_dir, e.into()))?;
    let mut ex = Extractor { root, root_path: fs_dir.clone(), dir_times: Vec::new(), last_parent: None };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        ex.entry(&mut entry)?;
    }
    ex.finish()?;
    // The diff ID covers the whole stream, including the end-of-archive
    // blocks and any padding after them.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    let actual = rest.hasher.finish();
    if actual != meta.info.diff_id {
        return Err(Error::Mismatch {
            what: format!("diff ID (digest of the uncompressed tar) of layer blob {blob}"),
            expected: meta.info.diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    meta.info.size = disk_usage(&fs_dir)?;
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Json {
        op: "encode layer metadata".into(),
        path: tmp.join("meta.json"),
        source: e,
    })?;
    // One syncfs makes every unpacked file durable before the rename publishes them.
    nix::unistd::syncfs(&ex.root).map_err(|e| Error::io("syncfs", &fs_dir, e.into()))?;
    write_atomic(&tmp.join("meta.json"), &json)
}

/// Bytes allocated to the tree at `dir` (hard links counted once).
fn disk_usage(dir: &Path) -> Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(|e| Error::io("list", &d, e))? {
            let entry = entry.map_err(|e| Error::io("list", &d, e))?;
            let m = entry.metadata().map_err(|e| Error::io("stat", entry.path(), e))?;
            if m.is_dir() {
                stack.push(entry.path());
            }
            if m.nlink() == 1 || seen.insert((m.dev(), m.ino())) {
                total += m.blocks() * 512;
            }
        }
    }
    let m = fs::symlink_metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
    Ok(total + m.blocks() * 512)
}

/// Lexically clean an archive path into components below the layer root:
/// leading `/` dropped, `.` and empty components skipped, `..` removing the
/// previous component. `None` if `..` would climb above the root.
fn clean(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in path.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn os(c: &[u8]) -> &OsStr {
    OsStr::from_bytes(c)
}

/// The metadata of an entry, with PAX overrides applied.
struct Attrs {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Creates entries below `root`, never following a symlink.
struct Extractor {
    root: OwnedFd,
    root_path: PathBuf,
    /// Directories whose mtime is set once everything inside them is done.
    dir_times: Vec<(Vec<Vec<u8>>, TimeSpec)>,
    /// The parent directory of the previous entry (archives list a
    /// directory's files together), dropped whenever a directory is removed.
    last_parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
}

impl Extractor {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: String| Error::Unpack { entry: name.clone(), reason };
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let comps = clean(&raw).ok_or_else(|| refuse("path climbs above the layer root with '..'".into()))?;
        let attrs = attrs(entry).map_err(|e| refuse(format!("read header: {e}")))?;
        let is_dir = kind.is_dir();

        let Some((last, parent_comps)) = comps.split_last() else {
            // The layer root itself ("./").
            if !is_dir {
                return Err(refuse("a non-directory entry for the layer root".into()));
            }
            let fd = self.root.try_clone().map_err(|e| self.io_err(&name, "dup layer root fd", e))?;
            self.set_attrs(&name, File::from(fd), &attrs)?;
            self.dir_times.push((Vec::new(), attrs.mtime));
            return Ok(());
        };
        let parent = self.parent_dir(parent_comps, &name)?;

        // Whiteouts, in overlayfs's form.
        if let Some(hidden) = last.strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                let dir = File::from(parent);
                return xattr::FileExt::set_xattr(&dir, "trusted.overlay.opaque", b"y")
                    .map_err(|e| self.io_err(&name, "set trusted.overlay.opaque on the directory of", e));
            }
            if hidden.starts_with(b".wh.") {
                // aufs's own metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
                return Ok(());
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(refuse("whiteout of nothing".into()));
            }
            self.clear(&parent, parent_comps, hidden, false, &name)?;
            return mknodat(&parent, os(hidden), SFlag::S_IFCHR, Mode::empty(), stat::makedev(0, 0))
                .map_err(|e| self.io_err(&name, "create whiteout device for", e.into()));
        }
        if kind.is_hard_link() {
            return self.hard_link(entry, &parent, parent_comps, last, &name);
        }
        let existing_dir = self.clear(&parent, parent_comps, last, is_dir, &name)?;
        let l = os(last);
        match kind {
            k if k.is_file() || k == tar::EntryType::Continuous || k == tar::EntryType::GNUSparse => {
                let fd = openat(
                    &parent,
                    l,
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.io_err(&name, "create file", e.into()))?;
                let mut f = File::from(fd);
                io::copy(entry, &mut f).map_err(|e| self.io_err(&name, "write file", e))?;
                self.set_attrs(&name, f, &attrs)?;
            }
            k if k.is_dir() => {
                if !existing_dir {
                    mkdirat(&parent, l, Mode::from_bits_truncate(0o700))
                        .map_err(|e| self.io_err(&name, "create directory", e.into()))?;
                }
                let fd = openat(
                    &parent,
                    l,
                    OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.io_err(&name, "open directory", e.into()))?;
                self.set_attrs(&name, File::from(fd), &attrs)?;
                self.dir_times.push((comps.clone(), attrs.mtime));
            }
            k if k.is_symlink() => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("symlink without a target".into()))?;
                symlinkat(os(&target), &parent, l).map_err(|e| self.io_err(&name, "create symlink", e.into()))?;
                self.set_attrs_at(&name, &parent, last, &attrs, false)?;
            }
            k if k.is_character_special() || k.is_block_special() || k.is_fifo() => {
                let (kind_flag, dev) = if k.is_fifo() {
                    (SFlag::S_IFIFO, 0)
                } else {
                    let h = entry.header();
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    let f = if k.is_character_special() { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                    (f, stat::makedev(major.into(), minor.into()))
                };
                mknodat(&parent, l, kind_flag, Mode::from_bits_truncate(0o600), dev)
                    .map_err(|e| self.io_err(&name, "create device or fifo", e.into()))?;
                self.set_attrs_at(&name, &parent, last, &attrs, true)?;
            }
            k => return Err(refuse(format!("unsupported entry type {k:?}"))),
        }
        Ok(())
    }

    fn io_err(&self, entry: &str, op: &str, e: io::Error) -> Error {
        Error::io(format!("{op} entry {entry:?} in layer"), &self.root_path, e)
    }

    /// The directory `comps`, created if missing, from the one-entry cache.
    fn parent_dir(&mut self, comps: &[Vec<u8>], entry: &str) -> Result<OwnedFd> {
        if let Some((cached, fd)) = &self.last_parent {
            if cached == comps {
                return fd.try_clone().map_err(|e| self.io_err(entry, "dup parent directory fd of", e));
            }
        }
        let fd = self.open_dir(comps, true, entry)?;
        let keep = fd.try_clone().map_err(|e| self.io_err(entry, "dup parent directory fd of", e))?;
        self.last_parent = Some((comps.to_vec(), keep));
        Ok(fd)
    }

    /// Open the directory `comps` below the root one component at a time,
    /// refusing symlinks and non-directories; missing ones are created (mode
    /// 0755) when `create`.
    fn open_dir(&self, comps: &[Vec<u8>], create: bool, entry: &str) -> Result<OwnedFd> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut cur = self.root.try_clone().map_err(|e| self.io_err(entry, "dup layer root fd", e))?;
        for (i, c) in comps.iter().enumerate() {
            let mut next = openat(&cur, os(c), flags, Mode::empty());
            if matches!(next, Err(Errno::ENOENT)) && create {
                match mkdirat(&cur, os(c), Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(self.io_err(entry, "create parent directory of", e.into())),
                }
                next = openat(&cur, os(c), flags, Mode::empty());
            }
            cur = match next {
                Ok(fd) => fd,
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let prefix = comps[..=i].iter().map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join("/");
                    return Err(Error::Unpack {
                        entry: entry.to_owned(),
                        reason: format!("path goes through {prefix:?}, which is a symlink or not a directory"),
                    });
                }
                Err(Errno::ENOENT) => {
                    let prefix = comps[..=i].iter().map(|c| String::from_utf8_lossy(c)).collect::<Vec<_>>().join("/");
                    return Err(Error::Unpack {
                        entry: entry.to_owned(),
                        reason: format!("{prefix:?} does not exist in this layer"),
                    });
                }
                Err(e) => return Err(self.io_err(entry, "open parent directory of", e.into())),
            };
        }
        Ok(cur)
    }

    /// Make way for a new entry `name` in `parent`: an existing entry is
    /// removed, unless both are directories (then it is kept and the result
    /// is true).
    fn clear(&mut self, parent: &OwnedFd, parent_comps: &[Vec<u8>], name: &[u8], new_is_dir: bool, entry: &str) -> Result<bool> {
        let st = match fstatat(parent, os(name), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(self.io_err(entry, "stat existing", e.into())),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && new_is_dir {
            return Ok(true);
        }
        if is_dir {
            // Every component was just opened with O_NOFOLLOW, and nothing
            // but this unpacker writes the tree, so the path is safe.
            let mut path = self.root_path.clone();
            parent_comps.iter().chain(std::iter::once(&name.to_vec())).for_each(|c| path.push(os(c)));
            // The cached parent may be this directory or inside it.
            self.last_parent = None;
            remove_tree(&path)?;
        } else {
            unlinkat(parent, os(name), UnlinkatFlags::NoRemoveDir)
                .map_err(|e| self.io_err(entry, "replace existing", e.into()))?;
        }
        Ok(false)
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        parent: &OwnedFd,
        parent_comps: &[Vec<u8>],
        last: &[u8],
        name: &str,
    ) -> Result<()> {
        let refuse = |reason: String| Error::Unpack { entry: name.to_owned(), reason };
        let target = entry.link_name_bytes().ok_or_else(|| refuse("hard link without a target".into()))?;
        let shown = String::from_utf8_lossy(&target).into_owned();
        let tcomps = clean(&target).ok_or_else(|| refuse(format!("hard link target {shown:?} is outside the layer")))?;
        let Some((tlast, tparent_comps)) = tcomps.split_last() else {
            return Err(refuse("hard link to the layer root".into()));
        };
        let tparent = self.open_dir(tparent_comps, false, name)?;
        self.clear(parent, parent_comps, last, false, name)?;
        linkat(&tparent, os(tlast), parent, os(last), nix::fcntl::AtFlags::empty()).map_err(|e| match e {
            Errno::ENOENT => refuse(format!("hard link target {shown:?} does not exist in this layer")),
            e => self.io_err(name, &format!("link to {shown:?} for"), e.into()),
        })
    }

    /// Owner, mode (after the owner: chown clears setuid), xattrs (after
    /// chown, which clears security.capability), times, through an open fd.
    fn set_attrs(&self, entry: &str, f: File, a: &Attrs) -> Result<()> {
        fchown(&f, Some(Uid::from_raw(a.uid)), Some(Gid::from_raw(a.gid))).map_err(|e| self.io_err(entry, "chown", e.into()))?;
        fchmod(&f, Mode::from_bits_truncate(a.mode)).map_err(|e| self.io_err(entry, "chmod", e.into()))?;
        for (k, v) in &a.xattrs {
            match xattr::FileExt::set_xattr(&f, k, v) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                    tracing::warn!(entry, xattr = %k, "xattr not supported here; skipped");
                }
                Err(e) => return Err(self.io_err(entry, &format!("set xattr {k} on"), e)),
            }
        }
        futimens(&f, &a.mtime, &a.mtime).map_err(|e| self.io_err(entry, "set times of", e.into()))
    }

    /// The same for an entry that cannot be opened (symlink, device, fifo),
    /// by name in `parent`, never following it.
    fn set_attrs_at(&self, entry: &str, parent: &OwnedFd, name: &[u8], a: &Attrs, chmod: bool) -> Result<()> {
        let n = os(name);
        fchownat(parent, n, Some(Uid::from_raw(a.uid)), Some(Gid::from_raw(a.gid)), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.io_err(entry, "chown", e.into()))?;
        if chmod {
            // Not a symlink: this unpacker just created it with mknodat.
            fchmodat(parent, n, Mode::from_bits_truncate(a.mode), stat::FchmodatFlags::FollowSymlink)
                .map_err(|e| self.io_err(entry, "chmod", e.into()))?;
        }
        if !a.xattrs.is_empty() {
            // lsetxattr does not follow the last component; the parent is
            // reached through its fd's magic link.
            let path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_fd().as_raw_fd())).join(n);
            for (k, v) in &a.xattrs {
                match xattr::set(&path, k, v) {
                    Ok(()) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) => {
                        tracing::warn!(entry, xattr = %k, "xattr not supported on this file type; skipped");
                    }
                    Err(e) => return Err(self.io_err(entry, &format!("set xattr {k} on"), e)),
                }
            }
        }
        utimensat(parent, n, &a.mtime, &a.mtime, stat::UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.io_err(entry, "set times of", e.into()))
    }

    /// Set directory mtimes, now that nothing more is created inside them.
    fn finish(&mut self) -> Result<()> {
        for (comps, t) in std::mem::take(&mut self.dir_times).iter().rev() {
            // Gone or replaced by a later entry: nothing to set.
            let Ok(fd) = self.open_dir(comps, false, "") else { continue };
            futimens(&fd, t, t)
                .map_err(|e| Error::io("set directory times in layer", self.root_path.join(comps_path(comps)), e.into()))?;
        }
        Ok(())
    }
}

fn comps_path(comps: &[Vec<u8>]) -> PathBuf {
    comps.iter().map(|c| os(c)).collect()
}

/// Owner, mode, mtime and xattrs of an entry.
fn attrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Attrs> {
    let h = entry.header();
    let uid = u32::try_from(h.uid()?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "uid does not fit 32 bits"))?;
    let gid = u32::try_from(h.gid()?).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "gid does not fit 32 bits"))?;
    let mode = h.mode()? & 0o7777;
    let mut mtime = TimeSpec::new(i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0);
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                // Forged overlayfs metadata could redirect lookups; see the module doc.
                if name.starts_with("trusted.overlay.") {
                    tracing::warn!(xattr = name, "dropped overlayfs xattr from layer");
                    continue;
                }
                xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
            } else if key == "mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    mtime = t;
                }
            }
        }
    }
    Ok(Attrs { uid, gid, mode, mtime, xattrs })
}

/// A PAX time: decimal seconds with an optional fraction ("1700000000.25").
fn parse_pax_time(s: &str) -> Option<TimeSpec> {
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse::<i64>().ok()? };
    Some(TimeSpec::new(sec, if sec < 0 { -nsec } else { nsec }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;
    use tar::{EntryType, Header};

    pub(crate) const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    const MTIME: u64 = 1_600_000_000;

    /// A tar built entry by entry, with raw names (so `..` and absolute
    /// paths can be written, which `tar::Builder`'s helpers refuse).
    pub(crate) struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        pub(crate) fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }

        fn header(kind: EntryType, path: &str, mode: u32) -> Header {
            let mut h = Header::new_ustar();
            h.set_entry_type(kind);
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(MTIME);
            h
        }

        fn add(&mut self, mut h: Header, data: &[u8]) -> &mut Tar {
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> &mut Tar {
            self.add(Self::header(EntryType::Regular, path, 0o644), data)
        }

        fn file_with(&mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Tar {
            let mut h = Self::header(EntryType::Regular, path, mode);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(mtime);
            self.add(h, data)
        }

        pub(crate) fn dir(&mut self, path: &str) -> &mut Tar {
            self.add(Self::header(EntryType::Directory, path, 0o755), b"")
        }

        fn dir_with(&mut self, path: &str, mode: u32, mtime: u64) -> &mut Tar {
            let mut h = Self::header(EntryType::Directory, path, mode);
            h.set_mtime(mtime);
            self.add(h, b"")
        }

        fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Tar {
            let mut h = Self::header(kind, path, 0o777);
            h.set_link_name_literal(target).unwrap();
            self.add(h, b"")
        }

        pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
            self.link(EntryType::Symlink, path, target)
        }

        fn hardlink(&mut self, path: &str, target: &str) -> &mut Tar {
            self.link(EntryType::Link, path, target)
        }

        fn node(&mut self, kind: EntryType, path: &str, major: u32, minor: u32, mode: u32) -> &mut Tar {
            let mut h = Self::header(kind, path, mode);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            self.add(h, b"")
        }

        /// A PAX header for the next entry.
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
            let mut data = Vec::new();
            for (k, v) in records {
                let body_len = 1 + k.len() + 1 + v.len() + 1;
                let mut len = body_len + 1;
                while len != body_len + len.to_string().len() {
                    len = body_len + len.to_string().len();
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            self.add(Self::header(EntryType::XHeader, "PaxHeaders/x", 0o644), &data)
        }

        pub(crate) fn finish(&mut self) -> Vec<u8> {
            let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
            b.into_inner().unwrap()
        }
    }

    pub(crate) struct Env {
        pub(crate) dir: tempfile::TempDir,
        pub(crate) store: Store,
        pub(crate) layers: Layers,
    }

    pub(crate) fn env() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("root")).unwrap();
        let layers = Layers::open(&dir.path().join("root")).unwrap();
        Env { dir, store, layers }
    }

    fn gzip(tar: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(tar).unwrap();
        e.finish().unwrap()
    }

    fn zstd(tar: &[u8]) -> Vec<u8> {
        zstd::encode_all(tar, 3).unwrap()
    }

    impl Env {
        /// Store `blob` and unpack it as a base layer whose diff ID is that of `tar`.
        fn unpack_blob(&self, tar: &[u8], blob: &[u8], media_type: &str) -> Result<PathBuf> {
            let b = Digest::sha256_of(blob);
            self.store.put(&b, blob).unwrap();
            let diff = Digest::sha256_of(tar);
            self.layers.unpack(&self.store, &b, media_type, &diff, &diff, None)
        }

        pub(crate) fn unpack(&self, tar: &[u8]) -> Result<PathBuf> {
            self.unpack_blob(tar, tar, TAR)
        }

        /// Unpack `tar` on top of `parent`, returning its chain ID and fs path.
        pub(crate) fn unpack_on(&self, tar: &[u8], parent: Option<&Digest>) -> (Digest, PathBuf) {
            let b = Digest::sha256_of(tar);
            self.store.put(&b, tar).unwrap();
            let diff = Digest::sha256_of(tar);
            let chain = match parent {
                None => diff.clone(),
                Some(p) => chain_ids(&[p.clone(), diff.clone()])[1].clone(),
            };
            let fs = self.layers.unpack(&self.store, &b, TAR, &diff, &chain, parent).unwrap();
            (chain, fs)
        }

        /// Nothing but complete layers under layers/: no temp dirs, no locks.
        fn assert_clean(&self) {
            for e in fs::read_dir(self.dir.path().join("root/layers")).unwrap() {
                let name = e.unwrap().file_name();
                assert!(!name.as_bytes().starts_with(b"."), "left behind: {name:?}");
            }
        }
    }

    fn rich_tar() -> Vec<u8> {
        let mut t = Tar::new();
        t.dir_with("etc/", 0o755, 1_000_000)
            .file_with("etc/hello", b"hi\n", 0o640, 1000, 1001, 1_234_567)
            .file_with("bin/su", b"#!", 0o4755, 0, 0, MTIME)
            .file_with("bin/wall", b"w", 0o2755, 0, 5, MTIME)
            .symlink("etc/link", "hello")
            .symlink("etc/abs", "/etc/hello")
            .hardlink("etc/hard", "etc/hello")
            .node(EntryType::Fifo, "run/fifo", 0, 0, 0o600)
            .node(EntryType::Char, "dev/null", 1, 3, 0o666)
            .node(EntryType::Block, "dev/loop9", 7, 9, 0o660)
            .pax(&[
                ("SCHILY.xattr.user.foo", b"bar"),
                ("SCHILY.xattr.trusted.roci", b"\x00\x01"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                ("mtime", b"1700000000.5"),
            ])
            .file("etc/xattrs", b"x")
            .dir_with("var/", 0o1777, 5_555)
            .file("var/inside", b"later")
            .file("/abs/file", b"made relative")
            .file("./dot/./file", b"dots")
            .file("a/b/../c", b"cleaned");
        t.finish()
    }

    fn check_rich(fs: &Path) {
        let meta = |p: &str| fs::symlink_metadata(fs.join(p)).unwrap();
        assert_eq!(fs::read(fs.join("etc/hello")).unwrap(), b"hi\n");
        let m = meta("etc/hello");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()), (1000, 1001, 0o640, 1_234_567));
        assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
        let m = meta("bin/wall");
        assert_eq!((m.gid(), m.mode() & 0o7777), (5, 0o2755));
        assert_eq!(fs::read_link(fs.join("etc/link")).unwrap(), Path::new("hello"));
        assert_eq!(fs::read_link(fs.join("etc/abs")).unwrap(), Path::new("/etc/hello"));
        assert_eq!(meta("etc/link").mtime(), MTIME as i64);
        assert_eq!(meta("etc/hard").ino(), meta("etc/hello").ino());
        assert_eq!(meta("etc/hello").nlink(), 2);
        assert!(meta("run/fifo").file_type().is_fifo());
        let m = meta("dev/null");
        assert!(m.file_type().is_char_device());
        assert_eq!((m.rdev(), m.mode() & 0o7777), (libc::makedev(1, 3), 0o666));
        let m = meta("dev/loop9");
        assert!(m.file_type().is_block_device());
        assert_eq!(m.rdev(), libc::makedev(7, 9));
        let x = fs.join("etc/xattrs");
        // tmpfs holds user.* xattrs only since Linux 6.6 (the unpacker skips what the filesystem refuses).
        match xattr::get(&x, "user.foo") {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            r => assert_eq!(r.unwrap().unwrap(), b"bar"),
        }
        assert_eq!(xattr::get(&x, "trusted.roci").unwrap().unwrap(), b"\x00\x01");
        assert_eq!(xattr::get(&x, "trusted.overlay.redirect").unwrap(), None);
        assert_eq!((meta("etc/xattrs").mtime(), meta("etc/xattrs").mtime_nsec()), (1_700_000_000, 500_000_000));
        // Directory mtimes are set after their contents.
        assert_eq!(meta("etc").mtime(), 1_000_000);
        let m = meta("var");
        assert_eq!((m.mtime(), m.mode() & 0o7777), (5_555, 0o1777));
        assert_eq!(fs::read(fs.join("var/inside")).unwrap(), b"later");
        assert_eq!(meta("bin").permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read(fs.join("abs/file")).unwrap(), b"made relative");
        assert_eq!(fs::read(fs.join("dot/file")).unwrap(), b"dots");
        assert_eq!(fs::read(fs.join("a/c")).unwrap(), b"cleaned");
    }

    #[test]
    fn chain_ids_per_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = Digest::sha256_of(b"c");
        let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
        let abc = Digest::sha256_of(format!("{ab} {c}").as_bytes());
        assert_eq!(chain_ids(&[a.clone(), b, c]), vec![a, ab, abc]);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn unpacks_every_kind_plain_gzip_zstd() {
        let tar = rich_tar();
        for (blob, media_type) in [
            (tar.clone(), TAR),
            (gzip(&tar), GZIP),
            (gzip(&tar), DOCKER_GZIP),
            (zstd(&tar), ZSTD),
            // The magic bytes win over a media type that says plain.
            (gzip(&tar), TAR),
            (zstd(&tar), TAR),
        ] {
            let env = env();
            let fs = env.unpack_blob(&tar, &blob, media_type).unwrap();
            check_rich(&fs);
            let diff = Digest::sha256_of(&tar);
            assert!(env.layers.has(&diff));
            assert_eq!(fs, env.layers.fs_path(&diff));
            let info = env.layers.list().unwrap();
            assert_eq!(info.len(), 1);
            assert_eq!((&info[0].chain, &info[0].diff_id, &info[0].parent), (&diff, &diff, &None));
            assert!(info[0].size >= 4096 * 6, "{}", info[0].size);
            env.assert_clean();
        }
    }

    #[test]
    fn media_type_checks() {
        let env = env();
        let tar = rich_tar();
        let err = env.unpack_blob(&tar, &tar, "application/vnd.oci.image.config.v1+json").unwrap_err();
        assert!(matches!(err, Error::MediaType(_)), "{err}");
        let err = env.unpack_blob(&tar, &tar, GZIP).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
        env.assert_clean();
        assert!(env.layers.list().unwrap().is_empty());
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let env = env();
        let mut t = Tar::new();
        t.dir("a/").file("a/.wh.b", b"").dir("c/").file("c/.wh..wh..opq", b"").file("c/keep", b"k").file(".wh.top", b"");
        t.file(".wh..wh.plnk", b"").file(".wh..wh.aufs", b"");
        let fs = env.unpack(&t.finish()).unwrap();
        for p in ["a/b", "top"] {
            let m = fs::symlink_metadata(fs.join(p)).unwrap();
            assert!(m.file_type().is_char_device(), "{p}");
            assert_eq!(m.rdev(), 0, "{p}");
        }
        assert_eq!(xattr::get(fs.join("c"), "trusted.overlay.opaque").unwrap().unwrap(), b"y");
        assert_eq!(fs::read(fs.join("c/keep")).unwrap(), b"k");
        assert!(!fs.join("a/.wh.b").exists());
        assert!(!fs.join("c/.wh..wh..opq").exists());
        assert_eq!(fs::read_dir(&fs).unwrap().count(), 3, "aufs metadata is skipped");
    }

    #[test]
    fn long_names() {
        let env = env();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        let mut t = Tar::new();
        // GNU long name ('L') from tar::Builder, and a PAX path.
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(4);
        t.0.append_data(&mut h, &long, &b"long"[..]).unwrap();
        t.pax(&[("path", format!("p/{}", "x".repeat(200)).as_bytes())]).file("short-name", b"pax");
        let fs = env.unpack(&t.finish()).unwrap();
        assert_eq!(fs::read(fs.join(&long)).unwrap(), b"long");
        assert_eq!(fs::read(fs.join("p").join("x".repeat(200))).unwrap(), b"pax");
        assert!(!fs.join("short-name").exists());
    }

    #[test]
    fn later_entries_replace_earlier() {
        let env = env();
        let mut t = Tar::new();
        t.file("x", b"one")
            .file("x", b"two")
            .dir("d/")
            .file("d/f", b"")
            .file("d", b"now a file")
            .symlink("s", "x")
            .file("s", b"not a link");
        let fs = env.unpack(&t.finish()).unwrap();
        assert_eq!(fs::read(fs.join("x")).unwrap(), b"two");
        assert_eq!(fs::read(fs.join("d")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(fs.join("s")).unwrap().is_file());
    }

    /// Each escape attempt is refused naming the entry, and nothing is
    /// created outside the layer (nor is a half layer left).
    #[test]
    fn escapes_are_refused() {
        let env = env();
        let outside = env.dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let sentinel = format!("roci-escape-test-{}", std::process::id());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("../x", Tar::new().file("../x", b"x").finish()),
            ("a/../../x", Tar::new().file("a/../../x", b"x").finish()),
            ("/../x", Tar::new().file("/../x", b"x").finish()),
            ("evil/etc/roci-escape", Tar::new().symlink("evil", "/").file(&format!("evil/tmp/{sentinel}"), b"x").finish()),
            ("link/pwned", Tar::new().symlink("link", outside.to_str().unwrap()).file("link/pwned", b"x").finish()),
            ("rel/pwned", Tar::new().symlink("rel", "../../../../outside").file("rel/pwned", b"x").finish()),
            ("hard", Tar::new().hardlink("hard", "../../etc/passwd").finish()),
            ("hard2", Tar::new().symlink("evil", "/etc").hardlink("hard2", "evil/passwd").finish()),
            ("dir-through-link", Tar::new().symlink("l", "/tmp").dir(&format!("l/{sentinel}/")).finish()),
            (
                "dev-through-link",
                Tar::new().symlink("l", "/tmp").node(EntryType::Fifo, &format!("l/{sentinel}"), 0, 0, 0o600).finish(),
            ),
            ("whiteout-through-link", Tar::new().symlink("l", "/tmp").file(&format!("l/.wh.{sentinel}"), b"").finish()),
            ("opaque-through-link", Tar::new().symlink("l", outside.to_str().unwrap()).file("l/.wh..wh..opq", b"").finish()),
        ];
        for (what, tar) in cases {
            let err = env.unpack(&tar).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::Unpack { .. }), "{what}: {msg}");
            assert!(msg.contains("unpack layer entry"), "{what}: {msg}");
            assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{what}");
            assert!(xattr::get(&outside, "trusted.overlay.opaque").unwrap().is_none(), "{what}");
            assert!(!env.dir.path().join("x").exists(), "{what}");
            assert!(!env.dir.path().join("root/x").exists(), "{what}");
            assert!(!Path::new("/tmp").join(&sentinel).exists(), "{what}");
            assert!(env.layers.list().unwrap().is_empty(), "{what}");
            env.assert_clean();
        }
        assert!(fs::symlink_metadata("/etc/roci-escape").is_err());
        // The entry is named in the error.
        let err = env.unpack(&Tar::new().file("a/../../x", b"x").finish()).unwrap_err().to_string();
        assert!(err.contains("\"a/../../x\""), "{err}");
        let err = env.unpack(&Tar::new().symlink("evil", "/").file("evil/etc/x", b"x").finish()).unwrap_err().to_string();
        assert!(err.contains("\"evil/etc/x\"") && err.contains("symlink"), "{err}");
        let err = env.unpack(&Tar::new().hardlink("h", "../../etc/passwd").finish()).unwrap_err().to_string();
        assert!(err.contains("\"h\"") && err.contains("../../etc/passwd"), "{err}");
    }

    #[test]
    fn diff_id_mismatch_leaves_no_layer() {
        let env = env();
        let tar = rich_tar();
        let blob = Digest::sha256_of(&tar);
        env.store.put(&blob, &tar).unwrap();
        let wrong = Digest::sha256_of(b"not this tar");
        let err = env.layers.unpack(&env.store, &blob, TAR, &wrong, &wrong, None).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Mismatch { .. }), "{msg}");
        assert!(msg.contains(&wrong.to_string()) && msg.contains(&blob.to_string()), "{msg}");
        assert!(!env.layers.has(&wrong));
        assert!(!env.layers.fs_path(&wrong).exists());
        assert!(env.layers.list().unwrap().is_empty());
        env.assert_clean();
        // A chain ID that does not follow from parent and diff ID.
        let err = env.layers.unpack(&env.store, &blob, TAR, &blob, &wrong, None).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
    }

    #[test]
    fn layers_are_shared_listed_and_removed() {
        let env = env();
        let base = Tar::new().file("base", b"1").finish();
        let (c1, fs1) = env.unpack_on(&base, None);
        let (c2, fs2) = env.unpack_on(&Tar::new().file("top", b"2").finish(), Some(&c1));
        // Unpacking again is a no-op returning the same path.
        assert_eq!(env.unpack_on(&base, None), (c1.clone(), fs1.clone()));
        assert!(fs1.join("base").is_file() && fs2.join("top").is_file() && !fs2.join("base").exists());
        let list = env.layers.list().unwrap();
        assert_eq!(list.len(), 2);
        let top = list.iter().find(|l| l.chain == c2).unwrap();
        assert_eq!(top.parent.as_ref(), Some(&c1));
        env.layers.remove(&c2).unwrap();
        env.layers.remove(&c2).unwrap();
        assert!(!env.layers.has(&c2) && !fs2.exists());
        assert_eq!(env.layers.list().unwrap().len(), 1);
        env.assert_clean();
    }

    #[test]
    fn concurrent_unpack_of_one_layer() {
        let env = env();
        let mut t = Tar::new();
        for i in 0..200 {
            t.file(&format!("d{}/f{i}", i % 7), &[i as u8; 1000]);
        }
        let tar = t.finish();
        let blob = Digest::sha256_of(&tar);
        env.store.put(&blob, &tar).unwrap();
        std::thread::scope(|s| {
            let hs: Vec<_> =
                (0..4).map(|_| s.spawn(|| env.layers.unpack(&env.store, &blob, TAR, &blob, &blob, None).unwrap())).collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), env.layers.fs_path(&blob));
            }
        });
        assert_eq!(fs::read_dir(env.layers.fs_path(&blob).join("d3")).unwrap().count(), 29);
        env.assert_clean();
    }
}
