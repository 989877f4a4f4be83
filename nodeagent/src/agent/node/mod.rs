//! Node mode: the agent as a node of a Kubernetes cluster.
//!
//! With `--kubeconfig`, the agent does what kubelet does to be a node
//! (see "Nodes" and "Node heartbeats" in the Kubernetes docs):
//!
//! - it **registers** a Node object named after itself, or adopts one of
//!   that name, and keeps its status true: capacity, addresses, system
//!   information, the images it has, and the Ready, MemoryPressure,
//!   DiskPressure and PIDPressure conditions ([`register`]);
//! - it **renews a Lease** in `kube-node-lease` every 10 s, its heartbeat:
//!   when the lease runs out (40 s), the controller-manager marks the node
//!   NotReady and, later, evicts its pods ([`lease`]);
//! - its pods come from a second **source**, the pods the scheduler bound
//!   to it ([`crate::agent::sources::apiserver`]);
//! - their status goes back through the `pods/status` subresource, and a
//!   deleted pod's object is removed once its containers are gone
//!   ([`sink`]); static pods from `--manifests` are shown in the API as
//!   mirror pods ([`mirror`]); events are posted as Event objects
//!   ([`events`]);
//! - what its pods refer to is fetched and followed: Secrets, ConfigMaps
//!   and service-account tokens ([`objects`]), and Services for the
//!   containers' environment ([`services`]).
//!
//! The agent talks to the API server as `system:node:NAME` (group
//! `system:nodes`), the identity the Node authorizer and the
//! NodeRestriction admission plugin give exactly what one node needs: its
//! own Node and Lease, the pods bound to it, and the secrets and config
//! maps those pods use.

pub mod events;
pub mod lease;
pub mod mirror;
pub mod objects;
pub mod register;
pub mod services;
pub mod sink;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Agent;

/// `skiff-agent serve`'s node-mode settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// How to reach the API server, and as whom.
    pub kubeconfig: PathBuf,
    /// `--node-labels`.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`.
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// `--max-pods` (kubelet's default is 110).
    pub max_pods: u32,
    /// `--kubelet-port`, reported in `daemonEndpoints`.
    pub kubelet_port: u16,
    /// The node's address (`--node-ip`; else the source address of the
    /// default route).
    pub ip: Option<String>,
    /// `--tls-cert-file`: the kubelet API's serving certificate (PEM); a
    /// self-signed one is made without it.
    pub tls_cert_file: Option<PathBuf>,
    /// `--tls-private-key-file`: its key.
    pub tls_private_key_file: Option<PathBuf>,
    /// `--client-ca-file`: the CA that signs the client certificates the
    /// kubelet API accepts (the API server's).
    pub client_ca_file: Option<PathBuf>,
}

/// What node mode shares with the engine: the API client, and the state
/// its tasks share.
pub struct NodeHandle {
    /// The API client, authenticated as the node (`system:node:NAME`):
    /// HTTP/2 where the API server offers it, every request a stream of
    /// one connection.
    pub client: kube::Client,
    /// The client for watches: the same, with a connection of its own. A
    /// watch is one response that lasts minutes, a stream of the connection
    /// for all that time, and the API server allows a connection only so
    /// many streams at once (250 unless `--http2-max-streams-per-connection`
    /// says otherwise; a node watches every Secret and ConfigMap its pods
    /// use, one watch each). hyper's client queues a request for which the
    /// connection has no stream left, where Go's opens another connection.
    /// Apart, the watches can fill only their own connection: a status
    /// patch, a token request or an event never waits behind them.
    pub watch_client: kube::Client,
    /// The node-mode settings.
    pub config: NodeConfig,
    /// What node mode's tasks share: the Node's uid, mirror pods, the event
    /// queue.
    pub shared: Shared,
    /// The Secrets and ConfigMaps pods use, and their tokens.
    pub objects: objects::Objects,
    /// The cluster's services, for containers' environment.
    pub services: Arc<services::Services>,
}

impl NodeHandle {
    /// A client from the kubeconfig. Nothing is contacted yet: an API
    /// server that is not there at start is retried by every task.
    pub async fn new(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        let (tx, rx) = mpsc::unbounded_channel();
        // One reading of the kubeconfig; two clients, two connection pools.
        let cfg = kube_config(&config.kubeconfig).await?;
        let watch_client = build_client(cfg.clone()).map_err(|e| NodeError::Client(Box::new(e)))?;
        let client = build_client(cfg).map_err(|e| NodeError::Client(Box::new(e)))?;
        Ok(NodeHandle {
            objects: objects::Objects::new(client.clone(), watch_client.clone()),
            services: Arc::new(services::Services::default()),
            client,
            watch_client,
            config,
            shared: Shared {
                node_uid: OnceLock::new(),
                mirrors: Mutex::new(HashMap::new()),
                api_mirrors: Mutex::new(None),
                mirror_wake: tokio::sync::Notify::new(),
                sink_wake: tokio::sync::Notify::new(),
                api_status: Mutex::new(HashMap::new()),
                events: tx,
                events_rx: Mutex::new(Some(rx)),
            },
        })
    }
}

/// State node mode's tasks share.
pub struct Shared {
    /// The Node's uid, once registered (owner of the lease and of mirror
    /// pods).
    pub node_uid: OnceLock<String>,
    /// Static pod uid → its mirror pod's uid in the API.
    pub mirrors: Mutex<HashMap<String, String>>,
    /// The mirror pods the API has for this node, as the pod watch sees
    /// them; `None` until its first list.
    pub api_mirrors: Mutex<Option<HashMap<(String, String), mirror::Seen>>>,
    /// Wakes the mirror pod task (the pod watch saw a mirror pod change).
    pub mirror_wake: tokio::sync::Notify,
    /// Wakes the status sink (a mirror pod appeared: its status is due).
    pub sink_wake: tokio::sync::Notify,
    /// Pod uid → fingerprint of the status the API holds for it, as the pod
    /// watch last saw it ([`sink::fingerprint`]): what the status sink's
    /// periodic reconcile compares with what it sent.
    pub api_status: Mutex<HashMap<String, u64>>,
    events: mpsc::UnboundedSender<super::events::Event>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<super::events::Event>>>,
}

impl Shared {
    /// Hand an event to the task that posts them.
    pub fn post_event(&self, e: super::events::Event) {
        let _ = self.events.send(e);
    }

    /// The mirror pod uid of static pod `uid`, if there is one.
    pub fn mirror(&self, uid: &str) -> Option<String> {
        self.mirrors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned()
    }
}

impl NodeHandle {
    /// A new client with connections of its own, for a heartbeat whose
    /// request went unanswered. A TCP connection can die without either
    /// end noticing (a peer or path that vanished without a FIN or RST);
    /// requests written into it wait forever, and the shared client's pool
    /// may hold several such connections. kubelet closes all its
    /// connections after a failed heartbeat for the same reason
    /// (`closeAllConns`, kubernetes#48638). `None` if the kubeconfig no
    /// longer gives a client; the old one is then kept.
    pub async fn fresh_client(&self) -> Option<kube::Client> {
        match client(&self.config.kubeconfig).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("new API client after a failed heartbeat: {e}");
                None
            }
        }
    }
}

/// A client from the kubeconfig, whose user is the node's identity.
async fn client(kubeconfig: &std::path::Path) -> Result<kube::Client, NodeError> {
    build_client(kube_config(kubeconfig).await?).map_err(|e| NodeError::Client(Box::new(e)))
}

/// The kubeconfig, read and resolved (its current context's cluster and
/// user, certificates and token loaded).
async fn kube_config(kubeconfig: &std::path::Path) -> Result<kube::Config, NodeError> {
    let bad = |e: Box<dyn std::error::Error + Send + Sync>| NodeError::Kubeconfig {
        path: kubeconfig.to_path_buf(),
        source: e,
    };
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| bad(Box::new(e)))?;
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| bad(Box::new(e)))
}

/// Idle connections to the API server kept for reuse. With HTTP/2 (below)
/// there is normally one; an API server that offers only HTTP/1.1 gets one
/// connection per request in flight (token requests, status patches,
/// events: 45 for a burst of 50 pods), and without a limit the pool would
/// keep every one of them, each with its TLS state and buffers.
const IDLE_CONNECTIONS: usize = 4;

/// How long an idle connection is kept (Go's `http.Transport` default).
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// An HTTP/2 connection carries all the node's requests, so one that died
/// without a FIN or RST (a peer or path that vanished) would hold them all.
/// The client sends a PING (RFC 9113 §6.7) on a connection that has been
/// silent this long, and closes it when no answer comes within
/// [`H2_PING_TIMEOUT`]; the next request gets a new connection. These are
/// client-go's values (`ReadIdleTimeout` 30 s, `PingTimeout` 15 s), which
/// kubelet uses.
const H2_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// See [`H2_PING_INTERVAL`].
const H2_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// kube's default client stack (`ClientBuilder::try_from`: timeouts,
/// base URI, retries of 429/503/504, authentication, extra headers), with
/// a bounded, timed connection pool, speaking HTTP/2 where the API server
/// offers it in the TLS handshake (ALPN, RFC 7301), as kubelet's Go client
/// does. One connection then carries every request as a stream of its own
/// (RFC 9113): a request never waits for a new TCP and TLS handshake
/// because the others are busy. With HTTP/1.1 a pod start
/// that asked for a token while a status patch was in flight paid a new
/// handshake, 40-50 ms on a loaded node.
fn build_client(cfg: kube::Config) -> Result<kube::Client, kube::Error> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use kube::client::ConfigExt;
    // A proxy (the kubeconfig's `proxy-url`, or HTTPS_PROXY) is refused
    // with kube's own error, as its default client without the
    // `http-proxy` feature does: connecting past it would only time out.
    if let Some(url) = &cfg.proxy_url {
        return Err(kube::Error::ProxyProtocolDisabled {
            proxy_url: Box::new(url.clone()),
            protocol_feature: "kube/http-proxy",
        });
    }
    let https = https_connector(&cfg)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(cfg.connect_timeout);
    connector.set_read_timeout(cfg.read_timeout);
    connector.set_write_timeout(cfg.write_timeout);
    connector.set_reset_reader_on_write(cfg.reset_reader_on_write);
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(H2_PING_INTERVAL)
            .http2_keep_alive_timeout(H2_PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(connector);
    let retry = cfg
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = tower::ServiceBuilder::new()
        .layer(cfg.base_uri_layer())
        .option_layer(retry)
        .option_layer(cfg.auth_layer()?)
        .layer(cfg.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, cfg.default_namespace))
}

/// kube's rustls connector (its TLS configuration: the kubeconfig's CA,
/// client certificate, `tls-server-name`), offering `h2` and `http/1.1`.
fn https_connector(
    cfg: &kube::Config,
) -> Result<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    kube::Error,
> {
    use kube::client::ConfigExt;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // No Nagle delay (tcp(7) `TCP_NODELAY`), as Go's net package sets on
    // every connection: a small write that follows another unacknowledged
    // one would wait for the peer's delayed ACK.
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(cfg.rustls_client_config()?)
        .https_or_http();
    let builder = match &cfg.tls_server_name {
        Some(name) => {
            let name = name.clone().try_into().map_err(|e| {
                kube::Error::RustlsTls(kube::client::RustlsTlsError::InvalidServerName(e))
            })?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    Ok(builder.enable_http1().enable_http2().wrap_connector(http))
}

/// Errors of node mode's set-up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The kubeconfig cannot be read, or describes no usable client.
    #[error("read kubeconfig {path}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No API client could be made from the kubeconfig.
    #[error("make an API client")]
    Client(#[source] Box<kube::Error>),
}

/// Start node mode's tasks: registration and node status, the lease, the
/// pod source, the status sink, mirror pods and events.
pub fn start(agent: &Arc<Agent>) {
    let Some(node) = agent.node.as_ref() else {
        return;
    };
    let name = agent.cfg.node_name.clone();
    node.services.start(node.watch_client.clone());
    tokio::spawn(register::run(agent.clone()));
    tokio::spawn(lease::run(agent.clone()));
    tokio::spawn(super::sources::apiserver::watch(
        agent.clone(),
        node.watch_client.clone(),
        name,
    ));
    tokio::spawn(sink::run(agent.clone()));
    tokio::spawn(mirror::run(agent.clone()));
    let rx = node
        .shared
        .events_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(rx) = rx {
        tokio::spawn(events::run(agent.clone(), rx));
    }
}

/// How long one heartbeat request (a lease renewal, a node status update)
/// may take before it is dropped and tried again: kubelet's heartbeat
/// client uses its node status update frequency, 10 s.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Retry delays after failures: 0.5 s doubling to 30 s.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(500))
    }
}

impl Backoff {
    /// Wait, then lengthen the next wait.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }

    /// Back to the shortest wait (after a success).
    pub fn reset(&mut self) {
        self.0 = Duration::from_millis(500);
    }
}
