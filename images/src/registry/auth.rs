//! Registry authentication: the `WWW-Authenticate` challenge, bearer
//! tokens, basic credentials and Docker's `config.json`.
//!
//! A registry answers an anonymous request it will not serve with `401` and
//! a challenge. `Basic realm="..."` asks for a username and password on
//! every request. `Bearer realm="https://auth...",service="...",scope="..."`
//! sends the client to a token server: it asks there (with the credentials,
//! if it has any) for a token granting `scope`, e.g. `repository:team/app:
//! pull`, and repeats the request with `Authorization: Bearer <token>`. See
//! the distribution spec and RFC 6750.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq)]
pub enum Challenge {
    /// `Basic`: send the username and password with every request.
    Basic,
    /// `Bearer`: fetch a token from `realm` and send it with every request.
    Bearer {
        /// The token server's URL.
        realm: String,
        /// The `service` to name to the token server, if given.
        service: Option<String>,
        /// The scope the registry asks for, if given.
        scope: Option<String>,
    },
}

/// Parse `Scheme key="value", key=value, ...`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

/// A username and password (or identity token).
#[derive(Clone, PartialEq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password, or an identity token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    /// `user:password`, as `--creds` takes it.
    pub fn parse(s: &str) -> Option<Credentials> {
        let (u, p) = s.split_once(':')?;
        (!u.is_empty()).then(|| Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }
}

/// Where Docker keeps credentials: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Credentials for `registry` from a Docker `config.json` (`auths` entries
/// with a base64 `user:password` in `auth`, keyed by host or URL; Docker
/// Hub is also known as `https://index.docker.io/v1/`).
pub fn from_docker_config(path: &Path, registry: &str) -> Option<Credentials> {
    let text = std::fs::read(path).ok()?;
    from_docker_config_bytes(&text, registry)
}

/// [`from_docker_config`] on the file's bytes. Also reads the older
/// `.dockercfg` shape (the entries without the `auths` wrapper), and
/// entries with `username` and `password` instead of `auth`, as
/// Kubernetes' `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg`
/// pull secrets hold them.
pub fn from_docker_config_bytes(text: &[u8], registry: &str) -> Option<Credentials> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    let auths = v.get("auths").unwrap_or(&v).as_object()?;
    let hub = registry == crate::reference::DOCKER_HUB;
    let entry = auths.iter().find_map(|(k, e)| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        let matches =
            host == registry || (hub && matches!(host, "index.docker.io" | "registry-1.docker.io"));
        matches.then_some(e)
    })?;
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        return Credentials::parse(std::str::from_utf8(&decoded).ok()?);
    }
    let user = entry.get("username")?.as_str()?;
    let password = entry.get("password")?.as_str()?;
    (!user.is_empty()).then(|| Credentials {
        username: user.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_secret_shapes() {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        let json = format!(r#"{{"auths":{{"reg.example:5000":{{"auth":"{auth}"}}}}}}"#);
        let c = from_docker_config_bytes(json.as_bytes(), "reg.example:5000").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert!(from_docker_config_bytes(json.as_bytes(), "other").is_none());
        let cfg = r#"{"https://reg.example/v1/":{"username":"a","password":"b"}}"#;
        let c = from_docker_config_bytes(cfg.as_bytes(), "reg.example").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("a", "b"));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge("Bearer realm=http://127.0.0.1:1/t, service=reg"),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/t".into(),
                service: Some("reg".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn docker_config_credentials() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &p,
            serde_json::json!({"auths": {
                "127.0.0.1:5000": {"auth": auth},
                "https://index.docker.io/v1/": {"auth": auth}
            }})
            .to_string(),
        )
        .unwrap();
        let c = from_docker_config(&p, "127.0.0.1:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(from_docker_config(&p, "docker.io").is_some());
        assert!(from_docker_config(&p, "quay.io").is_none());
        assert_eq!(Credentials::parse("u:p:x").unwrap().password, "p:x");
    }
}
