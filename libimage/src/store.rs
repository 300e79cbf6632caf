//! The content store: immutable blobs named by their digest.
//!
//! A blob is written through an [`Ingest`]: bytes go to `ingest/<alg>-<hex>.tmp`
//! and are hashed on the way; [`Ingest::commit`] checks the digest (and size),
//! fsyncs, and renames the file to `blobs/<alg>/<hex>`. So a blob under
//! `blobs/` has always been verified, and a crash leaves at most a temp file
//! in `ingest/` that the next writer of that digest truncates. One writer per
//! digest at a time, serialised by a `flock` on `ingest/<alg>-<hex>.lock`.
//!
//! Async writers ([`Store::ingest_async`], [`Store::put_async`], used by
//! pulls) never block a runtime thread: writers of one digest in this process
//! first take turns on an async mutex (so a second download of a blob waits
//! without holding a thread, and can be cancelled while it waits), then the
//! `flock`, which then only another process can hold, is taken on the
//! blocking pool. The bytes are hashed and written by a task on the blocking
//! pool that owns the [`Ingest`] and is fed through a bounded channel, and
//! the commit (fsync, rename) runs there too. No `std` lock is held across
//! an await; the `flock` is held for as long as the blob is being written, in
//! one process or another, which is what it is for.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedMutexGuard};
use tokio::task::JoinHandle;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::{blocking, create_dir_all, sync_dir, Error, PathLock, Result};

/// Chunks queued between a [`BlobWriter`] and the task that writes them.
const WRITE_QUEUE: usize = 16;

/// A content-addressed blob store rooted at the image root.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open the store at `root`, creating `blobs/<alg>/` and `ingest/`.
    pub fn open(root: &Path) -> Result<Store> {
        for alg in Algorithm::ALL {
            create_dir_all(&root.join("blobs").join(alg.name()))?;
        }
        create_dir_all(&root.join("ingest"))?;
        Ok(Store { root: root.to_owned() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/blobs/<alg>/<hex>`.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(d.hex())
    }

    fn ingest_path(&self, d: &Digest, ext: &str) -> PathBuf {
        self.root.join("ingest").join(format!("{}-{}.{ext}", d.algorithm().name(), d.hex()))
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// The whole blob in memory (for manifests and configs).
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(|e| Error::io(format!("read blob {d}"), p, e))
    }

    /// The blob open for reading (for layers).
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| Error::io(format!("open blob {d}"), p, e))
    }

    /// Start writing blob `d`, of `size` bytes if known. `Ok(None)` if it is
    /// already present. Holds an exclusive lock on `ingest/<alg>-<hex>.lock`
    /// until the [`Ingest`] is committed or dropped, so a concurrent writer of
    /// the same digest waits and then gets `Ok(None)`; different digests
    /// proceed in parallel.
    pub fn ingest(&self, d: &Digest, size: Option<u64>) -> Result<Option<Ingest>> {
        if self.has(d) {
            return Ok(None);
        }
        let lock = PathLock::acquire(&self.ingest_path(d, "lock"))?;
        if self.has(d) {
            return Ok(None);
        }
        let tmp = self.ingest_path(d, "tmp");
        // Under the lock, so a leftover of a crashed writer is ours to truncate.
        let file = File::create(&tmp).map_err(|e| Error::io(format!("create temp file for blob {d}"), &tmp, e))?;
        tracing::debug!(digest = %d, path = %tmp.display(), "ingest blob");
        Ok(Some(Ingest {
            digest: d.clone(),
            size,
            hasher: Some(Hasher::new(d.algorithm())),
            file,
            written: 0,
            tmp,
            dest: self.blob_path(d),
            done: false,
            _lock: lock,
        }))
    }

    /// Store `data` as blob `d`, verifying it. `Ok` if it is already present.
    pub fn put(&self, d: &Digest, data: &[u8]) -> Result<()> {
        let Some(mut ingest) = self.ingest(d, Some(data.len() as u64))? else {
            return Ok(());
        };
        ingest.write_all(data).map_err(|e| Error::io(format!("write blob {d}"), &ingest.tmp, e))?;
        ingest.commit()
    }

    /// [`Store::ingest`] for async callers: `Ok(None)` if the blob is
    /// present, else a [`BlobWriter`] once this is the blob's only writer.
    /// Waiting for another writer of the digest in this process holds no
    /// thread, and dropping the future stops the wait.
    pub async fn ingest_async(&self, d: &Digest, size: Option<u64>) -> Result<Option<BlobWriter>> {
        let turn = writer_turn(self.ingest_path(d, "lock")).lock_owned().await;
        let (store, digest) = (self.clone(), d.clone());
        let Some(ingest) = blocking(format!("start writing blob {d}"), move || store.ingest(&digest, size)).await? else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking(move || write_chunks(ingest, rx));
        Ok(Some(BlobWriter { digest: d.clone(), size, written: 0, tx, writer: Some(writer), _turn: turn }))
    }

    /// [`Store::put`] for async callers (manifests, configs: small blobs).
    pub async fn put_async(&self, d: &Digest, data: Bytes) -> Result<()> {
        let _turn = writer_turn(self.ingest_path(d, "lock")).lock_owned().await;
        let (store, digest) = (self.clone(), d.clone());
        blocking(format!("store blob {d}"), move || store.put(&digest, &data)).await
    }

    /// [`Store::read`] for async callers.
    pub async fn read_async(&self, d: &Digest) -> Result<Vec<u8>> {
        let (store, digest) = (self.clone(), d.clone());
        blocking(format!("read blob {d}"), move || store.read(&digest)).await
    }

    /// Remove blob `d`; a missing blob is not an error.
    pub fn delete(&self, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete blob {d}"), p, e)),
        }
    }

    /// Every blob and its size, sorted by digest. Files under `blobs/` whose
    /// names are not digests are skipped.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            let dir = self.root.join("blobs").join(alg.name());
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list blobs in", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("list blobs in", &dir, e))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                let Ok(d) = Digest::parse(&format!("{alg}:{name}")) else { continue };
                let meta = entry.metadata().map_err(|e| Error::io("stat blob", entry.path(), e))?;
                if meta.is_file() {
                    out.push((d, meta.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A blob being written: an [`io::Write`] that hashes as it writes to a temp
/// file in `ingest/`. Holds the per-digest lock until committed or dropped;
/// dropping it uncommitted removes the temp file.
pub struct Ingest {
    digest: Digest,
    size: Option<u64>,
    hasher: Option<Hasher>,
    file: File,
    written: u64,
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
    // Declared last: released after the temp file is gone (Drop runs first).
    _lock: PathLock,
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest being written.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Verify the digest (and the size if it was given), fsync the file,
    /// rename it into `blobs/` and fsync the directory. On a mismatch nothing
    /// is left behind and the error names the expected and actual values.
    pub fn commit(mut self) -> Result<()> {
        let d = self.digest.clone();
        if let Some(size) = self.size.filter(|s| *s != self.written) {
            return Err(Error::Mismatch {
                what: format!("size of blob {d} written to {}", self.tmp.display()),
                expected: size.to_string(),
                actual: self.written.to_string(),
            });
        }
        let actual = self.hasher.take().map(Hasher::finish);
        if actual.as_ref() != Some(&d) {
            return Err(Error::Mismatch {
                what: format!("digest of blob written to {}", self.tmp.display()),
                expected: d.to_string(),
                actual: actual.map(|a| a.to_string()).unwrap_or_default(),
            });
        }
        self.file.sync_all().map_err(|e| Error::io(format!("fsync blob {d}"), &self.tmp, e))?;
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| Error::io(format!("rename blob {d} from {} to", self.tmp.display()), &self.dest, e))?;
        self.done = true;
        sync_dir(self.dest.parent().unwrap_or(Path::new("/")))?;
        tracing::debug!(digest = %d, size = self.written, "committed blob");
        Ok(())
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.size {
            if self.written + buf.len() as u64 > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob {} is longer than its expected {size} bytes", self.digest),
                ));
            }
        }
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = fs::remove_file(&self.tmp) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.tmp.display(), error = %e, "remove temp blob");
                }
            }
        }
    }
}

/// The async mutex the writers of one blob in this process take turns on,
/// by lock file path: one per digest and store root, whichever [`Store`]
/// value the writer has.
fn writer_turn(lock: PathBuf) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: LazyLock<std::sync::Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);
    // Held only here, never across an await; a panic elsewhere cannot leave the map inconsistent.
    let mut turns = TURNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(turn) = turns.get(&lock).and_then(Weak::upgrade) {
        return turn;
    }
    turns.retain(|_, t| t.strong_count() > 0);
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    turns.insert(lock, Arc::downgrade(&turn));
    turn
}

enum Chunk {
    Data(Bytes),
    Commit,
}

/// The blocking side of a [`BlobWriter`]: write and hash what arrives, commit
/// when told. A writer dropped without committing closes the channel; then the
/// [`Ingest`] is dropped, which removes the temp file and releases the lock.
fn write_chunks(mut ingest: Ingest, mut rx: mpsc::Receiver<Chunk>) -> Result<()> {
    while let Some(chunk) = rx.blocking_recv() {
        match chunk {
            Chunk::Data(data) => {
                ingest.write_all(&data).map_err(|e| Error::io(format!("write blob {}", ingest.digest), &ingest.tmp, e))?
            }
            Chunk::Commit => return ingest.commit(),
        }
    }
    Ok(())
}

/// A blob being written by an async caller (see [`Store::ingest_async`]).
/// Dropping it uncommitted leaves nothing behind.
pub struct BlobWriter {
    digest: Digest,
    size: Option<u64>,
    written: u64,
    tx: mpsc::Sender<Chunk>,
    /// The task that writes; None once its result was taken.
    writer: Option<JoinHandle<Result<()>>>,
    /// This process's turn to write the blob, given up when dropped.
    _turn: OwnedMutexGuard<()>,
}

impl BlobWriter {
    /// Bytes given so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Queue `data` for writing. More bytes than the expected size are a
    /// [`Error::Mismatch`] (the source's fault); a failed write is returned by
    /// this call or a later one, or by [`BlobWriter::commit`].
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        let total = self.written + data.len() as u64;
        if let Some(size) = self.size.filter(|size| total > *size) {
            return Err(Error::Mismatch {
                what: format!("size of blob {}", self.digest),
                expected: size.to_string(),
                actual: format!("at least {total}"),
            });
        }
        self.written = total;
        if self.tx.send(Chunk::Data(data)).await.is_err() {
            // The writing task stopped early: it failed.
            return Err(self.finish().await.err().unwrap_or_else(|| self.stopped()));
        }
        Ok(())
    }

    /// Verify and commit the blob, as [`Ingest::commit`].
    pub async fn commit(mut self) -> Result<()> {
        // A failed send means the task already stopped, on an error that finish returns.
        let _ = self.tx.send(Chunk::Commit).await;
        self.finish().await
    }

    async fn finish(&mut self) -> Result<()> {
        let Some(writer) = self.writer.take() else {
            return Err(self.stopped());
        };
        writer.await.map_err(|e| Error::Blocking { op: format!("write blob {}", self.digest), reason: e.to_string() })?
    }

    fn stopped(&self) -> Error {
        Error::Blocking { op: format!("write blob {}", self.digest), reason: "the writer stopped after an error".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    fn ingest_is_empty(store: &Store) -> bool {
        fs::read_dir(store.root().join("ingest")).unwrap().next().is_none()
    }

    #[test]
    fn put_read_has_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Digest::sha256_of(b"hello");
        let b = Digest::sha256_of(b"world!");
        assert!(!store.has(&a));
        store.put(&a, b"hello").unwrap();
        store.put(&b, b"world!").unwrap();
        store.put(&a, b"hello").unwrap(); // present: Ok
        assert!(store.has(&a));
        assert_eq!(store.read(&a).unwrap(), b"hello");
        assert_eq!(io::read_to_string(store.open_blob(&b).unwrap()).unwrap(), "world!");
        assert_eq!(store.blob_path(&a), dir.path().join("blobs/sha256").join(a.hex()));
        let mut want = vec![(a.clone(), 5), (b.clone(), 6)];
        want.sort();
        assert_eq!(store.list().unwrap(), want);
        store.delete(&a).unwrap();
        store.delete(&a).unwrap(); // missing: Ok
        assert!(!store.has(&a));
        assert_eq!(store.list().unwrap(), vec![(b, 6)]);
        assert!(matches!(store.read(&a), Err(Error::Io { .. })));
        assert!(ingest_is_empty(&store));
    }

    #[test]
    fn mismatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let want = Digest::sha256_of(b"expected");
        let err = store.put(&want, b"something else").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Mismatch { .. }), "{msg}");
        assert!(msg.contains(&want.to_string()), "{msg}");
        assert!(msg.contains(&Digest::sha256_of(b"something else").to_string()), "{msg}");
        assert!(!store.has(&want));
        assert!(store.list().unwrap().is_empty());
        assert!(ingest_is_empty(&store));

        // Size mismatch, and too many bytes.
        let mut ing = store.ingest(&want, Some(100)).unwrap().unwrap();
        ing.write_all(b"expected").unwrap();
        assert_eq!(ing.written(), 8);
        assert!(matches!(ing.commit(), Err(Error::Mismatch { .. })));
        let mut ing = store.ingest(&want, Some(3)).unwrap().unwrap();
        assert!(ing.write_all(b"expected").is_err());
        drop(ing);
        assert!(ingest_is_empty(&store));
        assert!(!store.has(&want));
    }

    #[test]
    fn concurrent_ingest_of_one_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let d = Digest::sha256_of(&data);
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (store, d, data, barrier) = (store.clone(), d.clone(), data.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    match store.ingest(&d, Some(data.len() as u64)).unwrap() {
                        None => false,
                        Some(mut ing) => {
                            for chunk in data.chunks(4096) {
                                ing.write_all(chunk).unwrap();
                                // Give the other thread time to pile up on the lock.
                                if ing.written() == 4096 {
                                    std::thread::sleep(std::time::Duration::from_millis(50));
                                }
                            }
                            ing.commit().unwrap();
                            true
                        }
                    }
                })
            })
            .collect();
        let wrote: Vec<bool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(wrote.iter().filter(|w| **w).count(), 1, "{wrote:?}");
        assert_eq!(store.read(&d).unwrap(), data);
        assert!(ingest_is_empty(&store));
    }

    #[test]
    fn different_digests_in_parallel() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let mut ia = store.ingest(&a, None).unwrap().unwrap();
        // Would deadlock if the lock were per store rather than per digest.
        let mut ib = store.ingest(&b, None).unwrap().unwrap();
        ib.write_all(b"b").unwrap();
        ia.write_all(b"a").unwrap();
        ib.commit().unwrap();
        ia.commit().unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// Two async writers of one digest on one thread: the second waits for the first without
    /// holding the thread (the first goes on writing meanwhile), can be cancelled while it
    /// waits, and then finds the blob present.
    #[test]
    fn async_writers_of_one_digest_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let d = Digest::sha256_of(&data);
        current_thread().block_on(async {
            let mut first = store.ingest_async(&d, Some(data.len() as u64)).await.unwrap().unwrap();
            let second = tokio::spawn({
                let (store, d) = (store.clone(), d.clone());
                async move { store.ingest_async(&d, None).await.map(|w| w.is_none()) }
            });
            let cancelled = tokio::time::timeout(Duration::from_millis(50), store.ingest_async(&d, None)).await;
            assert!(cancelled.is_err(), "a third writer waits too, and stops waiting when dropped");
            for chunk in data.chunks(64 << 10) {
                first.write(Bytes::copy_from_slice(chunk)).await.unwrap();
                tokio::task::yield_now().await;
                assert!(!second.is_finished(), "the second writer waits for the first");
            }
            assert_eq!(first.written(), data.len() as u64);
            first.commit().await.unwrap();
            assert!(second.await.unwrap().unwrap(), "the second writer finds the blob present");
        });
        assert_eq!(store.read(&d).unwrap(), data);
        assert!(ingest_is_empty(&store));
    }

    #[test]
    fn blob_writer_refuses_extra_bytes_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"expected");
        current_thread().block_on(async {
            let mut w = store.ingest_async(&d, Some(3)).await.unwrap().unwrap();
            let err = w.write(Bytes::from_static(b"expected")).await.unwrap_err();
            assert!(matches!(err, Error::Mismatch { .. }), "{err}");
            drop(w);
            // Dropped uncommitted: the next writer gets its turn, and a wrong digest is refused.
            let mut w = store.ingest_async(&d, None).await.unwrap().unwrap();
            w.write(Bytes::from_static(b"unexpected")).await.unwrap();
            assert!(matches!(w.commit().await, Err(Error::Mismatch { .. })));
            store.put_async(&d, Bytes::from_static(b"expected")).await.unwrap();
            assert_eq!(store.read_async(&d).await.unwrap(), b"expected");
        });
        // The writing tasks are done once the runtime is dropped.
        assert!(ingest_is_empty(&store));
    }

    #[test]
    fn async_writers_on_a_multi_threaded_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..256 << 10).map(|i| (i % 241) as u8).collect();
        let d = Digest::sha256_of(&data);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let wrote: Vec<bool> = rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (store, d, data) = (store.clone(), d.clone(), data.clone());
                    tokio::spawn(async move {
                        let Some(mut w) = store.ingest_async(&d, Some(data.len() as u64)).await.unwrap() else {
                            return false;
                        };
                        for chunk in data.chunks(16 << 10) {
                            w.write(Bytes::copy_from_slice(chunk)).await.unwrap();
                        }
                        w.commit().await.unwrap();
                        true
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        assert_eq!(wrote.iter().filter(|w| **w).count(), 1, "{wrote:?}");
        assert_eq!(store.read(&d).unwrap(), data);
        drop(rt);
        assert!(ingest_is_empty(&store));
    }
}
