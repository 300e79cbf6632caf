//! `config.json` builder.
//!
//! The default is `runc spec`'s output with three changes a test suite needs: no terminal, a writable root
//! (tests write their results inside), and `ociVersion` "1.0.2" (crun rejects 1.2+). Builder methods cover
//! the fields tests tweak; [`Spec::set`] and [`Spec::remove`] reach anything else by JSON pointer.

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Spec(pub Value);

impl Default for Spec {
    fn default() -> Self {
        Spec::new()
    }
}

/// The capabilities `runc spec` grants.
pub const DEFAULT_CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Spec {
    pub fn new() -> Self {
        let caps = json!(DEFAULT_CAPS);
        Spec(json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": [DEFAULT_PATH, "TERM=xterm"],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "roci-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
                ],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        }))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.0).expect("serialize spec")
    }

    /// Get a value by JSON pointer (`/process/args`).
    pub fn get(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// Set a value by JSON pointer, creating intermediate objects.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        assert!(pointer.starts_with('/'), "JSON pointer must start with '/': {pointer}");
        let mut cur = &mut self.0;
        let parts: Vec<&str> = pointer[1..].split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if cur.is_null() {
                *cur = json!({});
            }
            cur = match cur {
                Value::Object(map) => {
                    if last {
                        map.insert(part.to_string(), value);
                        return self;
                    }
                    map.entry(part.to_string()).or_insert(Value::Null)
                }
                Value::Array(arr) => {
                    let idx: usize = part.parse().unwrap_or_else(|_| panic!("bad array index {part} in {pointer}"));
                    if last {
                        arr[idx] = value;
                        return self;
                    }
                    &mut arr[idx]
                }
                other => panic!("cannot descend into {other} at {part} of {pointer}"),
            };
        }
        self
    }

    /// Remove a value by JSON pointer (no-op when absent).
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        match self.0.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.remove(key);
            }
            Some(Value::Array(a)) => {
                if let Ok(i) = key.parse::<usize>() {
                    if i < a.len() {
                        a.remove(i);
                    }
                }
            }
            _ => {}
        }
        self
    }

    fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        if !self.get(pointer).is_some_and(Value::is_array) {
            self.set(pointer, json!([]));
        }
        self.0.pointer_mut(pointer).and_then(Value::as_array_mut).expect("array").push(value);
        self
    }

    // --- process ---

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// `sh -c SCRIPT`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    pub fn env(&mut self, env: &[&str]) -> &mut Self {
        self.set("/process/env", json!(env))
    }

    pub fn add_env(&mut self, kv: &str) -> &mut Self {
        self.push("/process/env", json!(kv))
    }

    pub fn cwd(&mut self, cwd: &str) -> &mut Self {
        self.set("/process/cwd", json!(cwd))
    }

    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.set("/process/terminal", json!(on))
    }

    pub fn console_size(&mut self, height: u32, width: u32) -> &mut Self {
        self.set("/process/consoleSize", json!({"height": height, "width": width}))
    }

    pub fn user(&mut self, uid: u32, gid: u32, additional_gids: &[u32]) -> &mut Self {
        let mut u = json!({"uid": uid, "gid": gid});
        if !additional_gids.is_empty() {
            u["additionalGids"] = json!(additional_gids);
        }
        self.set("/process/user", u)
    }

    pub fn umask(&mut self, umask: u32) -> &mut Self {
        self.set("/process/user/umask", json!(umask))
    }

    /// Set all five capability sets. `ambient` is separate because it must be a subset of
    /// permitted and inheritable.
    pub fn capabilities(
        &mut self,
        bounding: &[&str],
        effective: &[&str],
        permitted: &[&str],
        inheritable: &[&str],
        ambient: &[&str],
    ) -> &mut Self {
        self.set(
            "/process/capabilities",
            json!({"bounding": bounding, "effective": effective, "permitted": permitted,
                   "inheritable": inheritable, "ambient": ambient}),
        )
    }

    pub fn no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.set("/process/noNewPrivileges", json!(on))
    }

    pub fn rlimits(&mut self, rlimits: Value) -> &mut Self {
        self.set("/process/rlimits", rlimits)
    }

    pub fn oom_score_adj(&mut self, v: i32) -> &mut Self {
        self.set("/process/oomScoreAdj", json!(v))
    }

    // --- root, hostname, annotations ---

    pub fn root_readonly(&mut self, ro: bool) -> &mut Self {
        self.set("/root/readonly", json!(ro))
    }

    pub fn root_path(&mut self, path: &str) -> &mut Self {
        self.set("/root/path", json!(path))
    }

    pub fn hostname(&mut self, name: &str) -> &mut Self {
        self.set("/hostname", json!(name))
    }

    pub fn annotation(&mut self, key: &str, value: &str) -> &mut Self {
        if !self.get("/annotations").is_some_and(Value::is_object) {
            self.set("/annotations", json!({}));
        }
        self.0["annotations"][key] = json!(value);
        self
    }

    // --- mounts ---

    pub fn add_mount(&mut self, destination: &str, typ: &str, source: &str, options: &[&str]) -> &mut Self {
        self.push("/mounts", json!({"destination": destination, "type": typ, "source": source, "options": options}))
    }

    /// A bind mount of a host path (`rbind` plus `ro` when asked).
    pub fn bind(&mut self, host: &std::path::Path, destination: &str, readonly: bool) -> &mut Self {
        let mut opts = vec!["rbind"];
        if readonly {
            opts.push("ro");
        }
        self.add_mount(destination, "bind", &host.to_string_lossy(), &opts)
    }

    /// Drop every mount whose destination is `destination`.
    pub fn remove_mount(&mut self, destination: &str) -> &mut Self {
        if let Some(Value::Array(m)) = self.0.get_mut("mounts") {
            m.retain(|e| e["destination"] != destination);
        }
        self
    }

    // --- linux ---

    pub fn namespaces(&mut self) -> Vec<String> {
        self.get("/linux/namespaces")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|n| n["type"].as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// Add a namespace (or replace the entry of that type), optionally joining `path`.
    pub fn namespace(&mut self, typ: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(typ);
        let mut ns = json!({"type": typ});
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        self.push("/linux/namespaces", ns)
    }

    pub fn remove_namespace(&mut self, typ: &str) -> &mut Self {
        if let Some(Value::Array(a)) = self.0.pointer_mut("/linux/namespaces") {
            a.retain(|n| n["type"] != typ);
        }
        self
    }

    pub fn resources(&mut self, key: &str, value: Value) -> &mut Self {
        self.set(&format!("/linux/resources/{key}"), value)
    }

    pub fn cgroups_path(&mut self, path: &str) -> &mut Self {
        self.set("/linux/cgroupsPath", json!(path))
    }

    /// Add a hook: `kind` is prestart, createRuntime, createContainer, startContainer, poststart or poststop.
    pub fn hook(&mut self, kind: &str, hook: Value) -> &mut Self {
        self.push(&format!("/hooks/{kind}"), hook)
    }

    pub fn masked_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/maskedPaths", json!(paths))
    }

    pub fn readonly_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/readonlyPaths", json!(paths))
    }

    /// A `linux.devices` entry (created in the container's /dev), plus the matching cgroup allow rule.
    pub fn device(&mut self, path: &str, typ: &str, major: i64, minor: i64, mode: u32) -> &mut Self {
        self.push(
            "/linux/devices",
            json!({"path": path, "type": typ, "major": major, "minor": minor, "fileMode": mode, "uid": 0, "gid": 0}),
        );
        self.push(
            "/linux/resources/devices",
            json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": "rwm"}),
        )
    }

    pub fn sysctl(&mut self, key: &str, value: &str) -> &mut Self {
        if !self.get("/linux/sysctl").is_some_and(Value::is_object) {
            self.set("/linux/sysctl", json!({}));
        }
        self.0["linux"]["sysctl"][key] = json!(value);
        self
    }

    pub fn rootfs_propagation(&mut self, p: &str) -> &mut Self {
        self.set("/linux/rootfsPropagation", json!(p))
    }
}
