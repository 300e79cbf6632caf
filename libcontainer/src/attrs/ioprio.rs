//! `process.ioPriority`: the I/O scheduling class and level of the
//! container's process group (`ioprio_set(2)`), inherited by its children.

use oci_spec::runtime::{IOPriorityClass, LinuxIOPriority};

use super::{Error, Invalid};
use crate::sys::sched as sys;

/// The kernel's `IOPRIO_CLASS_*` number.
fn class(c: IOPriorityClass) -> i32 {
    match c {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    }
}

/// The `ioprio` value: class in the top bits, level below.
pub fn value(p: &LinuxIOPriority) -> i32 {
    class(p.class()) << 13 | p.priority() as i32
}

pub fn validate(p: &LinuxIOPriority) -> Result<(), Invalid> {
    if !(0..=7).contains(&p.priority()) {
        return Err(("ioPriority.priority".into(), format!("{} is not a level from 0 (highest) to 7 (lowest)", p.priority())));
    }
    Ok(())
}

/// Set it for the calling process's group (which, after `setsid`, is the
/// process alone; its children inherit it).
pub fn apply(p: &LinuxIOPriority) -> Result<(), Error> {
    tracing::debug!(class = %p.class(), level = p.priority(), "ioprio_set");
    sys::ioprio_set(sys::IOPRIO_WHO_PGRP, 0, value(p)).map_err(|source| Error {
        field: "process.ioPriority",
        value: format!("{} level {}", p.class(), p.priority()),
        source,
    })
}
