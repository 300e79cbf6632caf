//! `roci image ...` and `run`/`create --image` end to end: pull from a private registry, run containers
//! on overlay snapshots, and remove everything again. roci only (runc has no images): against another
//! runtime these tests return at once.
//!
//! Each test has its own image root inside its container guard's temp dir, so the guard's cleanup
//! (delete --force, kill, unmount everything below the dir, remove the cgroup) covers whatever a
//! failing test leaves.

use std::path::{Path, PathBuf};

use roci_integration::cgroups;
use roci_integration::container::Container;
use roci_integration::image;
use roci_integration::registry::{Push, Registry};
use roci_integration::runtime;
use serde_json::Value;

/// A test's image root and registry, with the guard whose temp dir holds the root.
struct Fixture {
    c: Container,
    root: PathBuf,
    registry: Registry,
}

impl Fixture {
    /// None when the runtime under test is not roci.
    fn new(name: &str) -> Option<Fixture> {
        if !runtime().is_roci() {
            eprintln!("skipped: `roci image` is roci's own");
            return None;
        }
        let c = Container::new(name);
        let root = c.dir.join("images");
        let registry = Registry::start();
        registry.push(&image::busybox().oci_ref(), "busybox:latest", &Push::default());
        registry.push(&format!("oci:{}:latest", image::app().display()), "app:1", &Push::default());
        Some(Fixture { c, root, registry })
    }

    fn reference(&self, name_tag: &str) -> String {
        format!("{}/{name_tag}", self.registry.host())
    }

    /// `roci --image-root ROOT ARGS...` with the guard's --root and --log.
    fn roci(&self, args: &[&str]) -> roci_integration::exec::Output {
        let mut cmd = self.c.command();
        cmd.arg("--image-root").arg(&self.root).args(args);
        self.c.exec(cmd, std::time::Duration::from_secs(60))
    }

    /// `run --image REF --cgroup-parent PARENT EXTRA... ID [-- CMD...]`.
    fn run(&self, reference: &str, id: &str, extra: &[&str], cmd: &[&str]) -> roci_integration::exec::Output {
        let parent = cgroups::suite_parent();
        let mut args = vec!["run", "--image", reference, "--cgroup-parent", &parent];
        args.extend_from_slice(extra);
        args.push(id);
        if !cmd.is_empty() {
            args.push("--");
            args.extend_from_slice(cmd);
        }
        self.roci(&args)
    }

    fn ls(&self) -> Vec<Value> {
        let out = self.roci(&["image", "ls", "--format", "json"]);
        out.ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("image ls: {e}: {out}"))
    }

    fn entries(&self, sub: &str) -> Vec<String> {
        dir_entries(&self.root.join(sub))
    }

    /// Nothing of container `id` is left: no state, bundle, snapshot, mount or cgroup.
    #[track_caller]
    fn assert_gone(&self, id: &str) {
        assert!(!self.c.state_root.join(id).exists(), "state of {id} left");
        assert!(!self.root.join("bundles").join(id).exists(), "bundle of {id} left");
        assert!(!self.root.join("snapshots").join(id).exists(), "snapshot of {id} left");
        let mounts = roci_integration::container::mounts_below(&self.root.join("bundles").join(id));
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let cg = format!("{}/{id}", cgroups::suite_parent());
        let mut left = Vec::new();
        roci_integration::wait_for(std::time::Duration::from_secs(2), || {
            left = cgroups::existing_dirs(&cg);
            left.is_empty()
        });
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn image_pull_ls_inspect_rm() {
    let Some(f) = Fixture::new("image_pull_ls") else { return };
    let app = f.reference("app:1");
    let out = f.roci(&["image", "pull", &app]);
    out.ok();
    assert!(out.stdout.contains(&format!("{app} sha256:")), "{out}");
    let busybox = f.reference("busybox");
    f.roci(&["image", "pull", "-q", &busybox]).ok();

    let ls = f.ls();
    assert_eq!(ls.len(), 2, "{ls:?}");
    let by = |n: &str| ls.iter().find(|i| i["name"].as_str().unwrap().starts_with(n)).unwrap().clone();
    let (a, b) = (by(&app), by(&format!("{busybox}:latest")));
    // The app image stacks its layers on busybox's: that base layer is stored once, shared by both.
    assert!(a["sharedSize"].as_u64().unwrap() > 1_000_000, "{a}");
    assert_eq!(a["sharedSize"], b["sharedSize"], "{a} {b}");
    assert_eq!(b["uniqueSize"], 0, "{b}");
    assert!(a["uniqueSize"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(f.entries("layers").len(), 3, "busybox's layer once, plus app's two");

    let table = f.roci(&["image", "ls"]);
    table.ok();
    assert!(table.stdout.starts_with("NAME") && table.stdout.contains("SHARED"), "{table}");

    let inspect = f.roci(&["image", "inspect", &app]);
    inspect.ok();
    let doc: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(doc["config"]["config"]["User"], "app", "{doc}");
    assert_eq!(doc["layers"].as_array().unwrap().len(), 3);
    // An image ID prefix names the image too, as in Docker.
    let id = doc["id"].as_str().unwrap().trim_start_matches("sha256:")[..12].to_owned();
    f.roci(&["image", "inspect", &id]).ok();

    // Removing app keeps busybox's shared layer; removing busybox then empties the store.
    f.roci(&["image", "rm", &app]).ok();
    assert_eq!(f.entries("layers").len(), 1);
    f.roci(&["image", "rm", &busybox]).ok();
    assert!(f.entries("layers").is_empty(), "{:?}", f.entries("layers"));
    assert!(f.entries("blobs/sha256").is_empty(), "{:?}", f.entries("blobs/sha256"));
    assert!(f.ls().is_empty());
    let gone = f.roci(&["image", "inspect", &app]);
    gone.fails();
    gone.says("not found");
}

#[test]
fn image_run_applies_the_image_config() {
    let Some(f) = Fixture::new("image_run_config") else { return };
    let app = f.reference("app:1");
    let id = format!("{}-a", f.c.id);
    // The image's Cmd runs through its entrypoint (`sh -c`), pulled on first use.
    let out = f.run(&app, &id, &["--rm"], &[]);
    out.ok();
    assert_eq!(out.stdout.trim(), "from-image-cmd", "{out}");
    f.assert_gone(&id);

    let script = "id -u; id -g; id -G; pwd; echo $APP_MODE; cat seed; ls /bin/vi >/dev/null 2>&1 || echo no-vi; \
                  stat -c %u:%g /data; grep -c ' /data ' /proc/self/mountinfo";
    let out = f.run(&app, &id, &["--rm", "-e", "EXTRA=1"], &[script]);
    out.ok();
    let lines = out.lines();
    assert_eq!(lines[0], "1234", "user from the image's /etc/passwd: {out}");
    assert_eq!(lines[1], "2345", "{out}");
    assert!(lines[2].split(' ').any(|g| g == "3456"), "supplementary group from /etc/group: {out}");
    assert_eq!(lines[3], "/data", "WorkingDir: {out}");
    assert_eq!(lines[4], "test", "Env: {out}");
    assert_eq!(lines[5], "seeded", "the volume is seeded from the image: {out}");
    assert_eq!(lines[6], "no-vi", "the upper layer's whiteout hides /bin/vi: {out}");
    assert_eq!(lines[7], "1234:2345", "{out}");
    assert_eq!(lines[8], "1", "/data is a mount of its own (a volume): {out}");
    f.assert_gone(&id);

    // The merged view, exactly: the opaque dir hides the lower layer's files, the hard link shares
    // the inode of its target, the symlink points where the layer said.
    let script = "ls /etc/conf.d; cat /opt/marker; readlink /data/latest; \
                  [ $(stat -c %i /data/seed) = $(stat -c %i /data/seed-link) ] && echo same-inode; \
                  stat -c %h /data/seed";
    let out = f.run(&app, &id, &["--rm", "-u", "0"], &[script]);
    out.ok();
    assert_eq!(out.lines(), ["c", "two", "seed", "same-inode", "2"], "{out}");
    f.assert_gone(&id);

    // Overrides: user, workdir, entrypoint.
    let out = f.run(&app, &id, &["--rm", "-u", "0:0", "-w", "/tmp", "--entrypoint", "/bin/pwd"], &[]);
    out.ok();
    assert_eq!(out.stdout.trim(), "/tmp", "{out}");
    f.assert_gone(&id);
}

#[test]
fn image_containers_get_their_own_writable_layer() {
    let Some(f) = Fixture::new("image_cow") else { return };
    let busybox = f.reference("busybox");
    f.roci(&["image", "pull", &busybox]).ok();
    let (one, two) = (format!("{}-1", f.c.id), format!("{}-2", f.c.id));
    // `create --image`, start, and the container stays after it exits (no --rm).
    let parent = cgroups::suite_parent();
    f.roci(&[
        "create",
        "--image",
        &busybox,
        "--cgroup-parent",
        &parent,
        &one,
        "--",
        "sh",
        "-c",
        "echo one > /etc/hostfile; rm /bin/ls",
    ])
    .ok();
    assert!(f.root.join("bundles").join(&one).join("config.json").is_file());
    f.roci(&["start", &one]).ok();
    roci_integration::wait_for(std::time::Duration::from_secs(10), || f.roci(&["state", &one]).stdout.contains("\"stopped\""));
    // The write and the removal landed in one's upper dir, not in the shared layer.
    let upper = f.root.join("snapshots").join(&one);
    assert!(!f.entries(&format!("snapshots/{one}")).is_empty(), "{}", upper.display());
    let out = f.run(&busybox, &two, &["--rm"], &["sh", "-c", "cat /etc/hostfile 2>&1 || echo clean; ls /bin/ls"]);
    out.ok();
    assert_eq!(out.lines(), ["cat: can't open '/etc/hostfile': No such file or directory", "clean", "/bin/ls"], "{out}");
    f.assert_gone(&two);

    // The image is in use by one: rm refuses, prune keeps its layers.
    let rm = f.roci(&["image", "rm", &busybox]);
    rm.fails();
    rm.says("in use");
    f.roci(&["image", "prune"]).ok();
    assert_eq!(f.entries("layers").len(), 1);

    // `delete` takes the snapshot and the bundle with the container.
    f.roci(&["delete", &one]).ok();
    f.assert_gone(&one);
    f.roci(&["image", "rm", &busybox]).ok();
    assert!(f.entries("layers").is_empty());
    assert!(f.entries("snapshots").is_empty());
    assert!(f.entries("bundles").is_empty());
}

#[test]
fn image_bad_input_leaves_nothing() {
    let Some(f) = Fixture::new("image_bad") else { return };
    let app = f.reference("app:1");
    let id = format!("{}-bad", f.c.id);

    // A registry that is down: a clear error naming it, and nothing half-written in the store.
    let down = format!("127.0.0.1:{}/app:1", free_port());
    let out = f.roci(&["image", "pull", &down]);
    out.fails();
    out.says(&down);
    assert!(f.entries("blobs/sha256").is_empty() && f.entries("ingest").is_empty() && f.entries("layers").is_empty());

    let out = f.run(&f.reference("missing:1"), &id, &["--rm"], &[]);
    out.fails();
    out.says("missing");
    f.assert_gone(&id);

    let out = f.run(&app, &id, &["--rm", "--pull", "never"], &[]);
    out.fails();
    out.says("not found");
    f.assert_gone(&id);

    // A user the image does not have: the error names the field, and the snapshot made for it is gone.
    let out = f.run(&app, &id, &["--rm", "-u", "nosuchuser"], &[]);
    out.fails();
    out.says("User");
    out.says("nosuchuser");
    f.assert_gone(&id);

    let out = f.roci(&["image", "pull", "UPPER/Case"]);
    out.fails();
    out.says("UPPER/Case");

    let out = f.run(&app, "../escape", &["--rm"], &[]);
    out.fails();
    out.says("escape");
    assert!(!f.root.join("escape").exists(), "nothing made outside bundles/");

    // A container that fails to start (no such program) leaves no snapshot behind.
    let out = f.run(&app, &id, &["--rm", "--entrypoint", "/no/such/program"], &[]);
    out.fails();
    f.assert_gone(&id);
    assert!(f.entries("snapshots").is_empty(), "{:?}", f.entries("snapshots"));
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn image_credentials_reach_the_registry() {
    if !runtime().is_roci() {
        return;
    }
    let c = Container::new("image_creds");
    let root = c.dir.join("images");
    let registry = Registry::with_auth("alice", "s3cret");
    registry.push(&image::busybox().oci_ref(), "private/busybox:1", &Push::default());
    let reference = format!("{}/private/busybox:1", registry.host());
    let roci = |args: &[&str]| {
        let mut cmd = c.command();
        cmd.arg("--image-root").arg(&root).args(args);
        c.exec(cmd, std::time::Duration::from_secs(60))
    };
    let out = roci(&["image", "pull", &reference]);
    out.fails();
    out.says(&reference);
    let out = roci(&["image", "pull", "--creds", "alice:wrong", &reference]);
    out.fails();
    // `run --image` hands the credentials to roci-image in its environment, not on a command line.
    let id = format!("{}-a", c.id);
    let parent = cgroups::suite_parent();
    let out = roci(&[
        "run",
        "--image",
        &reference,
        "--creds",
        "alice:s3cret",
        "--rm",
        "--cgroup-parent",
        &parent,
        &id,
        "--",
        "echo",
        "in",
    ]);
    out.ok();
    assert_eq!(out.stdout.trim(), "in", "{out}");
    assert!(!root.join("bundles").join(&id).exists());
    let ls = roci(&["image", "ls", "-q"]);
    ls.ok();
    assert_eq!(ls.stdout.trim(), reference, "{ls}");
}

/// An OCI layout at `layout` of busybox with an empty layer before and after its own, the same
/// digest twice in the manifest (as old Docker images repeat their empty layer), tagged `latest`;
/// returns the manifest's digest.
fn repeated_layer_layout(layout: &Path) -> String {
    use libimage::digest::Digest;
    let src = &image::busybox().oci_layout;
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for e in std::fs::read_dir(src.join("blobs/sha256")).unwrap().flatten() {
        std::fs::copy(e.path(), blobs.join(e.file_name())).unwrap();
    }
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let read = |d: &Value| -> Value {
        let hex = d.as_str().unwrap().trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(blobs.join(hex)).unwrap()).unwrap()
    };
    let put = |data: &[u8]| -> String {
        let d = Digest::sha256_of(data);
        std::fs::write(blobs.join(d.hex()), data).unwrap();
        d.to_string()
    };
    let index: Value = serde_json::from_slice(&std::fs::read(src.join("index.json")).unwrap()).unwrap();
    let mut manifest = read(&index["manifests"][0]["digest"]);
    let mut config = read(&manifest["config"]["digest"]);
    // An empty tar (two zero blocks), gzipped as Docker's empty layer is.
    let tar = vec![0u8; 1024];
    let gz = std::process::Command::new("sh").args(["-c", "head -c 1024 /dev/zero | gzip -n -c"]).output().unwrap();
    assert!(gz.status.success() && !gz.stdout.is_empty());
    let (empty_diff, empty) = (Digest::sha256_of(&tar).to_string(), put(&gz.stdout));
    let empty_desc = serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                        "digest": empty, "size": gz.stdout.len()});
    let own = manifest["layers"][0].clone();
    manifest["layers"] = serde_json::json!([empty_desc, own, empty_desc]);
    let own_diff = config["rootfs"]["diff_ids"][0].clone();
    config["rootfs"]["diff_ids"] = serde_json::json!([empty_diff, own_diff, empty_diff]);
    config.as_object_mut().unwrap().remove("history");
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&config).into();
    manifest["config"]["size"] = config.len().into();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = put(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    digest
}

/// Regression (issue 10): `roci image pull` hung for ever on a manifest that lists one layer digest
/// twice: the two downloads of the digest waited for each other's lock inside one single-threaded
/// async runtime. The pull must finish (the harness kills it after 60 s), store the layer once,
/// and a container must run from the image.
#[test]
fn image_pull_manifest_that_repeats_a_layer() {
    let Some(f) = Fixture::new("image_repeated_layer") else { return };
    let layout = f.c.dir.join("repeated-layer-oci");
    let ours = repeated_layer_layout(&layout);
    let pushed = f.registry.push(&format!("oci:{}:latest", layout.display()), "repeated:1", &Push::default());
    assert_eq!(pushed, ours, "the registry holds the manifest as written, with the layer twice");
    let reference = f.reference("repeated:1");
    let out = f.roci(&["image", "pull", "-q", &reference]);
    assert!(!out.timed_out, "the pull hung: {out}");
    out.ok();
    let id = format!("{}-a", f.c.id);
    let out = f.run(&reference, &id, &["--rm"], &["echo", "repeated-layer-ok"]);
    out.ok();
    assert_eq!(out.stdout.trim(), "repeated-layer-ok", "{out}");
    f.assert_gone(&id);
}

/// Containers of a test under roci's default cgroup parent: on drop (also when the test fails), each is
/// deleted, its cgroup removed, and `/roci` too in every hierarchy when nothing else is under it
/// (another run's containers keep it).
struct DefaultParent<'a> {
    f: &'a Fixture,
    ids: Vec<String>,
}

impl Drop for DefaultParent<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.f.roci(&["delete", "--force", id]);
            cgroups::kill_all(&format!("/roci/{id}"));
            cgroups::remove_tree(&format!("/roci/{id}"));
        }
        for d in cgroups::existing_dirs("/roci") {
            // Only if empty: rmdir refuses a cgroup with children or processes.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The path of the cgroup of `pid` that holds `controller` (v1), or its cgroup v2 path, as
/// `/proc/PID/cgroup` shows it to the host.
fn cgroup_of(pid: i64, controller: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let hit = if cgroups::is_v2() { ctrls.is_empty() } else { ctrls.split(',').any(|c| c == controller) };
            hit.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} line in /proc/{pid}/cgroup: {text}"))
}

/// Regression (issue 10): `run --image` without `--cgroup-parent` put the container's cgroup under the
/// caller's own cgroup (runc's rule for a relative cgroupsPath). It goes under roci's parent, `/roci`,
/// in every hierarchy, and leaves with the container; an explicit `--cgroup-parent` still wins.
#[test]
fn image_run_default_cgroup_parent_is_roci() {
    let Some(f) = Fixture::new("image_default_cgroup_parent") else { return };
    let busybox = f.reference("busybox");
    let (a, b) = (format!("{}-a", f.c.id), format!("{}-b", f.c.id));
    let guard = DefaultParent { f: &f, ids: vec![a.clone(), b.clone()] };
    let pid_of = |id: &str| -> i64 {
        let out = f.roci(&["state", id]);
        out.ok();
        serde_json::from_str::<Value>(&out.stdout).unwrap()["pid"].as_i64().unwrap()
    };

    f.roci(&["create", "--image", &busybox, &a, "--", "sleep", "100"]).ok();
    let pid = pid_of(&a);
    let ours = cgroup_of(i64::from(std::process::id()), "memory");
    let theirs = cgroup_of(pid, "memory");
    assert_eq!(theirs, format!("/roci/{a}"), "the container's cgroup (the caller's is {ours})");
    assert!(!cgroups::existing_dirs(&format!("/roci/{a}")).is_empty());
    if !ours.trim_end_matches('/').is_empty() {
        assert!(!theirs.starts_with(&ours), "under the caller's cgroup {ours}: {theirs}");
    }
    f.roci(&["delete", "--force", &a]).ok();
    f.assert_gone(&a);
    assert!(cgroups::existing_dirs(&format!("/roci/{a}")).is_empty(), "the container's cgroup goes with it");

    // An explicit parent wins.
    let parent = cgroups::suite_parent();
    f.roci(&["create", "--image", &busybox, "--cgroup-parent", &parent, &b, "--", "sleep", "100"]).ok();
    assert_eq!(cgroup_of(pid_of(&b), "memory"), format!("{parent}/{b}"));
    f.roci(&["delete", "--force", &b]).ok();
    f.assert_gone(&b);
    drop(guard);
}
