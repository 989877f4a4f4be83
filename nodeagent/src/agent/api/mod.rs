//! The agent's HTTP API.
//!
//! It listens on a unix socket that only root may open (mode 0600 in a
//! 0700 directory), or on TCP on a loopback address with a bearer token,
//! like kubelet's read-only and authenticated ports. Routes:
//! - `GET /healthz` — `ok`;
//! - `GET /pods` — a `v1` PodList with full status; `GET /pods/{ns}/{name}`;
//! - `GET /pods/{ns}/{name}/log?container=&follow=&previous=` — the
//!   container's output as plain text (following streams new lines);
//! - `GET /events` — recent events, newest last;
//! - `GET /metrics` — Prometheus text format, names prefixed `skiff_`;
//! - `PUT /manifests/{file}` — write a manifest file (`apply`);
//! - `DELETE /pods/{ns}/{name}` — remove a pod from its manifest;
//! - `GET /pods/{ns}/{name}/exec?container=` — what a local client needs
//!   to run `skiff exec` itself (runtime, root, container id).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::state::PodRecord;
mod logs;
mod manifests;
mod metrics;

use super::Agent;

/// Where the API listens.
#[derive(Debug, Clone)]
pub enum Listen {
    /// A unix socket at this path, mode 0600 (root only); no token.
    Unix(PathBuf),
    /// A loopback TCP address, and the bearer token every request must carry
    /// (`--token-file`; required).
    Tcp(std::net::SocketAddr, Option<String>),
}

impl Listen {
    /// `unix:///path` or `tcp://127.0.0.1:PORT`.
    pub fn parse(s: &str, token: Option<String>) -> Result<Listen, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if !p.starts_with('/') {
                return Err(format!("{s}: want unix:///absolute/path"));
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let addr: std::net::SocketAddr = a.parse().map_err(|e| format!("{s}: {e}"))?;
            if !addr.ip().is_loopback() {
                return Err(format!("{s}: the API listens on loopback addresses only"));
            }
            return Ok(Listen::Tcp(addr, token));
        }
        Err(format!("{s}: want unix:///PATH or tcp://127.0.0.1:PORT"))
    }
}

pub(crate) type Shared = Arc<Agent>;

/// A bearer token from its file (surrounding whitespace dropped).
pub fn read_token(path: &std::path::Path) -> Result<String, std::io::Error> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| std::io::Error::new(e.kind(), format!("read {}: {e}", path.display())))
}

/// The API's routes (see the module docs). With `token`, a request without
/// `Authorization: Bearer <token>` is answered 401.
pub fn router(agent: Shared, token: Option<String>) -> Router {
    let r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route(
            "/pods/{ns}/{name}",
            get(one_pod).delete(manifests::delete_pod),
        )
        .route("/pods/{ns}/{name}/log", get(logs::logs))
        .route("/pods/{ns}/{name}/exec", get(exec_info))
        .route("/events", get(events))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/manifests/{file}",
            axum::routing::put(manifests::put_manifest),
        )
        .with_state(agent);
    match token {
        Some(t) => r.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let t = t.clone();
                async move {
                    let ok = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .is_some_and(|v| constant_eq(v.as_bytes(), t.as_bytes()));
                    if ok {
                        next.run(req).await
                    } else {
                        (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response()
                    }
                }
            },
        )),
        None => r,
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bind and serve in the background.
pub async fn serve(
    agent: Shared,
    listen: Listen,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    use anyhow::Context;
    match listen {
        Listen::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                anyhow::bail!("{}: another agent is listening there", path.display());
            }
            let _ = std::fs::remove_file(&path);
            // Bind with a umask so the socket is never open to others.
            // SAFETY: umask only changes this process's file mode mask.
            let old = unsafe { libc::umask(0o177) };
            let l = tokio::net::UnixListener::bind(&path);
            // SAFETY: as above, restoring the previous mask.
            unsafe { libc::umask(old) };
            let l = l.with_context(|| format!("listen on {}", path.display()))?;
            let app = router(agent, None);
            Ok(tokio::spawn(async move {
                axum::serve(l, app).await?;
                Ok(())
            }))
        }
        Listen::Tcp(addr, token) => {
            let token = token.context("a TCP listener needs --token-file")?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen on {addr}"))?;
            let app = router(agent, Some(token));
            Ok(tokio::spawn(async move {
                axum::serve(l, app).await?;
                Ok(())
            }))
        }
    }
}

pub(crate) fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"kind": "Status", "status": "Failure", "message": msg.into(), "code": code.as_u16()})))
        .into_response()
}

pub(crate) fn find(agent: &Agent, ns: &str, name: &str) -> Option<PodRecord> {
    agent.status.find(ns, name)
}

pub(crate) fn pod_json(agent: &Agent, r: &PodRecord) -> k8s_openapi::api::core::v1::Pod {
    agent.status.pod(r)
}

async fn pods(State(agent): State<Shared>) -> Response {
    let recs = agent.status.list();
    let mut items: Vec<_> = recs.iter().map(|r| pod_json(&agent, r)).collect();
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

async fn one_pod(
    State(agent): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match find(&agent, &ns, &name) {
        Some(r) => Json(pod_json(&agent, &r)).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("pods \"{name}\" not found")),
    }
}

#[derive(Deserialize)]
struct ExecQuery {
    container: Option<String>,
}

async fn exec_info(
    State(agent): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<ExecQuery>,
) -> Response {
    let Some(r) = find(&agent, &ns, &name) else {
        return err(StatusCode::NOT_FOUND, format!("pods \"{name}\" not found"));
    };
    let c = match &q.container {
        Some(n) => r.containers.iter().find(|c| &c.name == n),
        None => r.containers.first(),
    };
    let Some(c) = c else {
        return err(
            StatusCode::BAD_REQUEST,
            format!(
                "container {:?} is not valid for pod {name}",
                q.container.unwrap_or_default()
            ),
        );
    };
    let Some(inst) = &c.current else {
        return err(
            StatusCode::BAD_REQUEST,
            format!("container {} is not running", c.name),
        );
    };
    Json(json!({
        "runtime": agent.cfg.runtime,
        "root": agent.cfg.runtime_root(),
        "id": inst.id,
        "container": c.name,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct EventQuery {
    namespace: Option<String>,
    pod: Option<String>,
}

async fn events(State(agent): State<Shared>, Query(q): Query<EventQuery>) -> Response {
    let items: Vec<_> = agent
        .events()
        .list
        .iter()
        .filter(|e| q.namespace.as_ref().is_none_or(|n| *n == e.namespace))
        .filter(|e| q.pod.as_ref().is_none_or(|p| *p == e.pod))
        .cloned()
        .collect();
    Json(json!({"items": items})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    fn agent(dir: &std::path::Path) -> Shared {
        Agent::new(
            super::super::Config {
                manifests: dir.join("m"),
                data_dir: dir.join("d"),
                state_dir: dir.join("s"),
                pod_cidr: "10.1.0.0/24".into(),
                cni_bin_dir: "/usr/lib/cni".into(),
                cni_conf_dir: dir.join("cni"),
                runtime: "skiff".into(),
                exe: "skiff-agent".into(),
                node_name: "n".into(),
                restart_backoff: Default::default(),
                image_backoff: Default::default(),
                log_max_size: 1 << 20,
                log_max_files: 1,
                insecure_registries: vec![],
                certs_dir: dir.join("certs"),
                dns: Default::default(),
                trace_dir: None,
            },
            None,
        )
        .unwrap()
    }

    async fn status(app: Router, method: &str, uri: &str, auth: Option<&str>, body: &str) -> u16 {
        let mut req = HttpRequest::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = app
            .oneshot(req.body(axum::body::Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        resp.status().as_u16()
    }

    #[tokio::test]
    async fn tcp_api_wants_the_bearer_token() {
        let d = tempfile::tempdir().unwrap();
        let a = agent(d.path());
        let app = router(a, Some("s3cret".into()));
        assert_eq!(status(app.clone(), "GET", "/healthz", None, "").await, 401);
        assert_eq!(
            status(app.clone(), "GET", "/pods", Some("Bearer wrong"), "").await,
            401
        );
        assert_eq!(
            status(app.clone(), "GET", "/healthz", Some("Bearer s3cret"), "").await,
            200
        );
        assert_eq!(
            status(app, "GET", "/pods", Some("Bearer s3cret"), "").await,
            200
        );
    }

    #[tokio::test]
    async fn apply_checks_names_and_manifests() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("m")).unwrap();
        let app = router(agent(d.path()), None);
        let good = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: i}]\n";
        assert_eq!(
            status(app.clone(), "PUT", "/manifests/p.yaml", None, good).await,
            200
        );
        assert!(d.path().join("m/p.yaml").exists());
        assert_eq!(
            status(app.clone(), "PUT", "/manifests/.hidden", None, good).await,
            400
        );
        let bad = good.replace("image: i", "image: i, resizePolicy: []");
        assert_eq!(
            status(app, "PUT", "/manifests/q.yaml", None, &bad).await,
            422
        );
        assert!(!d.path().join("m/q.yaml").exists());
    }

    #[test]
    fn listen_addresses() {
        assert!(matches!(
            Listen::parse("unix:///run/a.sock", None),
            Ok(Listen::Unix(_))
        ));
        assert!(Listen::parse("tcp://0.0.0.0:1", None)
            .unwrap_err()
            .contains("loopback"));
        assert!(matches!(
            Listen::parse("tcp://127.0.0.1:9", None),
            Ok(Listen::Tcp(..))
        ));
        assert!(Listen::parse("http://x", None).is_err());
    }
}
