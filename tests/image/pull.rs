//! `libimage::pull` against a private docker-registry: OCI and Docker v2s2 manifests,
//! gzip and zstd layers, pinned digests, basic auth, a two-platform index, mirrors, tampered
//! content, and a second pull that downloads nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use libimage::digest::Digest;
use libimage::pull::{self, Platform, PullAuth, PullOptions, Pulled};
use libimage::reference::Reference;
use libimage::registries::Registries;
use libimage::store::Store;
use libimage::Error;
use roci_integration::image::{self, busybox};
use roci_integration::registry::{Push, Registry};
use serde_json::{json, Value};
use tempfile::TempDir;

/// A test's registry and image root; [`Case::finish`] checks that both are gone afterwards.
struct Case {
    reg: Registry,
    root: TempDir,
    store: Store,
}

impl Case {
    fn new(reg: Registry) -> Case {
        let root = tempfile::Builder::new().prefix("roci-image-root-").tempdir().expect("create image root");
        let store = Store::open(root.path()).expect("open store");
        Case { reg, root, store }
    }

    fn pull(&self, reference: &str, opts: &PullOptions) -> Result<Pulled, Error> {
        let reference = Reference::parse(reference).unwrap_or_else(|e| panic!("{e}"));
        pull::pull(&self.store, &reference, opts)
    }

    fn name(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.reg.host())
    }

    /// Drops everything and checks the registry process and both temp dirs are gone.
    fn finish(self) {
        let (pid, reg_dir, root) = (self.reg.pid(), self.reg.dir().to_path_buf(), self.root.path().to_path_buf());
        drop(self);
        assert!(roci_integration::is_dead(pid), "registry pid {pid} still running");
        assert!(!reg_dir.exists(), "{} left behind", reg_dir.display());
        assert!(!root.exists(), "{} left behind", root.display());
    }
}

fn json_blob(store: &Store, d: &Digest) -> Value {
    serde_json::from_slice(&store.read(d).expect("read blob")).expect("blob is JSON")
}

/// Everything the pull reports is in the store, and consistent.
fn assert_complete(store: &Store, p: &Pulled) {
    for d in [&p.manifest_digest, &p.config_digest].into_iter().chain(p.layers.iter().map(|l| &l.digest)) {
        assert!(store.has(d), "{d} not in the store");
    }
    if let Some(i) = &p.index_digest {
        assert!(store.has(i), "index {i} not in the store");
    }
    let manifest = json_blob(store, &p.manifest_digest);
    assert_eq!(manifest["config"]["digest"], p.config_digest.to_string());
    assert_eq!(manifest["layers"].as_array().unwrap().len(), p.layers.len());
    let config = json_blob(store, &p.config_digest);
    let diff_ids: Vec<String> = p.diff_ids.iter().map(|d| d.to_string()).collect();
    assert_eq!(config["rootfs"]["diff_ids"], json!(diff_ids));
    assert!(!p.layers.is_empty());
    for l in &p.layers {
        let len = std::fs::metadata(store.blob_path(&l.digest)).unwrap().len();
        assert_eq!(len, l.size, "size of layer {}", l.digest);
    }
    assert!(p.size > p.layers[0].size);
}

fn busybox_pushed(reg: &Registry, name_tag: &str, how: &Push) -> String {
    reg.push(&busybox().oci_ref(), name_tag, how)
}

#[test]
fn pull_oci_manifest() {
    let case = Case::new(Registry::start());
    let digest = busybox_pushed(&case.reg, "busybox:latest", &Push::default());
    let p = case.pull(&case.name("busybox:latest"), &PullOptions::default()).unwrap();
    assert_complete(&case.store, &p);
    assert_eq!(p.manifest_digest.to_string(), digest);
    assert_eq!(p.index_digest, None);
    assert_eq!(p.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(p.reference.to_string(), format!("{}/busybox:latest", case.reg.host()));
    // The reference's default tag is latest.
    let again = case.pull(&case.name("busybox"), &PullOptions::default()).unwrap();
    assert_eq!(again.manifest_digest, p.manifest_digest);
    case.finish();
}

#[test]
fn pull_docker_v2s2() {
    let case = Case::new(Registry::start());
    let digest = busybox_pushed(&case.reg, "busybox:v2s2", &Push { docker_v2s2: true, ..Default::default() });
    let p = case.pull(&case.name("busybox:v2s2"), &PullOptions::default()).unwrap();
    assert_complete(&case.store, &p);
    assert_eq!(p.manifest_digest.to_string(), digest);
    assert_eq!(json_blob(&case.store, &p.manifest_digest)["mediaType"], pull::MEDIA_TYPE_DOCKER_MANIFEST);
    assert_eq!(p.layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip");
    case.finish();
}

#[test]
fn pull_zstd_layers() {
    let case = Case::new(Registry::start());
    busybox_pushed(&case.reg, "busybox:zstd", &Push { zstd: true, ..Default::default() });
    let p = case.pull(&case.name("busybox:zstd"), &PullOptions::default()).unwrap();
    assert_complete(&case.store, &p);
    assert_eq!(p.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
    let blob = std::fs::read(case.store.blob_path(&p.layers[0].digest)).unwrap();
    assert_eq!(blob[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    case.finish();
}

#[test]
fn pull_pinned_digest() {
    let case = Case::new(Registry::start());
    let digest = busybox_pushed(&case.reg, "busybox:latest", &Push::default());
    let p = case.pull(&case.name(&format!("busybox@{digest}")), &PullOptions::default()).unwrap();
    assert_complete(&case.store, &p);
    assert_eq!(p.manifest_digest.to_string(), digest);
    assert_eq!(p.reference.tag, None);
    // Tag and digest: the digest wins, the tag stays for display.
    let p = case.pull(&case.name(&format!("busybox:other@{digest}")), &PullOptions::default()).unwrap();
    assert_eq!(p.manifest_digest.to_string(), digest);

    let absent = format!("sha256:{}", "0".repeat(64));
    let e = case.pull(&case.name(&format!("busybox@{absent}")), &PullOptions::default()).unwrap_err().to_string();
    eprintln!("expected error: {e}");
    assert!(e.contains(&absent) && e.contains(&case.reg.host()), "{e}");
    assert!(!case.store.has(&Digest::parse(&absent).unwrap()));
    case.finish();
}

#[test]
fn pull_basic_auth() {
    let case = Case::new(Registry::with_auth("roci", "s3cret"));
    busybox_pushed(&case.reg, "private/busybox:latest", &Push::default());
    let name = case.name("private/busybox:latest");

    let wrong = PullOptions { credentials: Some(PullAuth::basic("roci", "wrong")), ..Default::default() };
    let e = case.pull(&name, &wrong).unwrap_err().to_string();
    eprintln!("expected error: {e}");
    assert!(e.contains("not authorized") && e.contains(&name) && e.contains(&case.reg.host()), "{e}");
    let e = case.pull(&name, &PullOptions::default()).unwrap_err().to_string();
    eprintln!("expected error: {e}");
    assert!(e.contains("not authorized"), "{e}");
    assert!(case.store.list().unwrap().is_empty(), "a failed pull stored blobs");

    let right = PullOptions { credentials: Some(PullAuth::basic("roci", "s3cret")), ..Default::default() };
    let p = case.pull(&name, &right).unwrap();
    assert_complete(&case.store, &p);

    // The same credentials from registries.json's auths (base64 "roci:s3cret").
    let root2 = TempDir::new().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    let conf = json!({"auths": {case.reg.host(): {"auth": "cm9jaTpzM2NyZXQ="}}}).to_string();
    let registries = Registries::from_json(&conf, Path::new("registries.json")).unwrap();
    let p2 = pull::pull(&store2, &Reference::parse(&name).unwrap(), &PullOptions { registries, ..Default::default() }).unwrap();
    assert_eq!(p2.manifest_digest, p.manifest_digest);
    case.finish();
}

fn copy_dir(from: &Path, to: &Path) {
    let out = Command::new("cp").arg("-a").arg(from).arg(to).output().expect("run cp");
    assert!(out.status.success(), "cp -a {from:?} {to:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn pull_index_selects_platform() {
    let case = Case::new(Registry::start());
    let work = TempDir::new().unwrap();
    let layout: PathBuf = work.path().join("oci");
    copy_dir(&busybox().oci_layout, &layout);
    let (amd64, arm64) = image::add_two_platform_index(&layout);
    let index_digest =
        case.reg.push(&format!("oci:{}:multi", layout.display()), "multi:latest", &Push { all: true, ..Default::default() });
    let name = case.name("multi:latest");

    let linux_amd64 = PullOptions { platform: Some(Platform::parse("linux/amd64").unwrap()), ..Default::default() };
    let p = case.pull(&name, &linux_amd64).unwrap();
    assert_complete(&case.store, &p);
    assert_eq!(p.index_digest.as_ref().map(|d| d.to_string()), Some(index_digest.clone()));
    assert_eq!(p.manifest_digest.to_string(), amd64);
    assert_eq!(json_blob(&case.store, &p.config_digest)["architecture"], "amd64");
    if cfg!(target_arch = "x86_64") {
        let host = case.pull(&name, &PullOptions::default()).unwrap();
        assert_eq!(host.manifest_digest.to_string(), amd64);
    }

    let linux_arm64 = PullOptions { platform: Some(Platform::parse("linux/arm64").unwrap()), ..Default::default() };
    let p = case.pull(&name, &linux_arm64).unwrap();
    assert_eq!(p.manifest_digest.to_string(), arm64);
    assert_eq!(json_blob(&case.store, &p.config_digest)["architecture"], "arm64");

    // Pinned to the index's digest.
    let p = case.pull(&case.name(&format!("multi@{index_digest}")), &linux_amd64).unwrap();
    assert_eq!(p.manifest_digest.to_string(), amd64);

    let s390x = PullOptions { platform: Some(Platform::parse("linux/s390x").unwrap()), ..Default::default() };
    let e = case.pull(&name, &s390x).unwrap_err().to_string();
    eprintln!("expected error: {e}");
    assert!(e.contains("linux/s390x") && e.contains("linux/arm64") && e.contains(&index_digest), "{e}");
    case.finish();
}

#[test]
fn pull_twice_downloads_nothing_new() {
    let case = Case::new(Registry::start());
    busybox_pushed(&case.reg, "busybox:latest", &Push::default());
    let name = case.name("busybox:latest");
    // Progress is drawn only when stderr is a terminal (run under `script` to see it).
    let p = case.pull(&name, &PullOptions { progress: true, ..Default::default() }).unwrap();
    let blob_gets = case.reg.count_requests("GET /v2/busybox/blobs/");
    assert_eq!(blob_gets, 1 + p.layers.len(), "config and layers fetched once:\n{}", case.reg.log());
    let listing = case.store.list().unwrap();

    let again = case.pull(&name, &PullOptions::default()).unwrap();
    assert_eq!(again.manifest_digest, p.manifest_digest);
    assert_eq!(case.reg.count_requests("GET /v2/busybox/blobs/"), blob_gets, "second pull fetched blobs");
    assert_eq!(case.store.list().unwrap(), listing);
    assert!(std::fs::read_dir(case.root.path().join("ingest")).unwrap().next().is_none(), "ingest/ not empty");
    case.finish();
}

#[test]
fn pull_through_mirrors() {
    let case = Case::new(Registry::start());
    let digest = busybox_pushed(&case.reg, "library/busybox:latest", &Push::default());
    let dead = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());

    // A registry that does not answer, mirrored by ours.
    let conf = json!({"mirrors": {dead.clone(): [format!("http://{}", case.reg.host())]}}).to_string();
    let registries = Registries::from_json(&conf, Path::new("registries.json")).unwrap();
    let p = case.pull(&format!("{dead}/library/busybox"), &PullOptions { registries, ..Default::default() }).unwrap();
    assert_eq!(p.manifest_digest.to_string(), digest);

    // A mirror that does not answer, then our registry itself.
    let root2 = TempDir::new().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    let conf = json!({"mirrors": {case.reg.host(): [format!("http://{dead}")]}}).to_string();
    let registries = Registries::from_json(&conf, Path::new("registries.json")).unwrap();
    let reference = Reference::parse(&case.name("library/busybox")).unwrap();
    let p = pull::pull(&store2, &reference, &PullOptions { registries, ..Default::default() }).unwrap();
    assert_eq!(p.manifest_digest.to_string(), digest);
    case.finish();
}

#[test]
fn pull_rejects_tampered_layer() {
    let case = Case::new(Registry::start());
    let digest = busybox_pushed(&case.reg, "busybox:latest", &Push::default());
    let manifest: Value = serde_json::from_slice(&std::fs::read(case.reg.blob_path(&digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    // Same size, one byte flipped, in the registry's own storage.
    let path = case.reg.blob_path(&layer);
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let e = case.pull(&case.name("busybox:latest"), &PullOptions::default()).unwrap_err().to_string();

    eprintln!("expected error: {e}");
    assert!(e.contains(&layer) && e.contains("busybox:latest"), "{e}");
    assert!(!case.store.has(&Digest::parse(&layer).unwrap()), "a tampered layer was stored");
    assert!(std::fs::read_dir(case.root.path().join("ingest")).unwrap().next().is_none(), "ingest/ not empty");
    case.finish();
}

#[test]
fn pull_https_mirror_with_self_signed_certificate() {
    let case = Case::new(Registry::start_tls());
    let digest = busybox_pushed(&case.reg, "busybox:latest", &Push::default());
    // A loopback https:// mirror is used without certificate verification (rustls, ring).
    let conf = json!({"mirrors": {"roci.invalid": [format!("https://{}", case.reg.host())]}}).to_string();
    let registries = Registries::from_json(&conf, Path::new("registries.json")).unwrap();
    let p = case.pull("roci.invalid/busybox:latest", &PullOptions { registries, ..Default::default() }).unwrap();
    assert_complete(&case.store, &p);
    assert_eq!(p.manifest_digest.to_string(), digest);

    // Plain HTTP to the TLS port fails, and says where.
    let root2 = TempDir::new().unwrap();
    let store2 = Store::open(root2.path()).unwrap();
    let e =
        pull::pull(&store2, &Reference::parse(&case.name("busybox")).unwrap(), &PullOptions::default()).unwrap_err().to_string();
    eprintln!("expected error: {e}");
    assert!(e.contains(&format!("http://{}", case.reg.host())), "{e}");
    case.finish();
}
