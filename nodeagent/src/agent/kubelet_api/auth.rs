//! Who may use the kubelet API: authentication, then authorization, as
//! kubelet's webhook mode (`--authentication-token-webhook`,
//! `--authorization-mode=Webhook`; see "Kubelet authentication/
//! authorization" in the Kubernetes docs).
//!
//! **Authentication** names the user. A client certificate that chains to
//! the client CA (checked in the TLS handshake, see [`super::tls`]) names
//! its subject: the common name is the user, each organization a group.
//! Otherwise an `Authorization: Bearer` token is sent to the API server in
//! a TokenReview, which answers who it belongs to. Anonymous requests are
//! refused with 401.
//!
//! **Authorization** asks the API server, in a SubjectAccessReview,
//! whether that user may use this Node's subresource: the verb comes from
//! the HTTP method (GET → get, POST → create, ...) and the subresource from
//! the path: `stats` for `/stats/`, `metrics` for `/metrics/`, `log` for
//! `/logs/`, `proxy` for everything else (exec, logs of containers,
//! port-forward). A refusal is a 403.
//!
//! Both answers are cached as kubelet caches them: tokens for 2 minutes,
//! allowed decisions for 5 minutes and denials for 30 seconds, so that a
//! stream of requests does not become a stream of reviews.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::Peer;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct User {
    /// The user name.
    pub name: String,
    /// The user's uid, from a TokenReview.
    pub uid: Option<String>,
    /// The groups.
    pub groups: Vec<String>,
    /// Extra attributes, from a TokenReview.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request asks to do, in SubjectAccessReview terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// `get`, `create`, ...
    pub verb: &'static str,
    /// `proxy`, `log`, `stats` or `metrics`.
    pub subresource: &'static str,
}

/// The kubelet's mapping of a request to what is authorized.
pub fn attributes(method: &axum::http::Method, path: &str) -> Attributes {
    use axum::http::Method;
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else {
        "proxy"
    };
    Attributes { verb, subresource }
}

/// The authenticator and authorizer, with their caches.
pub struct Auth {
    client: kube::Client,
    node: String,
    tokens: Mutex<HashMap<String, (Option<User>, Instant)>>,
    decisions: Mutex<HashMap<(User, Attributes), (bool, Instant)>>,
}

const TOKEN_TTL: Duration = Duration::from_secs(120);
const ALLOWED_TTL: Duration = Duration::from_secs(300);
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Cache entries kept at most; the oldest go first.
const CACHE_MAX: usize = 4096;

/// Why a request was turned away.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No credentials, or ones nobody vouches for (401).
    #[error("Unauthorized")]
    Unauthenticated,
    /// The user may not do this (403).
    #[error("Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource})")]
    Forbidden {
        /// Who asked.
        user: String,
        /// The verb.
        verb: &'static str,
        /// The subresource.
        subresource: &'static str,
    },
    /// The API server could not be asked (500).
    #[error("{0}")]
    Review(String),
}

fn prune<K: Clone + Eq + std::hash::Hash, V>(m: &mut HashMap<K, (V, Instant)>) {
    if m.len() >= CACHE_MAX {
        let now = Instant::now();
        m.retain(|_, (_, t)| *t > now);
        if m.len() >= CACHE_MAX {
            m.clear();
        }
    }
}

impl Auth {
    /// Reviews go to the API server through `client` (the node's own
    /// identity may create TokenReviews and SubjectAccessReviews).
    pub fn new(client: kube::Client, node: String) -> Auth {
        Auth {
            client,
            node,
            tokens: Mutex::default(),
            decisions: Mutex::default(),
        }
    }

    /// Who sent the request.
    pub async fn authenticate(
        &self,
        peer: &Peer,
        authorization: Option<&str>,
    ) -> Result<User, Refused> {
        if let Some(cert) = &peer.0 {
            let (name, groups) = super::tls::subject(cert).ok_or(Refused::Unauthenticated)?;
            return Ok(User {
                name,
                uid: None,
                groups,
                extra: BTreeMap::new(),
            });
        }
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refused::Unauthenticated)?;
        let cached = {
            let m = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            m.get(token)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(u, _)| u.clone())
        };
        let user = match cached {
            Some(u) => u,
            None => {
                let u = self.review_token(token).await?;
                let mut m = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
                prune(&mut m);
                m.insert(token.to_string(), (u.clone(), Instant::now() + TOKEN_TTL));
                u
            }
        };
        user.ok_or(Refused::Unauthenticated)
    }

    async fn review_token(&self, token: &str) -> Result<Option<User>, Refused> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let got = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refused::Review(format!("token review: {e}")))?;
        let Some(st) = got.status.filter(|s| s.authenticated == Some(true)) else {
            return Ok(None);
        };
        let u = st.user.unwrap_or_default();
        Ok(u.username.map(|name| User {
            name,
            uid: u.uid,
            groups: u.groups.unwrap_or_default(),
            extra: u.extra.unwrap_or_default(),
        }))
    }

    /// Whether `user` may do `what` to this node.
    pub async fn authorize(&self, user: &User, what: &Attributes) -> Result<(), Refused> {
        let key = (user.clone(), what.clone());
        let cached = {
            let m = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
            m.get(&key)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(a, _)| *a)
        };
        let allowed = match cached {
            Some(a) => a,
            None => {
                let a = self.review_access(user, what).await?;
                let ttl = if a { ALLOWED_TTL } else { DENIED_TTL };
                let mut m = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
                prune(&mut m);
                m.insert(key, (a, Instant::now() + ttl));
                a
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(Refused::Forbidden {
                user: user.name.clone(),
                verb: what.verb,
                subresource: what.subresource,
            })
        }
    }

    async fn review_access(&self, user: &User, what: &Attributes) -> Result<bool, Refused> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: user.uid.clone(),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(what.verb.to_string()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(what.subresource.to_string()),
                    name: Some(self.node.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let got = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refused::Review(format!("subject access review: {e}")))?;
        Ok(got.status.is_some_and(|s| s.allowed))
    }
}

/// The middleware in front of every route.
pub async fn check(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().cloned().unwrap_or_default();
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let what = attributes(req.method(), req.uri().path());
    let result = match auth.authenticate(&peer, header).await {
        Ok(user) => auth.authorize(&user, &what).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let code = match e {
                Refused::Unauthenticated => StatusCode::UNAUTHORIZED,
                Refused::Forbidden { .. } => StatusCode::FORBIDDEN,
                Refused::Review(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if code != StatusCode::UNAUTHORIZED {
                tracing::info!("kubelet API: {} {}: {e}", req.method(), req.uri().path());
            }
            (code, e.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn paths_map_to_kubelets_subresources() {
        let a = |m: Method, p: &str| {
            let x = attributes(&m, p);
            (x.verb, x.subresource)
        };
        assert_eq!(a(Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(a(Method::GET, "/stats"), ("get", "stats"));
        assert_eq!(a(Method::GET, "/statsx"), ("get", "proxy"));
        assert_eq!(a(Method::GET, "/metrics/resource"), ("get", "metrics"));
        assert_eq!(a(Method::GET, "/logs/"), ("get", "log"));
        assert_eq!(a(Method::GET, "/containerLogs/ns/p/c"), ("get", "proxy"));
        assert_eq!(a(Method::POST, "/exec/ns/p/c"), ("create", "proxy"));
        assert_eq!(a(Method::GET, "/pods"), ("get", "proxy"));
    }
}
