//! RuntimeConfig: the configuration kubelet must match (its cgroup driver).

use roci_cri_proto::runtime_v1::{self as v1, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse};

use super::Cri;
use crate::config::CgroupDriver;

pub(super) fn runtime_config(cri: &Cri, _: &RuntimeConfigRequest) -> RuntimeConfigResponse {
    let cgroup_driver = match cri.config.cgroup_driver {
        CgroupDriver::Cgroupfs => v1::CgroupDriver::Cgroupfs,
    };
    RuntimeConfigResponse { linux: Some(LinuxRuntimeConfiguration { cgroup_driver: cgroup_driver.into() }) }
}
