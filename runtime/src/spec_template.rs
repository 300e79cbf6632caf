//! `roci spec`: write runc's default config.json (see libcontainer::template).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Write `config.json` into `bundle`, refusing to replace one.
pub fn write(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let data = serde_json::to_string_pretty(&libcontainer::template::config(rootless))?;
    std::fs::write(&path, data + "\n").with_context(|| format!("write {}", path.display()))
}
