//! The five capability sets of `process.capabilities`.
//!
//! The bounding set is dropped first, while init still holds CAP_SETPCAP;
//! the other sets are written after the switch to the container's user
//! (with keep-caps on), in an order the kernel accepts one set at a time:
//! inheritable (checked against the still-full permitted set), effective,
//! permitted, and ambient last, which needs its capabilities in both the
//! permitted and inheritable sets (others are skipped).

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("process.capabilities.{set}: {name} is not a capability this roci knows")]
    Unknown { set: &'static str, name: String },
    #[error("set process.capabilities.{set}: {message}")]
    Apply { set: &'static str, message: String },
}

/// Convert an OCI capability set into the `caps` crate's, keeping only
/// capabilities the running kernel has.
fn convert(set: &'static str, caps: &Option<Capabilities>, supported: &CapsHashSet) -> Result<CapsHashSet, Error> {
    let mut out = CapsHashSet::new();
    for c in caps.iter().flatten() {
        let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let cap: Cap = name.parse().map_err(|_| Error::Unknown { set, name: name.clone() })?;
        if supported.contains(&cap) {
            out.insert(cap);
        } else {
            tracing::warn!(capability = %name, "not supported by this kernel; ignored");
        }
    }
    Ok(out)
}

/// The sets to apply, resolved against the kernel once.
pub struct Sets {
    /// What the kernel has (one PR_CAPBSET_READ per capability roci knows).
    supported: CapsHashSet,
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

impl Sets {
    /// A missing `capabilities` object means no capabilities at all.
    pub fn new(c: Option<&LinuxCapabilities>) -> Result<Sets, Error> {
        let supported = caps::runtime::thread_all_supported();
        let none = None;
        let get = |f: fn(&LinuxCapabilities) -> &Option<Capabilities>| c.map(f).unwrap_or(&none);
        Ok(Sets {
            bounding: convert("bounding", get(LinuxCapabilities::bounding), &supported)?,
            effective: convert("effective", get(LinuxCapabilities::effective), &supported)?,
            permitted: convert("permitted", get(LinuxCapabilities::permitted), &supported)?,
            inheritable: convert("inheritable", get(LinuxCapabilities::inheritable), &supported)?,
            ambient: convert("ambient", get(LinuxCapabilities::ambient), &supported)?,
            supported,
        })
    }

    /// Drop what is not in the bounding set.
    pub fn drop_bounding(&self) -> Result<(), Error> {
        for &cap in &self.supported {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| Error::Apply { set: "bounding", message: format!("drop {cap}: {e}") })?;
            }
        }
        Ok(())
    }

    /// Set inheritable, effective, permitted and ambient.
    pub fn apply(&self) -> Result<(), Error> {
        for (name, set, value) in [
            ("inheritable", CapSet::Inheritable, &self.inheritable),
            ("effective", CapSet::Effective, &self.effective),
            ("permitted", CapSet::Permitted, &self.permitted),
        ] {
            caps::set(None, set, value).map_err(|e| Error::Apply { set: name, message: e.to_string() })?;
        }
        caps::clear(None, CapSet::Ambient).map_err(|e| Error::Apply { set: "ambient", message: e.to_string() })?;
        for cap in &self.ambient {
            // The kernel holds an ambient capability only while it is both
            // permitted and inheritable; configs (runc's default among
            // them) often list ambient ones without inheritable: skip those
            // as runc effectively does.
            if !(self.permitted.contains(cap) && self.inheritable.contains(cap)) {
                tracing::debug!(capability = %cap, "ambient capability not permitted and inheritable; skipped");
                continue;
            }
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| Error::Apply { set: "ambient", message: format!("raise {cap}: {e}") })?;
        }
        Ok(())
    }
}
