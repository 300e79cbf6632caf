//! Seccomp, AppArmor and SELinux, as containerd 1.6's CRI plugin decides them
//! (`generateSeccompSpecOpts`, `generateApparmorSpecOpts`, `generateSecurityProfile`).
//!
//! **Seccomp.** The `seccomp` profile, else the legacy `seccomp_profile_path` string
//! (`runtime/default` and `docker/default` are RuntimeDefault, `unconfined`, `localhost/<path>`;
//! anything else is refused; empty means none asked). A privileged container gets none.
//! Unconfined and "none asked" give no filter (as containerd: kubelet asks for RuntimeDefault
//! itself when the pod wants it). RuntimeDefault is containerd's default profile: the data in
//! `seccomp_default.json` (extracted from containerd 1.6's `contrib/seccomp/seccomp_default.go`),
//! with its rules by architecture, by kernel (ptrace from 4.8) and by the bounding capabilities
//! of the process (CAP_SYS_ADMIN allows mount, unshare, ...; without it `clone` may not create
//! namespaces and `clone3` fails with ENOSYS so that libcs fall back to `clone`). Localhost is a
//! profile file in the OCI `linux.seccomp` format; unlike containerd, which opens whatever path
//! kubelet sends, the file must lie inside the directory the daemon allows (kubelet's
//! `<root-dir>/seccomp`), checked after symlinks are resolved, so a pod cannot make roci-cri read
//! an arbitrary host file. On a kernel without seccomp, anything but Unconfined is refused.
//!
//! **AppArmor.** The `apparmor` profile, else the legacy `apparmor_profile` string. On a host
//! without AppArmor (this project's VM), anything but Unconfined or nothing is refused, as
//! containerd refuses it ("apparmor is not supported"). On an AppArmor host, nothing asked means
//! RuntimeDefault (kubernetes#51746); RuntimeDefault is no profile for a privileged container,
//! else the profile named by [`HostFacts::apparmor_default_profile`]: roci-cri's own
//! `roci-cri-default`, loaded at startup (`crate::apparmor`), where containerd loads its
//! `cri-containerd.apparmor.d`; with `apparmor_default_profile = ""` RuntimeDefault is refused
//! rather than run unconfined. Localhost must name a loaded profile
//! (`/sys/kernel/security/apparmor/profiles`).
//!
//! **SELinux.** The level format is checked as containerd does. Without SELinux on the host
//! (this project's VM) containerd's label library returns no labels and `selinux_relabel` does
//! nothing: so here, the options are accepted and have no effect. On an SELinux host, roci-cri
//! neither allocates MCS labels nor relabels, so non-empty options are refused there.

use std::path::Path;
use std::sync::OnceLock;

use roci_cri_proto::runtime_v1 as v1;
use serde_json::{json, Value};

use super::{defaults, HostFacts, SpecError};
use v1::security_profile::ProfileType;

/// A security profile in force, with the request field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    Unconfined,
    RuntimeDefault,
    Localhost { name: String, field: String },
}

/// The profile asked for: `sp` (at `{prefix}.{kind}`) if given, else the legacy string (at
/// `{prefix}.{legacy_field}`); `None` when neither asks for one.
pub fn profile(
    sp: Option<&v1::SecurityProfile>,
    legacy: &str,
    prefix: &str,
    kind: &str,
    legacy_field: &str,
) -> Result<Option<Profile>, SpecError> {
    if let Some(sp) = sp {
        let field = format!("{prefix}.{kind}");
        let typ = ProfileType::try_from(sp.profile_type).map_err(|_| {
            SpecError::invalid(format!("{field}.profile_type"), format!("unknown profile type {}", sp.profile_type))
        })?;
        if typ != ProfileType::Localhost && !sp.localhost_ref.is_empty() {
            return Err(SpecError::invalid(
                format!("{field}.localhost_ref"),
                "may only be set when profile_type is Localhost".to_owned(),
            ));
        }
        return Ok(Some(match typ {
            ProfileType::Unconfined => Profile::Unconfined,
            ProfileType::RuntimeDefault => Profile::RuntimeDefault,
            ProfileType::Localhost => {
                let field = format!("{field}.localhost_ref");
                let name = sp.localhost_ref.strip_prefix("localhost/").unwrap_or(&sp.localhost_ref).to_owned();
                if name.is_empty() {
                    return Err(SpecError::invalid(field, "empty: a Localhost profile must be named"));
                }
                Profile::Localhost { name, field }
            }
        }));
    }
    let field = format!("{prefix}.{legacy_field}");
    match legacy {
        "" => Ok(None),
        "runtime/default" | "docker/default" => Ok(Some(Profile::RuntimeDefault)),
        "unconfined" => Ok(Some(Profile::Unconfined)),
        other => match other.strip_prefix("localhost/") {
            Some(name) if !name.is_empty() => Ok(Some(Profile::Localhost { name: name.to_owned(), field })),
            _ => Err(SpecError::invalid(
                field,
                format!("invalid profile {other:?}: runtime/default, docker/default, unconfined or localhost/<name>"),
            )),
        },
    }
}

/// `linux.seccomp` for the profile (see the module docs); `bounding` is the process's final
/// bounding set; `allowed_dir` holds the Localhost profiles.
pub fn seccomp(
    profile: Option<Profile>,
    privileged: bool,
    host: &HostFacts,
    bounding: &[String],
    allowed_dir: &Path,
    field: &str,
) -> Result<Option<Value>, SpecError> {
    if privileged {
        return Ok(None);
    }
    if !host.seccomp {
        return match profile {
            None | Some(Profile::Unconfined) => Ok(None),
            Some(Profile::Localhost { field, .. }) => {
                Err(SpecError::unsupported(field, "seccomp is not supported by this kernel"))
            }
            Some(Profile::RuntimeDefault) => Err(SpecError::unsupported(field, "seccomp is not supported by this kernel")),
        };
    }
    match profile {
        None | Some(Profile::Unconfined) => Ok(None),
        Some(Profile::RuntimeDefault) => Ok(Some(default_profile(bounding, host.kernel))),
        Some(Profile::Localhost { name, field }) => load_localhost(&name, allowed_dir, &field).map(Some),
    }
}

/// Read a Localhost seccomp profile: an OCI `linux.seccomp` object in a file inside
/// `allowed_dir` (a relative name is taken inside it).
fn load_localhost(name: &str, allowed_dir: &Path, field: &str) -> Result<Value, SpecError> {
    let path = allowed_dir.join(name);
    let root = match allowed_dir.canonicalize() {
        Ok(root) => root,
        // No directory: no profile is inside it (the request's fault, not the host's).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpecError::invalid(
                field,
                format!(
                    "{} is outside the seccomp profile directory {} (which does not exist)",
                    path.display(),
                    allowed_dir.display()
                ),
            ));
        }
        Err(source) => {
            return Err(SpecError::Io { op: "resolve the seccomp profile directory", path: allowed_dir.to_owned(), source });
        }
    };
    let real = path.canonicalize().map_err(|e| SpecError::invalid(field, format!("seccomp profile {}: {e}", path.display())))?;
    if !real.starts_with(&root) {
        return Err(SpecError::invalid(
            field,
            format!("{} is outside the seccomp profile directory {}", path.display(), root.display()),
        ));
    }
    let data = std::fs::read(&real).map_err(|e| SpecError::invalid(field, format!("read {}: {e}", real.display())))?;
    let parsed: oci_spec::runtime::LinuxSeccomp = serde_json::from_slice(&data)
        .map_err(|e| SpecError::invalid(field, format!("{} is not an OCI seccomp profile: {e}", real.display())))?;
    serde_json::to_value(parsed).map_err(|e| SpecError::invalid(field, format!("{}: {e}", real.display())))
}

/// The facts of containerd's default profile (`seccomp_default.json`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefaultProfile {
    default_action: String,
    allow: Vec<String>,
    personality: Vec<u64>,
    ptrace_since_kernel: (u32, u32),
    by_arch: std::collections::BTreeMap<String, Vec<String>>,
    by_capability: std::collections::BTreeMap<String, Vec<String>>,
}

fn default_data() -> &'static DefaultProfile {
    static DATA: OnceLock<DefaultProfile> = OnceLock::new();
    DATA.get_or_init(|| {
        // A compile-time constant checked by the unit tests: a parse failure is a build defect.
        serde_json::from_str(include_str!("seccomp_default.json")).expect("seccomp_default.json is valid")
    })
}

/// The architectures containerd's default profile lists for this build's architecture.
fn arches() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        &["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]
    } else if cfg!(target_arch = "s390x") {
        &["SCMP_ARCH_S390", "SCMP_ARCH_S390X"]
    } else if cfg!(target_arch = "riscv64") {
        &["SCMP_ARCH_RISCV64"]
    } else {
        &[]
    }
}

/// The namespace flags of clone(2) a process without CAP_SYS_ADMIN may not pass.
const CLONE_NS_FLAGS: u64 = 0x0002_0000 /* NEWNS */
    | 0x0400_0000 /* NEWUTS */
    | 0x0800_0000 /* NEWIPC */
    | 0x1000_0000 /* NEWUSER */
    | 0x2000_0000 /* NEWPID */
    | 0x4000_0000 /* NEWNET */
    | 0x0200_0000 /* NEWCGROUP */;

const ENOSYS: u32 = 38;

/// containerd's `DefaultProfile` for a process with the bounding set `bounding` on a kernel
/// `kernel` (major, minor).
pub fn default_profile(bounding: &[String], kernel: (u32, u32)) -> Value {
    let d = default_data();
    let allow = |names: &[String]| json!({ "names": names, "action": "SCMP_ACT_ALLOW" });
    let mut rules = vec![allow(&d.allow)];
    for p in &d.personality {
        rules.push(json!({
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": p, "op": "SCMP_CMP_EQ" }]
        }));
    }
    if kernel >= d.ptrace_since_kernel {
        rules.push(allow(&["ptrace".to_owned()]));
    }
    if let Some(names) = d.by_arch.get(std::env::consts::ARCH) {
        rules.push(allow(names));
    }
    for cap in bounding {
        if let Some(names) = d.by_capability.get(cap) {
            rules.push(allow(names));
        }
    }
    if !bounding.iter().any(|c| c == "CAP_SYS_ADMIN") {
        let index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        rules.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": index, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }]
        }));
        rules.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    }
    json!({ "defaultAction": d.default_action, "architectures": arches(), "syscalls": rules })
}

/// `process.apparmorProfile` for the profile (see the module docs).
pub fn apparmor(profile: Option<Profile>, privileged: bool, host: &HostFacts, field: &str) -> Result<Option<String>, SpecError> {
    if !host.apparmor {
        return match profile {
            None | Some(Profile::Unconfined) => Ok(None),
            Some(Profile::Localhost { field, .. }) => Err(SpecError::unsupported(field, "AppArmor is not enabled on this host")),
            Some(Profile::RuntimeDefault) => Err(SpecError::unsupported(field, "AppArmor is not enabled on this host")),
        };
    }
    match profile.unwrap_or(Profile::RuntimeDefault) {
        Profile::Unconfined => Ok(None),
        Profile::RuntimeDefault if privileged => Ok(None),
        Profile::RuntimeDefault => match &host.apparmor_default_profile {
            Some(p) => Ok(Some(p.clone())),
            None => Err(SpecError::unsupported(
                field,
                "RuntimeDefault: no default AppArmor profile is configured (apparmor_default_profile is empty)",
            )),
        },
        Profile::Localhost { name, field } => {
            let securityfs = Path::new(crate::apparmor::SECURITYFS).join("apparmor");
            let loaded = crate::apparmor::loaded_profiles(&securityfs).map_err(|e| SpecError::Io {
                op: "read",
                path: securityfs.join("profiles"),
                source: std::io::Error::other(e),
            })?;
            if crate::apparmor::is_loaded(&loaded, &name) {
                Ok(Some(name))
            } else {
                Err(SpecError::invalid(field, format!("AppArmor profile {name:?} is not loaded")))
            }
        }
    }
}

/// What a security context asks for (its `seccomp` and `apparmor` profiles and legacy strings).
pub struct Asked<'a> {
    pub seccomp: Option<&'a v1::SecurityProfile>,
    pub seccomp_profile_path: &'a str,
    pub apparmor: Option<&'a v1::SecurityProfile>,
    /// The legacy `apparmor_profile` (containers only; empty for a pod).
    pub apparmor_profile: &'a str,
    pub privileged: bool,
}

/// Set `process.apparmorProfile` and `linux.seccomp` of `spec` for the security context at
/// `prefix`; `bounding` is the process's final bounding set.
pub fn apply(
    spec: &mut Value,
    asked: &Asked<'_>,
    prefix: &str,
    host: &HostFacts,
    bounding: &[String],
    allowed_dir: &Path,
) -> Result<(), SpecError> {
    let apparmor = profile(asked.apparmor, asked.apparmor_profile, prefix, "apparmor", "apparmor_profile")?;
    if let Some(p) = self::apparmor(apparmor, asked.privileged, host, &format!("{prefix}.apparmor"))? {
        spec["process"]["apparmorProfile"] = json!(p);
    }
    let wanted = profile(asked.seccomp, asked.seccomp_profile_path, prefix, "seccomp", "seccomp_profile_path")?;
    if let Some(filter) = seccomp(wanted, asked.privileged, host, bounding, allowed_dir, &format!("{prefix}.seccomp"))? {
        spec["linux"]["seccomp"] = filter;
    }
    Ok(())
}

/// Check SELinux options (see the module docs); no label is ever set.
pub fn selinux(opts: Option<&v1::SeLinuxOption>, host: &HostFacts, field: &str) -> Result<(), SpecError> {
    let Some(o) = opts else { return Ok(()) };
    defaults::check_selinux_level(&o.level, &format!("{field}.level"))?;
    let given = !(o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty() && o.level.is_empty());
    if given && host.selinux {
        return Err(SpecError::unsupported(field, "SELinux labels are not supported by this build"));
    }
    Ok(())
}
