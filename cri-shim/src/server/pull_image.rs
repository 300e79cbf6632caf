//! PullImage: `image.image` normalised as Docker does, pulled through the registries
//! configuration's mirrors with the request's `auth`; answers the image ID (the config's digest),
//! as containerd's CRI does.
//!
//! `auth` as containerd 1.6 reads it: `username`/`password`, else `identity_token` (an OAuth2
//! refresh token, traded at the registry's token server for an access token), else `auth` (base64
//! `user:password`), else `registry_token` (a bearer token, sent as it is; containerd 1.6 ignores
//! it and pulls anonymously). They go to every endpoint the pull tries, mirrors included, unless
//! `server_address` names a host, and then only to that one.
//!
//! `image.annotations`, `image.runtime_handler` and `sandbox_config` choose nothing here: roci-cri
//! has one image store and one platform (the host's) for every runtime handler.

use base64::Engine;
use libimage::pull::{AuthHosts, PullAuth, Secret};
use roci_cri_proto::runtime_v1::{AuthConfig, PullImageRequest, PullImageResponse};
use tonic::Status;

use super::{image_status, Cri};

pub(super) async fn pull_image(cri: &Cri, request: &PullImageRequest) -> Result<PullImageResponse, Status> {
    let reference = request.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default();
    let auth = request.auth.as_ref().map(pull_auth).transpose()?.flatten();
    let image_ref = cri.images.pull("image.image", reference, auth).await.map_err(|e| image_status("PullImage", e))?;
    Ok(PullImageResponse { image_ref })
}

fn pull_auth(auth: &AuthConfig) -> Result<Option<PullAuth>, Status> {
    let hosts = if auth.server_address.is_empty() { AuthHosts::All } else { AuthHosts::Host(server_host(&auth.server_address)?) };
    let secret = if !auth.username.is_empty() {
        Secret::Basic { username: auth.username.clone(), password: auth.password.clone() }
    } else if !auth.identity_token.is_empty() {
        Secret::IdentityToken(auth.identity_token.clone())
    } else if !auth.auth.is_empty() {
        let bad = |why: &str| Status::invalid_argument(format!("PullImage: auth.auth: {why}"));
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(auth.auth.trim()).map_err(|e| bad(&format!("not base64: {e}")))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("not UTF-8"))?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| bad("not user:password"))?;
        Secret::Basic { username: username.to_string(), password: password.trim_end_matches('\0').to_string() }
    } else if !auth.registry_token.is_empty() {
        Secret::RegistryToken(auth.registry_token.clone())
    } else {
        // An empty AuthConfig gives none: the configured credentials apply, if any (containerd 1.6
        // pulls anonymously then, without looking at its configured ones).
        return Ok(None);
    };
    Ok(Some(PullAuth { secret, hosts }))
}

/// The `host[:port]` of a server address: `https://host:port/v1/`, `host:port`, `host/path`.
fn server_host(address: &str) -> Result<String, Status> {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(Status::invalid_argument(format!("PullImage: auth.server_address {address:?}: no host")));
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(f: impl FnOnce(&mut AuthConfig)) -> AuthConfig {
        let mut a = AuthConfig::default();
        f(&mut a);
        a
    }

    #[test]
    fn auth_config_as_containerd_reads_it() {
        let basic = |u: &str, p: &str| Secret::Basic { username: u.into(), password: p.into() };
        let a = pull_auth(&auth(|a| {
            a.username = "u".into();
            a.password = "p".into();
            a.auth = "eDp5".into();
        }))
        .unwrap()
        .unwrap();
        assert_eq!((a.secret, a.hosts), (basic("u", "p"), AuthHosts::All), "username wins over auth");
        let a = pull_auth(&auth(|a| a.auth = "dTpwOnc=".into())).unwrap().unwrap();
        assert_eq!(a.secret, basic("u", "p:w"));
        let a = pull_auth(&auth(|a| {
            a.registry_token = "tok".into();
            a.server_address = "https://index.docker.io/v1/".into();
        }))
        .unwrap()
        .unwrap();
        assert_eq!((a.secret, a.hosts), (Secret::RegistryToken("tok".into()), AuthHosts::Host("index.docker.io".into())));
        let a = pull_auth(&auth(|a| {
            a.identity_token = "refresh".into();
            a.auth = "eDp5".into();
        }))
        .unwrap()
        .unwrap();
        assert_eq!(a.secret, Secret::IdentityToken("refresh".into()), "an identity token wins over auth");
        assert!(pull_auth(&AuthConfig::default()).unwrap().is_none());
        for (bad, field) in [
            (auth(|a| a.auth = "!!".into()), "auth.auth"),
            (auth(|a| a.auth = "bm9jb2xvbg==".into()), "auth.auth"),
            (
                auth(|a| {
                    a.username = "u".into();
                    a.server_address = "https://".into()
                }),
                "auth.server_address",
            ),
        ] {
            let e = pull_auth(&bad).expect_err(field);
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(field), "{e:?}");
        }
    }
}
