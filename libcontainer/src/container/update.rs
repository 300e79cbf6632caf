//! `update`: change a container's cgroup limits while it runs.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::{status, Error, Result, Status};
use crate::state::Dir;

/// Apply `resources` (absent fields stay as they are) and record them in
/// the saved config, so later commands see the new limits.
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<()> {
    let dir = Dir::open(root, id)?;
    let saved = dir.load()?;
    if status(&dir.path, saved.as_ref()) == Status::Stopped {
        return Err(Error::Status(format!("cannot update container {id}: it is stopped")));
    }
    let mut saved = saved.ok_or_else(|| Error::Status(format!("container {id} is still being created")))?;
    super::need_cgroup(&saved, "update")?.apply(resources)?;
    let mut spec = saved.spec()?;
    let merged = merge(spec.linux().as_ref().and_then(|l| l.resources().clone()), resources);
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(Some(merged));
    }
    saved.set_spec(&spec);
    dir.save(&saved)?;
    Ok(())
}

/// `new` over `old`, field by field, as JSON objects (a set field replaces).
fn merge(old: Option<LinuxResources>, new: &LinuxResources) -> LinuxResources {
    fn merge_value(a: &mut serde_json::Value, b: &serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        continue;
                    }
                    merge_value(a.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b.clone(),
        }
    }
    let mut value = serde_json::to_value(old.unwrap_or_default()).unwrap_or_default();
    merge_value(&mut value, &serde_json::to_value(new).unwrap_or_default());
    serde_json::from_value(value).unwrap_or_else(|_| new.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_unset_fields() {
        let old: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":100,"reservation":50},"pids":{"limit":10}}"#).unwrap();
        let new: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":200}}"#).unwrap();
        let m = serde_json::to_value(merge(Some(old), &new)).unwrap();
        assert_eq!(m["memory"]["limit"], 200);
        assert_eq!(m["memory"]["reservation"], 50);
        assert_eq!(m["pids"]["limit"], 10);
    }
}
