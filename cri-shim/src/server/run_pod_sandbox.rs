//! RunPodSandbox, in containerd 1.6's order: check the metadata; reserve the name (the record in
//! `Creating`, the config bytes kept); the pause image, pulled when missing; the network (unless
//! host network): a pinned netns and CNI ADD; the pod directory with hostname, hosts,
//! resolv.conf and a tmpfs on `shm/`; the pause's root filesystem and config.json; its monitor,
//! which creates it; start; the record `Ready`.
//!
//! Every step registers its undo in the change's [`Rollback`] and the whole runs through
//! [`store::change`], on a task of its own: a failed step leaves no record, name, netns, CNI
//! allocation, mount, cgroup, process or directory. A client that gives up (its deadline passes,
//! it disconnects: tonic drops this handler's future) is noticed between steps ([`Wanted`]) and
//! the pod is undone the same way, rather than finished for nobody: kubelet's retry then finds
//! the name free. A daemon killed in the middle leaves the record in `Creating`, which recovery
//! (`recover.rs`) undoes from what is on disk.

use std::path::Path;
use std::sync::Arc;

use libcontainer::monitor::Config as MonitorConfig;
use prost::Message;
use roci_cri_proto::runtime_v1 as v1;
use tonic::Status;

use super::sandbox::{self, blocking, now_nanos};
use super::spec::{pod_spec, PodInputs};
use super::wanted::Wanted;
use super::Cri;
use crate::events::EventKind;
use crate::monitor;
use crate::store::{self, ChangeError, PodMetadata, PodRecord, PodState, Rollback, RECORD_VERSION};

const RPC: &str = "RunPodSandbox";

/// containerd's `defaultShmSize`: 64 MiB.
const SHM_SIZE: u64 = 64 * 1024 * 1024;

pub(super) async fn run_pod_sandbox(
    cri: &Arc<Cri>,
    request: v1::RunPodSandboxRequest,
) -> Result<v1::RunPodSandboxResponse, Status> {
    let config = request.config.ok_or_else(|| Status::invalid_argument("RunPodSandbox: config is missing"))?;
    let meta = config.metadata.clone().ok_or_else(|| Status::invalid_argument("RunPodSandbox: config.metadata is missing"))?;
    for (field, value) in [("name", &meta.name), ("uid", &meta.uid), ("namespace", &meta.namespace)] {
        if value.is_empty() {
            return Err(Status::invalid_argument(format!("RunPodSandbox: config.metadata.{field} is empty")));
        }
    }
    if !request.runtime_handler.is_empty() {
        return Err(Status::invalid_argument(format!(
            "RunPodSandbox: runtime_handler {:?}: this roci-cri has only its default runtime (\"\")",
            request.runtime_handler
        )));
    }
    let attempt = meta.attempt;
    let id = blocking(RPC, {
        let store = cri.store.clone();
        move || store.new_id()
    })
    .await?;
    let record = PodRecord {
        version: RECORD_VERSION,
        id: id.clone(),
        metadata: PodMetadata { name: meta.name, uid: meta.uid, namespace: meta.namespace, attempt },
        state: PodState::Creating,
        created_at: now_nanos(),
        labels: config.labels.clone().into_iter().collect(),
        annotations: config.annotations.clone().into_iter().collect(),
        runtime_handler: request.runtime_handler.clone(),
        netns: None,
        ips: Vec::new(),
        pid: 0,
        cgroups_path: String::new(),
        image: cri.images.pause_image().to_owned(),
        config: config.encode_to_vec(),
    };
    let rollback = Rollback::new(format!("run pod sandbox {id}"));
    let wanted = Wanted::new(RPC, "pod sandbox");
    let work = run(cri.clone(), rollback.clone(), record, config, wanted.clone());
    let done = store::change(rollback, work).await;
    wanted.answered();
    match done {
        Ok(()) => Ok(v1::RunPodSandboxResponse { pod_sandbox_id: id }),
        Err(ChangeError::Failed { source, undo_failures }) => {
            if undo_failures.is_empty() {
                Err(source)
            } else {
                Err(Status::new(source.code(), format!("{}; undoing it: {}", source.message(), undo_failures.join("; "))))
            }
        }
        Err(e @ ChangeError::Interrupted { .. }) => Err(Status::internal(format!("{RPC}: {e}"))),
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> Status {
    Status::unknown(format!("{RPC}: {what}: {e}"))
}

/// The steps, each registering its undo.
async fn run(
    cri: Arc<Cri>,
    rollback: Rollback,
    record: PodRecord,
    config: v1::PodSandboxConfig,
    wanted: Wanted,
) -> Result<(), Status> {
    let id = record.id.clone();
    let layout = cri.layout.clone();

    // The name: refused while another pod of this name/namespace/uid/attempt exists.
    blocking(RPC, {
        let (store, record) = (cri.store.clone(), record.clone());
        move || store.create_pod(record)
    })
    .await
    .map_err(|e| Status::new(e.code(), format!("failed to reserve sandbox name: {}", e.message())))?;
    rollback.push("the pod's record", {
        let (store, id) = (cri.store.clone(), id.clone());
        move || async move {
            tokio::task::spawn_blocking(move || store.remove_pod(&id))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
    });

    wanted.check(&id)?;

    // The pause image, pulled when missing (containerd's ensureImageExists).
    let pause = cri.images.pause_image().to_owned();
    let image = match find_image(&cri, &pause).await? {
        Some(image) => image,
        None => {
            cri.images.pull("sandbox_image", &pause, None).await.map_err(|e| fail("pull the pause image", e))?;
            find_image(&cri, &pause)
                .await?
                .ok_or_else(|| fail("the pause image", format!("{pause} is not there after its pull")))?
        }
    };
    let image_config = {
        let (root, image) = (cri.images.image_root().clone(), image.clone());
        tokio::task::spawn_blocking(move || root.config(&image))
            .await
            .map_err(|e| fail("read the pause image's config", e))?
            .map_err(|e| fail("read the pause image's config", e))?
    };

    wanted.check(&id)?;

    // The network, unless the pod is on the host's.
    let host_network = sandbox::namespace_options(&config).network == v1::NamespaceMode::Node as i32;
    let host_ipc = sandbox::namespace_options(&config).ipc == v1::NamespaceMode::Node as i32;
    let mut network = None;
    if !host_network {
        let request = sandbox::network_request(&id, &config)?;
        let net = cri.networks.setup(&request).await.map_err(|e| fail(&format!("set up the network of pod sandbox {id}"), e))?;
        rollback.push("the pod's network", {
            let cri = cri.clone();
            move || async move { cri.networks.teardown(&request).await.map_err(|e| e.to_string()) }
        });
        network = Some(net);
    }

    wanted.check(&id)?;

    // The pod's directory and files.
    let pod_dir = layout.pod_dir(&id);
    tokio::fs::create_dir_all(&pod_dir).await.map_err(|e| fail(&format!("create {}", pod_dir.display()), e))?;
    rollback.push("the pod's directory", {
        let dir = pod_dir.clone();
        move || async move { sandbox::remove_dir(&dir) }
    });
    let hostname = if config.hostname.is_empty() { cri.host.hostname.clone() } else { config.hostname.clone() };
    write(&layout.pod_hostname(&id), format!("{hostname}\n").as_bytes()).await?;
    copy(Path::new("/etc/hosts"), &layout.pod_hosts(&id)).await?;
    match config.dns_config.as_ref().map(resolv_conf).filter(|c| !c.is_empty()) {
        Some(content) => write(&layout.pod_resolv_conf(&id), content.as_bytes()).await?,
        None => copy(Path::new("/etc/resolv.conf"), &layout.pod_resolv_conf(&id)).await?,
    }
    if !host_ipc {
        let shm = layout.pod_shm(&id);
        mount_shm(&shm)?;
        rollback.push("the pod's /dev/shm", move || async move { sandbox::unmount(&shm) });
    }

    wanted.check(&id)?;

    // The pause's root filesystem and config.json.
    let bundle = {
        let (root, image, id) = (cri.images.image_root().clone(), image.clone(), id.clone());
        tokio::task::spawn_blocking(move || root.make_rootfs(&id, &image))
            .await
            .map_err(|e| fail("make the pause's root filesystem", e))?
            .map_err(|e| fail("make the pause's root filesystem", e))?
    };
    rollback.push("the pause's root filesystem", {
        let (root, id) = (cri.images.image_root().clone(), id.clone());
        move || async move {
            tokio::task::spawn_blocking(move || root.remove_bundle(&id))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
    });
    let rootfs = bundle.join("rootfs");
    let netns = network.as_ref().map(|n| n.netns.clone());
    let inputs = PodInputs {
        id: &id,
        image_name: &pause,
        rootfs: &rootfs,
        netns: netns.as_deref(),
        shm: &layout.pod_shm(&id),
        resolv_conf: &layout.pod_resolv_conf(&id),
        seccomp_profile_dir: &cri.config.seccomp_profile_root,
    };
    let spec = pod_spec(&config, &image_config, &inputs, &cri.host)?;
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()).unwrap_or_default();
    let data = serde_json::to_vec_pretty(&spec).map_err(|e| fail("serialise config.json", e))?;
    write(&bundle.join("config.json"), &data).await?;

    wanted.check(&id)?;

    // The monitor creates the pause container; then it is started.
    let files = layout.pod_monitor(&id);
    let monitor_config = MonitorConfig {
        version: libcontainer::monitor::proto::VERSION,
        id: id.clone(),
        root: layout.roci_root(),
        bundle: bundle.clone(),
        log_path: None,
        exit_path: files.exit.clone(),
        socket_path: files.socket.clone(),
        stdin: false,
        stdin_once: false,
        tty: false,
    };
    // Undone first by roci (the container, its processes and cgroup), whether or not the monitor
    // got as far as creating it.
    rollback.push("the pause container", {
        let (cri, id) = (cri.clone(), id.clone());
        move || async move { sandbox::roci_delete(&cri, &id).await }
    });
    let spawned = monitor::spawn(&cri.runtime, &files.config, &monitor_config, Some(&files.log))
        .await
        .map_err(|e| fail("create the pause container", e))?;
    blocking(RPC, {
        let (store, id, cgroups_path) = (cri.store.clone(), id.clone(), cgroups_path.clone());
        move || {
            store.update_pod(&id, |r| {
                r.pid = spawned.pid;
                r.cgroups_path = cgroups_path.to_string_lossy().into_owned();
            })
        }
    })
    .await?;
    wanted.check(&id)?;
    monitor::Client::new(&files.socket).start().await.map_err(|e| fail("start the pause container", e))?;
    wanted.check(&id)?;

    let ips: Vec<String> = network.as_ref().map(|n| n.ips.iter().map(|ip| ip.to_string()).collect()).unwrap_or_default();
    blocking(RPC, {
        let store = cri.store.clone();
        let id = id.clone();
        move || {
            store.update_pod(&id, |r| {
                r.state = PodState::Ready;
                r.netns = netns;
                r.ips = ips;
            })
        }
    })
    .await?;
    // containerd 1.7+ sends both once the pod runs.
    cri.events.emit(&id, &id, EventKind::Created);
    cri.events.emit(&id, &id, EventKind::Started);
    sandbox::watch_pause(&cri, &id, spawned.pid);
    Ok(())
}

/// The image record `reference` names, if pulled.
async fn find_image(cri: &Cri, reference: &str) -> Result<Option<libimage::images::Image>, Status> {
    let (root, what) = (cri.images.image_root().clone(), reference.to_owned());
    let mut found = tokio::task::spawn_blocking(move || root.find(&what))
        .await
        .map_err(|e| fail("look up the pause image", e))?
        .map_err(|e| fail("look up the pause image", e))?;
    Ok((!found.is_empty()).then(|| found.remove(0)))
}

/// resolv.conf from the pod's DNSConfig, as containerd's `parseDNSOptions` writes it: `search`,
/// one `nameserver` line per server, `options`. Empty when the config has none of them.
pub(super) fn resolv_conf(dns: &v1::DnsConfig) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

async fn write(path: &Path, data: &[u8]) -> Result<(), Status> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, data).await.map_err(|e| fail(&format!("write {}", tmp.display()), e))?;
    tokio::fs::rename(&tmp, path).await.map_err(|e| fail(&format!("rename {} to {}", tmp.display(), path.display()), e))
}

async fn copy(from: &Path, to: &Path) -> Result<(), Status> {
    let data = tokio::fs::read(from).await.map_err(|e| fail(&format!("read {}", from.display()), e))?;
    write(to, &data).await
}

/// The pod's `/dev/shm`: a tmpfs with containerd's options (nosuid, nodev, noexec, mode 1777,
/// 64 MiB).
fn mount_shm(shm: &Path) -> Result<(), Status> {
    use nix::mount::MsFlags;
    std::fs::create_dir_all(shm).map_err(|e| fail(&format!("create {}", shm.display()), e))?;
    let options = format!("mode=1777,size={SHM_SIZE}");
    nix::mount::mount(
        Some("shm"),
        shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|e| fail(&format!("mount a tmpfs on {}", shm.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_is_containerds() {
        let dns = v1::DnsConfig {
            servers: vec!["10.0.0.10".into(), "8.8.8.8".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into(), "edns0".into()],
        };
        assert_eq!(
            resolv_conf(&dns),
            "search ns.svc.cluster.local cluster.local\nnameserver 10.0.0.10\nnameserver 8.8.8.8\noptions ndots:5 edns0\n"
        );
        assert_eq!(resolv_conf(&v1::DnsConfig::default()), "");
    }
}
