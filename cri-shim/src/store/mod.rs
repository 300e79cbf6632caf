//! Pods and containers: the records on disk (the truth), the index over them in memory, the
//! names kubelet may not reuse while a record exists, and the lifecycle rules ([`lifecycle`]).
//!
//! Layout under roci-cri's `root`:
//! ```text
//! pods/<id>.json            one PodRecord per pod (records.rs)
//! containers/<id>.json      one ContainerRecord per container
//! {pods,containers}/.<id>.json.tmp   a record being written; removed when found at open
//! ```
//! Every record is written to a temp file, fsync'd, renamed over the old one and the directory
//! fsync'd: after a crash each record is the old one or the new one. [`Store::open`] reads them all
//! before the daemon serves; records left in `Creating` are the daemon's to undo (recovery).
//!
//! Mutations do file I/O with fsync (a few milliseconds): async callers make them from a
//! blocking task. Writes are serialised by one writer lock, and the in-memory index is swapped
//! only once the record is on disk, so readers never wait for a disk and never see a state that
//! is not saved. Lifecycle changes of one pod or container are serialised by the caller with
//! [`Store::lock`].

pub mod lifecycle;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

pub use lifecycle::{change, ChangeError, ContainerState, PodState, Rollback};
pub use records::{ContainerMetadata, ContainerRecord, PodMetadata, PodRecord, RECORD_VERSION};

/// What kind of object an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Container,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Pod => "pod sandbox",
            Kind::Container => "container",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: Kind, id: String },
    #[error("{kind} id prefix {prefix:?} is ambiguous: it matches {matches}")]
    Ambiguous { kind: Kind, prefix: String, matches: String },
    #[error("{kind} name {name:?} is reserved for {holder:?}")]
    NameReserved { kind: Kind, name: String, holder: String },
    #[error("{kind} {id:?} already exists")]
    Exists { kind: Kind, id: String },
    #[error("{kind} {id:?}: cannot go from {from} to {to}")]
    Transition { kind: Kind, id: String, from: String, to: String },
    #[error("{kind} {id:?} cannot be removed while {state}")]
    NotRemovable { kind: Kind, id: String, state: String },
    #[error("pod sandbox {id:?} still has containers: {containers}")]
    PodHasContainers { id: String, containers: String },
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("read the record {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl StoreError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io { op, path: path.to_owned(), source }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Default)]
struct Index {
    pods: BTreeMap<String, PodRecord>,
    containers: BTreeMap<String, ContainerRecord>,
    /// Reserved name → the id holding it.
    pod_names: HashMap<String, String>,
    container_names: HashMap<String, String>,
}

pub struct Store {
    pods_dir: PathBuf,
    containers_dir: PathBuf,
    index: RwLock<Index>,
    /// Held while a record is written and swapped into the index.
    writer: Mutex<()>,
    /// Per-object lifecycle locks (see [`Store::lock`]).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn read_guard<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write_guard<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Open (creating the directories) and read every record under `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let pods_dir = root.join("pods");
        let containers_dir = root.join("containers");
        for dir in [&pods_dir, &containers_dir] {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
        }
        let mut index = Index::default();
        for record in read_records::<PodRecord>(&pods_dir, |r| (&r.id, r.version))? {
            index.pod_names.insert(record.metadata.reserved_name(), record.id.clone());
            index.pods.insert(record.id.clone(), record);
        }
        for record in read_records::<ContainerRecord>(&containers_dir, |r| (&r.id, r.version))? {
            // A container whose pod record is gone (a crash between the two removals) keeps its
            // record, found by `orphans`, so that recovery removes what it left.
            if let Some(pod) = index.pods.get(&record.pod_id) {
                index.container_names.insert(record.metadata.reserved_name(&pod.metadata), record.id.clone());
            }
            index.containers.insert(record.id.clone(), record);
        }
        Ok(Store {
            pods_dir,
            containers_dir,
            index: RwLock::new(index),
            writer: Mutex::new(()),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// A new id: 32 random bytes as 64 hex digits (as containerd's), unused by any record.
    pub fn new_id(&self) -> Result<String> {
        loop {
            let mut bytes = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(|e| StoreError::io("read", Path::new("/dev/urandom"), e))?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let index = read_guard(&self.index);
            if !index.pods.contains_key(&id) && !index.containers.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    /// The lifecycle lock of pod or container `id`: held across a whole change (stop, remove,
    /// start...) so that two RPCs on one object do not interleave their steps.
    pub async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_owned()).or_default().clone();
        lock.lock_owned().await
    }

    // ---- pods ----

    /// Save a new pod (in `Creating`) and reserve its name.
    pub fn create_pod(&self, record: PodRecord) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let name = record.metadata.reserved_name();
        {
            let index = read_guard(&self.index);
            if let Some(holder) = index.pod_names.get(&name) {
                return Err(StoreError::NameReserved { kind: Kind::Pod, name, holder: holder.clone() });
            }
            if index.pods.contains_key(&record.id) {
                return Err(StoreError::Exists { kind: Kind::Pod, id: record.id });
            }
        }
        if record.state != PodState::Creating {
            return Err(transition(Kind::Pod, &record.id, "nothing", record.state));
        }
        write_record(&self.pods_dir, &record.id, &record)?;
        let mut index = write_guard(&self.index);
        index.pod_names.insert(name, record.id.clone());
        index.pods.insert(record.id.clone(), record);
        Ok(())
    }

    /// The pod whose id is `id` or starts with it (crictl and kubelet use prefixes too).
    pub fn pod(&self, id: &str) -> Result<PodRecord> {
        let index = read_guard(&self.index);
        find(&index.pods, Kind::Pod, id).cloned()
    }

    /// Every pod, in id order.
    pub fn pods(&self) -> Vec<PodRecord> {
        read_guard(&self.index).pods.values().cloned().collect()
    }

    /// Change pod `id`'s record with `f` and save it. A state change must be allowed by
    /// [`PodState::can_become`]; the id and metadata cannot change.
    pub fn update_pod(&self, id: &str, f: impl FnOnce(&mut PodRecord)) -> Result<PodRecord> {
        self.update(&self.pods_dir, id, f)
    }

    /// Remove pod `id`'s record and release its name. Its containers must be removed first.
    pub fn remove_pod(&self, id: &str) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let pod = self.pod(id)?;
        if !pod.state.removable() {
            return Err(StoreError::NotRemovable { kind: Kind::Pod, id: pod.id, state: format!("{:?}", pod.state) });
        }
        let containers: Vec<String> =
            read_guard(&self.index).containers.values().filter(|c| c.pod_id == pod.id).map(|c| c.id.clone()).collect();
        if !containers.is_empty() {
            return Err(StoreError::PodHasContainers { id: pod.id, containers: containers.join(", ") });
        }
        remove_record(&self.pods_dir, &pod.id)?;
        let mut index = write_guard(&self.index);
        index.pods.remove(&pod.id);
        index.pod_names.remove(&pod.metadata.reserved_name());
        drop(index);
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(&pod.id);
        Ok(())
    }

    // ---- containers ----

    /// Save a new container (in `Creating`) of an existing pod and reserve its name.
    pub fn create_container(&self, record: ContainerRecord) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let name = {
            let index = read_guard(&self.index);
            let pod = index
                .pods
                .get(&record.pod_id)
                .ok_or_else(|| StoreError::NotFound { kind: Kind::Pod, id: record.pod_id.clone() })?;
            let name = record.metadata.reserved_name(&pod.metadata);
            if let Some(holder) = index.container_names.get(&name) {
                return Err(StoreError::NameReserved { kind: Kind::Container, name, holder: holder.clone() });
            }
            if index.containers.contains_key(&record.id) || index.pods.contains_key(&record.id) {
                return Err(StoreError::Exists { kind: Kind::Container, id: record.id });
            }
            name
        };
        if record.state != ContainerState::Creating {
            return Err(transition(Kind::Container, &record.id, "nothing", record.state));
        }
        write_record(&self.containers_dir, &record.id, &record)?;
        let mut index = write_guard(&self.index);
        index.container_names.insert(name, record.id.clone());
        index.containers.insert(record.id.clone(), record);
        Ok(())
    }

    /// The container whose id is `id` or starts with it.
    pub fn container(&self, id: &str) -> Result<ContainerRecord> {
        let index = read_guard(&self.index);
        find(&index.containers, Kind::Container, id).cloned()
    }

    /// Every container, in id order.
    pub fn containers(&self) -> Vec<ContainerRecord> {
        read_guard(&self.index).containers.values().cloned().collect()
    }

    /// Containers whose pod record is gone (left by a crash): recovery removes them.
    pub fn orphans(&self) -> Vec<ContainerRecord> {
        let index = read_guard(&self.index);
        index.containers.values().filter(|c| !index.pods.contains_key(&c.pod_id)).cloned().collect()
    }

    /// Change container `id`'s record with `f` and save it; a state change must be allowed by
    /// [`ContainerState::can_become`]; the id, pod and metadata cannot change.
    pub fn update_container(&self, id: &str, f: impl FnOnce(&mut ContainerRecord)) -> Result<ContainerRecord> {
        self.update(&self.containers_dir, id, f)
    }

    /// Remove container `id`'s record and release its name.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let container = self.container(id)?;
        if !container.state.removable() {
            return Err(StoreError::NotRemovable {
                kind: Kind::Container,
                id: container.id,
                state: format!("{:?}", container.state),
            });
        }
        remove_record(&self.containers_dir, &container.id)?;
        let mut index = write_guard(&self.index);
        index.containers.remove(&container.id);
        index.container_names.retain(|_, holder| holder != &container.id);
        drop(index);
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(&container.id);
        Ok(())
    }
}

impl Store {
    /// Change the record `id` with `f` and save it, checked against its lifecycle.
    fn update<R: Record>(&self, dir: &Path, id: &str, f: impl FnOnce(&mut R)) -> Result<R> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = {
            let index = read_guard(&self.index);
            find(R::records(&index), R::KIND, id)?.clone()
        };
        let mut new = old.clone();
        f(&mut new);
        if !old.same_identity(&new) {
            return Err(StoreError::Corrupt {
                path: record_path(dir, old.id()),
                reason: "an update may not change the id, the pod or the metadata".into(),
            });
        }
        if let Some((from, to)) = old.refused_change(&new) {
            return Err(transition(R::KIND, old.id(), from, to));
        }
        if new == old {
            return Ok(new);
        }
        write_record(dir, new.id(), &new)?;
        R::records_mut(&mut write_guard(&self.index)).insert(new.id().to_owned(), new.clone());
        Ok(new)
    }
}

/// What [`Store::update`] needs of a record.
trait Record: Clone + PartialEq + serde::Serialize {
    const KIND: Kind;
    fn id(&self) -> &str;
    fn records(index: &Index) -> &BTreeMap<String, Self>;
    fn records_mut(index: &mut Index) -> &mut BTreeMap<String, Self>;
    /// Whether `new` is still the same object (id, pod, metadata).
    fn same_identity(&self, new: &Self) -> bool;
    /// `Some((from, to))` when going from `self`'s state to `new`'s is not in the lifecycle.
    fn refused_change(&self, new: &Self) -> Option<(String, String)>;
}

impl Record for PodRecord {
    const KIND: Kind = Kind::Pod;
    fn id(&self) -> &str {
        &self.id
    }
    fn records(index: &Index) -> &BTreeMap<String, Self> {
        &index.pods
    }
    fn records_mut(index: &mut Index) -> &mut BTreeMap<String, Self> {
        &mut index.pods
    }
    fn same_identity(&self, new: &Self) -> bool {
        self.id == new.id && self.metadata == new.metadata
    }
    fn refused_change(&self, new: &Self) -> Option<(String, String)> {
        (self.state != new.state && !self.state.can_become(new.state))
            .then(|| (format!("{:?}", self.state), format!("{:?}", new.state)))
    }
}

impl Record for ContainerRecord {
    const KIND: Kind = Kind::Container;
    fn id(&self) -> &str {
        &self.id
    }
    fn records(index: &Index) -> &BTreeMap<String, Self> {
        &index.containers
    }
    fn records_mut(index: &mut Index) -> &mut BTreeMap<String, Self> {
        &mut index.containers
    }
    fn same_identity(&self, new: &Self) -> bool {
        self.id == new.id && self.pod_id == new.pod_id && self.metadata == new.metadata
    }
    fn refused_change(&self, new: &Self) -> Option<(String, String)> {
        (self.state != new.state && !self.state.can_become(new.state))
            .then(|| (format!("{:?}", self.state), format!("{:?}", new.state)))
    }
}

fn transition(kind: Kind, id: &str, from: impl Into<String>, to: impl std::fmt::Debug) -> StoreError {
    StoreError::Transition { kind, id: id.to_owned(), from: from.into(), to: format!("{to:?}") }
}

/// The one record whose id is `id`, or the one whose id starts with it.
fn find<'a, R>(records: &'a BTreeMap<String, R>, kind: Kind, id: &str) -> Result<&'a R> {
    if let Some(record) = records.get(id) {
        return Ok(record);
    }
    if id.is_empty() {
        return Err(StoreError::NotFound { kind, id: id.to_owned() });
    }
    let mut matches = records.range::<str, _>((std::ops::Bound::Included(id), std::ops::Bound::Unbounded));
    let mut found = matches.by_ref().take_while(|(k, _)| k.starts_with(id));
    match (found.next(), found.next()) {
        (Some((_, record)), None) => Ok(record),
        (None, _) => Err(StoreError::NotFound { kind, id: id.to_owned() }),
        (Some((a, _)), Some((b, _))) => {
            Err(StoreError::Ambiguous { kind, prefix: id.to_owned(), matches: format!("{a}, {b}, ...") })
        }
    }
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Write `record` to `<dir>/<id>.json` atomically and durably.
fn write_record<R: serde::Serialize>(dir: &Path, id: &str, record: &R) -> Result<()> {
    let path = record_path(dir, id);
    let tmp = dir.join(format!(".{id}.json.tmp"));
    let data = serde_json::to_vec_pretty(record)
        .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: format!("serialise: {e}") })?;
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
        file.write_all(&data).map_err(|e| StoreError::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| StoreError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename the new record to", &path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn remove_record(dir: &Path, id: &str) -> Result<()> {
    let path = record_path(dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove", &path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Every `<id>.json` in `dir`, checked: the format version this build knows, and the id inside
/// matching the file's name. Temp files of writes a crash cut off are removed.
fn read_records<R: serde::de::DeserializeOwned>(dir: &Path, key: impl Fn(&R) -> (&String, u32)) -> Result<Vec<R>> {
    let mut records = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("read directory", dir, e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Err(StoreError::Corrupt { path, reason: "the file name is not UTF-8".into() });
        };
        if name.starts_with('.') && name.ends_with(".json.tmp") {
            std::fs::remove_file(&path).map_err(|e| StoreError::io("remove the interrupted write", &path, e))?;
            continue;
        }
        let Some(stem) = name.strip_suffix(".json") else {
            return Err(StoreError::Corrupt { path, reason: "not a record (<id>.json)".into() });
        };
        let text = std::fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
        let record: R =
            serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let (id, version) = key(&record);
        if version != RECORD_VERSION {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("record version {version}; this build reads version {RECORD_VERSION}"),
            });
        }
        if id != stem {
            return Err(StoreError::Corrupt { path, reason: format!("the record's id {id:?} is not its file's name") });
        }
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(store: &Store, name: &str) -> PodRecord {
        PodRecord {
            version: RECORD_VERSION,
            id: store.new_id().unwrap(),
            metadata: PodMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 },
            state: PodState::Creating,
            created_at: 1,
            labels: [("app".to_string(), name.to_string())].into(),
            annotations: BTreeMap::new(),
            runtime_handler: String::new(),
            netns: None,
            ips: vec![],
            pid: 0,
            cgroups_path: String::new(),
            image: String::new(),
            config: vec![1, 2, 3],
        }
    }

    fn container(store: &Store, pod_id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            version: RECORD_VERSION,
            id: store.new_id().unwrap(),
            pod_id: pod_id.into(),
            metadata: ContainerMetadata { name: name.into(), attempt: 0 },
            state: ContainerState::Creating,
            created_at: 2,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: 0,
            monitor_pid: 0,
            stop_signal: String::new(),
            cgroups_path: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:00".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            log_path: None,
            config: vec![],
            resources: None,
        }
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pod(&store, "web");
        store.create_pod(p.clone()).unwrap();
        store.update_pod(&p.id, |r| r.state = PodState::Ready).unwrap();
        let c = container(&store, &p.id, "nginx");
        store.create_container(c.clone()).unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let got = store.pod(&p.id).unwrap();
        assert_eq!(got.state, PodState::Ready);
        assert_eq!(got.config, vec![1, 2, 3]);
        assert_eq!(store.container(&c.id).unwrap(), c);
        // Names are reserved again after the reopen.
        let mut again = pod(&store, "web");
        again.metadata = p.metadata.clone();
        assert!(matches!(store.create_pod(again), Err(StoreError::NameReserved { .. })));
        let mut again = container(&store, &p.id, "nginx");
        again.metadata = c.metadata.clone();
        assert!(matches!(store.create_container(again), Err(StoreError::NameReserved { .. })));
    }

    #[test]
    fn a_name_is_reserved_until_the_record_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pod(&store, "web");
        store.create_pod(p.clone()).unwrap();
        let mut dup = pod(&store, "other");
        dup.metadata = p.metadata.clone();
        match store.create_pod(dup.clone()) {
            Err(StoreError::NameReserved { name, holder, .. }) => {
                assert_eq!(name, "web_default_uid-web_0");
                assert_eq!(holder, p.id);
            }
            other => panic!("expected NameReserved, got {other:?}"),
        }
        // Another attempt of the same pod is a different name.
        let mut next = dup.clone();
        next.id = store.new_id().unwrap();
        next.metadata.attempt = 1;
        store.create_pod(next).unwrap();
        store.remove_pod(&p.id).unwrap();
        store.create_pod(dup).unwrap();
    }

    #[test]
    fn ids_resolve_from_unique_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut a = pod(&store, "a");
        a.id = format!("abc1{}", "0".repeat(60));
        let mut b = pod(&store, "b");
        b.id = format!("abc2{}", "0".repeat(60));
        store.create_pod(a.clone()).unwrap();
        store.create_pod(b.clone()).unwrap();
        assert_eq!(store.pod("abc1").unwrap().id, a.id);
        assert_eq!(store.pod(&b.id).unwrap().id, b.id);
        assert!(matches!(store.pod("abc"), Err(StoreError::Ambiguous { .. })));
        assert!(matches!(store.pod("abd"), Err(StoreError::NotFound { .. })));
        assert!(matches!(store.pod(""), Err(StoreError::NotFound { .. })));
        assert!(matches!(store.container("abc1"), Err(StoreError::NotFound { kind: Kind::Container, .. })));
    }

    #[test]
    fn state_changes_outside_the_lifecycle_are_refused_and_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pod(&store, "web");
        store.create_pod(p.clone()).unwrap();
        store.update_pod(&p.id, |r| r.state = PodState::NotReady).unwrap();
        let err = store.update_pod(&p.id, |r| r.state = PodState::Ready).unwrap_err();
        assert!(matches!(err, StoreError::Transition { .. }), "{err}");
        assert_eq!(Store::open(dir.path()).unwrap().pod(&p.id).unwrap().state, PodState::NotReady);

        let mut ready = pod(&store, "ready");
        ready.state = PodState::Ready;
        assert!(matches!(store.create_pod(ready), Err(StoreError::Transition { .. })), "a pod is created in Creating");

        let c = container(&store, &p.id, "c");
        store.create_container(c.clone()).unwrap();
        assert!(store.update_container(&c.id, |r| r.state = ContainerState::Running).is_err());
        store.update_container(&c.id, |r| r.state = ContainerState::Created).unwrap();
        store.update_container(&c.id, |r| r.state = ContainerState::Running).unwrap();
        let err = store.remove_container(&c.id).unwrap_err();
        assert!(matches!(err, StoreError::NotRemovable { .. }), "{err}");
        assert!(store.update_container(&c.id, |r| r.metadata.name = "renamed".into()).is_err());
    }

    #[test]
    fn a_pod_goes_only_after_its_containers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pod(&store, "web");
        store.create_pod(p.clone()).unwrap();
        store.update_pod(&p.id, |r| r.state = PodState::Ready).unwrap();
        let c = container(&store, &p.id, "c");
        store.create_container(c.clone()).unwrap();
        assert!(matches!(store.remove_pod(&p.id), Err(StoreError::NotRemovable { .. })), "a ready pod is stopped first");
        store.update_pod(&p.id, |r| r.state = PodState::NotReady).unwrap();
        assert!(matches!(store.remove_pod(&p.id), Err(StoreError::PodHasContainers { .. })));
        store.remove_container(&c.id).unwrap();
        store.remove_pod(&p.id).unwrap();
        assert!(store.pods().is_empty() && store.containers().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join("pods")).unwrap().count(), 0);
        assert!(matches!(
            store.create_container(container(&store, &p.id, "late")),
            Err(StoreError::NotFound { kind: Kind::Pod, .. })
        ));
    }

    #[test]
    fn open_refuses_what_it_cannot_read_and_cleans_interrupted_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pod(&store, "web");
        store.create_pod(p.clone()).unwrap();
        drop(store);
        let tmp = dir.path().join("pods").join(format!(".{}.json.tmp", p.id));
        std::fs::write(&tmp, b"{half").unwrap();
        Store::open(dir.path()).unwrap();
        assert!(!tmp.exists(), "an interrupted write is removed at open");

        let path = dir.path().join("pods").join(format!("{}.json", p.id));
        let text = std::fs::read_to_string(&path).unwrap().replace("\"version\": 1", "\"version\": 9");
        std::fs::write(&path, text).unwrap();
        let err = Store::open(dir.path()).err().expect("a record of another version is refused");
        assert!(err.to_string().contains("record version 9"), "{err}");

        std::fs::write(&path, b"not json").unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains(&p.id), "the error names the file: {err}");
    }

    #[test]
    fn orphaned_containers_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = pod(&store, "web");
        store.create_pod(p.clone()).unwrap();
        let c = container(&store, &p.id, "c");
        store.create_container(c.clone()).unwrap();
        drop(store);
        // A crash between removing the pod's record and its containers'.
        std::fs::remove_file(dir.path().join("pods").join(format!("{}.json", p.id))).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.orphans().iter().map(|c| c.id.clone()).collect::<Vec<_>>(), vec![c.id.clone()]);
        store.remove_container(&c.id).unwrap();
        assert!(store.orphans().is_empty());
    }

    #[tokio::test]
    async fn the_lifecycle_lock_serialises_changes_of_one_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let first = store.lock("x").await;
        let s = store.clone();
        let waiter = tokio::spawn(async move {
            let _second = s.lock("x").await;
        });
        let _other = store.lock("y").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a second change of x waits for the first");
        drop(first);
        waiter.await.unwrap();
    }
}
