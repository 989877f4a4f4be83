//! The kubelet API: how the cluster reaches into a node.
//!
//! `kubectl logs`, `exec`, `attach`, `port-forward` and `cp` never talk to
//! a node. kubectl asks the API server (`/api/v1/namespaces/NS/pods/POD/
//! log`, `.../exec`), and the API server, as a client itself, calls the
//! node's kubelet API at `https://NODE-ADDRESS:10250` (the address and port
//! the Node object reports: `status.addresses` and
//! `status.daemonEndpoints.kubeletEndpoint`). For logs it copies the
//! answer back; for exec, attach and port-forward it passes the upgraded
//! connection through, so kubectl and the node then speak SPDY (or
//! WebSocket) to each other end to end. metrics-server reads
//! `/stats/summary` or `/metrics/resource` the same way.
//!
//! The port is reachable by anything on the network, and what it offers
//! is a shell in every container, so every request is authenticated and
//! authorized as kubelet's webhook mode does ([`auth`]): a client
//! certificate signed by `--client-ca-file` (the API server presents its
//! `kube-apiserver-kubelet-client` certificate) or a bearer token the API
//! server vouches for (TokenReview), then a SubjectAccessReview on the
//! Node's subresources (`nodes/proxy`, `nodes/log`, `nodes/stats`,
//! `nodes/metrics`). The serving certificate is `--tls-cert-file`, or one
//! the agent makes for the node's name and address ([`tls`]).
//!
//! Routes (kubelet's `pkg/kubelet/server/server.go`):
//! - `/healthz`; `/pods` (the pods of this node, as `v1` PodList);
//!   `/runningpods/` (those with containers running, as the runtime sees
//!   them);
//! - `/containerLogs/{ns}/{pod}/{container}` ([`logs`]);
//! - `/exec/...`, `/attach/...` ([`remotecommand`]) and `/portForward/...`
//!   ([`portforward`]), streams over SPDY/3.1 ([`crate::spdy`]);
//! - `/stats/summary` and `/metrics/resource` ([`stats`]).

pub mod auth;
pub mod logs;
pub mod portforward;
pub mod remotecommand;
pub mod stats;
pub mod tls;
pub mod upgrade;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use serde_json::json;

use super::state::PodRecord;
use super::Agent;

/// Why the kubelet API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The serving certificate or client CA could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The port cannot be bound.
    #[error("listen on {addr} for the kubelet API: {err}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        err: std::io::Error,
    },
    /// The node address is not an IP address.
    #[error("node address {0:?} is not an IP address")]
    Address(String),
}

/// The TLS identity of the connection's client, if it presented a
/// certificate the client CA signed.
#[derive(Clone, Default)]
pub struct Peer(pub Option<rustls::pki_types::CertificateDer<'static>>);

/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the kubelet port on the node's address and serve in the
/// background. Only in node mode.
pub async fn serve(agent: Arc<Agent>) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let Some(node) = agent.node.as_ref() else {
        return Ok(tokio::spawn(async {}));
    };
    let ip: std::net::IpAddr = agent
        .host_ip
        .parse()
        .map_err(|_| ServeError::Address(agent.host_ip.clone()))?;
    let tls = tls::server_config(&node.config, &agent.cfg.state_dir, &agent.cfg.node_name, ip)?;
    let addr = SocketAddr::new(ip, node.config.kubelet_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| ServeError::Listen { addr, err })?;
    tracing::info!("kubelet API on https://{addr}");
    let auth = Arc::new(auth::Auth::new(
        node.client.clone(),
        agent.cfg.node_name.clone(),
    ));
    let app = router(agent.clone(), auth);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    Ok(tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let peer = Peer(
                    stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.clone().into_owned()),
                );
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let mut app = app.clone();
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut().insert(peer.clone());
                    async move {
                        use tower::Service;
                        app.call(req).await
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    }))
}

/// The routes, behind authentication and authorization.
pub fn router(agent: Arc<Agent>, auth: Arc<auth::Auth>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .route("/runningpods/", get(running_pods))
        .route("/stats/summary", get(stats::stats_summary))
        .route("/metrics/resource", get(stats::metrics_resource))
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route("/exec/{ns}/{pod}/{container}", any(remotecommand::exec))
        .route(
            "/exec/{ns}/{pod}/{uid}/{container}",
            any(remotecommand::exec_uid),
        )
        .route("/attach/{ns}/{pod}/{container}", any(remotecommand::attach))
        .route(
            "/attach/{ns}/{pod}/{uid}/{container}",
            any(remotecommand::attach_uid),
        )
        .route("/portForward/{ns}/{pod}", any(portforward::port_forward))
        .route(
            "/portForward/{ns}/{pod}/{uid}",
            any(portforward::port_forward_uid),
        )
        .with_state(agent)
        .layer(axum::middleware::from_fn_with_state(auth, auth::check))
}

/// A `metav1.Status` error answer, as kubelet sends.
pub(crate) fn status_error(code: StatusCode, message: impl Into<String>) -> Response {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        _ => "InternalError",
    };
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message.into(),
            "reason": reason, "code": code.as_u16(),
        })),
    )
        .into_response()
}

/// The pod `ns/name` (with `uid`, only that incarnation of it).
pub(crate) fn find_pod(
    agent: &Agent,
    ns: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<PodRecord, Box<Response>> {
    match agent.status.find(ns, name) {
        Some(r) if uid.is_none_or(|u| u == r.uid) => Ok(r),
        _ => Err(Box::new(status_error(
            StatusCode::NOT_FOUND,
            format!("pod \"{name}\" not found in namespace \"{ns}\""),
        ))),
    }
}

async fn pods(State(agent): State<Arc<Agent>>) -> Response {
    let mut items: Vec<_> = agent
        .status
        .list()
        .iter()
        .map(|r| agent.status.pod(r))
        .collect();
    items.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

/// What the runtime runs, pod by pod: kubelet answers from the container
/// runtime, with names, uids and each running container's name and image.
async fn running_pods(State(agent): State<Arc<Agent>>) -> Response {
    let items: Vec<_> = agent
        .status
        .list()
        .iter()
        .filter_map(|r| {
            let containers: Vec<_> = r
                .init
                .iter()
                .chain(&r.containers)
                .filter(|c| c.current.is_some())
                .map(|c| json!({"name": c.name, "image": c.image, "resources": {}}))
                .collect();
            (!containers.is_empty()).then(|| {
                json!({
                    "metadata": {"name": r.name, "namespace": r.namespace, "uid": r.uid,
                                 "creationTimestamp": null},
                    "spec": {"containers": containers},
                    "status": {},
                })
            })
        })
        .collect();
    Json(json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        .into_response()
}

/// Where output goes: a SPDY stream, or a channel of a WebSocket.
#[derive(Clone)]
pub(crate) enum Sink {
    /// A SPDY stream.
    Spdy(crate::spdy::StreamWriter),
    /// A WebSocket channel: the connection's outgoing queue, and the
    /// channel number.
    Ws(tokio::sync::mpsc::Sender<(u8, Vec<u8>)>, u8),
}

impl Sink {
    /// Half-close: a SPDY stream gets FIN; a WebSocket channel has no such
    /// thing.
    pub(crate) async fn close(&self) {
        if let Sink::Spdy(w) = self {
            let _ = w.close().await;
        }
    }

    /// Send `b`; an error once the client is gone.
    pub(crate) async fn write(&self, b: &[u8]) -> Result<(), ()> {
        match self {
            Sink::Spdy(w) => w.write(b).await.map_err(|_| ()),
            Sink::Ws(tx, ch) => tx.send((*ch, b.to_vec())).await.map_err(|_| ()),
        }
    }
}

/// `{ns}/{pod}/{container}` of a streaming route, and the pod's uid when
/// the path gives one.
pub(crate) type PodPath = Path<(String, String, String)>;
