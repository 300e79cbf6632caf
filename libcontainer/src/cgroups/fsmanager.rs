//! The [`Manager`] for every host layout: the container's directory in each
//! hierarchy, and for each controller the one directory that serves it.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::controllers::{self, Controller};
use super::devices::DeviceRule;
use super::layout::{Hierarchy, Layout, Mode, Version};
use super::oom::OomNotifier;
use super::path::CgroupPath;
use super::stats::Stats;
use super::sub::{SubCgroup, SubCgroupDirs, OPTION};
use super::{blockio, files, v1, v2, validate, Entry, Error, Manager, MountSource, Result};

/// How long [`Manager::destroy`] keeps killing and retrying `rmdir`.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct FsManager {
    mode: Mode,
    path: CgroupPath,
    members: Vec<Member>,
    /// `/sys/dev/block`, where `blockIO` devices are looked up (tests
    /// point it elsewhere).
    sys_dev_block: PathBuf,
}

/// The container's cgroup in one hierarchy.
struct Member {
    h: Hierarchy,
    dir: PathBuf,
}

impl FsManager {
    pub(crate) fn new(layout: &Layout, path: &CgroupPath) -> Result<FsManager> {
        if let Some(key) = path.per_hierarchy().keys().find(|k| !layout.hierarchies.iter().any(|h| h.key() == **k)) {
            return Err(Error::Invalid {
                field: "linux.cgroupsPath",
                reason: format!("{path} names hierarchy {key:?}, which this host does not have"),
            });
        }
        let members = layout
            .hierarchies
            .iter()
            .map(|h| Member { dir: h.mountpoint.join(path.in_hierarchy(h).trim_start_matches('/')), h: h.clone() })
            .collect();
        Ok(FsManager { mode: layout.mode, path: path.clone(), members, sys_dev_block: PathBuf::from(blockio::SYS_DEV_BLOCK) })
    }

    fn v2(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.h.version == Version::V2)
    }

    fn v1_with(&self, controller: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.h.version == Version::V1 && m.h.has(controller))
    }

    /// The directory serving `controller` for `field`: a v1 hierarchy that
    /// has it, else the cgroup2 tree (enabling it in the parents if missing).
    fn target(&self, controller: Controller, field: &str) -> Result<(Version, &Path)> {
        if let Some(m) = self.v1_with(controller.name()) {
            return Ok((Version::V1, &m.dir));
        }
        let Some(v2_name) = controller.v2_name() else {
            return Err(Error::ControllerUnavailable {
                field: field.to_owned(),
                controller: controller.name().to_owned(),
                place: "in any mounted cgroup v1 hierarchy (cgroup v2 has no such controller)".to_owned(),
            });
        };
        self.target_v2(v2_name, field, true).map(|dir| (Version::V2, dir)).map_err(|e| match e {
            // Name both when they differ: "blkio/io".
            Error::ControllerUnavailable { field, controller: c, place } if c != controller.name() => {
                Error::ControllerUnavailable { field, controller: format!("{}/{c}", controller.name()), place }
            }
            e => e,
        })
    }

    /// `after_v1`: the caller looked in v1 hierarchies first (the error says so).
    fn target_v2(&self, controller: &str, field: &str, after_v1: bool) -> Result<&Path> {
        let Some(m) = self.v2() else {
            return Err(Error::ControllerUnavailable {
                field: field.to_owned(),
                controller: controller.to_owned(),
                place: "in any mounted cgroup v1 hierarchy (and there is no cgroup2 tree)".to_owned(),
            });
        };
        v2::enable(&m.h.mountpoint, &m.dir, Some(&[controller])).map_err(|e| v2::enable_failed(field, controller, &m.dir, e))?;
        let available = v2::controllers(&m.dir)?;
        if available.iter().any(|c| c == controller) {
            return Ok(&m.dir);
        }
        let list = available.join(" ");
        let place = match self.mode {
            Mode::Hybrid if after_v1 => {
                format!("in any cgroup v1 hierarchy nor in {} (cgroup.controllers: {list})", m.dir.display())
            }
            _ => format!("in {} (cgroup.controllers: {list})", m.dir.display()),
        };
        Err(Error::ControllerUnavailable { field: field.to_owned(), controller: controller.to_owned(), place })
    }

    /// Where `controller` is served, without enabling anything (for reading
    /// and for controllers with no enable step): a v1 hierarchy that has it,
    /// else the cgroup2 directory when its `cgroup.controllers` lists it.
    fn serving(&self, controller: &str) -> Option<(Version, &Path)> {
        if let Some(m) = self.v1_with(controller) {
            return Some((Version::V1, &m.dir));
        }
        let m = self.v2()?;
        let listed = v2::controllers(&m.dir).is_ok_and(|c| c.iter().any(|c| c == controller));
        listed.then_some((Version::V2, m.dir.as_path()))
    }

    /// The freezer: v1's where there is one, else `cgroup.freeze`.
    fn freezer(&self) -> Result<(Version, &Path)> {
        if let Some(m) = self.v1_with("freezer") {
            return Ok((Version::V1, &m.dir));
        }
        match self.v2() {
            Some(m) => Ok((Version::V2, &m.dir)),
            None => Err(Error::Unsupported("freezing (no v1 freezer hierarchy and no cgroup2 tree)".into())),
        }
    }

    /// The memory controller's directory, for OOM events.
    fn memory(&self, field: &'static str) -> Result<(Version, &Path)> {
        self.serving("memory").ok_or_else(|| Error::ControllerUnavailable {
            field: field.to_owned(),
            controller: "memory".into(),
            place: match self.v2() {
                Some(m) => format!("in any cgroup v1 hierarchy nor in {}", m.dir.display()),
                None => "in any mounted cgroup v1 hierarchy".into(),
            },
        })
    }

    fn create_dirs(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        for m in &self.members {
            let new = files::mkdir_all(&m.h.mountpoint, &m.dir)?;
            created.extend(new.iter().cloned());
            // An existing cgroup is reused only when empty: destroy() kills
            // everything inside, which must not be another container (runc
            // 1.2 refuses the same way).
            if new.is_empty() {
                let pids = files::procs_recursive(&m.dir)?;
                if !pids.is_empty() {
                    return Err(Error::Invalid {
                        field: "linux.cgroupsPath",
                        reason: format!("{} is in use by {} process(es), e.g. {}", m.dir.display(), pids.len(), pids[0]),
                    });
                }
            }
            match m.h.version {
                Version::V1 if m.h.has("cpuset") => v1::cpuset::seed(&new)?,
                Version::V2 if self.mode == Mode::Unified => v2::enable(&m.h.mountpoint, &m.dir, None)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The container's processes in every hierarchy (a process moved out
    /// of one is still found in another), without this process.
    fn all_pids(&self, members: &[&Member]) -> Result<Vec<Pid>> {
        let me = nix::unistd::getpid();
        let mut all = Vec::new();
        for m in members {
            all.extend(files::procs_recursive(&m.dir)?);
        }
        all.sort_unstable();
        all.dedup();
        all.retain(|&p| p != me);
        Ok(all)
    }

    /// SIGKILL every process of the cgroup while it is frozen: frozen
    /// processes cannot fork one the list misses, nor exit and be reaped and
    /// have their pid reused before the signal lands. (A process outside the
    /// freezer's cgroup but inside another hierarchy's is killed unfrozen.)
    fn kill_frozen(&self, members: &[&Member]) -> Result<()> {
        let freezer = match self.v1_with("freezer") {
            Some(m) if m.dir.exists() => Some((Version::V1, m.dir.as_path())),
            _ => self.v2().filter(|m| m.dir.exists()).map(|m| (Version::V2, m.dir.as_path())),
        };
        let frozen = match freezer {
            Some((Version::V1, dir)) => v1::freezer::try_freeze(dir),
            Some((Version::V2, dir)) => v2::freezer::try_freeze(dir),
            None => Ok(false),
        }
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "freezing before the kill failed; killing anyway");
            false
        });
        let mut result = self.all_pids(members).and_then(|pids| {
            pids.into_iter().try_for_each(|pid| {
                tracing::debug!(pid = pid.as_raw(), "kill SIGKILL");
                match kill(pid, Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => Ok(()),
                    Err(source) => Err(Error::Kill { pid: pid.as_raw(), path: self.members[0].dir.clone(), source }),
                }
            })
        });
        if let (true, Some((version, dir))) = (frozen, freezer) {
            let thawed = if version == Version::V1 { v1::freezer::thaw(dir) } else { v2::freezer::thaw(dir) };
            result = result.and(thawed);
        }
        result
    }

    /// Kill every process until none is left or the deadline passes.
    fn kill_all(&self, members: &[&Member], deadline: Instant) -> Result<()> {
        let mut pause = Duration::from_millis(5);
        let mut next_kill = Instant::now();
        // cgroup.kill is atomic against forks; it may miss a process moved
        // out of the v2 tree on a hybrid host, which the pid loop catches
        // if anything is left after a grace period.
        if members.iter().any(|m| m.h.version == Version::V2 && v2::kill(&m.dir).unwrap_or(false)) {
            next_kill += Duration::from_millis(200);
        }
        loop {
            let now = Instant::now();
            if self.all_pids(members)?.is_empty() || now >= deadline {
                return Ok(());
            }
            if now >= next_kill {
                self.kill_frozen(members)?;
            }
            sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// `rmdir`, retrying on `EBUSY` (a killed process not yet gone) until
    /// the deadline, killing again in between.
    fn remove(&self, dir: &Path, members: &[&Member], deadline: Instant, start: Instant) -> Result<()> {
        let mut pause = Duration::from_millis(5);
        loop {
            match files::rmdir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if Instant::now() >= deadline {
                        let pids = files::procs_recursive(dir).unwrap_or_default();
                        return Err(Error::Busy {
                            path: dir.to_owned(),
                            waited: start.elapsed(),
                            pids: pids.into_iter().map(Pid::as_raw).collect(),
                        });
                    }
                    self.kill_frozen(members)?;
                    sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(source) => return Err(Error::Remove { path: dir.to_owned(), source }),
            }
        }
    }
}

impl Manager for FsManager {
    fn path(&self) -> &CgroupPath {
        &self.path
    }

    fn create(&mut self) -> Result<()> {
        let mut created = Vec::new();
        let result = self.create_dirs(&mut created);
        if result.is_err() {
            files::remove_created(&created);
        }
        result
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        // Everything that can be checked without the kernel, before any write.
        validate::validate(r)?;
        if let Some(b) = r.block_io().as_ref().filter(|b| blockio::first_field(b).is_some()) {
            blockio::check_devices(&self.sys_dev_block, b)?;
        }
        for (controller, field) in controllers::requested(r) {
            if controller.v2_name().is_none() && self.mode == Mode::Unified {
                // runc's cgroup2 manager ignores `network` the same way.
                tracing::warn!(field, "cgroup v2 has no {} controller; ignored", controller.name());
                continue;
            }
            let (version, dir) = self.target(controller, field)?;
            let (cpu, v) = (r.cpu().as_ref(), version == Version::V1);
            match controller {
                Controller::Cpuset => match cpu {
                    Some(c) if v => v1::cpuset::apply(dir, c)?,
                    Some(c) => v2::cpuset::apply(dir, c)?,
                    None => {}
                },
                Controller::Cpu => match cpu {
                    Some(c) if v => v1::cpu::apply(dir, c)?,
                    Some(c) => v2::cpu::apply(dir, c)?,
                    None => {}
                },
                Controller::Memory => match r.memory() {
                    Some(m) if v => v1::memory::apply(dir, m)?,
                    Some(m) => v2::memory::apply(dir, m)?,
                    None => {}
                },
                Controller::Pids => match r.pids() {
                    Some(p) if v => v1::pids::apply(dir, p)?,
                    Some(p) => v2::pids::apply(dir, p)?,
                    None => {}
                },
                Controller::Hugetlb => match r.hugepage_limits() {
                    Some(l) if v => v1::hugetlb::apply(dir, l)?,
                    Some(l) => v2::hugetlb::apply(dir, l)?,
                    None => {}
                },
                Controller::Blkio => match r.block_io() {
                    Some(b) if v => v1::blkio::apply(dir, b, &self.sys_dev_block)?,
                    Some(b) => v2::io::apply(dir, b, &self.sys_dev_block)?,
                    None => {}
                },
                Controller::Rdma => match r.rdma() {
                    Some(l) if v => v1::rdma::apply(dir, l)?,
                    Some(l) => v2::rdma::apply(dir, l)?,
                    None => {}
                },
                Controller::NetCls => {
                    if let Some(id) = r.network().as_ref().and_then(|n| n.class_id()) {
                        v1::net_cls::apply(dir, id)?;
                    }
                }
                Controller::NetPrio => {
                    if let Some(p) = r.network().as_ref().and_then(|n| n.priorities().as_ref()) {
                        v1::net_prio::apply(dir, p)?;
                    }
                }
            }
        }
        if let Some(unified) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            let Some(m) = self.v2() else {
                return Err(Error::Unsupported("linux.resources.unified (cgroup v2 files) on a v1-only host".into()));
            };
            let mut keys: Vec<&String> = unified.keys().collect();
            keys.sort();
            for key in keys {
                let controller = v2::unified::controller_of(key)?;
                if controller != "cgroup" {
                    self.target_v2(controller, &v2::unified::field(key), false)?;
                }
                v2::unified::apply(&m.dir, key, &unified[key])?;
            }
        }
        Ok(())
    }

    fn set_devices(&self, rules: &[DeviceRule]) -> Result<()> {
        // On a hybrid host the v1 controller, as runc: a BPF filter on the
        // cgroup2 tree would work too, but v1's is the one the container's
        // cgroup mount shows and tools read.
        if let Some(m) = self.v1_with("devices") {
            return v1::devices::apply(&m.dir, rules);
        }
        match self.v2() {
            Some(m) => v2::devices::apply(&m.dir, rules),
            None => Err(Error::ControllerUnavailable {
                field: "linux.resources.devices".into(),
                controller: "devices".into(),
                place: "in any mounted cgroup v1 hierarchy (and there is no cgroup2 tree)".into(),
            }),
        }
    }

    fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            (Version::V1, dir) => v1::freezer::freeze(dir),
            (Version::V2, dir) => v2::freezer::freeze(dir),
        }
    }

    fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            (Version::V1, dir) => v1::freezer::thaw(dir),
            (Version::V2, dir) => v2::freezer::thaw(dir),
        }
    }

    fn is_frozen(&self) -> Result<bool> {
        match self.freezer()? {
            (Version::V1, dir) => v1::freezer::is_frozen(dir),
            (Version::V2, dir) => v2::freezer::is_frozen(dir),
        }
    }

    fn stats(&self) -> Result<Stats> {
        if let Some(m) = self.members.iter().find(|m| !m.dir.is_dir()) {
            return Err(Error::Read { path: m.dir.clone(), source: std::io::Error::from_raw_os_error(libc::ENOENT) });
        }
        let mut s = Stats::default();
        // CPU time: v1 cpuacct, else v2's cpu.stat (there in every cgroup2
        // directory, with throttling once the cpu controller is on).
        if let Some(m) = self.v1_with("cpuacct") {
            v1::cpuacct::stats(&m.dir, &mut s.cpu.usage)?;
        } else if let Some(m) = self.v2() {
            v2::cpu::stats(&m.dir, &mut s.cpu)?;
        }
        if let Some(m) = self.v1_with("cpu") {
            v1::cpu::throttling(&m.dir, &mut s.cpu.throttling)?;
        }
        match self.serving("memory") {
            Some((Version::V1, dir)) => v1::memory::stats(dir, &mut s.memory)?,
            Some((Version::V2, dir)) => v2::memory::stats(dir, &mut s.memory)?,
            None => {}
        }
        match self.serving("pids") {
            Some((_, dir)) => v1::pids::stats(dir, &mut s.pids)?,
            // Without the controller, count the processes (runc does on v2).
            None => s.pids.current = self.pids()?.len() as u64,
        }
        if let Some((Version::V1, dir)) = self.serving("blkio") {
            v1::blkio::stats(dir, &mut s.blkio)?;
        } else if let Some((_, dir)) = self.serving("io") {
            v2::io::stats(dir, &mut s.blkio)?;
        }
        match self.serving("hugetlb") {
            Some((Version::V1, dir)) => v1::hugetlb::stats(dir, &mut s.hugetlb)?,
            Some((Version::V2, dir)) => v2::hugetlb::stats(dir, &mut s.hugetlb)?,
            None => {}
        }
        Ok(s)
    }

    fn oom_kill_count(&self) -> Result<u64> {
        match self.memory("OOM kill count")? {
            (Version::V1, dir) => v1::memory::oom_kill_count(dir),
            (Version::V2, dir) => v2::memory::oom_kill_count(dir),
        }
    }

    fn oom_notifier(&self) -> Result<OomNotifier> {
        match self.memory("OOM events")? {
            (Version::V1, dir) => OomNotifier::v1(dir),
            (Version::V2, dir) => OomNotifier::v2(dir),
        }
    }

    fn add_process(&self, pid: Pid) -> Result<()> {
        for m in &self.members {
            if m.h.version == Version::V1 && m.h.has("cpuset") {
                v1::cpuset::ensure(&m.dir)?;
            }
            files::write(&m.dir, "cgroup.procs", &pid.as_raw().to_string())?;
        }
        Ok(())
    }

    fn entry(&self) -> Result<Entry> {
        for m in &self.members {
            if m.h.version == Version::V1 && m.h.has("cpuset") {
                v1::cpuset::ensure(&m.dir)?;
            }
        }
        Entry::open(self.members.iter().map(|m| (m.h.version, m.dir.as_path())))
    }

    fn sub_cgroup(&self, sub: &SubCgroup) -> Result<SubCgroupDirs> {
        let invalid = |reason: String| Error::Invalid { field: OPTION, reason };
        if self.mode == Mode::Unified {
            if let Some(c) = sub.by_controller.keys().next() {
                return Err(invalid(format!(
                    "{c}: cgroup v2 has one hierarchy; give the sub-cgroup as PATH, without a controller"
                )));
            }
        }
        for c in sub.by_controller.keys() {
            if !self.members.iter().any(|m| m.h.version == Version::V1 && m.h.has(c)) {
                let known: Vec<String> =
                    self.members.iter().filter(|m| m.h.version == Version::V1).flat_map(|m| m.h.controllers.clone()).collect();
                return Err(invalid(format!("no cgroup v1 hierarchy has controller {c:?} (this host's: {})", known.join(" "))));
            }
        }
        let mut dirs = Vec::new();
        for m in &self.members {
            let dir = match sub.for_hierarchy(&m.h.controllers)? {
                Some(parts) => parts.iter().fold(m.dir.clone(), |d, p| d.join(p)),
                None => m.dir.clone(),
            };
            if !dir.is_dir() {
                return Err(invalid(format!("{} does not exist (create the sub-cgroup first)", dir.display())));
            }
            dirs.push((m.h.version, dir, m.h.version == Version::V1 && m.h.has("cpuset")));
        }
        Ok(SubCgroupDirs { dirs })
    }

    fn pids(&self) -> Result<Vec<Pid>> {
        let existing = |m: &&Member| m.dir.exists();
        let m = match self.mode {
            Mode::Unified => self.v2(),
            _ => self
                .v1_with("pids")
                .filter(existing)
                .or_else(|| self.members.iter().filter(|m| m.h.version == Version::V1).find(existing))
                .or_else(|| self.v2()),
        };
        match m {
            Some(m) => files::procs_recursive(&m.dir),
            None => Ok(Vec::new()),
        }
    }

    fn destroy(&self) -> Result<()> {
        // The usual case first: the container's processes are gone and it
        // made no sub-cgroups, so one rmdir per hierarchy removes it (the
        // kernel refuses, EBUSY, a cgroup that has either). What is left
        // goes the long way: kill, walk, remove deepest first. Saves two
        // opens, a read and a directory listing per hierarchy (ten of them
        // on a v1 host) from every `delete`.
        let members: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| match files::rmdir(&m.dir) {
                Ok(()) => false,
                Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            })
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let deadline = start + DESTROY_TIMEOUT;
        self.kill_all(&members, deadline)?;
        // Every hierarchy is tried; the first error is returned.
        let mut result = Ok(());
        for m in &members {
            let removed = files::descendants(&m.dir).and_then(|mut dirs| {
                dirs.push(m.dir.clone());
                dirs.iter().try_for_each(|d| self.remove(d, &members, deadline, start))
            });
            if result.is_ok() {
                result = removed;
            }
        }
        result
    }

    fn mount_sources(&self) -> Vec<MountSource> {
        self.members
            .iter()
            .map(|m| MountSource {
                name: match self.mode {
                    Mode::Unified => String::new(),
                    _ => m.h.mountpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                },
                host_dir: m.dir.clone(),
                controllers: m.h.controllers.clone(),
                version: m.h.version,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::controllers::tests::resources;
    use super::*;

    /// A fake host under a temporary directory: `v1` hierarchies by
    /// controller list, and a cgroup2 tree offering `v2` controllers.
    struct Fake {
        _tmp: tempfile::TempDir,
        layout: Layout,
    }

    fn fake(mode: Mode, v1: &[&str], v2: Option<&str>) -> Fake {
        let tmp = tempfile::tempdir().unwrap();
        let mut hierarchies = Vec::new();
        for key in v1 {
            let mountpoint = tmp.path().join(key.trim_start_matches("name="));
            fs::create_dir(&mountpoint).unwrap();
            hierarchies.push(Hierarchy {
                mountpoint,
                root: "/".into(),
                controllers: key.split(',').map(str::to_owned).collect(),
                version: Version::V1,
            });
        }
        if let Some(controllers) = v2 {
            let mountpoint = tmp.path().join(if mode == Mode::Unified { "cgroup" } else { "unified" });
            fs::create_dir(&mountpoint).unwrap();
            fs::write(mountpoint.join("cgroup.controllers"), controllers).unwrap();
            fs::write(mountpoint.join("cgroup.subtree_control"), "").unwrap();
            hierarchies.push(Hierarchy { mountpoint, root: "/".into(), controllers: vec![], version: Version::V2 });
        }
        Fake { _tmp: tmp, layout: Layout { mode, hierarchies } }
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (f, v) in files {
            fs::write(dir.join(f), v).unwrap();
        }
    }

    fn read(dir: &Path, f: &str) -> String {
        files::read(dir, f).unwrap()
    }

    #[test]
    fn hybrid_sends_each_controller_to_its_hierarchy_and_hugetlb_to_v2() {
        let f = fake(Mode::Hybrid, &["cpu,cpuacct", "memory", "pids", "cpuset"], Some("hugetlb"));
        let l = &f.layout;
        let path = CgroupPath::new("/t/c1").unwrap();
        let m = l.manager(&path).unwrap();
        let dir = |i: usize| l.hierarchies[i].mountpoint.join("t/c1");
        write(&dir(0), &[("cpu.shares", ""), ("cpu.cfs_quota_us", ""), ("cpu.cfs_period_us", "")]);
        write(&dir(1), &[("memory.limit_in_bytes", "9223372036854771712"), ("memory.soft_limit_in_bytes", "")]);
        write(&dir(2), &[("pids.max", "")]);
        write(&dir(3), &[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")]);
        write(&dir(4), &[("cgroup.controllers", "hugetlb"), ("hugetlb.2MB.max", "max")]);
        write(&l.hierarchies[4].mountpoint.join("t"), &[("cgroup.controllers", "hugetlb"), ("cgroup.subtree_control", "")]);
        let r = resources(
            r#"{"memory":{"limit":1048576,"reservation":524288},"cpu":{"shares":512,"quota":20000,"period":100000,"cpus":"1"},
                "pids":{"limit":0},"hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#,
        );
        m.apply(&r).unwrap();
        assert_eq!(read(&dir(0), "cpu.shares"), "512");
        assert_eq!(read(&dir(0), "cpu.cfs_quota_us"), "20000");
        assert_eq!(read(&dir(0), "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&dir(1), "memory.limit_in_bytes"), "1048576");
        assert_eq!(read(&dir(1), "memory.soft_limit_in_bytes"), "524288");
        assert_eq!(read(&dir(2), "pids.max"), "max");
        assert_eq!(read(&dir(3), "cpuset.cpus"), "1");
        assert_eq!(read(&dir(4), "hugetlb.2MB.max"), "2097152");
        // hugetlb was enabled in the v2 parents, only there, only it.
        assert_eq!(read(&l.hierarchies[4].mountpoint, "cgroup.subtree_control"), "+hugetlb");
        assert_eq!(read(&l.hierarchies[4].mountpoint.join("t"), "cgroup.subtree_control"), "+hugetlb");
    }

    #[test]
    fn a_missing_controller_names_the_field_and_the_place() {
        let f = fake(Mode::Hybrid, &["cpu"], Some("hugetlb"));
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        write(&f.layout.hierarchies[1].mountpoint.join("c"), &[("cgroup.controllers", "hugetlb")]);
        let e = m.apply(&resources(r#"{"memory":{"limit":1048576}}"#)).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("linux.resources.memory.limit: memory controller not available in any cgroup v1"), "{msg}");
        assert!(msg.contains("unified/c (cgroup.controllers: hugetlb)"), "{msg}");

        let f = fake(Mode::Unified, &[], Some("cpu memory"));
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        write(&f.layout.hierarchies[0].mountpoint.join("c"), &[("cgroup.controllers", "cpu memory"), ("pids.max", "")]);
        let e = m.apply(&resources(r#"{"pids":{"limit":10}}"#)).unwrap_err();
        assert!(e.to_string().starts_with("linux.resources.pids.limit: pids controller not available in /"), "{e}");

        let f = fake(Mode::Legacy, &["cpu"], None);
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        let e = m.apply(&resources(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#)).unwrap_err();
        assert!(e.to_string().contains("hugetlb controller not available in any mounted cgroup v1 hierarchy"), "{e}");
        let e = m.apply(&resources(r#"{"unified":{"memory.high":"1"}}"#)).unwrap_err();
        assert!(e.to_string().contains("linux.resources.unified"), "{e}");
        // Nothing asked, nothing needed.
        m.apply(&resources(r#"{"memory":{"limit":0},"devices":[{"allow":false,"access":"rwm"}]}"#)).unwrap();
    }

    #[test]
    fn block_io_rdma_and_network_go_to_their_hierarchies() {
        let f = fake(Mode::Hybrid, &["blkio", "net_cls,net_prio", "rdma"], Some("hugetlb"));
        let l = &f.layout;
        let path = CgroupPath::new("/c").unwrap();
        let mut m = FsManager::new(l, &path).unwrap();
        m.sys_dev_block = blockio::tests::fake_sys(&f._tmp.path().join("sys"));
        let dir = |i: usize| l.hierarchies[i].mountpoint.join("c");
        write(&dir(0), &[("blkio.bfq.weight", ""), ("blkio.bfq.weight_device", ""), ("blkio.throttle.read_bps_device", "")]);
        write(&dir(1), &[("net_cls.classid", "0"), ("net_prio.ifpriomap", "")]);
        write(&dir(2), &[("rdma.max", "")]);
        let r = resources(
            r#"{"blockIO":{"weight":200,"weightDevice":[{"major":8,"minor":0,"weight":300}],"throttleReadBpsDevice":[{"major":7,"minor":0,"rate":4096}]},
                "network":{"classID":1048577,"priorities":[{"name":"lo","priority":3}]},"rdma":{"mlx5_0":{"hcaHandles":4}}}"#,
        );
        m.apply(&r).unwrap();
        assert_eq!(read(&dir(0), "blkio.bfq.weight"), "200");
        assert_eq!(read(&dir(0), "blkio.bfq.weight_device"), "8:0 300");
        assert_eq!(read(&dir(0), "blkio.throttle.read_bps_device"), "7:0 4096");
        assert_eq!(read(&dir(1), "net_cls.classid"), "1048577");
        assert_eq!(read(&dir(1), "net_prio.ifpriomap"), "lo 3");
        assert_eq!(read(&dir(2), "rdma.max"), "mlx5_0 hca_handle=4");
        // The v2 tree was not asked for anything.
        assert_eq!(read(&l.hierarchies[3].mountpoint, "cgroup.subtree_control"), "");

        // An unknown device: an error naming the entry, and nothing written.
        let r = resources(r#"{"network":{"classID":7},"blockIO":{"throttleReadBpsDevice":[{"major":9,"minor":9,"rate":1}]}}"#);
        let e = m.apply(&r).unwrap_err().to_string();
        assert!(e.starts_with("invalid linux.resources.blockIO.throttleReadBpsDevice: [0] 9:9: no such block device"), "{e}");
        assert_eq!(read(&dir(1), "net_cls.classid"), "1048577");
    }

    #[test]
    fn bad_values_are_refused_before_any_write() {
        let f = fake(Mode::Legacy, &["memory", "cpu", "blkio"], None);
        let l = &f.layout;
        let m = l.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        let dir = |i: usize| l.hierarchies[i].mountpoint.join("c");
        write(&dir(0), &[("memory.limit_in_bytes", "9223372036854771712")]);
        write(&dir(1), &[("cpu.cfs_quota_us", "-1"), ("cpu.cfs_period_us", "100000")]);
        for (json, field) in [
            (r#"{"memory":{"limit":1048576},"cpu":{"quota":500}}"#, "invalid linux.resources.cpu.quota: 500 µs is below"),
            (r#"{"memory":{"limit":1048576},"cpu":{"quota":-3}}"#, "invalid linux.resources.cpu.quota: -3"),
            (r#"{"memory":{"limit":1048576},"cpu":{"period":100}}"#, "invalid linux.resources.cpu.period: 100 µs"),
            (
                r#"{"memory":{"limit":1048576},"blockIO":{"weight":1}}"#,
                "invalid linux.resources.blockIO.weight: 1 is outside 10-1000",
            ),
            (r#"{"memory":{"limit":1048576},"pids":{"limit":-7}}"#, "invalid linux.resources.pids.limit: -7"),
        ] {
            let e = m.apply(&resources(json)).unwrap_err().to_string();
            assert!(e.starts_with(field), "{json}: {e}");
            assert_eq!(read(&dir(0), "memory.limit_in_bytes"), "9223372036854771712", "{json}");
            assert_eq!(read(&dir(1), "cpu.cfs_quota_us"), "-1", "{json}");
        }
    }

    #[test]
    fn network_needs_v1_and_is_ignored_on_cgroup2_only_hosts() {
        // Hybrid without net_cls: an error naming the field (runc fails too).
        let f = fake(Mode::Hybrid, &["cpu"], Some("hugetlb"));
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        let e = m.apply(&resources(r#"{"network":{"classID":42}}"#)).unwrap_err().to_string();
        assert_eq!(
            e,
            "linux.resources.network.classID: net_cls controller not available in any mounted cgroup v1 hierarchy (cgroup v2 has no such controller)"
        );
        // cgroup2-only: ignored (logged), as runc's cgroup2 manager does.
        let f = fake(Mode::Unified, &[], Some("io rdma"));
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        m.apply(&resources(r#"{"network":{"classID":42,"priorities":[{"name":"lo","priority":1}]}}"#)).unwrap();
    }

    #[test]
    fn unified_hosts_get_io_max_and_rdma_max() {
        let f = fake(Mode::Unified, &[], Some("io rdma misc"));
        let mut m = FsManager::new(&f.layout, &CgroupPath::new("/c").unwrap()).unwrap();
        m.sys_dev_block = blockio::tests::fake_sys(&f._tmp.path().join("sys"));
        let dir = f.layout.hierarchies[0].mountpoint.join("c");
        write(&dir, &[("cgroup.controllers", "io rdma misc"), ("io.weight", "default 100"), ("io.max", ""), ("rdma.max", "")]);
        let r = resources(
            r#"{"blockIO":{"weight":1000,"throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":50}],"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":0}]},
                "rdma":{"rxe0":{"hcaObjects":9}}}"#,
        );
        m.apply(&r).unwrap();
        assert_eq!(read(&dir, "io.weight"), "10000");
        assert_eq!(read(&dir, "io.max"), "8:0 rbps=max wiops=50");
        assert_eq!(read(&dir, "rdma.max"), "rxe0 hca_object=9");
        // A controller the tree lacks, through `unified`: the key is named.
        let e = m.apply(&resources(r#"{"unified":{"hugetlb.2MB.max":"0"}}"#)).unwrap_err().to_string();
        assert!(e.starts_with("linux.resources.unified[\"hugetlb.2MB.max\"]: hugetlb controller not available in "), "{e}");
        let e = m.apply(&resources(r#"{"unified":{"misc.max":"sev 1"}}"#)).unwrap_err().to_string();
        assert!(e.starts_with("invalid linux.resources.unified: \"misc.max\": no such file in "), "{e}");
    }

    #[test]
    fn sub_cgroups_for_exec() {
        let f = fake(Mode::Hybrid, &["cpu", "memory", "cpuset", "name=systemd"], Some(""));
        let l = &f.layout;
        let m = l.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        let dir = |i: usize| l.hierarchies[i].mountpoint.join("c");
        for i in 0..l.hierarchies.len() {
            write(&dir(i).join("s"), &[("cgroup.procs", "")]);
        }
        write(&dir(2).join("s"), &[("cpuset.cpus", ""), ("cpuset.mems", "0")]);
        write(&dir(1).join("only-mem"), &[("cgroup.procs", "")]);

        let sub = m.sub_cgroup(&SubCgroup::parse(&["/s"]).unwrap()).unwrap();
        let want: Vec<PathBuf> = (0..5).map(|i| dir(i).join("s")).collect();
        assert_eq!(sub.dirs().map(Path::to_owned).collect::<Vec<_>>(), want);
        // The v1 cpuset sub-cgroup has no CPUs: refused, not filled in.
        let e = sub.add_process(Pid::from_raw(4242)).unwrap_err().to_string();
        assert!(e.starts_with("invalid --cgroup: ") && e.contains("cpuset.cpus is empty"), "{e}");
        write(&dir(2).join("s"), &[("cpuset.cpus", "0")]);
        sub.add_process(Pid::from_raw(4242)).unwrap();
        for i in 0..5 {
            assert_eq!(read(&dir(i).join("s"), "cgroup.procs"), "4242");
        }
        // A new process clones into the hybrid host's cgroup2 directory and
        // enters the v1 ones through their `tasks` files.
        let v2 = l.hierarchies.iter().position(|h| h.version == Version::V2).unwrap();
        for i in (0..5).filter(|i| *i != v2) {
            write(&dir(i).join("s"), &[("tasks", "")]);
        }
        let entry = sub.entry().unwrap();
        let st = nix::sys::stat::fstat(entry.clone_fd().expect("hybrid: CLONE_INTO_CGROUP for the cgroup2 tree")).unwrap();
        assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&fs::metadata(dir(v2).join("s")).unwrap()));
        entry.enter_self().unwrap();
        for i in (0..5).filter(|i| *i != v2) {
            assert_eq!(read(&dir(i).join("s"), "tasks"), "0");
        }

        // memory:only-mem moves memory only; the rest stay in the container's cgroup.
        let sub = m.sub_cgroup(&SubCgroup::parse(&["memory:only-mem"]).unwrap()).unwrap();
        let got: Vec<PathBuf> = sub.dirs().map(Path::to_owned).collect();
        assert_eq!(got, [dir(0), dir(1).join("only-mem"), dir(2), dir(3), dir(4)]);

        for (args, says) in [
            (&["missing"][..], "c/missing does not exist"),
            (&["pids:s"][..], "no cgroup v1 hierarchy has controller \"pids\""),
            (&["../x"][..], "climbs out"),
        ] {
            let e = SubCgroup::parse(args).and_then(|s| m.sub_cgroup(&s)).unwrap_err().to_string();
            assert!(e.starts_with("invalid --cgroup: ") && e.contains(says), "{args:?}: {e}");
        }

        // cgroup2-only: one hierarchy, an fd for CLONE_INTO_CGROUP.
        let f = fake(Mode::Unified, &[], Some("memory"));
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        let d = f.layout.hierarchies[0].mountpoint.join("c/s");
        write(&d, &[("cgroup.procs", "")]);
        let sub = m.sub_cgroup(&SubCgroup::parse(&["s"]).unwrap()).unwrap();
        let entry = sub.entry().unwrap();
        let st = nix::sys::stat::fstat(entry.clone_fd().unwrap()).unwrap();
        assert_eq!(st.st_ino, std::os::unix::fs::MetadataExt::ino(&fs::metadata(&d).unwrap()));
        let e = m.sub_cgroup(&SubCgroup::parse(&["memory:s"]).unwrap()).unwrap_err().to_string();
        assert!(e.contains("cgroup v2 has one hierarchy"), "{e}");
    }

    #[test]
    fn unified_mode_writes_v2_files_and_the_unified_map_last() {
        let f = fake(Mode::Unified, &[], Some("cpuset cpu memory pids"));
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        let dir = f.layout.hierarchies[0].mountpoint.join("c");
        write(
            &dir,
            &[
                ("cgroup.controllers", "cpuset cpu memory pids"),
                ("memory.max", "max"),
                ("memory.high", "max"),
                ("memory.swap.max", "max"),
                ("cpu.weight", "100"),
                ("cpu.max", "max 100000"),
                ("cpuset.cpus", ""),
                ("pids.max", "max"),
            ],
        );
        let r = resources(
            r#"{"memory":{"limit":2097152,"swap":2097152},"cpu":{"shares":2,"quota":-1,"cpus":"0"},"pids":{"limit":7},
                "unified":{"memory.high":"1048576","memory.max":"3145728"}}"#,
        );
        m.apply(&r).unwrap();
        assert_eq!(read(&dir, "memory.max"), "3145728", "unified wins");
        assert_eq!(read(&dir, "memory.high"), "1048576");
        assert_eq!(read(&dir, "memory.swap.max"), "0");
        assert_eq!(read(&dir, "cpu.weight"), "1");
        assert_eq!(read(&dir, "cpu.max"), "max");
        assert_eq!(read(&dir, "cpuset.cpus"), "0");
        assert_eq!(read(&dir, "pids.max"), "7");
        let e = m.apply(&resources(r#"{"unified":{"cgroup.procs":"1"}}"#)).unwrap_err();
        assert!(e.to_string().contains("managed by the runtime"), "{e}");
    }

    #[test]
    fn per_hierarchy_paths_and_mount_sources() {
        let f = fake(Mode::Hybrid, &["cpu,cpuacct", "memory", "name=systemd"], Some(""));
        let l = &f.layout;
        let own = "3:name=systemd:/\n2:memory:/machine/x\n1:cpu,cpuacct:/\n0::/\n";
        let path = l.resolve_path(Some("c1"), "c1", own).unwrap();
        let m = l.manager(&path).unwrap();
        let src = m.mount_sources();
        let got: Vec<_> =
            src.iter().map(|s| (s.name.as_str(), s.host_dir.strip_prefix(f._tmp.path()).unwrap().to_owned())).collect();
        assert_eq!(
            got,
            [
                ("cpu,cpuacct", PathBuf::from("cpu,cpuacct/c1")),
                ("memory", PathBuf::from("memory/machine/x/c1")),
                ("systemd", PathBuf::from("systemd/c1")),
                ("unified", PathBuf::from("unified/c1")),
            ]
        );
        assert_eq!(src[2].controllers, ["name=systemd"]);
        assert_eq!(src[3].version, Version::V2);
        assert!(src[3].controllers.is_empty());
        // A saved path naming a hierarchy this host lacks is refused.
        let saved: CgroupPath = serde_json::from_str(r#"{"path":"/c","per_hierarchy":{"blkio":"/x/c"}}"#).unwrap();
        assert!(l.manager(&saved).is_err());
        // On a cgroup2-only host the name is empty: the mount is the cgroup itself.
        let f = fake(Mode::Unified, &[], Some(""));
        let m = f.layout.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        assert_eq!(m.mount_sources()[0].name, "");
    }

    #[test]
    fn create_seeds_new_cpusets_and_rolls_back_on_failure() {
        let f = fake(Mode::Legacy, &["cpuset", "memory"], None);
        let l = &f.layout;
        // A real cpuset dir has the files at creation; a tmpfs dir does not,
        // so seeding (which reads them) fails, and everything made is undone.
        write(&l.hierarchies[0].mountpoint, &[("cpuset.cpus", "0-3"), ("cpuset.mems", "0")]);
        let mut m = l.manager(&CgroupPath::new("/a/b").unwrap()).unwrap();
        let e = m.create().unwrap_err();
        assert!(e.to_string().contains("cpuset.cpus"), "{e}");
        assert!(!l.hierarchies[0].mountpoint.join("a").exists());
        assert!(!l.hierarchies[1].mountpoint.join("a").exists());
        // With the directory and its (empty) files there, it is not "created", so not seeded...
        write(&l.hierarchies[0].mountpoint.join("a/b"), &[("cpuset.cpus", ""), ("cpuset.mems", "")]);
        write(&l.hierarchies[0].mountpoint.join("a"), &[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")]);
        m.create().unwrap();
        assert!(l.hierarchies[1].mountpoint.join("a/b").is_dir());
        assert_eq!(read(&l.hierarchies[0].mountpoint.join("a/b"), "cpuset.cpus"), "");
        // ...until a task is added (the fake cgroup.procs takes the pid).
        write(&l.hierarchies[0].mountpoint.join("a/b"), &[("cgroup.procs", "")]);
        write(&l.hierarchies[1].mountpoint.join("a/b"), &[("cgroup.procs", "")]);
        m.add_process(Pid::from_raw(4242)).unwrap();
        assert_eq!(read(&l.hierarchies[0].mountpoint.join("a/b"), "cpuset.cpus"), "0-1");
        assert_eq!(read(&l.hierarchies[1].mountpoint.join("a/b"), "cgroup.procs"), "4242");
    }

    #[test]
    fn create_refuses_a_cgroup_in_use_and_leaves_it_alone() {
        let f = fake(Mode::Legacy, &["memory", "pids"], None);
        let l = &f.layout;
        write(&l.hierarchies[1].mountpoint.join("c"), &[("cgroup.procs", "77\n")]);
        let mut m = l.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        let e = m.create().unwrap_err();
        assert!(e.to_string().contains("is in use by 1 process(es), e.g. 77"), "{e}");
        assert!(!l.hierarchies[0].mountpoint.join("c").exists(), "rolled back");
        assert_eq!(read(&l.hierarchies[1].mountpoint.join("c"), "cgroup.procs"), "77");
        // Empty: reused.
        write(&l.hierarchies[1].mountpoint.join("c"), &[("cgroup.procs", "")]);
        m.create().unwrap();
    }

    #[test]
    fn pids_come_from_one_hierarchy_and_destroy_of_nothing_is_ok() {
        let f = fake(Mode::Hybrid, &["cpu", "pids"], Some(""));
        let l = &f.layout;
        let m = l.manager(&CgroupPath::new("/c").unwrap()).unwrap();
        assert!(m.pids().unwrap().is_empty());
        m.destroy().unwrap();
        write(&l.hierarchies[1].mountpoint.join("c"), &[("cgroup.procs", "10\n11\n")]);
        write(&l.hierarchies[1].mountpoint.join("c/sub"), &[("cgroup.procs", "12\n")]);
        write(&l.hierarchies[0].mountpoint.join("c"), &[("cgroup.procs", "99\n")]);
        let pids: Vec<i32> = m.pids().unwrap().into_iter().map(Pid::as_raw).collect();
        assert_eq!(pids, [10, 11, 12]);
    }
}
