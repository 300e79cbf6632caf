//! Pulling images from OCI distribution registries into the content [`Store`].
//!
//! ```text
//! reference ─► endpoints (mirrors, then the registry) ─► manifest or index ─► platform's manifest
//!           ─► config ─► layers (3 at a time, streamed into the store) ─► Pulled
//! ```
//! Every blob fetched (index, manifest, config, layers) lands in the store, which verifies its
//! digest and size before it becomes visible; blobs already there are not fetched again. A pinned
//! reference (`name@sha256:…`) is fetched by digest and the manifest checked against it, so what
//! is pulled is exactly what was named, whatever the transport. Requests that fail for transient
//! reasons (connection errors, HTTP 5xx and 429) are retried with exponential backoff; an endpoint
//! that still fails (a mirror that is down, lacks the image, or serves bad content) is skipped for
//! the next, and the error of the last endpoint is returned with those of the endpoints before it.
//!
//! The library has no global async runtime: [`pull_async`] runs on the caller's tokio runtime,
//! current-thread or multi-threaded (the CRI server's), and [`pull`] builds a current-thread
//! runtime for the duration of one pull. Nothing blocks a runtime thread: blobs are written, hashed
//! and committed on the blocking pool, a second writer of a blob waits asynchronously for the
//! first (see [`crate::store`]), and credential helpers run there too.

use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

use futures_util::{stream, StreamExt, TryStreamExt};
use oci_client::client::{ClientConfig, ClientProtocol, LayerDescriptor};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use serde::Deserialize;

use crate::digest::{Digest, Hasher};
use crate::reference::Reference;
use crate::registries::{Credentials, Endpoint, Registries, Scheme};
use crate::store::Store;
use crate::{blocking, Error};

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPT: [&str; 4] = [MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST];

/// Layers downloaded at once.
const CONCURRENT_LAYERS: usize = 3;
/// Tries per request, the first included.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const USER_AGENT: &str = concat!("roci/", env!("CARGO_PKG_VERSION"));

/// An image platform as the OCI image index spells it (also the wire form of an index entry's
/// `platform`; its `os.version` and `os.features` are not used).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Default for Platform {
    /// The host's: `linux` and the OCI name of the architecture roci was built for.
    fn default() -> Self {
        Platform { os: "linux".into(), architecture: oci_arch(std::env::consts::ARCH).into(), variant: None }
    }
}

impl Platform {
    /// `os/arch[/variant]`, such as `linux/arm64/v8`.
    pub fn parse(s: &str) -> Result<Platform, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.to_string(), architecture: oci_arch(arch).into(), variant: None })
            }
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform { os: os.to_string(), architecture: oci_arch(arch).into(), variant: Some(variant.to_string()) })
            }
            _ => Err(Error::Invalid(format!("invalid platform {s:?}: want os/arch[/variant]"))),
        }
    }

    /// Whether an index entry's platform is this one. A wanted variant must match (arm64's `v8`
    /// is its only one, so absent equals `v8`); no wanted variant takes any.
    fn matches(&self, p: &Platform) -> bool {
        let norm = |arch: &str, v: Option<&str>| match (arch, v) {
            ("arm64", Some("v8")) => None,
            (_, v) => v.map(str::to_string),
        };
        p.os == self.os
            && oci_arch(&p.architecture) == self.architecture
            && (self.variant.is_none()
                || norm(&self.architecture, self.variant.as_deref()) == norm(&self.architecture, p.variant.as_deref()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The OCI (Go) name of an architecture given by its Rust or common name.
pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "x86" | "i386" | "i686" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64le" => "ppc64le",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    }
}

/// Credentials given for one pull, over the configured ones: roci-image's `--creds`, or the
/// `AuthConfig` of a CRI PullImage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullAuth {
    pub secret: Secret,
    /// The endpoints that get them; the others use the configured credentials.
    pub hosts: AuthHosts,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// HTTP basic auth (or the basic auth a registry's token server takes for a bearer token).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (docker's `identitytoken`, a CRI `AuthConfig.identity_token`):
    /// traded at the registry's token server for an access token, sent as a bearer token.
    IdentityToken(String),
    /// A bearer token, sent to the registry as it is (a CRI `AuthConfig.registry_token`).
    RegistryToken(String),
}

/// Which endpoints of a pull get the [`PullAuth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthHosts {
    /// The reference's registry, not its mirrors (whose credentials come from the configuration).
    Registry,
    /// Every endpoint tried, mirrors included: containerd's CRI hands kubelet's credentials to
    /// whichever host asks for them, and kubelet's pull secrets are often meant for a mirror.
    All,
    /// Only the endpoint at this `host[:port]` (a mirror, or the registry: `docker.io` also names
    /// Docker Hub's API host), as a CRI `AuthConfig.server_address` restricts them.
    Host(String),
}

impl PullAuth {
    /// `username:password` for the reference's registry (roci-image's `--creds`).
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> PullAuth {
        PullAuth { secret: Secret::Basic { username: username.into(), password: password.into() }, hosts: AuthHosts::Registry }
    }

    fn applies_to(&self, reference: &Reference, endpoint: &Endpoint) -> bool {
        match &self.hosts {
            AuthHosts::Registry => !endpoint.mirror,
            AuthHosts::All => true,
            AuthHosts::Host(host) => {
                *host == endpoint.host || (!endpoint.mirror && crate::registries::normalise_registry(host) == reference.registry)
            }
        }
    }

    async fn registry_auth(&self, reference: &Reference, endpoint: &Endpoint) -> Result<RegistryAuth, Error> {
        Ok(match &self.secret {
            Secret::Basic { username, password } => RegistryAuth::Basic(username.clone(), password.clone()),
            Secret::IdentityToken(refresh) => RegistryAuth::Bearer(access_token(reference, endpoint, refresh).await?),
            Secret::RegistryToken(token) => RegistryAuth::Bearer(token.clone()),
        })
    }
}

/// Passwords and tokens never reach logs.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Basic { username, .. } => f.debug_tuple("Basic").field(username).field(&"<redacted>").finish(),
            Secret::IdentityToken(_) => f.debug_tuple("IdentityToken").field(&"<redacted>").finish(),
            Secret::RegistryToken(_) => f.debug_tuple("RegistryToken").field(&"<redacted>").finish(),
        }
    }
}

#[derive(Clone, Default)]
pub struct PullOptions {
    /// Allow plain HTTP and unverified HTTPS for the reference's registry.
    pub insecure: bool,
    /// The platform to pick from an index; `None` is the host's.
    pub platform: Option<Platform>,
    /// Show per-layer progress on stderr (only when it is a terminal).
    pub progress: bool,
    pub registries: Registries,
    /// Credentials for this pull, overriding configured ones where they apply.
    pub credentials: Option<PullAuth>,
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("insecure", &self.insecure)
            .field("platform", &self.platform)
            .field("progress", &self.progress)
            .field("registries", &self.registries)
            .field("credentials", &self.credentials)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledLayer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// What a pull stored, for the caller to unpack and record.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference as asked for.
    pub reference: Reference,
    /// The index (manifest list) the reference named, if it named one.
    pub index_digest: Option<Digest>,
    /// The image manifest (the platform's, when the reference named an index).
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layers: Vec<PulledLayer>,
    /// The config's `rootfs.diff_ids`, one per layer.
    pub diff_ids: Vec<Digest>,
    /// Bytes of the config and the layers as stored (compressed).
    pub size: u64,
}

// Wire types: the parts of manifests, indexes and configs a pull reads.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Deserialize)]
struct ImageConfig {
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<Digest>,
}

#[derive(Debug)]
enum Manifest {
    Index(Vec<Descriptor>),
    Image { config: Descriptor, layers: Vec<Descriptor> },
}

fn parse_manifest(body: &[u8]) -> Result<Manifest, String> {
    let m: RawManifest = serde_json::from_slice(body).map_err(|e| format!("malformed manifest: {e}"))?;
    if m.schema_version == Some(1) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    let is_index = match m.media_type.as_deref() {
        Some(MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_LIST) => true,
        Some(MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST) => false,
        Some(other) => return Err(format!("unsupported manifest media type {other:?}")),
        None => m.manifests.is_some(),
    };
    if is_index {
        return Ok(Manifest::Index(m.manifests.ok_or("index without manifests")?));
    }
    let config = m.config.ok_or("manifest without config")?;
    if m.layers.is_empty() {
        return Err("manifest without layers".into());
    }
    Ok(Manifest::Image { config, layers: m.layers })
}

/// The descriptor of `want`'s manifest in an index: the first entry that matches exactly,
/// else (no variant wanted) the first with the right OS and architecture.
fn select_platform<'a>(manifests: &'a [Descriptor], want: &Platform) -> Result<&'a Descriptor, String> {
    let exact = manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p) && (want.variant.is_some() || p.variant.is_none())));
    if let Some(d) = exact.or_else(|| manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))) {
        return Ok(d);
    }
    let available: Vec<String> = manifests.iter().filter_map(|d| d.platform.as_ref().map(|p| p.to_string())).collect();
    Err(format!("no manifest for platform {want} in the index (it has: {})", available.join(", ")))
}

/// Pulls `reference` into `store` on a current-thread tokio runtime built for this call.
///
/// The runtime's threads (the blocking pool used for DNS lookups) are joined before this
/// returns, so a single-threaded caller is single-threaded again afterwards.
pub fn pull(store: &Store, reference: &Reference, opts: &PullOptions) -> Result<Pulled, Error> {
    runtime(reference)?.block_on(pull_async(store, reference, opts))
}

/// A current-thread runtime for one synchronous pull of `reference`. Dropping
/// it waits for the tasks it started on the blocking pool.
pub(crate) fn runtime(reference: &Reference) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Pull {
        reference: reference.to_string(),
        registry: reference.registry.clone(),
        object: "image".into(),
        reason: format!("build async runtime: {e}"),
    })
}

/// Pulls `reference` into `store`: its mirrors first, then its registry.
pub async fn pull_async(store: &Store, reference: &Reference, opts: &PullOptions) -> Result<Pulled, Error> {
    let endpoints = opts.registries.endpoints(reference, opts.insecure);
    let progress = Progress::new(opts.progress);
    let mut failed = Vec::new();
    for ep in &endpoints {
        match pull_from(store, reference, ep, opts, &progress).await {
            Ok(p) => return Ok(p),
            // The endpoint failed: try the next one.
            Err(e @ Error::Pull { .. }) => {
                tracing::warn!(reference = %reference, endpoint = %ep, error = %e, "pull failed");
                failed.push(e);
            }
            // The store failed: no other endpoint will help.
            Err(e) => return Err(e),
        }
    }
    Err(all_failed(reference, failed))
}

/// The error of a pull whose every endpoint failed: the last endpoint's, with what the earlier ones
/// (mirrors) said. A mirror that refused the credentials says more than a registry that cannot be
/// reached after it.
fn all_failed(reference: &Reference, mut failed: Vec<Error>) -> Error {
    match failed.pop() {
        Some(Error::Pull { reference, registry, object, reason }) if !failed.is_empty() => {
            let earlier: Vec<String> = failed.iter().map(Error::to_string).collect();
            Error::Pull { reference, registry, object, reason: format!("{reason} (tried before: {})", earlier.join("; ")) }
        }
        Some(e) => e,
        None => Error::Pull {
            reference: reference.to_string(),
            registry: reference.registry.clone(),
            object: "image".into(),
            reason: "no endpoint to pull from".into(),
        },
    }
}

/// Why one download attempt failed.
enum Failure {
    /// The registry's side: the request, the connection, or the content.
    Remote { transient: bool, reason: String },
    /// Writing to the store.
    Store(Error),
}

/// One endpoint's pull, with errors that name the reference, the endpoint and the object.
struct Ctx<'a> {
    store: &'a Store,
    reference: &'a Reference,
    endpoint: &'a Endpoint,
    client: Client,
    auth: RegistryAuth,
    progress: &'a Progress,
}

impl Ctx<'_> {
    fn err(&self, object: impl Into<String>, reason: impl fmt::Display) -> Error {
        Error::Pull {
            reference: self.reference.to_string(),
            registry: self.endpoint.to_string(),
            object: object.into(),
            reason: reason.to_string(),
        }
    }

    fn oci_ref(&self, digest: Option<&Digest>) -> oci_client::Reference {
        let (host, repo) = (self.endpoint.host.clone(), self.endpoint.repository.clone());
        match (digest, &self.reference.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(host, repo, d.to_string()),
            (None, Some(tag)) => oci_client::Reference::with_tag(host, repo, tag.clone()),
            (None, None) => oci_client::Reference::with_tag(host, repo, "latest".into()),
        }
    }

    /// The manifest named by `digest` (or the reference's tag), verified against the digest and stored.
    async fn manifest(&self, digest: Option<&Digest>) -> Result<(Vec<u8>, Digest), Error> {
        let object = match digest {
            Some(d) => format!("manifest {d}"),
            None => "manifest".to_string(),
        };
        let oref = self.oci_ref(digest);
        let (body, _) = retry(&object, || self.client.pull_manifest_raw(&oref, &self.auth, &ACCEPT))
            .await
            .map_err(|e| self.err(&object, describe(&e)))?;
        let actual = match digest {
            Some(d) => {
                let mut h = Hasher::new(d.algorithm());
                h.update(&body);
                let actual = h.finish();
                if &actual != d {
                    return Err(self.err(&object, format!("content has digest {actual}, not the {d} asked for")));
                }
                actual
            }
            None => Digest::sha256_of(&body),
        };
        match self.store.put_async(&actual, body.clone()).await {
            Ok(()) => Ok((body.to_vec(), actual)),
            Err(Error::Mismatch { expected, actual: got, .. }) => {
                Err(self.err(&object, format!("content does not match: expected {expected}, got {got}")))
            }
            Err(e) => Err(e),
        }
    }

    /// Streams blob `d` into the store unless it is there already; retried as a whole.
    async fn blob(&self, what: &str, d: &Descriptor, show: bool) -> Result<(), Error> {
        let object = format!("{what} {}", d.digest);
        let bar = if show { self.progress.bar(&d.digest, d.size) } else { None };
        let mut delay = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            // A second download of the digest (another pull in this process or another) waits
            // here for the first, and then finds the blob present.
            let Some(mut ingest) = self.store.ingest_async(&d.digest, Some(d.size)).await? else {
                if let Some(b) = &bar {
                    b.finish_with_message("already present");
                }
                return Ok(());
            };
            if let Some(b) = &bar {
                b.set_position(0);
            }
            let result: Result<(), Failure> = async {
                let digest = d.digest.to_string();
                let desc = LayerDescriptor { digest: &digest, urls: &d.urls };
                let oref = self.oci_ref(None);
                let mut stream = self
                    .client
                    .pull_blob_stream(&oref, &desc)
                    .await
                    .map_err(|e| Failure::Remote { transient: transient(&e), reason: describe(&e) })?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| Failure::Remote {
                        transient: !e.get_ref().is_some_and(|i| i.is::<DigestError>()),
                        reason: e.to_string(),
                    })?;
                    let len = chunk.len() as u64;
                    ingest.write(chunk).await.map_err(|e| match e {
                        // More bytes than the descriptor's size: the registry's fault.
                        Error::Mismatch { .. } => Failure::Remote { transient: false, reason: e.to_string() },
                        e => Failure::Store(e),
                    })?;
                    if let Some(b) = &bar {
                        b.inc(len);
                    }
                }
                Ok(())
            }
            .await;
            let err = match result {
                Ok(()) => {
                    return match ingest.commit().await {
                        Ok(()) => {
                            if let Some(b) = &bar {
                                b.finish_with_message("done");
                            }
                            Ok(())
                        }
                        Err(Error::Mismatch { what, expected, actual }) => {
                            Err(self.err(&object, format!("{what}: expected {expected}, got {actual}")))
                        }
                        Err(e) => Err(e),
                    };
                }
                Err(Failure::Remote { transient: true, reason }) if attempt < ATTEMPTS => {
                    tracing::warn!(object = %object, endpoint = %self.endpoint, attempt, error = %reason, "retrying");
                    drop(ingest);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(Failure::Remote { reason, .. }) => self.err(&object, reason),
                // Not the endpoint's fault: no other endpoint is tried.
                Err(Failure::Store(e)) => e,
            };
            if let Some(b) = &bar {
                b.abandon_with_message("failed");
            }
            return Err(err);
        }
        unreachable!("the last attempt returns")
    }
}

async fn pull_from(
    store: &Store,
    reference: &Reference,
    endpoint: &Endpoint,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<Pulled, Error> {
    let auth = match opts.credentials.as_ref().filter(|a| a.applies_to(reference, endpoint)) {
        Some(given) => given.registry_auth(reference, endpoint).await?,
        None => {
            let registry = if endpoint.mirror { &endpoint.host } else { &reference.registry };
            match opts.registries.credentials(registry, &endpoint.repository) {
                Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
                None => match helper_credentials(&opts.registries, registry).await? {
                    Some(c) => RegistryAuth::Basic(c.username, c.password),
                    None => RegistryAuth::Anonymous,
                },
            }
        }
    };
    let client = client(endpoint).map_err(|e| Error::Pull {
        reference: reference.to_string(),
        registry: endpoint.to_string(),
        object: "image".into(),
        reason: format!("create HTTP client: {e}"),
    })?;
    let ctx = Ctx { store, reference, endpoint, client, auth, progress };
    tracing::debug!(reference = %reference, endpoint = %endpoint, "pull");

    let (body, digest) = ctx.manifest(reference.digest.as_ref()).await?;
    let parsed = parse_manifest(&body).map_err(|e| ctx.err(format!("manifest {digest}"), e))?;
    let (index_digest, manifest_digest, config, layers) = match parsed {
        Manifest::Image { config, layers } => (None, digest, config, layers),
        Manifest::Index(manifests) => {
            let want = opts.platform.clone().unwrap_or_default();
            let entry = select_platform(&manifests, &want).map_err(|e| ctx.err(format!("index {digest}"), e))?;
            let (body, m_digest) = ctx.manifest(Some(&entry.digest)).await?;
            match parse_manifest(&body).map_err(|e| ctx.err(format!("manifest {m_digest}"), e))? {
                Manifest::Image { config, layers } => (Some(digest), m_digest, config, layers),
                Manifest::Index(_) => return Err(ctx.err(format!("manifest {m_digest}"), "an index inside an index")),
            }
        }
    };

    ctx.blob("config", &config, false).await?;
    let config_bytes = store.read_async(&config.digest).await?;
    let image_config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| ctx.err(format!("config {}", config.digest), format!("malformed: {e}")))?;
    if image_config.rootfs.diff_ids.len() != layers.len() {
        return Err(ctx.err(
            format!("config {}", config.digest),
            format!("{} diff_ids for {} layers", image_config.rootfs.diff_ids.len(), layers.len()),
        ));
    }

    // Each blob once: old Docker images list the same (empty) layer several times, and two
    // downloads of one digest would only wait for each other.
    // Collected first: a `map` closure in the stream's type would keep the future from being `Send`.
    let mut seen = std::collections::HashSet::new();
    let downloads: Vec<_> = layers.iter().filter(|l| seen.insert(l.digest.clone())).map(|l| ctx.blob("layer", l, true)).collect();
    stream::iter(downloads).buffer_unordered(CONCURRENT_LAYERS).try_collect::<Vec<()>>().await?;
    progress.clear();

    let size = config.size + layers.iter().map(|l| l.size).sum::<u64>();
    Ok(Pulled {
        reference: reference.clone(),
        index_digest,
        manifest_digest,
        config_digest: config.digest,
        layers: layers.into_iter().map(|l| PulledLayer { digest: l.digest, media_type: l.media_type, size: l.size }).collect(),
        diff_ids: image_config.rootfs.diff_ids,
        size,
    })
}

/// The access token `endpoint`'s token server gives for the identity (OAuth2 refresh) token
/// `refresh`, for pulls of the endpoint's repository. The token server is the realm of the Bearer
/// challenge the registry answers an unauthenticated `GET /v2/` with; it is asked as docker asks
/// it (a form POST with `grant_type=refresh_token`).
async fn access_token(reference: &Reference, endpoint: &Endpoint, refresh: &str) -> Result<String, Error> {
    let fail = |reason: String| Error::Pull {
        reference: reference.to_string(),
        registry: endpoint.to_string(),
        object: "an access token for the identity token".into(),
        reason,
    };
    let verify = !matches!(endpoint.scheme, Scheme::Https { verify: false });
    install_crypto_provider();
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(!verify)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| fail(format!("create HTTP client: {e}")))?;
    let base = endpoint.to_string();
    let probe = http.get(format!("{base}/v2/")).send().await.map_err(|e| fail(format!("GET {base}/v2/: {e}")))?;
    let challenge = probe
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .find_map(|h| h.to_str().ok().and_then(bearer_challenge))
        .ok_or_else(|| {
            fail(format!("{base}/v2/ asks for no bearer token ({}): an identity token is of no use there", probe.status()))
        })?;
    let scope = format!("repository:{}:pull", endpoint.repository);
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", "roci"), ("scope", &scope)];
    if let Some(service) = &challenge.service {
        form.push(("service", service));
    }
    let answer =
        http.post(&challenge.realm).form(&form).send().await.map_err(|e| fail(format!("POST {}: {e}", challenge.realm)))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(fail(format!("the token server {} refused the identity token: {status}", challenge.realm)));
    }
    #[derive(Deserialize)]
    struct Token {
        access_token: Option<String>,
        token: Option<String>,
    }
    let token: Token = answer.json().await.map_err(|e| fail(format!("the answer of {}: {e}", challenge.realm)))?;
    token
        .access_token
        .or(token.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail(format!("{} gave no access_token", challenge.realm)))
}

/// The parameters of a `WWW-Authenticate: Bearer realm="…",service="…"` challenge.
#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

fn bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service) = (None, None);
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').map_or((after, ""), |(v, a)| (v, a)),
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(BearerChallenge { realm: realm?, service })
}

/// [`Registries::helper_credentials`] on the blocking pool: it runs the helper and waits for it.
async fn helper_credentials(registries: &Registries, registry: &str) -> Result<Option<Credentials>, Error> {
    let (registries, registry) = (registries.clone(), registry.to_owned());
    blocking(format!("ask the credential helper for {registry}"), move || registries.helper_credentials(&registry)).await
}

/// reqwest is built without a default TLS backend (no OpenSSL, no aws-lc): use ring, unless the
/// process already chose a provider.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn client(endpoint: &Endpoint) -> Result<Client, OciDistributionError> {
    install_crypto_provider();
    let (protocol, verify) = match endpoint.scheme {
        Scheme::Http => (ClientProtocol::Http, true),
        Scheme::Https { verify } => (ClientProtocol::Https, verify),
    };
    Client::try_from(ClientConfig {
        protocol,
        accept_invalid_certificates: !verify,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(60)),
        user_agent: USER_AGENT,
        ..Default::default()
    })
}

/// Whether a request that failed this way may succeed if tried again.
fn transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => match r.status() {
            Some(s) => s.is_server_error() || s.as_u16() == 429,
            None => !r.is_builder() && !r.is_redirect(),
        },
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|e| e.code == OciErrorCode::Toomanyrequests)
        }
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// The error as a user should read it.
fn describe(e: &OciDistributionError) -> String {
    match e {
        OciDistributionError::UnauthorizedError { url } => {
            format!("not authorized for {url} (missing or wrong credentials)")
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let errors: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}: {}", e.code, e.message)).collect();
            format!("{} ({url})", errors.join("; "))
        }
        OciDistributionError::AuthenticationFailure(reason) => format!("authentication failed: {reason}"),
        OciDistributionError::RequestError(r) => {
            let mut s = r.to_string();
            let mut source = std::error::Error::source(r);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
        other => other.to_string(),
    }
}

/// Retries `f` on transient failures with exponential backoff.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let mut delay = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                tracing::warn!(object = what, attempt, error = %describe(&e), "retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// One line per layer on stderr, updated in place; nothing unless asked for and stderr is a terminal.
struct Progress(Option<indicatif::MultiProgress>);

impl Progress {
    fn new(wanted: bool) -> Progress {
        Progress(
            (wanted && std::io::stderr().is_terminal())
                .then(|| indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())),
        )
    }

    fn bar(&self, digest: &Digest, size: u64) -> Option<indicatif::ProgressBar> {
        let multi = self.0.as_ref()?;
        let bar = multi.add(indicatif::ProgressBar::new(size));
        if let Ok(style) = indicatif::ProgressStyle::with_template("{prefix} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}") {
            bar.set_style(style);
        }
        bar.set_prefix(digest.hex().get(..12).unwrap_or(digest.hex()).to_string());
        Some(bar)
    }

    fn clear(&self) {
        if let Some(m) = &self.0 {
            let _ = m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn index() -> String {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [
                {"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": digest(1), "size": 10,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": digest(2), "size": 10,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": digest(3), "size": 10,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": digest(4), "size": 10,
                 "platform": {"os": "unknown", "architecture": "unknown"}},
                {"mediaType": MEDIA_TYPE_OCI_MANIFEST, "digest": digest(5), "size": 10,
                 "platform": {"os": "windows", "architecture": "amd64"}},
            ]
        })
        .to_string()
    }

    fn pick(want: &str) -> Result<String, String> {
        let Manifest::Index(m) = parse_manifest(index().as_bytes()).unwrap() else { panic!("not an index") };
        select_platform(&m, &Platform::parse(want).unwrap()).map(|d| d.digest.to_string())
    }

    #[test]
    fn selects_platform_from_index() {
        assert_eq!(pick("linux/amd64").unwrap(), digest(3));
        assert_eq!(pick("linux/x86_64").unwrap(), digest(3));
        assert_eq!(pick("linux/arm64").unwrap(), digest(2));
        assert_eq!(pick("linux/arm64/v8").unwrap(), digest(2));
        assert_eq!(pick("linux/arm/v7").unwrap(), digest(1));
        assert_eq!(pick("windows/amd64").unwrap(), digest(5));
        let e = pick("linux/s390x").unwrap_err();
        assert!(e.contains("linux/s390x") && e.contains("linux/arm/v7") && e.contains("linux/amd64"), "{e}");
        assert!(pick("linux/arm/v6").is_err());
    }

    #[test]
    fn docker_manifest_list_and_default_platform() {
        let list = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_LIST,
            "manifests": [
                {"mediaType": MEDIA_TYPE_DOCKER_MANIFEST, "digest": digest(7), "size": 1,
                 "platform": {"os": "linux", "architecture": Platform::default().architecture}},
            ]
        });
        let Manifest::Index(m) = parse_manifest(list.to_string().as_bytes()).unwrap() else { panic!("not an index") };
        assert_eq!(select_platform(&m, &Platform::default()).unwrap().digest.to_string(), digest(7));
        assert_eq!(Platform::default().os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Platform::default().to_string(), "linux/amd64");
        }
    }

    #[test]
    fn parses_manifests() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest(1), "size": 5},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest(2), "size": 7}]
        });
        let Manifest::Image { config, layers } = parse_manifest(m.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!(config.size, 5);
        assert_eq!(layers[0].digest.to_string(), digest(2));
        // An OCI manifest may leave out mediaType.
        let m = serde_json::json!({"schemaVersion": 2, "config": {"digest": digest(1), "size": 5},
                                   "layers": [{"digest": digest(2), "size": 7}]});
        assert!(matches!(parse_manifest(m.to_string().as_bytes()), Ok(Manifest::Image { .. })));
        let v1 = r#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#;
        assert!(parse_manifest(v1.as_bytes()).unwrap_err().contains("schema 1"));
        let odd = serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain"}).to_string();
        assert!(parse_manifest(odd.as_bytes()).unwrap_err().contains("text/plain"));
    }

    #[test]
    fn platform_parse() {
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap(),
            Platform { os: "linux".into(), architecture: "arm64".into(), variant: Some("v8".into()) }
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    /// The CRI server spawns pulls on a multi-threaded runtime.
    #[test]
    fn pull_async_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let reference = Reference::parse("busybox").unwrap();
        let opts = PullOptions::default();
        assert_send(&pull_async(&store, &reference, &opts));
    }

    #[test]
    fn given_credentials_reach_the_endpoints_they_name() {
        let registries = Registries::from_json(
            r#"{"mirrors": {"docker.io": ["http://127.0.0.1:5000"]}}"#,
            std::path::Path::new("registries.json"),
        )
        .unwrap();
        let busybox = Reference::parse("busybox").unwrap();
        let endpoints = registries.endpoints(&busybox, false);
        let (mirror, hub) = (&endpoints[0], &endpoints[1]);
        assert!(mirror.mirror && !hub.mirror);
        let with = |hosts| PullAuth { hosts, ..PullAuth::basic("u", "p") };
        let reach = |auth: PullAuth| [mirror, hub].map(|ep| auth.applies_to(&busybox, ep));
        assert_eq!(reach(with(AuthHosts::Registry)), [false, true]);
        assert_eq!(reach(with(AuthHosts::All)), [true, true]);
        assert_eq!(reach(with(AuthHosts::Host("127.0.0.1:5000".into()))), [true, false]);
        assert_eq!(reach(with(AuthHosts::Host("index.docker.io".into()))), [false, true]);
        assert_eq!(reach(with(AuthHosts::Host("registry-1.docker.io".into()))), [false, true]);
        assert_eq!(reach(with(AuthHosts::Host("quay.io".into()))), [false, false]);
    }

    #[test]
    fn bearer_challenges() {
        let c =
            |realm: &str, service: Option<&str>| Some(BearerChallenge { realm: realm.into(), service: service.map(Into::into) });
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull""#
            ),
            c("https://auth.docker.io/token", Some("registry.docker.io"))
        );
        assert_eq!(bearer_challenge(r#"bearer service="s", realm="http://h/t,x""#), c("http://h/t,x", Some("s")));
        assert_eq!(bearer_challenge("Bearer realm=http://h/t,service=s"), c("http://h/t", Some("s")));
        assert_eq!(bearer_challenge(r#"Basic realm="r""#), None);
        assert_eq!(bearer_challenge(r#"Bearer service="s""#), None, "no realm");
        assert_eq!(bearer_challenge(r#"Bearer realm="unterminated"#), None);
    }

    #[test]
    fn a_failed_pull_says_what_every_endpoint_said() {
        let r = Reference::parse("busybox").unwrap();
        let failure = |registry: &str, reason: &str| Error::Pull {
            reference: r.to_string(),
            registry: registry.into(),
            object: "manifest".into(),
            reason: reason.into(),
        };
        let e = all_failed(&r, vec![failure("http://127.0.0.1:5000", "not authorized"), failure("https://hub", "dns error")]);
        let text = e.to_string();
        assert!(
            text.starts_with("pull manifest of docker.io/library/busybox:latest from https://hub: dns error (tried before: "),
            "{text}"
        );
        assert!(text.contains("from http://127.0.0.1:5000: not authorized"), "{text}");
        assert_eq!(
            all_failed(&r, vec![failure("https://hub", "dns error")]).to_string(),
            failure("https://hub", "dns error").to_string()
        );
        assert!(all_failed(&r, vec![]).to_string().contains("no endpoint"));
    }

    #[test]
    fn debug_hides_passwords() {
        let opts = PullOptions { credentials: Some(PullAuth::basic("user", "hunter2")), ..Default::default() };
        let text = format!("{opts:?}");
        assert!(text.contains("user") && !text.contains("hunter2"), "{text}");
        for secret in [Secret::RegistryToken("s3cret-token".into()), Secret::IdentityToken("s3cret-token".into())] {
            let text = format!(
                "{:?}",
                PullOptions { credentials: Some(PullAuth { secret, hosts: AuthHosts::All }), ..Default::default() }
            );
            assert!(!text.contains("s3cret-token"), "{text}");
        }
    }

    #[test]
    fn transient_errors() {
        let server = |code| OciDistributionError::ServerError { code, url: "u".into(), message: String::new() };
        assert!(transient(&server(503)));
        assert!(transient(&server(429)));
        assert!(!transient(&server(404)));
        assert!(!transient(&OciDistributionError::UnauthorizedError { url: "u".into() }));
    }

    #[test]
    fn https_clients_build_without_openssl() {
        for scheme in [Scheme::Https { verify: true }, Scheme::Https { verify: false }, Scheme::Http] {
            let ep = Endpoint { host: "registry.example".into(), repository: "a".into(), scheme, mirror: false };
            client(&ep).unwrap_or_else(|e| panic!("{scheme:?}: {e}"));
        }
    }

    /// A registry on a thread that, when `flaky`, fails each path's first requests: `503` then
    /// `429` for manifests and the config, a body cut short for the `truncate` path.
    struct FlakyRegistry {
        port: u16,
        hits: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
    }

    impl FlakyRegistry {
        fn start(routes: std::collections::HashMap<String, (String, Vec<u8>)>, truncate: String, flaky: bool) -> FlakyRegistry {
            use std::io::{BufRead, BufReader};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let hits = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
            let counter = hits.clone();
            // Runs until the test process exits.
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let n = {
                        let mut hits = counter.lock().unwrap();
                        let n = hits.entry(path.clone()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    let reply = |status: &str, ct: &str, len: usize, body: &[u8]| {
                        let mut r = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    };
                    let out = match routes.get(&path) {
                        _ if path == "/v2/" => reply("200 OK", "application/json", 2, b"{}"),
                        Some((_, body)) if flaky && path == truncate && n == 1 => {
                            reply("200 OK", "application/octet-stream", body.len(), &body[..body.len() / 2])
                        }
                        Some(_) if flaky && path != truncate && n == 1 => reply("503 Service Unavailable", "text/plain", 0, b""),
                        Some(_) if flaky && path != truncate && n == 2 => reply("429 Too Many Requests", "text/plain", 0, b""),
                        Some((ct, body)) => reply("200 OK", ct, body.len(), body),
                        None => reply("404 Not Found", "text/plain", 0, b""),
                    };
                    let _ = conn.write_all(&out);
                }
            });
            FlakyRegistry { port, hits }
        }

        fn hits(&self, path: &str) -> u32 {
            self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
        }
    }

    /// A one-layer image served under `/v2/test/img/`: its manifest (tag `v1`), config and layer.
    struct TestImage {
        manifest: Vec<u8>,
        config_digest: Digest,
        layer_digest: Digest,
        routes: std::collections::HashMap<String, (String, Vec<u8>)>,
    }

    fn test_image(layer: Vec<u8>, layer_media_type: &str, diff_id: u8) -> TestImage {
        test_image_listing(layer, layer_media_type, vec![digest(diff_id)])
    }

    /// An image whose manifest lists `layer` once per diff ID.
    fn test_image_listing(layer: Vec<u8>, layer_media_type: &str, diff_ids: Vec<String>) -> TestImage {
        let layer_digest = Digest::sha256_of(&layer);
        let listed: Vec<_> = diff_ids
            .iter()
            .map(|_| serde_json::json!({"mediaType": layer_media_type, "digest": layer_digest, "size": layer.len()}))
            .collect();
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
                                        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
        .to_string()
        .into_bytes();
        let config_digest = Digest::sha256_of(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": listed,
        })
        .to_string()
        .into_bytes();
        let routes = std::collections::HashMap::from([
            ("/v2/test/img/manifests/v1".to_string(), (MEDIA_TYPE_OCI_MANIFEST.to_string(), manifest.clone())),
            (format!("/v2/test/img/blobs/{config_digest}"), ("application/octet-stream".to_string(), config)),
            (format!("/v2/test/img/blobs/{layer_digest}"), ("application/octet-stream".to_string(), layer)),
        ]);
        TestImage { manifest, config_digest, layer_digest, routes }
    }

    #[test]
    fn retries_transient_failures() {
        let layer: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let TestImage { manifest, config_digest, layer_digest, routes } =
            test_image(layer, "application/vnd.oci.image.layer.v1.tar+gzip", 9);
        let manifest_path = "/v2/test/img/manifests/v1".to_string();
        let config_path = format!("/v2/test/img/blobs/{config_digest}");
        let layer_path = format!("/v2/test/img/blobs/{layer_digest}");
        let server = FlakyRegistry::start(routes, layer_path.clone(), true);
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();

        let reference = Reference::parse(&format!("127.0.0.1:{}/test/img:v1", server.port)).unwrap();
        let p = pull(&store, &reference, &PullOptions::default()).unwrap();
        assert_eq!(p.manifest_digest, Digest::sha256_of(&manifest));
        assert_eq!(p.config_digest, config_digest);
        assert_eq!(p.layers[0].digest, layer_digest);
        assert_eq!(p.diff_ids[0].to_string(), digest(9));
        assert!(store.has(&layer_digest) && store.has(&config_digest) && store.has(&p.manifest_digest));
        assert_eq!((server.hits(&manifest_path), server.hits(&config_path), server.hits(&layer_path)), (3, 3, 2));

        // A 404 is final: one request, and an error naming the reference and the registry.
        let missing = Reference::parse(&format!("127.0.0.1:{}/test/img:nope", server.port)).unwrap();
        let e = pull(&store, &missing, &PullOptions::default()).unwrap_err().to_string();
        assert!(e.contains("test/img:nope") && e.contains(&format!("http://127.0.0.1:{}", server.port)), "{e}");
        assert_eq!(server.hits("/v2/test/img/manifests/nope"), 1);
    }

    /// A registry that takes only bearer tokens, and a token server (at /token on the same port) that
    /// issues one to `user:pass`, as Docker Hub and most hosted registries work.
    fn token_registry(routes: std::collections::HashMap<String, (String, Vec<u8>)>) -> (u16, std::sync::mpsc::Receiver<String>) {
        use base64::Engine;
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen, seen_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let good_basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("user:pass"));
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let method = line.split_whitespace().next().unwrap_or("").to_string();
                let mut authorization = String::new();
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            authorization = v.trim().to_string();
                        }
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let _ = seen.send(format!("{method} {path} {body} {authorization}").replace("  ", " "));
                let reply = |status: &str, extra: &str, ct: &str, body: &[u8]| {
                    let mut r = format!(
                        "HTTP/1.1 {status}\r\n{extra}Content-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                };
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:test/img:pull\"\r\n"
                );
                let out = if path.starts_with("/token") && method == "POST" {
                    // An identity (refresh) token traded for an access token.
                    let form: std::collections::HashMap<&str, &str> =
                        body.split('&').filter_map(|kv| kv.split_once('=')).collect();
                    let wanted = [("grant_type", "refresh_token"), ("refresh_token", "refresh-abc"), ("service", "fake")];
                    if wanted.iter().all(|(k, v)| form.get(k) == Some(v))
                        && form.get("scope") == Some(&"repository%3Atest%2Fimg%3Apull")
                    {
                        reply("200 OK", "", "application/json", br#"{"access_token": "tok-123", "expires_in": 300}"#)
                    } else {
                        reply("401 Unauthorized", "", "application/json", br#"{"errors": [{"code": "UNAUTHORIZED"}]}"#)
                    }
                } else if path.starts_with("/token") {
                    if authorization == good_basic {
                        reply("200 OK", "", "application/json", br#"{"token": "tok-123", "expires_in": 300}"#)
                    } else {
                        reply("401 Unauthorized", "", "application/json", br#"{"errors": [{"code": "UNAUTHORIZED"}]}"#)
                    }
                } else if authorization != "Bearer tok-123" {
                    reply("401 Unauthorized", &challenge, "application/json", br#"{"errors": [{"code": "UNAUTHORIZED"}]}"#)
                } else if path == "/v2/" {
                    reply("200 OK", "", "application/json", b"{}")
                } else if let Some((ct, body)) = routes.get(&path) {
                    reply("200 OK", "", ct, body)
                } else {
                    reply("404 Not Found", "", "text/plain", b"")
                };
                let _ = conn.write_all(&out);
            }
        });
        (port, seen_rx)
    }

    #[test]
    fn bearer_token_auth() {
        let layer = b"not really a tar, but a blob all the same".to_vec();
        let TestImage { config_digest, layer_digest, routes, .. } =
            test_image(layer, "application/vnd.oci.image.layer.v1.tar", 3);
        let (port, seen) = token_registry(routes);
        let reference = Reference::parse(&format!("127.0.0.1:{port}/test/img:v1")).unwrap();

        // Without credentials the token server refuses: a clear error, nothing stored.
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let e = pull(&store, &reference, &PullOptions::default()).unwrap_err().to_string();
        assert!(e.contains("test/img:v1"), "{e}");
        assert!(store.list().unwrap().is_empty());

        let opts = PullOptions { credentials: Some(PullAuth::basic("user", "pass")), ..PullOptions::default() };
        let p = pull(&store, &reference, &opts).unwrap();
        assert!(store.has(&p.manifest_digest) && store.has(&config_digest) && store.has(&layer_digest));
        let requests: Vec<String> = seen.try_iter().collect();
        // The credentials went to the token server only; the registry saw the token.
        assert!(requests.iter().any(|r| r.starts_with("GET /token") && r.contains("Basic ")), "{requests:?}");
        let blobs: Vec<&String> = requests.iter().filter(|r| r.contains("/blobs/") && r.ends_with("Bearer tok-123")).collect();
        assert_eq!(blobs.len(), 2, "{requests:?}");
        assert!(!requests.iter().any(|r| r.starts_with("GET /v2/") && r.contains("Basic ")), "{requests:?}");

        // A registry token is sent as it is: no token server is asked.
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let token = PullAuth { secret: Secret::RegistryToken("tok-123".into()), hosts: AuthHosts::All };
        let p = pull(&store, &reference, &PullOptions { credentials: Some(token), ..PullOptions::default() }).unwrap();
        assert!(store.has(&p.manifest_digest) && store.has(&layer_digest));
        let requests: Vec<String> = seen.try_iter().collect();
        assert!(!requests.iter().any(|r| r.contains(" /token")), "{requests:?}");
        assert!(requests.iter().all(|r| r.ends_with("Bearer tok-123")), "{requests:?}");

        // An identity token is traded at the token server for the access token.
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let identity = |t: &str| PullAuth { secret: Secret::IdentityToken(t.into()), hosts: AuthHosts::All };
        let p = pull(&store, &reference, &PullOptions { credentials: Some(identity("refresh-abc")), ..PullOptions::default() })
            .unwrap();
        assert!(store.has(&p.manifest_digest) && store.has(&layer_digest));
        let requests: Vec<String> = seen.try_iter().collect();
        assert!(requests.iter().any(|r| r.starts_with("POST /token") && r.contains("refresh_token=refresh-abc")), "{requests:?}");
        assert!(requests.iter().filter(|r| r.contains("/blobs/")).all(|r| r.ends_with("Bearer tok-123")), "{requests:?}");
        let e = pull(&store, &reference, &PullOptions { credentials: Some(identity("expired")), ..PullOptions::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused the identity token") && e.contains("401"), "{e}");
    }

    /// A manifest that lists one layer twice (as old Docker images repeat their empty layer),
    /// pulled twice at once into one image root, on `rt`: both pulls succeed, the blob is stored
    /// once, and both chain IDs are unpacked from it. Two downloads of one blob must wait for
    /// each other without holding a runtime thread (issue 10 hung a current-thread runtime).
    fn repeated_layer_pulls(rt: tokio::runtime::Runtime) {
        use crate::manager::ImageRoot;
        use crate::unpack::tests::Tar;
        let tar = Tar::new().file("etc/hello", b"hi").finish();
        let diff = Digest::sha256_of(&tar).to_string();
        let TestImage { layer_digest, routes, .. } =
            test_image_listing(tar, "application/vnd.oci.image.layer.v1.tar", vec![diff.clone(), diff]);
        let server = FlakyRegistry::start(routes, String::new(), false);
        let root = tempfile::tempdir().unwrap();
        let images = std::sync::Arc::new(ImageRoot::open(root.path()).unwrap());
        let reference = Reference::parse(&format!("127.0.0.1:{}/test/img:v1", server.port)).unwrap();
        let pulls: Vec<_> = (0..2)
            .map(|_| {
                let (images, reference) = (images.clone(), reference.clone());
                rt.spawn(async move { images.pull_async(&reference, &PullOptions::default()).await })
            })
            .collect();
        let done = rt.block_on(async {
            let mut out = Vec::new();
            for p in pulls {
                out.push(tokio::time::timeout(Duration::from_secs(60), p).await.expect("pull hangs").unwrap());
            }
            out
        });
        for image in done {
            let image = image.unwrap();
            assert_eq!(image.layers.len(), 2);
            assert!(image.layers.iter().all(|l| l.digest == layer_digest));
            assert_ne!(image.layers[0].chain, image.layers[1].chain);
            for l in &image.layers {
                assert_eq!(std::fs::read(images.layers.fs_path(&l.chain).join("etc/hello")).unwrap(), b"hi");
            }
        }
        assert!(images.store.has(&layer_digest));
        assert_eq!(server.hits(&format!("/v2/test/img/blobs/{layer_digest}")), 1, "the layer is downloaded once");
        assert!(std::fs::read_dir(root.path().join("ingest")).unwrap().next().is_none(), "nothing left in ingest/");
    }

    #[test]
    fn repeated_layer_current_thread() {
        repeated_layer_pulls(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());
    }

    #[test]
    fn repeated_layer_multi_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        repeated_layer_pulls(rt);
    }

    /// The CRI server spawns image pulls as tasks of a multi-threaded runtime.
    #[test]
    fn image_pull_async_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let root = tempfile::tempdir().unwrap();
        let images = crate::manager::ImageRoot::open(root.path()).unwrap();
        let reference = Reference::parse("busybox").unwrap();
        let opts = PullOptions::default();
        assert_send(&images.pull_async(&reference, &opts));
    }
}
