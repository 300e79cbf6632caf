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

/// Parse the resources of an `update`: `doc` is the `-r` document (the OCI
/// `linux.resources` object) as read from `source`, `flags` the single-value
/// options (`--memory` ...) as a JSON path below `linux.resources` and a
/// value; a flag wins over the document. Every error names the field
/// (`resources.memory.limit`), whatever the document holds: an array, a
/// string where an object belongs, a number out of range.
pub fn parse_resources(
    source: &Path,
    doc: Option<&[u8]>,
    flags: &[(&[&str], serde_json::Value)],
) -> std::result::Result<LinuxResources, crate::spec::Error> {
    use serde_json::Value;
    let parse_err = |field: String, message: String| crate::spec::Error::Parse { path: source.to_owned(), field, message };
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let mut value = match doc {
        Some(data) => serde_json::from_slice::<Value>(data).map_err(|e| parse_err("resources".into(), e.to_string()))?,
        None => Value::Object(Default::default()),
    };
    if value.is_null() {
        value = Value::Object(Default::default());
    }
    for (path, v) in flags {
        let mut cur = &mut value;
        let mut field = String::from("resources");
        for key in path.iter() {
            if cur.is_null() {
                *cur = Value::Object(Default::default());
            }
            let Value::Object(map) = cur else {
                return Err(parse_err(field, format!("expected an object, found {}", kind(cur))));
            };
            field.push('.');
            field.push_str(key);
            cur = map.entry(key.to_string()).or_insert(Value::Null);
        }
        *cur = v.clone();
    }
    if !value.is_object() {
        return Err(parse_err("resources".into(), format!("expected an object (linux.resources), found {}", kind(&value))));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "resources".to_string() } else { format!("resources.{path}") };
        parse_err(field, e.into_inner().to_string())
    })
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

    fn parse(doc: &str, flags: &[(&[&str], serde_json::Value)]) -> std::result::Result<LinuxResources, String> {
        parse_resources(Path::new("r.json"), Some(doc.as_bytes()), flags).map_err(|e| e.to_string())
    }

    /// Regression (issue 10): a flag's path through an array or a string panicked.
    #[test]
    fn update_resources_array_or_wrong_type_is_an_error_naming_the_field() {
        let mem: &[(&[&str], serde_json::Value)] = &[(&["memory", "limit"], 1024.into())];
        for (doc, flags, field) in [
            ("[]", &[][..], "r.json: resources: "),
            ("[]", mem, "r.json: resources: "),
            ("3", mem, "r.json: resources: "),
            (r#"{"memory": "x"}"#, mem, "r.json: resources.memory: "),
            (r#"{"memory": [1]}"#, mem, "r.json: resources.memory: "),
            (r#"{"memory": {"limit": "x"}}"#, &[][..], "r.json: resources.memory.limit: "),
            (r#"{"memory": {"limit": 1e400}}"#, &[][..], "r.json: resources: "),
            (r#"{"cpu": {"shares": -1}}"#, &[][..], "r.json: resources.cpu.shares: "),
        ] {
            let err = parse(doc, flags).unwrap_err();
            assert!(err.starts_with(&format!("parse {field}")), "{doc}: {err}");
        }
    }

    #[test]
    fn update_resources_flags_win_and_fill_in() {
        let r = parse(
            r#"{"memory": {"limit": 5, "reservation": 3}, "cpu": null}"#,
            &[(&["memory", "limit"], 1024.into()), (&["cpu", "quota"], 2000.into())],
        )
        .unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!((m.limit(), m.reservation()), (Some(1024), Some(3)));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(2000));
        let r = parse_resources(Path::new("-"), None, &[(&["pids", "limit"], 7.into())]).unwrap();
        assert_eq!(r.pids().as_ref().unwrap().limit(), 7);
    }

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
