//! Talking to a registry: the OCI distribution API over HTTP(S).
//!
//! Two kinds of request are all a pull needs:
//!
//! - `GET /v2/<repository>/manifests/<tag or digest>` with an `Accept`
//!   header listing every manifest and index type the client understands
//!   (a registry answers 404 for an OCI manifest a client did not ask for);
//! - `GET /v2/<repository>/blobs/<digest>`, usually answered with a redirect
//!   to blob storage, and resumable with `Range: bytes=N-`.
//!
//! Authentication ([`auth`]) happens on the first `401`. TLS settings come
//! from a containerd/Docker style hosts directory ([`hosts`]); registries on
//! the loopback interface, and those named with `--insecure`, are spoken
//! to over plain HTTP. Failed connections and `5xx`/`429` answers are
//! retried with exponential backoff.

pub mod auth;
pub mod hosts;
pub mod pull;

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use crate::digest::{Digest, Hasher};
use crate::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use auth::{Challenge, Credentials};

/// Why talking to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request could not be made or completed (connection, TLS, an
    /// interrupted transfer), even after retries.
    #[error("{registry}: {err}")]
    Http {
        /// The registry (`host[:port]`).
        registry: String,
        /// What went wrong, with its causes.
        err: String,
    },
    /// The registry answered with an unexpected HTTP status.
    #[error("{registry}: {url}: {status}{detail}")]
    Status {
        /// The registry (`host[:port]`).
        registry: String,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// `: ` and the registry's first error message, or empty.
        detail: String,
    },
    /// Authentication failed: no credentials where the registry wants some,
    /// refused credentials or token, or an unusable challenge.
    #[error("{registry}: authentication failed: {why}")]
    Auth {
        /// The registry (`host[:port]`).
        registry: String,
        /// What failed.
        why: String,
    },
    /// The registry has no manifest by that tag or digest (HTTP 404).
    #[error("{registry}: manifest {reference} not found")]
    NotFound {
        /// The registry (`host[:port]`).
        registry: String,
        /// `repository:tag-or-digest`.
        reference: String,
    },
    /// The content the registry sent does not hash to the digest asked for (or
    /// a blob's size is wrong).
    #[error("{what} {expected}: the registry sent content with digest {actual}: refusing it")]
    DigestMismatch {
        /// `"manifest"` or `"blob"`.
        what: &'static str,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what was received.
        actual: Digest,
    },
    /// Reading or writing a partial download failed.
    #[error("{path}: {err}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// The hosts directory's certificates or keys cannot be read or used.
    #[error("{0}")]
    Config(String),
}

type Result<T> = std::result::Result<T, RegistryError>;

/// Every manifest type a pull understands, for `Accept`.
pub const MANIFEST_TYPES: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (host[:port]) to reach over plain HTTP, besides loopback ones.
    pub insecure: Vec<String>,
    /// A directory with one subdirectory per registry host (`certs.d`).
    pub hosts_dir: Option<PathBuf>,
    /// `--creds`, which win over the Docker config file.
    pub creds: Option<Credentials>,
    /// Docker's config.json (default: `$DOCKER_CONFIG` or ~/.docker).
    pub docker_config: Option<PathBuf>,
    /// Attempts per request on network errors and 5xx/429 (default 4).
    pub attempts: u32,
}

/// A connection to one registry, with the tokens it has earned.
pub struct Registry {
    name: String,
    base: String,
    http: Client,
    creds: Option<Credentials>,
    attempts: u32,
    /// Bearer tokens by scope; `basic` once the registry asked for Basic.
    tokens: Mutex<HashMap<String, String>>,
    basic: Mutex<bool>,
}

impl Registry {
    /// A client for `r`'s registry: plain HTTP for loopback and `--insecure`
    /// registries (unless the hosts directory configures them), TLS from the
    /// hosts directory, credentials from `--creds` or Docker's config.json.
    pub fn new(r: &Reference, opts: &ClientOptions) -> Result<Registry> {
        let host = r.api_host().to_string();
        // Loopback and --insecure registries speak plain HTTP, unless the
        // hosts directory configures TLS for them.
        let configured = opts
            .hosts_dir
            .as_ref()
            .is_some_and(|d| d.join(&r.registry).is_dir());
        let plain = !configured
            && (r.is_loopback() || opts.insecure.iter().any(|i| i == &r.registry || i == &host));
        let scheme = if plain { "http" } else { "https" };
        let tls = hosts::load(opts.hosts_dir.as_deref(), &r.registry)?;
        let mut b = Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(None)
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")));
        for ca in tls.roots {
            b = b.add_root_certificate(ca);
        }
        if let Some(id) = tls.identity {
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| RegistryError::Http {
            registry: r.registry.clone(),
            err: e.to_string(),
        })?;
        let creds = opts.creds.clone().or_else(|| {
            let p = opts
                .docker_config
                .clone()
                .or_else(auth::docker_config_path)?;
            auth::from_docker_config(&p, &r.registry)
        });
        Ok(Registry {
            name: r.registry.clone(),
            base: format!("{scheme}://{host}"),
            http,
            creds,
            attempts: opts.attempts.max(1),
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
        })
    }

    fn http_err(&self, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::Http {
            registry: self.name.clone(),
            err: e.to_string(),
        }
    }

    fn authorization(&self, scope: &str) -> Option<String> {
        if let Some(t) = self.tokens.lock().ok()?.get(scope) {
            return Some(format!("Bearer {t}"));
        }
        if *self.basic.lock().ok()? {
            let c = self.creds.as_ref()?;
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            return Some(format!("Basic {b}"));
        }
        None
    }

    /// Answer a 401 challenge: get a token, or switch to Basic.
    fn authenticate(&self, challenge: &str, scope: &str) -> Result<()> {
        let auth_err = |why: String| RegistryError::Auth {
            registry: self.name.clone(),
            why,
        };
        match auth::parse_challenge(challenge) {
            Some(Challenge::Basic) => {
                if self.creds.is_none() {
                    return Err(auth_err(
                        "the registry wants a username and password (--creds or docker login)"
                            .into(),
                    ));
                }
                let mut b = self.basic.lock().map_err(|e| auth_err(e.to_string()))?;
                if *b {
                    return Err(auth_err(
                        "the registry refused the username and password".into(),
                    ));
                }
                *b = true;
                Ok(())
            }
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut req = self.http.get(&realm);
                let mut q = vec![("scope", scope.to_string())];
                if let Some(s) = service {
                    q.push(("service", s));
                }
                req = req.query(&q);
                if let Some(c) = &self.creds {
                    req = req.basic_auth(&c.username, Some(&c.password));
                }
                let resp = req
                    .send()
                    .map_err(|e| self.http_err(format!("token server {realm}: {e}")))?;
                if resp.status() == StatusCode::UNAUTHORIZED
                    || resp.status() == StatusCode::FORBIDDEN
                {
                    return Err(auth_err(format!(
                        "the token server {realm} refused the credentials"
                    )));
                }
                if !resp.status().is_success() {
                    return Err(auth_err(format!("token server {realm}: {}", resp.status())));
                }
                let v: serde_json::Value = resp
                    .json()
                    .map_err(|e| auth_err(format!("token server {realm}: {e}")))?;
                let token = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| auth_err(format!("token server {realm} sent no token")))?;
                let mut t = self.tokens.lock().map_err(|e| auth_err(e.to_string()))?;
                if t.get(scope).map(String::as_str) == Some(token) {
                    return Err(auth_err(format!(
                        "the registry refused the token for {scope}"
                    )));
                }
                t.insert(scope.to_string(), token.to_string());
                Ok(())
            }
            None => Err(auth_err(format!("unsupported challenge {challenge:?}"))),
        }
    }

    /// GET `path` (below `/v2/`), authenticating and retrying as needed.
    fn get(&self, path: &str, accept: &[&str], range_from: u64, scope: &str) -> Result<Response> {
        let url = format!("{}/v2/{path}", self.base);
        let mut delay = Duration::from_millis(250);
        let mut attempt = 0;
        let mut auth_rounds = 0;
        loop {
            attempt += 1;
            let mut req = self.http.get(&url);
            if !accept.is_empty() {
                req = req.header(ACCEPT, accept.join(", "));
            }
            if range_from > 0 {
                req = req.header(RANGE, format!("bytes={range_from}-"));
            }
            if let Some(a) = self.authorization(scope) {
                req = req.header(AUTHORIZATION, a);
            }
            let retryable = match req.send() {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && auth_rounds < 2 => {
                    auth_rounds += 1;
                    let ch = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.authenticate(&ch, scope)?;
                    attempt -= 1;
                    continue;
                }
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("{}", resp.status())
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    return Err(RegistryError::Auth {
                        registry: self.name.clone(),
                        why: "the registry refused the credentials".into(),
                    })
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    let msg = error_chain(&e);
                    // A certificate problem will not go away by asking again.
                    if msg.contains("certificate") {
                        return Err(self.http_err(format!("{url}: {msg}")));
                    }
                    msg
                }
            };
            if attempt >= self.attempts {
                return Err(self.http_err(format!("{url}: {retryable} (after {attempt} attempts)")));
            }
            std::thread::sleep(delay);
            delay *= 2;
        }
    }

    fn status_err(&self, path: &str, resp: Response) -> RegistryError {
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(|m| format!(": {m}")))
            .unwrap_or_default();
        RegistryError::Status {
            registry: self.name.clone(),
            url: format!("{}/v2/{path}", self.base),
            status,
            detail,
        }
    }

    /// Fetch a manifest or index: its bytes, media type and digest. With a
    /// digest reference, the bytes must hash to it.
    pub fn manifest(&self, repo: &str, key: &str) -> Result<(Vec<u8>, String, Digest)> {
        let path = format!("{repo}/manifests/{key}");
        let resp = self.get(&path, &MANIFEST_TYPES, 0, &pull_scope(repo))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: self.name.clone(),
                reference: format!("{repo}:{key}"),
            });
        }
        if !resp.status().is_success() {
            return Err(self.status_err(&path, resp));
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let bytes = resp.bytes().map_err(|e| self.http_err(e))?.to_vec();
        let digest = Digest::of(&bytes);
        if let Ok(want) = Digest::parse(key) {
            if want != digest {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest",
                    expected: want,
                    actual: digest,
                });
            }
        }
        let body_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string));
        let media_type = body_type
            .or(header_type)
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok((bytes, media_type, digest))
    }

    /// Download blob `digest` into `partial`, continuing what is already
    /// there (HTTP Range), verifying size and digest at the end. `progress`
    /// gets the byte count so far. A mismatch deletes the partial file.
    pub fn download_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        partial: &Path,
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        let io_err = |err| RegistryError::Io {
            path: partial.to_path_buf(),
            err,
        };
        let path = format!("{repo}/blobs/{digest}");
        let mut attempts_left = self.attempts;
        loop {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(partial)
                .map_err(io_err)?;
            // Hash what an earlier attempt (or process) already fetched.
            let mut h = Hasher::new(std::io::sink());
            std::io::copy(&mut f, &mut h).map_err(io_err)?;
            let have = h.len();
            let resp = if have >= size && size > 0 {
                None
            } else {
                Some(self.get(&path, &[], have, &pull_scope(repo))?)
            };
            let mut h = h;
            if let Some(mut resp) = resp {
                match resp.status() {
                    StatusCode::PARTIAL_CONTENT => {}
                    StatusCode::OK if have > 0 => {
                        // No range support: start over.
                        f.set_len(0).map_err(io_err)?;
                        f.rewind().map_err(io_err)?;
                        h = Hasher::new(std::io::sink());
                    }
                    StatusCode::OK => {}
                    _ => return Err(self.status_err(&path, resp)),
                }
                let mut buf = vec![0u8; 256 * 1024];
                let mut stream_err = None;
                loop {
                    match resp.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            f.write_all(&buf[..n]).map_err(io_err)?;
                            h.write_all(&buf[..n]).map_err(io_err)?;
                            progress(h.len());
                            if h.len() > size {
                                break;
                            }
                        }
                        Err(e) => {
                            stream_err = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = stream_err {
                    attempts_left -= 1;
                    if attempts_left == 0 {
                        return Err(self.http_err(format!("{path}: {e}")));
                    }
                    continue; // resume from what is on disk
                }
            }
            let got = h.len();
            let (actual, _) = h.finish();
            if got != size || &actual != digest {
                let _ = std::fs::remove_file(partial);
                return Err(RegistryError::DigestMismatch {
                    what: "blob",
                    expected: digest.clone(),
                    actual,
                });
            }
            f.sync_all().map_err(io_err)?;
            return Ok(());
        }
    }
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own
/// message leaves out why a connection failed).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s = format!("{s}: {m}");
        }
        cur = c.source();
    }
    s
}

/// The token scope for pulling `repo`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}
