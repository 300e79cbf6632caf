//! The ImageService: PullImage (by tag, by digest, with basic auth from the request), ImageStatus,
//! ListImages, RemoveImage and ImageFsInfo, with images built by the harness (see
//! `roci_integration::image`) and served by a private registry as mirror of the registries the
//! images are named after (`docker.io`, `registry.k8s.io`), as kubelet names them.

use std::time::{Duration, Instant};

use base64::Engine;
use libimage::digest::Digest;
use roci_cri_proto::runtime_v1::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ImageStatusResponse, ListImagesRequest,
    PullImageRequest, RemoveImageRequest,
};
use roci_integration::image;
use roci_integration::registry::{Push, Registry};
use tonic::{Code, Status};

use crate::server::{Client, CriServer};

/// What a pushed image looks like from the registry: its manifest digest, its ID (the config's
/// digest), its size as the CRI counts it (manifest, config and layers as stored) and the chain ID
/// of its top layer.
struct Pushed {
    manifest: String,
    id: String,
    size: u64,
    chain_id: String,
}

/// Push the OCI layout `src` (a skopeo source) to `name_tag` and read back what the registry holds.
fn push(reg: &Registry, src: &str, name_tag: &str) -> Pushed {
    let manifest = reg.push(src, name_tag, &Push::default());
    let manifest_bytes = std::fs::read(reg.blob_path(&manifest)).expect("read the pushed manifest");
    let m: serde_json::Value = serde_json::from_slice(&manifest_bytes).expect("the manifest is JSON");
    let id = m["config"]["digest"].as_str().expect("config digest").to_string();
    let layers = m["layers"].as_array().expect("layers");
    let size = manifest_bytes.len() as u64
        + m["config"]["size"].as_u64().expect("config size")
        + layers.iter().map(|l| l["size"].as_u64().expect("layer size")).sum::<u64>();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.blob_path(&id)).expect("read the config")).expect("JSON");
    let diff_ids: Vec<Digest> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|d| Digest::parse(d.as_str().expect("a diff ID")).expect("a digest"))
        .collect();
    let chain_id = libimage::unpack::chain_ids(&diff_ids).last().expect("a layer").to_string();
    Pushed { manifest, id, size, chain_id }
}

fn busybox() -> String {
    image::busybox().oci_ref()
}

fn app() -> String {
    format!("oci:{}:latest", image::app().display())
}

/// busybox with the numeric user `1234:2345`, in an OCI layout of `dir`'s.
fn numeric_user(dir: &std::path::Path) -> String {
    let layout = dir.join("numeric");
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(std::process::Command::new("cp").arg("-a").arg(&image::busybox().oci_layout).arg(&layout));
    let image = format!("{}:latest", layout.display());
    run(std::process::Command::new("umoci").args(["config", "--image", &image, "--config.user", "1234:2345"]));
    format!("oci:{image}")
}

/// busybox as `docker.io/library/busybox:1.36` and as `registry.k8s.io/pause:3.10` (one image
/// under two names), and app as `docker.io/library/app:1`.
const THREE: [&str; 3] = ["docker.io/library/busybox:1.36", "registry.k8s.io/pause:3.10", "docker.io/library/app:1"];

/// Push [`THREE`]'s images; what the registry holds for each, in that order.
fn push_three(reg: &Registry) -> [Pushed; 3] {
    let pushed =
        [push(reg, &busybox(), "library/busybox:1.36"), push(reg, &busybox(), "pause:3.10"), push(reg, &app(), "library/app:1")];
    assert_eq!(pushed[0].id, pushed[1].id, "one image under two names");
    pushed
}

/// Pull every one of `names`.
async fn pull_all(client: &mut Client, names: &[&str]) {
    for name in names {
        pull(client, name, None).await.unwrap_or_else(|e| panic!("PullImage {name}: {e:?}"));
    }
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec { image: image.to_string(), ..ImageSpec::default() })
}

async fn pull(client: &mut Client, image: &str, auth: Option<AuthConfig>) -> Result<String, Status> {
    let request = PullImageRequest { image: spec(image), auth, sandbox_config: None };
    client.images.pull_image(request).await.map(|r| r.into_inner().image_ref)
}

async fn status(client: &mut Client, image: &str, verbose: bool) -> ImageStatusResponse {
    client.images.image_status(ImageStatusRequest { image: spec(image), verbose }).await.expect("ImageStatus").into_inner()
}

async fn list(client: &mut Client, filter: Option<&str>) -> Vec<Image> {
    let filter = filter.map(|f| ImageFilter { image: spec(f) });
    let mut images = client.images.list_images(ListImagesRequest { filter }).await.expect("ListImages").into_inner().images;
    images.sort_by(|a, b| a.id.cmp(&b.id));
    images
}

async fn remove(client: &mut Client, image: &str) {
    client
        .images
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .unwrap_or_else(|e| panic!("RemoveImage {image}: {e:?}"));
}

fn basic(user: &str, password: &str) -> Option<AuthConfig> {
    Some(AuthConfig { username: user.into(), password: password.into(), ..AuthConfig::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_and_by_digest() {
    let reg = Registry::start();
    let p = push(&reg, &busybox(), "library/busybox:1.36");
    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;

    // The short name is normalised to docker.io/library/...; the answer is the image ID.
    let image_ref = pull(&mut client, "busybox:1.36", None).await.expect("PullImage busybox:1.36");
    assert_eq!(image_ref, p.id);
    let by_digest = format!("docker.io/library/busybox@{}", p.manifest);
    let expected = Image {
        id: p.id.clone(),
        repo_tags: vec!["docker.io/library/busybox:1.36".into()],
        repo_digests: vec![by_digest.clone()],
        size: p.size,
        uid: None,
        username: String::new(),
        // containerd 1.6 leaves the spec unset; roci-cri names the image by its ID there.
        spec: if server.is_containerd() { None } else { spec(&p.id) },
        pinned: false,
    };
    for name in ["busybox:1.36", "docker.io/library/busybox:1.36", &by_digest, &p.id, &p.id["sha256:".len()..][..12]] {
        let answer = status(&mut client, name, false).await;
        assert_eq!(answer.image.as_ref(), Some(&expected), "ImageStatus {name}");
        assert!(answer.info.is_empty(), "info without verbose: {:?}", answer.info);
    }

    // By digest: the same image, no new entry (the digest reference was its repo digest already).
    let image_ref = pull(&mut client, &by_digest, None).await.expect("PullImage by digest");
    assert_eq!(image_ref, p.id);
    // A tag beside the digest is dropped: the digest names the image.
    let tagged_digest = format!("docker.io/library/busybox:other@{}", p.manifest);
    assert_eq!(pull(&mut client, &tagged_digest, None).await.expect("PullImage tag@digest"), p.id);
    assert_eq!(list(&mut client, None).await, vec![expected]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tags_of_one_image_are_one_entry() {
    let reg = Registry::start();
    let [bb, pause, app] = push_three(&reg);
    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;
    pull_all(&mut client, &THREE).await;
    let images = list(&mut client, None).await;
    assert_eq!(images.len(), 2, "{images:#?}");
    let one = images.iter().find(|i| i.id == bb.id).expect("busybox's ID is listed");
    assert_eq!(one.repo_tags, ["docker.io/library/busybox:1.36", "registry.k8s.io/pause:3.10"]);
    assert_eq!(
        one.repo_digests,
        [format!("docker.io/library/busybox@{}", bb.manifest), format!("registry.k8s.io/pause@{}", pause.manifest)]
    );
    // The configured pause image is pinned, out of kubelet's image garbage collection's reach;
    // containerd 1.6 does not pin it (1.7 does).
    assert_eq!(one.pinned, !server.is_containerd(), "pinned: {one:?}");
    let other = images.iter().find(|i| i.id == app.id).expect("app's ID is listed");
    assert_eq!(other.repo_tags, ["docker.io/library/app:1"]);
    assert!(!other.pinned);

    // The filter names one image (by reference or ID). containerd 1.6 ignores it.
    for filter in ["docker.io/library/app:1", "app:1", &app.id] {
        let filtered = list(&mut client, Some(filter)).await;
        if server.is_containerd() {
            assert_eq!(filtered, images, "filter {filter}");
        } else {
            assert_eq!(filtered, vec![other.clone()], "filter {filter}");
        }
    }
    if !server.is_containerd() {
        assert!(list(&mut client, Some("docker.io/library/nope:1")).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_status_unknown_verbose_and_user() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let app = push(&reg, &app(), "library/app:1");
    let numeric = push(&reg, &numeric_user(dir.path()), "library/numeric:1");
    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;

    // An image that is not there is no error: the answer has no image.
    let unknown = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    for name in ["docker.io/library/app:1", "docker.io/library/nope:1", unknown] {
        let answer = status(&mut client, name, true).await;
        assert_eq!(answer.image, None, "{name}");
        assert!(answer.info.is_empty(), "{name}: {:?}", answer.info);
    }

    pull(&mut client, "docker.io/library/app:1", None).await.expect("PullImage app");
    pull(&mut client, "docker.io/library/numeric:1", None).await.expect("PullImage numeric");
    // A user name is reported as the username, a numeric user (uid:gid) as the uid.
    let answer = status(&mut client, "docker.io/library/app:1", true).await;
    let image = answer.image.expect("app's status");
    assert_eq!((image.uid, image.username.as_str()), (None, "app"));
    assert_eq!(image.size, app.size);
    let info: serde_json::Value = serde_json::from_str(&answer.info["info"]).expect("info[info] is JSON");
    assert_eq!(info["chainID"], app.chain_id, "{info}");
    assert_eq!(info["imageSpec"]["config"]["User"], "app", "{info}");
    assert_eq!(info["imageSpec"]["config"]["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]), "{info}");
    assert_eq!(info["imageSpec"]["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(3), "{info}");
    assert_eq!(info["imageSpec"]["os"], "linux", "{info}");

    let image = status(&mut client, "docker.io/library/numeric:1", false).await.image.expect("numeric's status");
    assert_eq!(image.uid.map(|u| u.value), Some(1234));
    assert_eq!(image.username, "");
    assert_eq!(image.id, numeric.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_basic_auth_from_the_request() {
    let reg = Registry::with_auth("roci", "s3cret");
    let p = push(&reg, &busybox(), "library/busybox:1.36");
    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;
    let name = "docker.io/library/busybox:1.36";

    // Without credentials, with a wrong password, and with credentials for another server.
    let elsewhere = AuthConfig { server_address: "https://elsewhere.example.com".into(), ..basic("roci", "s3cret").unwrap() };
    for (what, auth) in [("no auth", None), ("a wrong password", basic("roci", "wrong")), ("another server's", Some(elsewhere))] {
        let e = pull(&mut client, name, auth).await.expect_err(what);
        eprintln!("{what}: {e:?}");
        assert_eq!(e.code(), Code::Unknown, "{what}: {e:?}");
        assert!(e.message().contains(name), "{what}: the message names the image: {e:?}");
        assert!(e.message().contains(&reg.host()), "{what}: the message names the mirror that refused: {e:?}");
        assert_eq!(status(&mut client, name, false).await.image, None, "{what}: nothing pulled");
    }

    assert_eq!(pull(&mut client, name, basic("roci", "s3cret")).await.expect("PullImage with username and password"), p.id);
    remove(&mut client, name).await;
    assert_eq!(status(&mut client, name, false).await.image, None);
    // `auth`: base64 of user:password, as kubelet passes a docker config's entry.
    let auth = base64::engine::general_purpose::STANDARD.encode("roci:s3cret");
    let auth = AuthConfig { auth, server_address: format!("http://{}", reg.host()), ..AuthConfig::default() };
    assert_eq!(pull(&mut client, name, Some(auth)).await.expect("PullImage with auth"), p.id);
}

/// roci-cri's registries configuration: its `auths` entry for the mirror's host is used when the
/// request has none, and the request's credentials win over it. roci-cri's own configuration, so
/// the roci leg only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_credentials_for_the_mirror() {
    let reg = Registry::with_auth("roci", "s3cret");
    let p = push(&reg, &busybox(), "library/busybox:1.36");
    if crate::server::target() == crate::server::Target::Containerd {
        eprintln!("roci-cri's registries configuration: tested in the roci leg");
        return;
    }
    let auths = serde_json::json!({ reg.host(): { "username": "roci", "password": "s3cret" } });
    let server = CriServer::with_registry_auths(&reg, auths);
    let mut client = server.client().await;
    let name = "docker.io/library/busybox:1.36";
    let e = pull(&mut client, name, basic("roci", "wrong")).await.expect_err("the request's wrong password wins");
    assert!(e.message().contains("not authorized"), "{e:?}");
    assert_eq!(pull(&mut client, name, None).await.expect("PullImage with the configured credentials"), p.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_image_by_tag_id_and_digest() {
    let reg = Registry::start();
    let [bb, pause, app] = push_three(&reg);
    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;
    pull_all(&mut client, &THREE).await;
    let names = THREE;

    // An image that is not there: done already.
    remove(&mut client, "docker.io/library/nope:1").await;
    remove(&mut client, "sha256:0000000000000000000000000000000000000000000000000000000000000000").await;
    assert_eq!(list(&mut client, None).await.len(), 2);

    // By tag: the image goes with every reference to it (busybox:1.36 and pause:3.10 are one image),
    // as containerd 1.6 removes it.
    remove(&mut client, "busybox:1.36").await;
    for name in &names[..2] {
        assert_eq!(status(&mut client, name, false).await.image, None, "{name} after removing busybox:1.36");
    }
    let left = list(&mut client, None).await;
    assert_eq!(left.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [app.id.as_str()]);

    // By ID.
    remove(&mut client, &app.id).await;
    assert!(list(&mut client, None).await.is_empty());

    // By digest.
    pull(&mut client, names[1], None).await.expect("PullImage pause again");
    let digest_ref = format!("registry.k8s.io/pause@{}", pause.manifest);
    assert_eq!(status(&mut client, &digest_ref, false).await.image.map(|i| i.id), Some(bb.id.clone()));
    remove(&mut client, &digest_ref).await;
    assert!(list(&mut client, None).await.is_empty());
    assert_eq!(status(&mut client, names[1], false).await.image, None);

    // Pulled again after removal, the image is whole.
    assert_eq!(pull(&mut client, names[0], None).await.expect("PullImage after removal"), bb.id);
    assert_eq!(status(&mut client, names[0], false).await.image.map(|i| i.size), Some(bb.size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_fs_info_reports_the_image_filesystem() {
    let reg = Registry::start();
    push(&reg, &busybox(), "library/busybox:1.36");
    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;
    let usage = |answer: roci_cri_proto::runtime_v1::ImageFsInfoResponse| {
        assert!(answer.container_filesystems.is_empty(), "{answer:?}");
        assert_eq!(answer.image_filesystems.len(), 1, "{answer:?}");
        let fs = answer.image_filesystems[0].clone();
        let mountpoint = fs.fs_id.as_ref().expect("fs_id").mountpoint.clone();
        assert!(mountpoint.starts_with(&*server.dir.to_string_lossy()), "the image filesystem is the daemon's: {mountpoint}");
        assert!(fs.timestamp > 0, "{fs:?}");
        (fs.used_bytes.expect("used_bytes").value, fs.inodes_used.expect("inodes_used").value)
    };
    let before = usage(client.images.image_fs_info(ImageFsInfoRequest {}).await.expect("ImageFsInfo").into_inner());
    pull(&mut client, "docker.io/library/busybox:1.36", None).await.expect("PullImage");
    // containerd counts its snapshots' usage, which it measures every 10 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let after = usage(client.images.image_fs_info(ImageFsInfoRequest {}).await.expect("ImageFsInfo").into_inner());
        // busybox is a static binary of ~1 MB and a few hundred links.
        if after.0 >= before.0 + 500_000 && after.1 > before.1 {
            break;
        }
        assert!(Instant::now() < deadline, "the pull does not show in ImageFsInfo: before {before:?}, after {after:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_and_missing_images() {
    let reg = Registry::start();
    push(&reg, &busybox(), "library/busybox:1.36");
    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;

    // A reference that does not parse: roci-cri says InvalidArgument and names the field;
    // containerd 1.6 answers Unknown ("failed to parse image reference").
    for bad in ["Not/Valid", "busybox:bad tag", "busybox@sha256:abc", ""] {
        let e = pull(&mut client, bad, None).await.expect_err(bad);
        eprintln!("{bad:?}: {e:?}");
        if server.is_containerd() {
            assert_eq!(e.code(), Code::Unknown, "{bad:?}: {e:?}");
        } else {
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
            assert!(e.message().contains("image.image"), "{bad:?}: {e:?}");
        }
        assert!(e.message().contains(&format!("{bad:?}")), "{bad:?}: the message names it: {e:?}");
    }

    // A tag the registry does not have.
    let missing = "docker.io/library/busybox:nope";
    let e = pull(&mut client, missing, None).await.expect_err(missing);
    eprintln!("{missing}: {e:?}");
    assert!(matches!(e.code(), Code::Unknown | Code::NotFound), "{e:?}");
    assert!(e.message().contains(missing), "the message names the image: {e:?}");
    assert!(list(&mut client, None).await.is_empty());
}

/// An image removed while a container's snapshot stacks its layers: the layers stay (libimage's
/// prune keeps what a snapshot uses), so the container's root filesystem still reads. roci-cri's
/// own rule, checked in the roci leg with a snapshot made through libimage on roci-cri's image root
/// (no pod runs in this suite yet); containerd's snapshotter does the same with parent snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_image_keeps_the_layers_a_snapshot_uses() {
    let reg = Registry::start();
    let p = push(&reg, &busybox(), "library/busybox:1.36");
    let server = CriServer::with_registry(&reg);
    if server.is_containerd() {
        eprintln!("roci-cri's image root: tested in the roci leg");
        return;
    }
    let mut client = server.client().await;
    let name = "docker.io/library/busybox:1.36";
    pull(&mut client, name, None).await.expect("PullImage");

    let root = libimage::manager::ImageRoot::open(&server.dir.join("root/images")).expect("open roci-cri's image root");
    let image = root.resolve(name).expect("the pulled image's record");
    let chains = image.chains_top_first();
    let lowers: Vec<_> = chains.iter().map(|c| root.layers.fs_path(c)).collect();
    let rootfs = server.dir.join("container-rootfs");
    std::fs::create_dir(&rootfs).expect("create the container's rootfs dir");
    root.snapshots.prepare("ctr", &chains, &lowers, &rootfs).expect("prepare the container's snapshot");

    remove(&mut client, name).await;
    assert_eq!(status(&mut client, &p.id, false).await.image, None);
    assert!(lowers.iter().all(|l| l.is_dir()), "the snapshot's layers were removed");
    let busybox = std::fs::read(rootfs.join("bin/busybox")).expect("read /bin/busybox in the container's rootfs");
    assert!(busybox.starts_with(b"\x7fELF"), "/bin/busybox is not an ELF file");

    root.snapshots.remove("ctr", Some(&rootfs)).expect("remove the snapshot");
    // Pulled again, the image reuses nothing stale: it is whole.
    assert_eq!(pull(&mut client, name, None).await.expect("PullImage again"), p.id);
}

/// Two pulls of one image at once (kubelet pulls in parallel): both succeed with the same ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image() {
    let reg = Registry::start();
    let p = push(&reg, &app(), "library/app:1");
    let server = CriServer::with_registry(&reg);
    let client = server.client().await;
    let pulls: Vec<_> = ["docker.io/library/app:1", "app:1", "docker.io/library/app:1"]
        .into_iter()
        .map(|name| {
            let mut client =
                Client { channel: client.channel.clone(), runtime: client.runtime.clone(), images: client.images.clone() };
            tokio::spawn(async move { pull(&mut client, name, None).await })
        })
        .collect();
    for pulled in pulls {
        assert_eq!(pulled.await.expect("the pull task").expect("PullImage"), p.id);
    }
    let mut client = client;
    let images = list(&mut client, None).await;
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_eq!(images[0].repo_tags, ["docker.io/library/app:1"]);
    assert_eq!(images[0].size, p.size);
}

/// A tag naming a two-platform index: the host's (amd64) image is pulled, its repo digest is the
/// index's, and its size counts the index and the amd64 manifest, not the arm64 one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_of_a_multi_platform_index() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().join("multi");
    let out = std::process::Command::new("cp").arg("-a").arg(&image::busybox().oci_layout).arg(&layout).output().expect("cp");
    assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    let (amd64, _arm64) = image::add_two_platform_index(&layout);
    let index = reg.push(&format!("oci:{}:multi", layout.display()), "library/multi:1", &Push { all: true, ..Push::default() });
    let index_size = std::fs::metadata(reg.blob_path(&index)).expect("the pushed index").len();
    let manifest_bytes = std::fs::read(reg.blob_path(&amd64)).expect("the amd64 manifest");
    let m: serde_json::Value = serde_json::from_slice(&manifest_bytes).expect("JSON");
    let id = m["config"]["digest"].as_str().expect("config digest").to_string();
    let size = index_size
        + manifest_bytes.len() as u64
        + m["config"]["size"].as_u64().expect("config size")
        + m["layers"].as_array().expect("layers").iter().map(|l| l["size"].as_u64().expect("size")).sum::<u64>();

    let server = CriServer::with_registry(&reg);
    let mut client = server.client().await;
    let name = "docker.io/library/multi:1";
    assert_eq!(pull(&mut client, name, None).await.expect("PullImage of an index"), id);
    let image = status(&mut client, name, false).await.image.expect("the image's status");
    assert_eq!(image.repo_digests, [format!("docker.io/library/multi@{index}")]);
    assert_eq!(image.size, size);
    // The index's digest names the image too.
    let by_index = format!("docker.io/library/multi@{index}");
    assert_eq!(status(&mut client, &by_index, false).await.image.map(|i| i.id), Some(id.clone()));
    assert_eq!(pull(&mut client, &by_index, None).await.expect("PullImage by the index's digest"), id);
}
