//! The CRI benchmark's client (`hack/bench-cri` builds and runs it): roci-cri and Debian
//! containerd 1.6's CRI plugin side by side in one run, each started by the CRI suite's pod fixture
//! (tests/cri/pod_fixture.rs: a registry with the pause image and busybox, the daemon in a network
//! namespace of its own with the CNI bridge, a cgroup tree `/roci-it-<pid>/<daemon>` of its own).
//! Both daemons run for the whole benchmark; the timed loops alternate which daemon goes first, so
//! neither gets a warmer cache. Every phase runs after busybox and the pause image are pulled.
//!
//! 1. pod start: RunPodSandbox + CreateContainer + StartContainer of a busybox `sleep` container
//!    (each RPC also timed on its own), then 2. StopPodSandbox + RemovePodSandbox of that pod;
//!    `--warmup` untimed rounds, then `--runs`.
//! 3. ExecSync of `/bin/true` in a running container, `--exec-runs` times (after 3 untimed).
//! 4. memory: `--pods` pods with one sleeping container each, then the RSS and PSS
//!    (/proc/PID/smaps_rollup) of every process they cost: roci-cri's monitors (`roci ... monitor
//!    ...`) or containerd's shims (`containerd-shim-runc-v2`), the pause processes, the containers,
//!    and the daemon's growth (its RSS and PSS before the pods against after).
//! 5. parallel: `--parallel` pods (each with its container) started at once over the one
//!    connection, wall time until every StartContainer returned; `--parallel-rounds` rounds.
//!
//! Also the floor under every number: the round trip of the Version RPC (the client, gRPC and the
//! daemon's dispatch). The result is one JSON document at `--out`; hack/bench-cri makes the table,
//! the ratios and the goals from it. SIGINT/SIGTERM end the benchmark with the fixtures' teardown
//! (daemons stopped, cgroup trees killed and removed, mounts and temp dirs gone).

#[allow(dead_code, reason = "the benchmark uses part of the CRI suite's fixture")]
#[path = "../cri/pod_fixture.rs"]
mod pod_fixture;
#[allow(dead_code, reason = "the benchmark uses part of the CRI suite's harness")]
#[path = "../cri/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use roci_cri_proto::runtime_v1::{
    self as v1, ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig, LinuxContainerSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig,
};
use roci_integration::registry::Push;
use serde_json::{json, Value};

use pod_fixture::{bridge_conflist, PodServer, PAUSE_IMAGE};
use server::{Client, Target};

const BUSYBOX: &str = "docker.io/library/busybox:1.36";

struct Options {
    runs: usize,
    warmup: usize,
    exec_runs: usize,
    pods: usize,
    parallel: usize,
    parallel_rounds: usize,
    out: PathBuf,
}

fn usage() -> &'static str {
    "bench-cri --out FILE [--runs N (20)] [--warmup N (2)] [--exec-runs N (50)] [--pods N (10)] [--parallel N (20)] \
     [--parallel-rounds N (3)]"
}

fn options() -> Result<Options> {
    let mut o = Options { runs: 20, warmup: 2, exec_runs: 50, pods: 10, parallel: 20, parallel_rounds: 3, out: PathBuf::new() };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let value = args.next().with_context(|| format!("{flag} needs a value; usage: {}", usage()))?;
        let count = || value.parse::<usize>().with_context(|| format!("{flag} {value}: not a count"));
        match flag.as_str() {
            "--runs" => o.runs = count()?,
            "--warmup" => o.warmup = count()?,
            "--exec-runs" => o.exec_runs = count()?,
            "--pods" => o.pods = count()?,
            "--parallel" => o.parallel = count()?,
            "--parallel-rounds" => o.parallel_rounds = count()?,
            "--out" => o.out = PathBuf::from(&value),
            _ => bail!("unknown option {flag}; usage: {}", usage()),
        }
    }
    ensure!(!o.out.as_os_str().is_empty(), "--out is required; usage: {}", usage());
    ensure!(o.runs > 0 && o.exec_runs > 0 && o.pods > 0 && o.parallel > 0 && o.parallel_rounds > 0, "every count must be > 0");
    Ok(o)
}

fn main() -> Result<()> {
    let o = options()?;
    // A session of our own: a Ctrl-C at the terminal reaches hack/bench-cri, which ends us with
    // SIGTERM, and not the daemons we start (they would die before the teardown can stop them).
    // Fails harmlessly when we already lead a process group (started from an interactive shell).
    let _ = nix::unistd::setsid();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the tokio runtime")?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("SIGINT handler")?;
        tokio::select! {
            r = bench(&o) => r,
            _ = term.recv() => bail!("interrupted (SIGTERM)"),
            _ = int.recv() => bail!("interrupted (SIGINT)"),
        }
    })
}

/// One daemon under test: its fixture, a client and the log directory of its pods.
struct Daemon {
    key: &'static str,
    ps: PodServer,
    client: Client,
    logs: PathBuf,
}

fn say(msg: impl std::fmt::Display) {
    eprintln!("bench-cri: {msg}");
}

async fn start_daemon(target: Target) -> Result<Daemon> {
    let (key, name) = match target {
        Target::Roci => ("roci-cri", "roci"),
        Target::Containerd => ("containerd", "containerd"),
    };
    let ps = tokio::task::spawn_blocking(move || {
        let ps = PodServer::start_target(target, name, bridge_conflist);
        ps.registry.push(&roci_integration::image::busybox().oci_ref(), "library/busybox:1.36", &Push::default());
        ps
    })
    .await
    .with_context(|| format!("start {key}"))?;
    let mut client = ps.client().await;
    for image in [BUSYBOX, PAUSE_IMAGE] {
        let pull =
            v1::PullImageRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }), ..Default::default() };
        client.images.pull_image(pull).await.with_context(|| format!("{key}: PullImage {image}"))?;
    }
    let logs = ps.server.dir.join("pod-logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    Ok(Daemon { key, ps, client, logs })
}

impl Daemon {
    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let mut c = self.ps.pod_config(name);
        c.log_directory = self.logs.to_string_lossy().into_owned();
        c
    }

    /// RunPodSandbox + CreateContainer + StartContainer: the pod id and each RPC's duration.
    async fn start_pod(&mut self, name: &str) -> Result<(String, [Duration; 3])> {
        let config = self.pod_config(name);
        start_pod(&mut self.client, config, self.key).await
    }

    async fn end_pod(&mut self, pod: &str) -> Result<()> {
        end_pod(&mut self.client, pod, self.key).await
    }
}

/// A busybox container sleeping, in a PID namespace of its own (as kubelet asks).
fn sleeper() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: "sleep".into(), attempt: 0 }),
        image: Some(ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: vec!["sleep".into(), "100000".into()],
        log_path: "sleep.log".into(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption { pid: NamespaceMode::Container as i32, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn start_pod(client: &mut Client, mut config: PodSandboxConfig, key: &str) -> Result<(String, [Duration; 3])> {
    let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    // Each pod's container logs in a directory of its own (the pod's log_directory).
    let dir = Path::new(&config.log_directory).join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    config.log_directory = dir.to_string_lossy().into_owned();
    let t0 = Instant::now();
    let run = v1::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
    let pod = client
        .runtime
        .run_pod_sandbox(run)
        .await
        .with_context(|| format!("{key}: RunPodSandbox {name}"))?
        .into_inner()
        .pod_sandbox_id;
    let t1 = Instant::now();
    let create =
        v1::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(sleeper()), sandbox_config: Some(config) };
    let id = client.runtime.create_container(create).await.with_context(|| format!("{key}: CreateContainer in {name}"))?;
    let id = id.into_inner().container_id;
    let t2 = Instant::now();
    let start = v1::StartContainerRequest { container_id: id.clone() };
    client.runtime.start_container(start).await.with_context(|| format!("{key}: StartContainer {id}"))?;
    let t3 = Instant::now();
    Ok((pod, [t1 - t0, t2 - t1, t3 - t2]))
}

async fn end_pod(client: &mut Client, pod: &str, key: &str) -> Result<()> {
    let stop = v1::StopPodSandboxRequest { pod_sandbox_id: pod.into() };
    client.runtime.stop_pod_sandbox(stop).await.with_context(|| format!("{key}: StopPodSandbox {pod}"))?;
    let remove = v1::RemovePodSandboxRequest { pod_sandbox_id: pod.into() };
    client.runtime.remove_pod_sandbox(remove).await.with_context(|| format!("{key}: RemovePodSandbox {pod}"))?;
    Ok(())
}

/// Median, mean, σ (sample), min and max of `samples`, in seconds, with the samples.
fn stats(samples: &[Duration]) -> Value {
    let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    let raw = s.clone();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    let mean = s.iter().sum::<f64>() / n as f64;
    let var = if n > 1 { s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    json!({ "n": n, "median_s": median, "mean_s": mean, "stddev_s": var.sqrt(), "min_s": s[0], "max_s": s[n - 1], "samples_s": raw })
}

/// The daemons in the order of round `i`: roci-cri first in even rounds, containerd in odd ones.
fn order(i: usize) -> [usize; 2] {
    [[0, 1], [1, 0]][i % 2]
}

async fn bench(o: &Options) -> Result<()> {
    say("starting roci-cri and containerd (registry, pause image, busybox, CNI bridge)");
    let mut ds = vec![start_daemon(Target::Roci).await?, start_daemon(Target::Containerd).await?];
    let mut out = json!({
        "config": { "runs": o.runs, "warmup": o.warmup, "exec_runs": o.exec_runs, "pods": o.pods,
                    "parallel": o.parallel, "parallel_rounds": o.parallel_rounds, "image": BUSYBOX, "pause_image": PAUSE_IMAGE },
    });
    for d in ds.iter_mut() {
        let v = d.client.runtime.version(v1::VersionRequest { version: "v1".into() }).await.context("Version")?.into_inner();
        out["versions"][d.key] = json!({ "runtime_name": v.runtime_name, "runtime_version": v.runtime_version });
    }

    // The floor: Version's round trip.
    let mut floor: [Vec<Duration>; 2] = Default::default();
    for i in 0..o.exec_runs + 3 {
        for k in order(i) {
            let t = Instant::now();
            ds[k].client.runtime.version(v1::VersionRequest { version: "v1".into() }).await.context("Version")?;
            if i >= 3 {
                floor[k].push(t.elapsed());
            }
        }
    }

    // 1 and 2: pod start, stop + remove.
    say(format!("pod start and stop + remove: {} warmup + {} runs each, alternating", o.warmup, o.runs));
    let mut start: [Vec<Duration>; 2] = Default::default();
    let mut rpcs: [[Vec<Duration>; 3]; 2] = Default::default();
    let mut stop: [Vec<Duration>; 2] = Default::default();
    for i in 0..o.warmup + o.runs {
        for k in order(i) {
            let d = &mut ds[k];
            let t = Instant::now();
            let (pod, parts) = d.start_pod(&format!("start-{i}")).await?;
            let started = t.elapsed();
            let t = Instant::now();
            d.end_pod(&pod).await?;
            let stopped = t.elapsed();
            if i >= o.warmup {
                start[k].push(started);
                stop[k].push(stopped);
                for (j, p) in parts.into_iter().enumerate() {
                    rpcs[k][j].push(p);
                }
            }
        }
    }

    // roci-cri's own account of a pod start: what its debug log says about the last timed pod.
    out["roci_cri_log"] = json!(std::fs::read_to_string(ds[0].ps.server.dir.join("daemon.log")).map(|l| log_breakdown(&l)).ok());

    // 3: ExecSync.
    say(format!("ExecSync of /bin/true: {} runs each, alternating", o.exec_runs));
    let mut exec_pods = Vec::new();
    let mut ctrs = Vec::new();
    for d in ds.iter_mut() {
        let (pod, _) = d.start_pod("exec").await?;
        let list =
            v1::ListContainersRequest { filter: Some(v1::ContainerFilter { pod_sandbox_id: pod.clone(), ..Default::default() }) };
        let cs = d.client.runtime.list_containers(list).await.context("ListContainers")?.into_inner().containers;
        ctrs.push(cs.first().context("the exec pod's container")?.id.clone());
        exec_pods.push(pod);
    }
    let mut exec: [Vec<Duration>; 2] = Default::default();
    for i in 0..o.exec_runs + 3 {
        for k in order(i) {
            let req = v1::ExecSyncRequest { container_id: ctrs[k].clone(), cmd: vec!["/bin/true".into()], timeout: 10 };
            let t = Instant::now();
            let r = ds[k].client.runtime.exec_sync(req).await.with_context(|| format!("{}: ExecSync", ds[k].key))?.into_inner();
            let took = t.elapsed();
            ensure!(r.exit_code == 0, "{}: ExecSync /bin/true exited {}: {:?}", ds[k].key, r.exit_code, r.stderr);
            if i >= 3 {
                exec[k].push(took);
            }
        }
    }
    for (d, pod) in ds.iter_mut().zip(&exec_pods) {
        d.end_pod(pod).await?;
    }

    // 4: memory, one daemon after the other (roci-cri first).
    say(format!("memory: {} pods each", o.pods));
    for d in ds.iter_mut() {
        out["memory"][d.key] = memory(d, o.pods).await?;
    }

    // 5: parallel starts.
    say(format!("{} pods started in parallel: {} rounds each, alternating", o.parallel, o.parallel_rounds));
    let mut par_start: [Vec<Duration>; 2] = Default::default();
    let mut par_stop: [Vec<Duration>; 2] = Default::default();
    for round in 0..o.parallel_rounds {
        for k in order(round) {
            let (a, b) = parallel(&mut ds[k], o.parallel, round).await?;
            par_start[k].push(a);
            par_stop[k].push(b);
        }
    }

    for (k, d) in ds.iter().enumerate() {
        out["rpc_floor"][d.key] = stats(&floor[k]);
        out["pod_start"][d.key] = stats(&start[k]);
        out["pod_start_rpcs"][d.key] = json!({ "run_pod_sandbox": stats(&rpcs[k][0]), "create_container": stats(&rpcs[k][1]), "start_container": stats(&rpcs[k][2]) });
        out["stop_remove"][d.key] = stats(&stop[k]);
        out["exec_sync"][d.key] = stats(&exec[k]);
        out["parallel_start"][d.key] = stats(&par_start[k]);
        out["parallel_stop_remove"][d.key] = stats(&par_stop[k]);
    }
    std::fs::write(&o.out, serde_json::to_string_pretty(&out)?).with_context(|| format!("write {}", o.out.display()))?;
    say(format!("results in {}", o.out.display()));
    // The daemons and what is left of them go with `ds` (the fixtures' teardown).
    drop(ds);
    Ok(())
}

/// `parallel` pods at once over the daemon's one connection; then all stopped and removed at
/// once. The wall times of both.
async fn parallel(d: &mut Daemon, parallel: usize, round: usize) -> Result<(Duration, Duration)> {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for j in 0..parallel {
        let (mut client, config, key) = (d.client.clone(), d.pod_config(&format!("par-{round}-{j}")), d.key);
        tasks.push(tokio::spawn(async move { start_pod(&mut client, config, key).await }));
    }
    let mut pods = Vec::new();
    let mut first_err = None;
    for task in tasks {
        match task.await.context("a parallel start's task")? {
            Ok((pod, _)) => pods.push(pod),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    let started = t.elapsed();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for pod in pods {
        let (mut client, key) = (d.client.clone(), d.key);
        tasks.push(tokio::spawn(async move { end_pod(&mut client, &pod, key).await }));
    }
    for task in tasks {
        task.await.context("a parallel stop's task")??;
    }
    let stopped = t.elapsed();
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok((started, stopped))
}

/// RSS and PSS in KiB of `pid` (smaps_rollup), `None` when it is gone.
fn rss_pss(pid: i32) -> Option<(u64, u64)> {
    let m = smaps_rollup(pid)?;
    Some((m[0], m[1]))
}

/// RSS, PSS, and PSS of anonymous memory (heap, stacks) and of files (the executable's text and
/// data) in KiB of `pid`, from smaps_rollup; `None` when it is gone.
fn smaps_rollup(pid: i32) -> Option<[u64; 4]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
    };
    Some([field("Rss:")?, field("Pss:")?, field("Pss_Anon:").unwrap_or(0), field("Pss_File:").unwrap_or(0)])
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Every pid in cgroup `dir` and below.
fn cgroup_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            cgroup_pids(&e.path(), out);
        }
    }
}

/// `pods` pods with a sleeping container each; what every process of theirs costs, by kind.
async fn memory(d: &mut Daemon, pods: usize) -> Result<Value> {
    let daemon = d.ps.server.pid().context("the daemon's pid")?;
    let before = rss_pss(daemon).context("the daemon's smaps_rollup")?;
    let mut ids = Vec::new();
    let mut pauses = Vec::new();
    let mut workloads = Vec::new();
    for j in 0..pods {
        let (pod, _) = d.start_pod(&format!("mem-{j}")).await?;
        let req = v1::PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: true };
        let info = d.client.runtime.pod_sandbox_status(req).await.context("PodSandboxStatus")?.into_inner().info;
        pauses.push(info_pid(&info).context("the pod's verbose info.pid")?);
        let list =
            v1::ListContainersRequest { filter: Some(v1::ContainerFilter { pod_sandbox_id: pod.clone(), ..Default::default() }) };
        for c in d.client.runtime.list_containers(list).await.context("ListContainers")?.into_inner().containers {
            let req = v1::ContainerStatusRequest { container_id: c.id, verbose: true };
            let info = d.client.runtime.container_status(req).await.context("ContainerStatus")?.into_inner().info;
            workloads.push(info_pid(&info).context("the container's verbose info.pid")?);
        }
        ids.push(pod);
    }
    // Whatever the daemons and monitors do right after a start settles first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_pss(daemon).context("the daemon's smaps_rollup")?;
    let mut pids = Vec::new();
    cgroup_pids(&roci_integration::cgroups::dir("memory", &d.ps.cgroup.rel), &mut pids);
    pids.sort_unstable();
    pids.dedup();
    // Per kind: the count, then RSS, PSS, PSS anon, PSS file.
    let mut kinds: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
    let mut others = Vec::new();
    for pid in pids {
        if pid == daemon {
            continue;
        }
        let argv = cmdline(pid);
        let exe = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
        let kind = if pauses.contains(&pid) {
            "pause"
        } else if workloads.contains(&pid) {
            "container"
        } else if exe == "roci" && argv.iter().any(|a| a == "monitor") {
            "monitor"
        } else if exe.starts_with("containerd-shim") {
            "shim"
        } else {
            others.push(argv.join(" "));
            "other"
        };
        let Some(m) = smaps_rollup(pid) else { continue };
        let e = kinds.entry(kind).or_default();
        e[0] += 1;
        for (sum, v) in e[1..].iter_mut().zip(m) {
            *sum += v;
        }
    }
    for pod in &ids {
        d.end_pod(pod).await?;
    }
    let n = pods as f64;
    let sum = |field: usize, skip: &[&str]| -> f64 {
        kinds.iter().filter(|(k, _)| !skip.contains(k)).map(|(_, v)| v[field] as f64).sum::<f64>()
    };
    let growth = ((after.0 as f64 - before.0 as f64), (after.1 as f64 - before.1 as f64));
    let processes: serde_json::Map<String, Value> = kinds
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!({ "count": v[0], "rss_kib": v[1], "pss_kib": v[2], "pss_anon_kib": v[3], "pss_file_kib": v[4] }),
            )
        })
        .collect();
    Ok(json!({
        "pods": pods,
        "daemon": { "pid": daemon, "rss_kib_before": before.0, "pss_kib_before": before.1, "rss_kib_after": after.0, "pss_kib_after": after.1 },
        "processes": processes,
        "other_processes": others,
        "per_pod_kib": {
            "rss": (sum(1, &[]) + growth.0) / n,
            "pss": (sum(2, &[]) + growth.1) / n,
        },
        "overhead_per_pod_kib": {
            "rss": (sum(1, &["container"]) + growth.0) / n,
            "pss": (sum(2, &["container"]) + growth.1) / n,
        },
        "daemon_growth_per_pod_kib": { "rss": growth.0 / n, "pss": growth.1 / n },
    }))
}

fn info_pid(info: &std::collections::HashMap<String, String>) -> Option<i32> {
    let v: Value = serde_json::from_str(info.get("info")?).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

/// From roci-cri's debug log (tracing's fmt lines: an RFC 3339 time, the level, the target, the
/// message and fields): when the last `start-*` pod's steps happened, relative to its network
/// namespace being pinned (the first thing RunPodSandbox logs): the CNI calls, the pod's and its
/// container's events. The monitor spawns are what lies between the logged steps.
fn log_breakdown(log: &str) -> Value {
    let lines: Vec<&str> = log.lines().collect();
    let Some(first) = lines.iter().rposition(|l| l.contains("pinned a new network namespace")) else { return Value::Null };
    let t0 = timestamp(lines[first]);
    let mut steps = Vec::new();
    for l in &lines[first..] {
        let (Some(t0), Some(t)) = (t0, timestamp(l)) else { continue };
        let msg = l.split_whitespace().skip(2).collect::<Vec<_>>().join(" ");
        steps.push(json!({ "ms": (t - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0, "line": msg }));
        if steps.len() >= 40 {
            break;
        }
    }
    Value::Array(steps)
}

fn timestamp(line: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(line.split_whitespace().next()?).ok()
}
