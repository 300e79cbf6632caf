//! The runtime binary under test.
//!
//! `ROCI_TEST_RUNTIME` names it (a path, or a bare name looked up in `PATH`). Without it the suite uses
//! the workspace's roci: `$CARGO_TARGET_DIR` or `<workspace>/target`, `release` before `debug`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Roci,
    Runc,
    Crun,
    Other,
}

#[derive(Debug)]
pub struct Runtime {
    pub path: PathBuf,
    pub kind: RuntimeKind,
    /// First line of `--version`.
    pub version: String,
}

impl Runtime {
    /// The reference implementation. Tests use this to mark a documented difference: roci behaves
    /// differently from runc on purpose, and the comment at the call site says how and why.
    pub fn is_runc(&self) -> bool {
        self.kind == RuntimeKind::Runc
    }
    pub fn is_roci(&self) -> bool {
        self.kind == RuntimeKind::Roci
    }
    pub fn is_crun(&self) -> bool {
        self.kind == RuntimeKind::Crun
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime under test, resolved once per test process.
pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        let path = resolve();
        let out = Command::new(&path)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", path.display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let version = text.lines().next().unwrap_or("").to_string();
        let lower = version.to_lowercase();
        let kind = if lower.starts_with("runc") {
            RuntimeKind::Runc
        } else if lower.starts_with("crun") {
            RuntimeKind::Crun
        } else if lower.starts_with("roci") || path.file_name().is_some_and(|n| n == "roci") {
            RuntimeKind::Roci
        } else {
            RuntimeKind::Other
        };
        eprintln!("roci-integration: runtime under test: {} ({version})", path.display());
        Runtime { path, kind, version }
    })
}

fn resolve() -> PathBuf {
    if let Some(p) = std::env::var_os("ROCI_TEST_RUNTIME").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.components().count() > 1 {
            assert!(p.exists(), "ROCI_TEST_RUNTIME={} does not exist", p.display());
            return std::fs::canonicalize(&p).unwrap_or(p);
        }
        return which(&p).unwrap_or_else(|| panic!("ROCI_TEST_RUNTIME={}: not found in PATH", p.display()));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut targets = Vec::new();
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        targets.push(if t.is_absolute() { t } else { workspace.join(t) });
    }
    targets.push(workspace.join("target"));
    for t in &targets {
        // `make build` links roci statically for the named host target
        // (target/<triple>/release/roci); a plain cargo build puts it in
        // target/release.
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(t)
            .into_iter()
            .flatten()
            .flatten()
            // Target triples: x86_64-unknown-linux-musl and the like.
            .filter(|e| e.file_name().to_string_lossy().contains("-linux-"))
            .map(|e| e.path().join("release/roci"))
            .collect();
        // The newest build wins (a target dir may hold an older build for another triple).
        candidates.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).and_then(|m| m.modified()).ok()));
        candidates.extend(["release", "debug"].map(|profile| t.join(profile).join("roci")));
        if let Some(p) = candidates.into_iter().find(|p| p.is_file()) {
            return p;
        }
    }
    panic!("no runtime to test: set ROCI_TEST_RUNTIME=/path/to/runtime or build roci (looked in {:?})", targets);
}

/// Look a bare program name up in `PATH`.
pub fn which(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}
