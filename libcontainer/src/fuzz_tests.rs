//! Structure-aware fuzzing of the documents a user hands roci: a bundle's
//! `config.json` ([`spec::parse`] + [`spec::validate`], then what `create`
//! computes from it before touching the kernel: the seccomp program and the
//! cgroup checks) and the resources of `update -r` ([`parse_resources`] +
//! the cgroup checks).
//!
//! A proptest driver run as ordinary unit tests, so `make test` runs it: a
//! valid document is mutated at random places (a value replaced by one of
//! another type, a huge or negative number, deep nesting, unicode; a key
//! removed; a key added), and each result must give `Ok` or an error that
//! names a field, never a panic. The number of cases is bounded (128 per
//! target; `PROPTEST_CASES` raises it for a longer run). A case that fails
//! is shrunk by proptest and becomes a named regression test below.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{json, Value};

use crate::container::update::parse_resources;
use crate::spec;

/// One step into a JSON document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `process.rlimits[0].type`, as serde_path_to_error prints paths.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                here.push(Step::Key(k.clone()));
                paths(c, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                here.push(Step::Index(i));
                paths(c, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(Value),
    Remove,
    /// Add a key (one the spec knows, or any) to the object there.
    Insert(String, Value),
}

/// Leaves: every JSON type, with the values parsers trip on.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(i32::MIN as i64),
            Just(u32::MAX as i64 + 1),
            any::<i64>()
        ]
        .prop_map(Value::from),
        prop_oneof![Just(u64::MAX), Just(1u64 << 63), any::<u64>()].prop_map(Value::from),
        prop_oneof![Just(1e308), Just(-1e308), Just(0.5), Just(-0.0), any::<f64>()]
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(String::new()),
            Just("/".to_string()),
            Just("..".to_string()),
            Just("/../../etc".to_string()),
            Just("a\0b".to_string()),
            Just("\u{1F600}\u{202E}é".to_string()),
            Just("x".repeat(5000)),
            Just("RLIMIT_NOFILE".to_string()),
            Just("SCMP_ACT_ERRNO".to_string()),
            Just("mount".to_string()),
            Just("user".to_string()),
            "\\PC{0,12}",
        ]
        .prop_map(Value::from),
    ]
}

/// Any JSON value, nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("path".to_string()),
                    Just("limit".to_string()),
                    Just("size".to_string()),
                    "[a-zA-Z]{1,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value nested `depth` arrays or objects deep.
fn deep(depth: usize, objects: bool) -> Value {
    let mut v = Value::from(1);
    for _ in 0..depth {
        v = if objects { json!({ "a": v }) } else { json!([v]) };
    }
    v
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => value().prop_map(Edit::Replace),
        1 => (1usize..300, any::<bool>()).prop_map(|(d, o)| Edit::Replace(deep(d, o))),
        2 => Just(Edit::Remove),
        2 => (
            prop_oneof![
                Just("uidMappings".to_string()),
                Just("gidMappings".to_string()),
                Just("seccomp".to_string()),
                Just("resources".to_string()),
                Just("hooks".to_string()),
                Just("timeOffsets".to_string()),
                Just("consoleSize".to_string()),
                Just("personality".to_string()),
                Just("options".to_string()),
                "[a-zA-Z]{1,10}"
            ],
            value()
        )
            .prop_map(|(k, v)| Edit::Insert(k, v)),
    ]
}

/// Up to four edits, each at a place chosen among the document's paths.
fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, Edit)>> {
    prop::collection::vec((any::<prop::sample::Index>(), edit()), 1..5)
}

/// Apply `edits` to `doc`; returns the paths edited.
fn mutate(doc: &mut Value, edits: &[(prop::sample::Index, Edit)]) -> Vec<Vec<Step>> {
    let mut touched = Vec::new();
    for (idx, e) in edits {
        let mut all = Vec::new();
        paths(doc, &mut Vec::new(), &mut all);
        let path = all[idx.index(all.len())].clone();
        match e {
            Edit::Replace(v) => {
                if let Some(slot) = at(doc, &path) {
                    *slot = v.clone();
                }
            }
            Edit::Remove => {
                if let Some((last, parent)) = path.split_last() {
                    match (last, at(doc, parent)) {
                        (Step::Key(k), Some(Value::Object(m))) => {
                            m.remove(k);
                        }
                        (Step::Index(i), Some(Value::Array(a))) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            Edit::Insert(k, v) => {
                if let Some(Value::Object(m)) = at(doc, &path) {
                    m.insert(k.clone(), v.clone());
                    let mut p = path.clone();
                    p.push(Step::Key(k.clone()));
                    touched.push(p);
                    continue;
                }
            }
        }
        touched.push(path);
    }
    touched
}

/// A parse error's field must be on the way to, or below, an edited place
/// (or the whole document, "config"/"resources", when the edit was at the
/// top or emptied it).
fn field_matches_an_edit(field: &str, top: &str, touched: &[Vec<Step>]) -> bool {
    if field == top {
        return true;
    }
    let field = field.strip_prefix(&format!("{top}.")).unwrap_or(field);
    touched.iter().any(|p| {
        let p = render(p);
        p.starts_with(field) || field.starts_with(&p) || p.is_empty()
    })
}

/// A config with most sections present, so edits reach them all.
fn rich_config() -> Value {
    let mut c = crate::template::config(false);
    c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                                     {"type": "RLIMIT_NPROC", "hard": 100, "soft": 10}]);
    c["process"]["consoleSize"] = json!({"height": 24, "width": 80});
    c["process"]["user"] = json!({"uid": 0, "gid": 0, "umask": 18, "additionalGids": [1, 2]});
    c["process"]["oomScoreAdj"] = json!(100);
    c["process"]["terminal"] = json!(false);
    c["hooks"] = json!({"prestart": [{"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}],
                        "createRuntime": [{"path": "/bin/true"}], "poststop": [{"path": "/bin/true"}]});
    c["annotations"] = json!({"a": "b"});
    c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": "/tmp",
        "options": ["rbind", "ro"], "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}]}));
    let linux = &mut c["linux"];
    linux["sysctl"] = json!({"net.ipv4.ip_forward": "0", "kernel.shmmax": "1000000"});
    linux["devices"] =
        json!([{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]);
    linux["resources"] = resources_doc();
    linux["cgroupsPath"] = json!("/fuzz/c1");
    linux["rootfsPropagation"] = json!("rslave");
    linux["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["mkdir", "chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
                     {"names": ["clone"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 2114060288, "valueTwo": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]}]});
    c
}

fn resources_doc() -> Value {
    json!({
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728, "swappiness": 10, "disableOOMKiller": false},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "realtimeRuntime": 0, "realtimePeriod": 0,
                "cpus": "0", "mems": "0", "idle": 0},
        "pids": {"limit": 32},
        "blockIO": {"weight": 100, "leafWeight": 10,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"memory.high": "max"}
    })
}

fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(cases),
        // Failures become named tests below; no files written into the source tree.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// The bundle every config case validates against: a directory with
/// `rootfs/`, one per test thread, removed when the test's thread ends (a
/// `static` would never be dropped and would leave it in the temp dir).
fn bundle() -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = {
            let d = tempfile::tempdir().unwrap();
            std::fs::create_dir(d.path().join("rootfs")).unwrap();
            d
        };
    }
    DIR.with(|d| d.path().to_path_buf())
}

/// Everything roci does with a config before the kernel: parse, validate,
/// compile the seccomp profile, check the resources. `Err` is the error's
/// text; it must name a field.
fn check_config(data: &[u8], touched: &[Vec<Step>]) -> Result<(), String> {
    let path = bundle().join("config.json");
    let spec = match spec::parse(&path, data) {
        Ok(s) => s,
        Err(spec::Error::Parse { field, message, .. }) => {
            if !field_matches_an_edit(&field, "config", touched) {
                return Err(format!("parse error names {field:?}, not an edited field: {message}"));
            }
            return Ok(());
        }
        Err(e) => return Err(format!("parse: not a field error: {e}")),
    };
    match spec::validate(&path, &bundle(), &spec) {
        Ok(_) => {}
        Err(spec::Error::Invalid { field, reason, .. }) => {
            if field.is_empty() {
                return Err(format!("validate: no field: {reason}"));
            }
            return Ok(());
        }
        Err(e) => return Err(format!("validate: not a field error: {e}")),
    }
    let linux = spec.linux().as_ref().expect("validated");
    let process = spec.process().as_ref().expect("validated");
    // What create computes from the config before it makes anything: each
    // may refuse (with the field in its error), none may panic.
    let _ = crate::caps::Sets::new(process.capabilities().as_ref());
    if let Some(p) = linux.cgroups_path().as_ref().and_then(|p| p.to_str()).filter(|p| p.starts_with('/')) {
        let _ = crate::cgroups::CgroupPath::new(p);
    }
    let rules = crate::cgroups::device_rules(
        linux.resources().as_ref().and_then(|r| r.devices().as_deref()).unwrap_or_default(),
        linux.devices().as_deref().unwrap_or_default(),
    );
    if let Ok(rules) = rules {
        let _ = crate::cgroups::devices::Emulator::from_rules(&rules);
    }
    if let Some(s) = linux.seccomp() {
        // An error is fine (it names the syscall or field); a panic is not.
        let _ = crate::seccomp::compile(s);
    }
    if let Some(r) = linux.resources() {
        if let Err(e) = crate::cgroups::validate_resources(r) {
            let text = e.to_string();
            if !text.contains("linux.resources") {
                return Err(format!("resources check does not name the field: {text}"));
            }
        }
    }
    Ok(())
}

/// `update -r`: parse the document and the flags, then check the values.
fn check_resources(data: &[u8], flags: &[(&[&str], Value)], touched: &[Vec<Step>]) -> Result<(), String> {
    match parse_resources(Path::new("r.json"), Some(data), flags) {
        Ok(r) => {
            if let Err(e) = crate::cgroups::validate_resources(&r) {
                let text = e.to_string();
                if !text.contains("linux.resources") {
                    return Err(format!("resources check does not name the field: {text}"));
                }
            }
            Ok(())
        }
        Err(spec::Error::Parse { field, message, .. }) => {
            // A flag's value may be the culprit too: its path is edited as well.
            let mut all = touched.to_vec();
            all.extend(flags.iter().map(|(p, _)| p.iter().map(|k| Step::Key(k.to_string())).collect()));
            if !field.starts_with("resources") || !field_matches_an_edit(&field, "resources", &all) {
                return Err(format!("error names {field:?}, not an edited field: {message}"));
            }
            Ok(())
        }
        Err(e) => Err(format!("not a field error: {e}")),
    }
}

const FLAG_PATHS: &[&[&str]] = &[
    &["memory", "limit"],
    &["memory", "swap"],
    &["cpu", "quota"],
    &["cpu", "shares"],
    &["cpu", "cpus"],
    &["pids", "limit"],
    &["blockIO", "weight"],
];

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn fuzz_config_json(edits in edits()) {
        let mut doc = rich_config();
        let touched = mutate(&mut doc, &edits);
        let data = serde_json::to_vec(&doc).unwrap();
        if let Err(e) = check_config(&data, &touched) {
            panic!("{e}\nconfig: {}", String::from_utf8_lossy(&data));
        }
    }

    #[test]
    fn fuzz_update_resources(edits in edits(), flags in prop::collection::vec((0..FLAG_PATHS.len(), leaf()), 0..3)) {
        let mut doc = resources_doc();
        let touched = mutate(&mut doc, &edits);
        let data = serde_json::to_vec(&doc).unwrap();
        let flags: Vec<(&[&str], Value)> = flags.into_iter().map(|(i, v)| (FLAG_PATHS[i], v)).collect();
        if let Err(e) = check_resources(&data, &flags, &touched) {
            panic!("{e}\nresources: {}\nflags: {flags:?}", String::from_utf8_lossy(&data));
        }
    }

    /// Bytes that are not JSON, or JSON cut short: an error naming the file's top.
    #[test]
    fn fuzz_config_json_bytes(cut in any::<prop::sample::Index>(), junk in prop::collection::vec(any::<u8>(), 0..8)) {
        let full = serde_json::to_vec(&rich_config()).unwrap();
        let mut data = full[..cut.index(full.len())].to_vec();
        data.extend(junk);
        let path = bundle().join("config.json");
        if let Err(e) = spec::parse(&path, &data) {
            prop_assert!(matches!(e, spec::Error::Parse { .. }), "{e}");
        }
        if let Err(e) = parse_resources(Path::new("r.json"), Some(&data), &[]) {
            prop_assert!(matches!(&e, spec::Error::Parse { field, .. } if field.starts_with("resources")), "{e}");
        }
    }
}

/// The documents themselves are valid: the fuzz starts from a config and
/// resources that pass, so each failure is the edit's.
#[test]
fn fuzz_bases_are_valid() {
    check_config(&serde_json::to_vec(&rich_config()).unwrap(), &[]).unwrap();
    let path = bundle().join("config.json");
    let spec = spec::parse(&path, &serde_json::to_vec(&rich_config()).unwrap()).unwrap();
    spec::validate(&path, &bundle(), &spec).unwrap();
    let r = parse_resources(Path::new("r.json"), Some(&serde_json::to_vec(&resources_doc()).unwrap()), &[]).unwrap();
    crate::cgroups::validate_resources(&r).unwrap();
}
