//! Registry configuration: plain-HTTP (insecure) registries, mirrors and credentials.
//!
//! `/etc/roci/registries.json` (the path is a parameter):
//! ```json
//! {"insecure": ["registry.lan:5000"],
//!  "mirrors": {"docker.io": ["http://127.0.0.1:5000", "https://mirror.example.com/dockerhub"]},
//!  "auths": {"quay.io": {"username": "u", "password": "p"}, "ghcr.io": {"auth": "dTpw"}}}
//! ```
//! Credentials are also read, as podman and docker read them, from `$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json` and `~/.docker/config.json` (their `auths` maps, base64
//! `user:password` in `auth`); the first file that has an entry for a registry wins, and
//! registries.json comes first. Credential helpers (`credsStore`, `credHelpers`) are not run.
//!
//! Security: a registry is spoken to over plain HTTP, or over HTTPS without certificate
//! verification, only when it is a loopback address (nothing crosses the network) or the user
//! named it insecure; otherwise a man in the middle could serve any image for a tag. Digests in
//! manifests are verified either way, so a pinned `name@sha256:…` is safe over any transport.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::reference::{Reference, DOCKER_HUB};
use crate::Error;

/// Where `roci` looks for registries.json when no path is given.
pub const DEFAULT_CONFIG: &str = "/etc/roci/registries.json";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// The registry configuration and every credential found, ready for lookups.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// Registries (`host[:port]`) that may be spoken to over plain HTTP or unverified HTTPS.
    pub insecure: Vec<String>,
    /// Registry name (`docker.io`) → mirror URLs, tried in order before the registry itself.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Credentials by registry (or `registry/repository-prefix`), in lookup order: the first source
    /// that has an entry wins.
    pub auths: Vec<HashMap<String, Credentials>>,
    /// Docker credential helpers by registry (`credHelpers` of a docker config file).
    pub cred_helpers: HashMap<String, String>,
    /// The credential helper for every other registry (`credsStore`).
    pub creds_store: Option<String>,
}

/// How to reach one registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// The repository on that host (a mirror may add a path prefix).
    pub repository: String,
    pub scheme: Scheme,
    /// A mirror of the reference's registry rather than the registry itself.
    pub mirror: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https { verify: bool },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https { .. } => "https",
        };
        write!(f, "{scheme}://{}", self.host)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    insecure: Vec<String>,
    #[serde(default)]
    mirrors: HashMap<String, Vec<String>>,
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

/// An `auths` entry as docker, podman and registries.json write it.
#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// What a docker credential helper prints for `get`.
#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

impl Registries {
    /// Reads `config` (default [`DEFAULT_CONFIG`], which may be absent; a named file must exist),
    /// then the credential files of [`auth_file_paths`].
    pub fn load(config: Option<&Path>) -> Result<Registries, Error> {
        let mut registries = match config {
            Some(path) => Registries::from_file(path)?,
            None => match std::fs::read_to_string(DEFAULT_CONFIG) {
                Ok(text) => Registries::from_json(&text, Path::new(DEFAULT_CONFIG))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registries::default(),
                Err(source) => return Err(Error::RegistriesConfig { path: DEFAULT_CONFIG.into(), source }),
            },
        };
        for path in auth_file_paths() {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    registries.auths.push(parse_auth_file(&text, &path)?);
                    let (helpers, store) = parse_helpers(&text, &path)?;
                    for (registry, helper) in helpers {
                        registries.cred_helpers.entry(registry).or_insert(helper);
                    }
                    if registries.creds_store.is_none() {
                        registries.creds_store = store;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::AuthFile { path, reason: source.to_string() }),
            }
        }
        Ok(registries)
    }

    pub fn from_file(path: &Path) -> Result<Registries, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::RegistriesConfig { path: path.into(), source })?;
        Registries::from_json(&text, path)
    }

    /// Parses registries.json text; `path` names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Registries, Error> {
        let file: ConfigFile =
            serde_json::from_str(text).map_err(|e| Error::RegistriesConfigParse { path: path.into(), reason: e.to_string() })?;
        let auths = auth_map(file.auths, path)?;
        for (registry, urls) in &file.mirrors {
            for url in urls {
                parse_mirror(url).map_err(|reason| Error::RegistriesConfigParse {
                    path: path.into(),
                    reason: format!("mirror {url:?} of {registry}: {reason}"),
                })?;
            }
        }
        Ok(Registries {
            insecure: file.insecure,
            mirrors: file.mirrors,
            auths: if auths.is_empty() { vec![] } else { vec![auths] },
            ..Registries::default()
        })
    }

    /// Whether `host` (`host[:port]`) may be reached without verified TLS.
    pub fn is_insecure(&self, host: &str) -> bool {
        is_loopback(host) || self.insecure.iter().any(|h| h == host)
    }

    /// Credentials for `registry` (a reference's registry name such as `docker.io`, or a mirror's
    /// host) and `repository`: `registry/repo/path` entries first, most specific first, then `registry`.
    pub fn credentials(&self, registry: &str, repository: &str) -> Option<&Credentials> {
        let registry = normalise_registry(registry);
        let mut keys = vec![];
        let mut path = format!("{registry}/{repository}");
        loop {
            keys.push(path.clone());
            match path.rfind('/') {
                Some(i) => path.truncate(i),
                None => break,
            }
        }
        self.auths.iter().find_map(|auths| keys.iter().find_map(|k| auths.get(k)))
    }

    /// Credentials from the docker credential helper configured for `registry` (`credHelpers`,
    /// else `credsStore`), asked as docker asks it: `docker-credential-<name> get` with the server
    /// on stdin. None when no helper is configured or it has nothing for the registry.
    pub fn helper_credentials(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        let registry = normalise_registry(registry);
        let Some(helper) = self.cred_helpers.get(registry).or(self.creds_store.as_ref()) else {
            return Ok(None);
        };
        let server = if registry == DOCKER_HUB { "https://index.docker.io/v1/" } else { registry };
        run_helper(Path::new(&format!("docker-credential-{helper}")), server)
    }

    /// The endpoints to try, in order, for `reference`: its mirrors, then the registry itself
    /// (`insecure` allows plain HTTP and unverified HTTPS for the registry itself).
    pub fn endpoints(&self, reference: &Reference, insecure: bool) -> Vec<Endpoint> {
        let mut out = vec![];
        for url in self.mirrors.get(&reference.registry).into_iter().flatten() {
            let Ok((scheme, host, prefix)) = parse_mirror(url) else { continue };
            let repository = match prefix {
                Some(p) => format!("{p}/{}", reference.repository),
                None => reference.repository.clone(),
            };
            let scheme = match scheme {
                Some(Scheme::Https { .. }) => Scheme::Https { verify: !self.is_insecure(&host) },
                Some(Scheme::Http) => Scheme::Http,
                None if self.is_insecure(&host) => Scheme::Http,
                None => Scheme::Https { verify: true },
            };
            out.push(Endpoint { host, repository, scheme, mirror: true });
        }
        let host = reference.api_host().to_string();
        let repository = reference.repository.clone();
        if is_loopback(&host) {
            out.push(Endpoint { host, repository, scheme: Scheme::Http, mirror: false });
        } else if insecure || self.is_insecure(&reference.registry) {
            // As docker does for insecure registries: HTTPS without verification, then plain HTTP.
            out.push(Endpoint {
                host: host.clone(),
                repository: repository.clone(),
                scheme: Scheme::Https { verify: false },
                mirror: false,
            });
            out.push(Endpoint { host, repository, scheme: Scheme::Http, mirror: false });
        } else {
            out.push(Endpoint { host, repository, scheme: Scheme::Https { verify: true }, mirror: false });
        }
        out
    }
}

/// Credential files, in lookup order: `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn auth_file_paths() -> Vec<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut paths = vec![];
    paths.extend(env("REGISTRY_AUTH_FILE"));
    paths.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    match env("DOCKER_CONFIG") {
        Some(d) => paths.push(d.join("config.json")),
        None => paths.extend(env("HOME").map(|h| h.join(".docker/config.json"))),
    }
    paths
}

/// Parses a docker/podman credential file; `path` names it in errors.
pub fn parse_auth_file(text: &str, path: &Path) -> Result<HashMap<String, Credentials>, Error> {
    let file: AuthFile = serde_json::from_str(text).map_err(|e| Error::AuthFile { path: path.into(), reason: e.to_string() })?;
    auth_map(file.auths, path)
}

/// The `credHelpers` (by normalised registry) and `credsStore` of a docker config file.
fn parse_helpers(text: &str, path: &Path) -> Result<(HashMap<String, String>, Option<String>), Error> {
    let file: AuthFile = serde_json::from_str(text).map_err(|e| Error::AuthFile { path: path.into(), reason: e.to_string() })?;
    let helpers = file.cred_helpers.into_iter().map(|(k, v)| (normalise_key(&k), v)).collect();
    Ok((helpers, file.creds_store.filter(|s| !s.is_empty())))
}

/// Run credential helper `program` for `server`. A helper that says it has no credentials gives None;
/// an identity token (username `<token>`) is not usable for basic auth and gives None too.
pub fn run_helper(program: &Path, server: &str) -> Result<Option<Credentials>, Error> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let fail = |reason: String| Error::AuthFile { path: program.into(), reason };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("run credential helper: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(server.as_bytes()) {
            // A helper may answer (and exit) without reading: its exit status says how it went.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.map_err(|e| fail(format!("write to credential helper: {e}")))?,
        }
    }
    let out = child.wait_with_output().map_err(|e| fail(format!("wait for credential helper: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string() + String::from_utf8_lossy(&out.stderr).trim();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("get credentials for {server}: {} ({said})", out.status)));
    }
    let got: HelperOutput = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("credentials for {server}: not the helper protocol's JSON: {e}")))?;
    if got.username == "<token>" {
        tracing::warn!(server, helper = %program.display(), "identity tokens are not supported; pulling anonymously");
        return Ok(None);
    }
    Ok(Some(Credentials { username: got.username, password: got.secret }))
}

fn auth_map(entries: HashMap<String, AuthEntry>, path: &Path) -> Result<HashMap<String, Credentials>, Error> {
    let mut out = HashMap::new();
    for (key, entry) in entries {
        let bad = |reason: String| Error::AuthFile { path: path.into(), reason: format!("entry {key:?}: {reason}") };
        let creds = match (entry.username, entry.password, entry.auth) {
            (Some(username), Some(password), _) => Credentials { username, password },
            (_, _, Some(auth)) if !auth.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| bad(format!("auth is not base64: {e}")))?;
                let decoded = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8".into()))?;
                let (u, p) = decoded.split_once(':').ok_or_else(|| bad("auth is not user:password".into()))?;
                Credentials { username: u.to_string(), password: p.to_string() }
            }
            // Entries without credentials (identity tokens, helper placeholders) are skipped.
            _ => continue,
        };
        out.insert(normalise_key(&key), creds);
    }
    Ok(out)
}

/// `https://index.docker.io/v1/` → `docker.io`; `quay.io/org` stays.
fn normalise_key(key: &str) -> String {
    let k = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let (host, path) = match k.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (k, ""),
    };
    let host = normalise_registry(host);
    // docker's `/v1/` suffix on Docker Hub's key is an API version, not a namespace.
    let had_scheme = k.len() != key.len();
    if path.is_empty() || (had_scheme && (path == "v1" || path == "v2")) {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// Docker Hub's other names (`index.docker.io`, `registry-1.docker.io`) → `docker.io`.
pub(crate) fn normalise_registry(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    }
}

/// `http://host:port/prefix` → (scheme if given, host, prefix).
fn parse_mirror(url: &str) -> Result<(Option<Scheme>, String, Option<String>), String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Some(Scheme::Http), r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Some(Scheme::Https { verify: true }), r)
    } else if url.contains("://") {
        return Err("only http:// and https:// are supported".into());
    } else {
        (None, url)
    };
    let rest = rest.trim_end_matches('/');
    let (host, prefix) = match rest.split_once('/') {
        Some((h, p)) => (h, Some(p.to_string())),
        None => (rest, None),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    Ok((scheme, host.to_string(), prefix))
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit())).map_or(host, |(h, _)| h)
    };
    if h == "localhost" {
        return true;
    }
    h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || host == "::1"
}

#[cfg(test)]
mod helper_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A helper script, each under a name of its own: other test threads fork while one is being
    /// written, and a child holding a copy of the write fd makes its exec fail with ETXTBSY.
    fn script(dir: &Path, body: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = dir.join(format!("docker-credential-fake{n}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// `run_helper`, retried while the script is busy (see `script`).
    fn run(program: &Path, server: &str) -> Result<Option<Credentials>, Error> {
        for _ in 0..50 {
            match run_helper(program, server) {
                Err(e) if e.to_string().contains("Text file busy") => std::thread::sleep(std::time::Duration::from_millis(20)),
                r => return r,
            }
        }
        run_helper(program, server)
    }

    #[test]
    fn credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let ok = script(
            dir.path(),
            r#"[ "$1" = get ] || exit 3; read s; printf '{"ServerURL":"%s","Username":"u-%s","Secret":"p"}' "$s" "$s""#,
        );
        let c = run(&ok, "quay.io").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u-quay.io", "p"));
        let none = script(dir.path(), "echo 'credentials not found in native keychain'; exit 1");
        assert_eq!(run(&none, "quay.io").unwrap(), None);
        let broken = script(dir.path(), "echo boom >&2; exit 2");
        let e = run(&broken, "quay.io").unwrap_err().to_string();
        assert!(e.contains("boom") && e.contains("quay.io"), "{e}");
        let token = script(dir.path(), r#"printf '{"Username":"<token>","Secret":"refresh"}'"#);
        assert_eq!(run(&token, "quay.io").unwrap(), None);
        let missing = run(&dir.path().join("nope"), "quay.io").unwrap_err().to_string();
        assert!(missing.contains("nope"), "{missing}");
    }

    #[test]
    fn helpers_from_docker_config() {
        let text = r#"{"auths": {"https://index.docker.io/v1/": {}}, "credsStore": "desktop",
                       "credHelpers": {"https://gcr.io": "gcloud", "quay.io": "quay"}}"#;
        let (helpers, store) = parse_helpers(text, Path::new("config.json")).unwrap();
        assert_eq!(helpers.get("gcr.io").map(String::as_str), Some("gcloud"));
        assert_eq!(helpers.get("quay.io").map(String::as_str), Some("quay"));
        assert_eq!(store.as_deref(), Some("desktop"));
        let r = Registries { cred_helpers: helpers, creds_store: None, ..Registries::default() };
        assert_eq!(r.helper_credentials("example.com").unwrap(), None, "no helper for it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials { username: u.into(), password: p.into() }
    }

    #[test]
    fn parses_config() {
        let text = r#"{
            "insecure": ["registry.lan:5000"],
            "mirrors": {"docker.io": ["http://127.0.0.1:5000", "https://mirror.example.com/hub/"]},
            "auths": {"quay.io": {"username": "u", "password": "p"},
                      "ghcr.io": {"auth": "YWxpY2U6czNjcjN0OndpdGg6Y29sb25z"},
                      "https://index.docker.io/v1/": {"auth": "ZDpo"}}
        }"#;
        let r = Registries::from_json(text, Path::new("r.json")).unwrap();
        assert!(r.is_insecure("registry.lan:5000"));
        assert!(!r.is_insecure("registry.lan"));
        assert!(r.is_insecure("127.0.0.1:5000") && r.is_insecure("localhost") && r.is_insecure("[::1]:5000"));
        assert!(!r.is_insecure("quay.io"));
        assert_eq!(r.credentials("quay.io", "a/b"), Some(&creds("u", "p")));
        assert_eq!(r.credentials("ghcr.io", "x"), Some(&creds("alice", "s3cr3t:with:colons")));
        assert_eq!(r.credentials("docker.io", "library/busybox"), Some(&creds("d", "h")));
        assert_eq!(r.credentials("example.com", "x"), None);

        let busybox = Reference::parse("busybox").unwrap();
        let eps = r.endpoints(&busybox, false);
        assert_eq!(
            eps,
            vec![
                Endpoint {
                    host: "127.0.0.1:5000".into(),
                    repository: "library/busybox".into(),
                    scheme: Scheme::Http,
                    mirror: true
                },
                Endpoint {
                    host: "mirror.example.com".into(),
                    repository: "hub/library/busybox".into(),
                    scheme: Scheme::Https { verify: true },
                    mirror: true
                },
                Endpoint {
                    host: "registry-1.docker.io".into(),
                    repository: "library/busybox".into(),
                    scheme: Scheme::Https { verify: true },
                    mirror: false
                },
            ]
        );
        let lan = Reference::parse("registry.lan:5000/a").unwrap();
        let schemes: Vec<Scheme> = r.endpoints(&lan, false).iter().map(|e| e.scheme).collect();
        assert_eq!(schemes, [Scheme::Https { verify: false }, Scheme::Http]);
        // An https:// mirror is verified unless it is loopback or listed insecure.
        let conf =
            r#"{"insecure": ["m.lan"], "mirrors": {"quay.io": ["https://m.lan", "https://[::1]:5000", "https://m.example"]}}"#;
        let m = Registries::from_json(conf, Path::new("r.json")).unwrap();
        let schemes: Vec<Scheme> = m.endpoints(&Reference::parse("quay.io/a").unwrap(), false).iter().map(|e| e.scheme).collect();
        let (unverified, verified) = (Scheme::Https { verify: false }, Scheme::Https { verify: true });
        assert_eq!(schemes, [unverified, unverified, verified, verified]);
        let local = Reference::parse("localhost:5000/a").unwrap();
        assert_eq!(r.endpoints(&local, false)[0].scheme, Scheme::Http);
        let quay = Reference::parse("quay.io/a/b").unwrap();
        assert_eq!(r.endpoints(&quay, false).len(), 1);
        assert_eq!(r.endpoints(&quay, true).len(), 2);
    }

    #[test]
    fn config_errors_name_the_file() {
        for bad in [r#"{"insecure": "x"}"#, r#"{"unknown": 1}"#, r#"{"mirrors": {"docker.io": ["ftp://x"]}}"#, "{"] {
            let e = Registries::from_json(bad, Path::new("/etc/roci/registries.json")).unwrap_err().to_string();
            assert!(e.contains("/etc/roci/registries.json"), "{e}");
        }
        let e = Registries::from_json(r#"{"auths": {"a.io": {"auth": "!!"}}}"#, Path::new("r.json")).unwrap_err().to_string();
        assert!(e.contains("r.json") && e.contains("a.io"), "{e}");
        let e = Registries::from_file(Path::new("/nonexistent/registries.json")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/registries.json"), "{e}");
    }

    #[test]
    fn reads_docker_and_podman_auth_files() {
        let docker = r#"{"auths": {"https://index.docker.io/v1/": {"auth": "aHViOnB3"},
                                  "registry.example.com:5000": {"auth": "cmVnOnB3"},
                                  "quay.io/org": {"auth": "b3JnOnB3"},
                                  "empty.io": {}},
                        "credsStore": "desktop"}"#;
        let m = parse_auth_file(docker, Path::new("config.json")).unwrap();
        assert_eq!(m["docker.io"], creds("hub", "pw"));
        assert_eq!(m["registry.example.com:5000"], creds("reg", "pw"));
        assert_eq!(m["quay.io/org"], creds("org", "pw"));
        assert!(!m.contains_key("empty.io"));

        let r = Registries { auths: vec![m, HashMap::from([("quay.io".to_string(), creds("q", "q"))])], ..Default::default() };
        assert_eq!(r.credentials("quay.io", "org/img"), Some(&creds("org", "pw")));
        assert_eq!(r.credentials("quay.io", "other/img"), Some(&creds("q", "q")));
        assert_eq!(r.credentials("registry-1.docker.io", "library/x"), Some(&creds("hub", "pw")));

        let e = parse_auth_file(r#"{"auths": 5}"#, Path::new("/run/user/0/containers/auth.json")).unwrap_err().to_string();
        assert!(e.contains("/run/user/0/containers/auth.json"), "{e}");
    }

    #[test]
    fn load_reads_auth_files_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("auth.json");
        std::fs::write(&auth, r#"{"auths": {"a.io": {"auth": "dTpw"}}}"#).unwrap();
        let conf = dir.path().join("registries.json");
        std::fs::write(&conf, r#"{"auths": {"a.io": {"username": "first", "password": "x"}}}"#).unwrap();
        // Only this test touches REGISTRY_AUTH_FILE.
        std::env::set_var("REGISTRY_AUTH_FILE", &auth);
        let r = Registries::load(Some(&conf)).unwrap();
        std::env::remove_var("REGISTRY_AUTH_FILE");
        assert_eq!(r.credentials("a.io", "x"), Some(&creds("first", "x")));
        assert_eq!(r.auths[1]["a.io"], creds("u", "p"));
    }

    #[test]
    fn loopback() {
        for h in ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:1", "::1", "[::1]", "[::1]:5000"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:5000", "localhost.example.com", "[::2]:5000"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
