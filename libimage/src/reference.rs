//! Image references, normalised as Docker does (`busybox` is `docker.io/library/busybox:latest`).
//!
//! Grammar (distribution/reference): `[domain/]path[:tag][@digest]`, where the first `/`-separated
//! component is a domain only when it contains a `.` or a `:`, is `localhost`, or has an upper-case
//! letter; otherwise the registry is `docker.io`, and a single-component path there is an official
//! image under `library/`. Path components are lower case.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::Error;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
    /// `latest` when the reference names neither a tag nor a digest.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `reference`; errors name it.
    pub fn parse(reference: &str) -> Result<Reference, Error> {
        let bad = |reason: &str| Error::InvalidReference { reference: reference.to_string(), reason: reason.to_string() };
        if reference.is_empty() {
            return Err(bad("empty reference"));
        }
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|e| bad(&format!("bad digest: {e}")))?;
                (n, Some(digest))
            }
            None => (reference, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(bad(&format!("invalid tag {tag:?}")));
            }
        }
        if name.is_empty() {
            return Err(bad("empty name"));
        }
        if name.len() > NAME_MAX {
            return Err(bad(&format!("name longer than {NAME_MAX} characters")));
        }
        let (mut registry, mut repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if !valid_domain(&registry) {
            return Err(bad(&format!("invalid registry {registry:?}")));
        }
        if registry == "index.docker.io" {
            registry = DOCKER_HUB.to_string();
        }
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        if let Some(bad_component) = repository.split('/').find(|c| !valid_path_component(c)) {
            return Err(bad(&format!("invalid repository path component {bad_component:?}")));
        }
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host to talk the distribution API to (`registry-1.docker.io` for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_REGISTRY
        } else {
            &self.registry
        }
    }

    /// The short form Docker prints: `busybox:latest`, `user/img:1`, `quay.io/a/b@sha256:…`.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository.strip_prefix("library/").filter(|r| !r.contains('/')).unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        };
        format!("{name}{}", self.suffix())
    }

    /// The same image pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}{}", self.registry, self.repository, self.suffix())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= TAG_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A host name, IPv4 address or bracketed IPv6 address, with an optional port.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else { return false };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn normalises_like_docker() {
        // (input, full name, familiar name)
        let cases: &[(&str, &str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
            ("user/img", "docker.io/user/img:latest", "user/img:latest"),
            ("user/img:v1", "docker.io/user/img:v1", "user/img:v1"),
            ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
            ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b:tag"),
            ("[::1]:5000/a:t", "[::1]:5000/a:t", "[::1]:5000/a:t"),
            ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
            ("Example/a", "Example/a:latest", "Example/a:latest"),
            ("test.com:tag", "docker.io/library/test.com:tag", "test.com:tag"),
            ("test.com:5000", "docker.io/library/test.com:5000", "test.com:5000"),
            ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080", "foo_bar.com:8080"),
            ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080", "foo/foo_bar.com:8080"),
            ("a__b/c-d---e/f.g", "docker.io/a__b/c-d---e/f.g:latest", "a__b/c-d---e/f.g:latest"),
            ("lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase"),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(r.familiar(), *familiar, "{input}");
            assert_eq!(Reference::parse(full).unwrap(), r, "round trip of {input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.familiar(), format!("busybox@{D}"));

        let r = Reference::parse(&format!("127.0.0.1:5000/a/b:tag@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/a/b:tag@{D}"));
    }

    #[test]
    fn api_host() {
        assert_eq!(Reference::parse("busybox").unwrap().api_host(), "registry-1.docker.io");
        assert_eq!(Reference::parse("localhost:5000/x").unwrap().api_host(), "localhost:5000");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Uppercase",
            "docker.io/User/img",
            "a//b",
            "a/b/",
            "-a",
            "a-",
            "a..b",
            "a:",
            "a:-tag",
            "a:tag with space",
            "busybox@sha256:abc",
            "busybox@",
            "@sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "host:port/a",
            "[::1/a",
            "a/b:t:u",
        ] {
            match Reference::parse(bad) {
                Ok(r) => panic!("{bad:?} parsed as {r}"),
                Err(e) => assert!(e.to_string().contains(&format!("{bad:?}")), "{bad:?}: error does not name it: {e}"),
            }
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(Reference::parse(&long).is_err());
    }
}
