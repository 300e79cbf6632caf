//! The container's processes: the init (a clone of the runtime that sets
//! itself up and then executes the user's program) and the channel it
//! talks to the runtime over.

pub mod channel;
pub mod init;

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The program to execute, resolved as `execvp` would, but against the
/// container's `PATH`, from inside the container and as its user.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

/// `PATH` used when the container's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Find `name` as `execvp` does; errors are worded as runc's, which
/// clients match on ("executable file not found in $PATH").
pub fn lookup(name: &str, path_var: Option<&str>) -> Result<PathBuf, String> {
    if name.contains('/') {
        return match check_executable(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err(e) => Err(format!("exec: {name:?}: {e}")),
        };
    }
    let dirs = path_var.unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in dirs.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => denied = Some(candidate),
            Err(_) => {}
        }
    }
    match denied {
        Some(p) => Err(format!("exec: {name:?}: stat {}: permission denied", p.display())),
        None => Err(format!("exec: {name:?}: executable file not found in $PATH")),
    }
}

fn check_executable(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p)?;
    if meta.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "is a directory"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    }
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_in_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("prog");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(lookup("prog", Some(&path)).unwrap(), bin);
        let err = lookup("nope", Some(&path)).unwrap_err();
        assert!(err.contains("executable file not found in $PATH"), "{err}");
        assert_eq!(lookup(bin.to_str().unwrap(), None).unwrap(), bin);
        assert!(lookup("/nonexistent/x", None).is_err());
    }

    #[test]
    fn not_executable() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        std::fs::write(&f, "").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert!(lookup(f.to_str().unwrap(), None).is_err());
    }
}
