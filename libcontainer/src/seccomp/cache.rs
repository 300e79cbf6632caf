//! Compiled filters cached by content hash, so `create` and `exec` of a
//! container with the same profile compile it once (crun does the same).
//!
//! An entry is a file `<state root>/CACHE_DIR/<key>`, where the key is the
//! SHA-256 of everything the program depends on: the profile as canonical
//! JSON (serde's serialisation of the parsed `linux.seccomp`, so spacing
//! and key order in config.json do not matter), the native architecture,
//! roci's version and a fingerprint of the compiler's own sources (so a
//! rebuilt compiler never reads an older one's programs). It is written to
//! a temp file and renamed into place, so a reader sees a whole entry or
//! none; it carries its own checksum, and anything that does not decode
//! (a torn write after a crash, a disk error, a format change) is compiled
//! again and replaced. Failing to read or write the cache is never an
//! error: it only costs the compilation.
//!
//! The directory is the runtime's state root (root's `/run/roci`, a tmpfs:
//! the cache starts empty at boot), made 0700; whoever could write there
//! could also rewrite the containers' state. It is bounded: storing an entry
//! beyond [`MAX_ENTRIES`] removes the entries stored longest ago, so a node
//! that sees many profiles holds a few MiB of them at the most, never a
//! growing pile.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use super::{arch, Error, Filter};
use crate::sys;

/// The cache's directory under the state root: a name no container id can
/// take (ids are letters, digits and `_+-.`).
pub const CACHE_DIR: &str = "seccomp:cache";

/// The most entries the cache keeps.
pub const MAX_ENTRIES: usize = 64;

const MAGIC: &[u8; 8] = b"rocibpf1";
const HEADER: usize = MAGIC.len() + 4 + 1 + 4;
const INSN: usize = 8;
const CHECKSUM: usize = 32;

/// FNV-1a over the compiler's sources, at build time.
const fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

const SOURCES: [&[u8]; 11] = [
    include_bytes!("mod.rs"),
    include_bytes!("compile.rs"),
    include_bytes!("bpf.rs"),
    include_bytes!("arch.rs"),
    include_bytes!("tables/mod.rs"),
    include_bytes!("tables/x86_64.rs"),
    include_bytes!("tables/i386.rs"),
    include_bytes!("tables/x32.rs"),
    include_bytes!("tables/aarch64.rs"),
    include_bytes!("tables/arm.rs"),
    include_bytes!("tables/riscv64.rs"),
];

const SOURCE_ID: u64 = {
    let mut h = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < SOURCES.len() {
        h = fnv1a(h, SOURCES[i]);
        i += 1;
    }
    h
};

/// The cache key of `seccomp` (hex SHA-256).
pub(super) fn key(seccomp: &LinuxSeccomp, arch: &str) -> String {
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0]);
    h.update(SOURCE_ID.to_le_bytes());
    h.update(arch.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(seccomp).expect("a parsed profile serializes"));
    hex::encode(h.finalize())
}

/// `magic, flags (u32 LE), listener (u8), count (u32 LE), count × (code u16,
/// jt u8, jf u8, k u32) LE, SHA-256 of all before`.
pub(super) fn encode(f: &Filter) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + f.program.len() * INSN + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&f.flags.to_le_bytes());
    out.push(u8::from(f.listener));
    out.extend_from_slice(&(f.program.len() as u32).to_le_bytes());
    for i in &f.program {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The filter in `data`, or why it is not a whole, intact entry.
pub(super) fn decode(data: &[u8]) -> Result<Filter, &'static str> {
    if data.len() < HEADER + CHECKSUM {
        return Err("too short");
    }
    let (body, sum) = data.split_at(data.len() - CHECKSUM);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch");
    }
    if &body[..MAGIC.len()] != MAGIC {
        return Err("not a roci filter");
    }
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    let flags = u32_at(8);
    let listener = match body[12] {
        0 => false,
        1 => true,
        _ => return Err("bad listener byte"),
    };
    let count = u32_at(13) as usize;
    if count == 0 || count > super::bpf::MAX_INSNS || body.len() != HEADER + count * INSN {
        return Err("bad instruction count");
    }
    let program = body[HEADER..]
        .chunks_exact(INSN)
        .map(|c| sys::seccomp::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Ok(Filter { program, flags, listener })
}

/// [`super::compile`], through the cache in `root`/[`CACHE_DIR`].
pub fn compile_cached(seccomp: &LinuxSeccomp, root: &Path) -> Result<Filter, Error> {
    let arch = arch::Arch::native().ok_or(Error::UnsupportedArch)?;
    let dir = root.join(CACHE_DIR);
    let key = key(seccomp, arch.name());
    let path = dir.join(&key);
    match std::fs::read(&path) {
        Ok(data) => match decode(&data) {
            Ok(f) => {
                tracing::debug!(path = %path.display(), instructions = f.program.len(), "seccomp: compiled filter from the cache");
                return Ok(f);
            }
            Err(why) => tracing::debug!(path = %path.display(), why, "seccomp: cache entry unusable, compiling again"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(path = %path.display(), error = %e, "seccomp: cache entry unreadable, compiling again"),
    }
    let filter = super::compile(seccomp)?;
    match store(&dir, &key, &encode(&filter)) {
        Ok(_) => evict(&dir, &key),
        Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "seccomp: could not store the compiled filter"),
    }
    Ok(filter)
}

/// Keep at most [`MAX_ENTRIES`] entries in `dir`: remove those stored
/// longest ago (by mtime; a hit does not renew an entry), never `keep`,
/// the one just stored. Only on a miss, so a hit pays nothing for it.
fn evict(dir: &Path, keep: &str) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| !n.starts_with('.') && n != keep))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() < MAX_ENTRIES {
        return;
    }
    entries.sort();
    for (_, path) in &entries[..=entries.len() - MAX_ENTRIES] {
        tracing::debug!(path = %path.display(), "seccomp: cache full, removing its oldest entry");
        let _ = std::fs::remove_file(path);
    }
}

/// Write `data` as the entry `key` in `dir`: a temp file renamed into place.
fn store(dir: &Path, key: &str, data: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        let dest = dir.join(key);
        std::fs::rename(&tmp, &dest)?;
        Ok(dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    const DENY_MKDIR: &str =
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#;

    fn same(a: &Filter, b: &Filter) -> bool {
        a.program == b.program && a.flags == b.flags && a.listener == b.listener
    }

    #[test]
    fn seccomp_cache_encoding_round_trips() {
        let f = super::super::compile(&profile(DENY_MKDIR)).unwrap();
        assert!(same(&decode(&encode(&f)).unwrap(), &f));
        let docker = super::super::tests::docker_to_oci("amd64", &["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        let f = super::super::compile::compile_for(&docker, arch::Arch::X86_64).unwrap();
        assert!(same(&decode(&encode(&f)).unwrap(), &f));
    }

    #[test]
    fn seccomp_cache_miss_then_hit() {
        let root = tempfile::tempdir().unwrap();
        let p = profile(DENY_MKDIR);
        let first = compile_cached(&p, root.path()).unwrap();
        let entry = root.path().join(CACHE_DIR).join(key(&p, arch::Arch::native().unwrap().name()));
        let stored = std::fs::read(&entry).expect("a miss stores the entry");
        assert!(same(&decode(&stored).unwrap(), &first));
        // A hit reads the entry: make it recognisably different (still valid) and see it come back.
        let mut marked = first.clone();
        marked.flags |= super::super::compile::FLAG_LOG;
        std::fs::write(&entry, encode(&marked)).unwrap();
        let hit = compile_cached(&p, root.path()).unwrap();
        assert!(same(&hit, &marked), "the second compile came from the cache");
        let left: Vec<_> = std::fs::read_dir(root.path().join(CACHE_DIR)).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "one entry, no temp files: {left:?}");
    }

    #[test]
    fn seccomp_cache_corrupt_entry_is_recompiled() {
        let root = tempfile::tempdir().unwrap();
        let p = profile(DENY_MKDIR);
        let good = compile_cached(&p, root.path()).unwrap();
        let entry = root.path().join(CACHE_DIR).join(key(&p, arch::Arch::native().unwrap().name()));
        let data = std::fs::read(&entry).unwrap();
        for bad in [
            {
                let mut d = data.clone();
                d[HEADER + 3] ^= 0x40; // one instruction bit
                d
            },
            data[..data.len() / 2].to_vec(), // torn
            Vec::new(),
            b"garbage".to_vec(),
        ] {
            assert!(decode(&bad).is_err());
            std::fs::write(&entry, &bad).unwrap();
            let f = compile_cached(&p, root.path()).unwrap();
            assert!(same(&f, &good), "a corrupt entry is compiled again");
            assert!(same(&decode(&std::fs::read(&entry).unwrap()).unwrap(), &good), "and replaced");
        }
        // An unreadable entry (a directory in its place) is compiled too, and left alone.
        std::fs::remove_file(&entry).unwrap();
        std::fs::create_dir(&entry).unwrap();
        assert!(same(&compile_cached(&p, root.path()).unwrap(), &good));
    }

    #[test]
    fn seccomp_cache_key_follows_the_profile_not_its_spelling() {
        let arch = "x86_64";
        let a = profile(DENY_MKDIR);
        let spaced = profile(
            r#"{ "syscalls": [ {"action": "SCMP_ACT_ERRNO", "names": ["mkdir", "mkdirat"]} ], "defaultAction": "SCMP_ACT_ALLOW" }"#,
        );
        assert_eq!(key(&a, arch), key(&spaced, arch), "same profile, other spelling");
        let other = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#);
        assert_ne!(key(&a, arch), key(&other, arch));
        let errno = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        );
        assert_ne!(key(&a, arch), key(&errno, arch));
        assert_ne!(key(&a, "x86_64"), key(&a, "aarch64"));
    }

    #[test]
    fn seccomp_cache_is_bounded() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(CACHE_DIR);
        for errno in 1..=(MAX_ENTRIES as u32 + 6) {
            let p = profile(&format!(
                r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":{errno}}}]}}"#
            ));
            compile_cached(&p, root.path()).unwrap();
            let n = std::fs::read_dir(&dir).unwrap().count();
            assert!(n <= MAX_ENTRIES, "{n} entries after {errno} profiles");
            assert!(dir.join(key(&p, arch::Arch::native().unwrap().name())).exists(), "the newest entry was kept");
        }
    }

    #[test]
    fn seccomp_cache_bad_profile_still_fails() {
        let root = tempfile::tempdir().unwrap();
        let bad = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_KILL","errnoRet":1}]}"#,
        );
        assert!(compile_cached(&bad, root.path()).is_err());
        assert!(
            !root.path().join(CACHE_DIR).exists() || std::fs::read_dir(root.path().join(CACHE_DIR)).unwrap().next().is_none()
        );
    }
}
