//! Container probes, with kubelet's semantics.
//!
//! A probe is a check kubelet runs against a container every
//! `periodSeconds` (default 10), each attempt allowed `timeoutSeconds`
//! (default 1). Its handler is one of:
//! - `exec`: a command run inside the container; exit status 0 passes;
//! - `httpGet`: a GET to the pod's IP (or `host`); a status from 200 to 399
//!   passes; the request says `User-Agent: kube-probe/<version>`;
//! - `tcpSocket`: a TCP connection that opens passes;
//! - `grpc`: the standard `grpc.health.v1.Health/Check` answering SERVING.
//!
//! A result only changes after `successThreshold` (default 1) or
//! `failureThreshold` (default 3) attempts in a row agree; the first attempt
//! waits `initialDelaySeconds` from the container's start. The three kinds
//! differ in what a result does:
//! - **startup**: until it passes, the other two do not run; if it fails,
//!   the container is killed and restarted per the restart policy;
//! - **liveness**: a failure kills the container (then the restart policy);
//! - **readiness**: sets the container's `ready`, so the pod's `Ready`
//!   condition; a failure restarts nothing.
//!
//! See "Configure Liveness, Readiness and Startup Probes" in the Kubernetes
//! docs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What kubelet sends as its User-Agent (with its version).
pub const USER_AGENT: &str = "kube-probe/1.34";

/// Which of a container's three probes (kubelet's `probe_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `livenessProbe`: a failure kills the container.
    Liveness,
    /// `readinessProbe`: sets whether the container is ready.
    Readiness,
    /// `startupProbe`: holds the other two back until it passes.
    Startup,
}

impl Kind {
    /// Its name as events and metrics write it (`Liveness`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// The result of one probe attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The check passed.
    Success,
    /// The check failed, with kubelet's message (for the `Unhealthy` event).
    Failure(String),
}

/// kubelet's defaults applied to a probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Before the first attempt, from the container's start
    /// (`initialDelaySeconds`, default 0).
    pub initial_delay: Duration,
    /// Between attempts (`periodSeconds`: default 10 s, at least 1 s).
    pub period: Duration,
    /// Each attempt's limit (`timeoutSeconds`: default 1 s, at least 1 s).
    pub timeout: Duration,
    /// Successes in a row that make the result pass (`successThreshold`,
    /// default 1).
    pub success_threshold: u32,
    /// Failures in a row that make it fail (`failureThreshold`, default 3).
    pub failure_threshold: u32,
}

impl Timing {
    /// The probe's timing, with kubelet's defaults where it says nothing.
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Where and how to reach the container.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's IP: where `httpGet` and `tcpSocket` connect unless they name
    /// a `host`, and where `grpc` always does.
    pub pod_ip: String,
    /// The container's ports, to resolve a port given by name.
    pub ports: Vec<ContainerPort>,
    /// The runtime binary, its root and the container id (for `exec`).
    pub skiff: PathBuf,
    /// The runtime's `--root` (for `exec`).
    pub root: PathBuf,
    /// The container's id in the runtime (for `exec`).
    pub container_id: String,
}

impl Target {
    /// A port given as a number or as the name of one of the container's
    /// ports.
    pub fn port(&self, p: &IntOrString) -> Result<u16, String> {
        match p {
            IntOrString::Int(n) if (1..=65535).contains(n) => Ok(*n as u16),
            IntOrString::Int(n) => Err(format!("invalid port number {n}")),
            IntOrString::String(s) => {
                if let Ok(n) = s.parse::<i32>() {
                    return self.port(&IntOrString::Int(n));
                }
                self.ports
                    .iter()
                    .find(|cp| cp.name.as_deref() == Some(s.as_str()))
                    .map(|cp| cp.container_port as u16)
                    .ok_or_else(|| format!("port {s:?} is not the name of a container port"))
            }
        }
    }
}

/// Run one attempt of `p`'s handler.
pub async fn attempt(p: &Probe, t: &Target, http: &reqwest::Client) -> Outcome {
    let timeout = Timing::of(p).timeout;
    let res = if let Some(e) = &p.exec {
        exec(e.command.as_deref().unwrap_or(&[]), t, timeout).await
    } else if let Some(h) = &p.http_get {
        http_get(h, t, http, timeout).await
    } else if let Some(s) = &p.tcp_socket {
        tcp(s, t, timeout).await
    } else if let Some(g) = &p.grpc {
        grpc(g, t, timeout).await
    } else {
        Err("no handler".into())
    };
    match res {
        Ok(()) => Outcome::Success,
        Err(e) => Outcome::Failure(e),
    }
}

async fn exec(cmd: &[String], t: &Target, timeout: Duration) -> Result<(), String> {
    let child = tokio::process::Command::new(&t.skiff)
        .arg("--root")
        .arg(&t.root)
        .arg("exec")
        .arg(&t.container_id)
        .args(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("run {}: {e}", t.skiff.display()))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| format!("command {cmd:?} timed out after {}s", timeout.as_secs()))?
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !err.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&err);
    }
    let code = out.status.code().unwrap_or(-1);
    Err(if text.is_empty() {
        format!("command {cmd:?} exited with {code}")
    } else {
        format!("command {cmd:?} exited with {code}: {text}")
    })
}

/// The shared client probes use: no proxy, any certificate (kubelet does
/// not verify probe certificates), redirects handled by hand.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap_or_default()
}

async fn http_get(
    h: &k8s_openapi::api::core::v1::HTTPGetAction,
    t: &Target,
    client: &reqwest::Client,
    timeout: Duration,
) -> Result<(), String> {
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let host = h.host.clone().unwrap_or_else(|| t.pod_ip.clone());
    let port = t.port(&h.port)?;
    let path = h.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let host_part = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let mut url = format!("{scheme}://{host_part}:{port}{path}");
    let deadline = Instant::now() + timeout;
    // Plain HTTP, the common case, goes straight over one hyper connection
    // (probes run every second for every container: this is the agent's
    // hottest path). Redirects and HTTPS take reqwest's road below.
    if scheme == "http" {
        let fast = tokio::time::timeout(timeout, plain_http(&host, &host_part, port, &path, h))
            .await
            .map_err(|_| format!("Get \"{url}\": context deadline exceeded"))?
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        match fast {
            (code, _) if (200..300).contains(&code) => return Ok(()),
            (code, body) if !(300..400).contains(&code) => {
                return Err(status_error(code, &body));
            }
            _ => {}
        }
    }
    // kubelet follows up to 10 redirects on the same host; a redirect to
    // another host counts as success.
    for _ in 0..=10 {
        let mut req = client
            .get(&url)
            .timeout(deadline.saturating_duration_since(Instant::now()))
            .header("User-Agent", USER_AGENT)
            .header("Accept", "*/*");
        for hd in h.http_headers.iter().flatten() {
            if hd.name.eq_ignore_ascii_case("host") {
                req = req.header(reqwest::header::HOST, &hd.value);
            } else {
                req = req.header(&hd.name, &hd.value);
            }
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("Get \"{url}\": context deadline exceeded")
            } else {
                format!("Get \"{url}\": {}", root_cause(&e))
            }
        })?;
        let code = resp.status().as_u16();
        if resp.status().is_redirection() {
            let Some(loc) = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Ok(());
            };
            let next = resp.url().join(loc).map_err(|e| e.to_string())?;
            if next.host_str() != resp.url().host_str() {
                return Ok(());
            }
            url = next.to_string();
            continue;
        }
        if (200..400).contains(&code) {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        return Err(status_error(code, &body));
    }
    Err(format!("Get \"{url}\": stopped after 10 redirects"))
}

fn status_error(code: u16, body: &str) -> String {
    let body: String = body.chars().take(1024).collect();
    if body.trim().is_empty() {
        format!("HTTP probe failed with statuscode: {code}")
    } else {
        format!("HTTP probe failed with statuscode: {code}: {}", body.trim())
    }
}

/// One GET over a fresh connection (kubelet does not keep probe
/// connections alive either); the status and, for a failure, the start of
/// the body.
async fn plain_http(
    host: &str,
    host_part: &str,
    port: u16,
    path: &str,
    h: &k8s_openapi::api::core::v1::HTTPGetAction,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host_part}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let mut req = hyper::Request::get(path)
        .header("User-Agent", USER_AGENT)
        .header("Accept", "*/*")
        .header("Connection", "close");
    let mut host_header = format!("{host_part}:{port}");
    for hd in h.http_headers.iter().flatten() {
        if hd.name.eq_ignore_ascii_case("host") {
            host_header = hd.value.clone();
        } else {
            req = req.header(&hd.name, &hd.value);
        }
    }
    let req = req
        .header("Host", host_header)
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let mut body = String::new();
    if !(200..400).contains(&code) {
        let mut b = resp.into_body();
        while body.len() < 1024 {
            match b.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        body.push_str(&String::from_utf8_lossy(&d));
                    }
                }
                _ => break,
            }
        }
    }
    drop(sender);
    conn.abort();
    Ok((code, body))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

async fn tcp(
    s: &k8s_openapi::api::core::v1::TCPSocketAction,
    t: &Target,
    timeout: Duration,
) -> Result<(), String> {
    let host = s.host.clone().unwrap_or_else(|| t.pod_ip.clone());
    let port = t.port(&s.port)?;
    let addr = format!("{host}:{port}");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?
        .collect();
    let first = addrs
        .first()
        .ok_or(format!("dial tcp {addr}: no address"))?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(first)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

async fn grpc(
    g: &k8s_openapi::api::core::v1::GRPCAction,
    t: &Target,
    timeout: Duration,
) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let addr = format!("http://{}:{}", t.pod_ip, g.port);
    let check = async {
        let ep = tonic::transport::Endpoint::from_shared(addr.clone())
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(USER_AGENT)
            .map_err(|e| e.to_string())?;
        let channel = ep
            .connect()
            .await
            .map_err(|e| format!("failed to connect service {addr:?}: {}", root_cause(&e)))?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: g.service.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| format!("health rpc failed: {}: {}", s.code(), s.message()))?;
        let status = resp.into_inner().status;
        if status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            let name = ServingStatus::try_from(status)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or(status.to_string());
            Err(format!("service unhealthy (responded with {name:?})"))
        }
    };
    tokio::time::timeout(timeout, check).await.map_err(|_| {
        format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )
    })?
}

/// kubelet's result bookkeeping: the result only flips after enough
/// attempts in a row.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// The current result: `Some(true)` passing, `Some(false)` failing,
    /// `None` not known yet.
    pub result: Option<bool>,
    last: Option<bool>,
    run: u32,
}

impl Tracker {
    /// Readiness starts as failed, liveness as passed, startup unknown.
    pub fn new(kind: Kind) -> Tracker {
        Tracker {
            result: match kind {
                Kind::Readiness => Some(false),
                Kind::Liveness => Some(true),
                Kind::Startup => None,
            },
            last: None,
            run: 0,
        }
    }

    /// Feed one attempt; returns the result when it changes.
    pub fn observe(&mut self, ok: bool, t: &Timing) -> Option<bool> {
        if self.last == Some(ok) {
            self.run += 1;
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            t.success_threshold
        } else {
            t.failure_threshold
        };
        if self.run >= threshold && self.result != Some(ok) {
            self.result = Some(ok);
            return Some(ok);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(s: u32, f: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: s,
            failure_threshold: f,
        }
    }

    #[test]
    fn thresholds_need_runs_in_a_row() {
        let t = timing(2, 3);
        let mut r = Tracker::new(Kind::Readiness);
        assert_eq!(r.observe(true, &t), None);
        assert_eq!(r.observe(true, &t), Some(true));
        assert_eq!(r.observe(false, &t), None);
        assert_eq!(r.observe(false, &t), None);
        assert_eq!(r.observe(true, &t), None);
        assert_eq!(r.observe(false, &t), None);
        assert_eq!(r.observe(false, &t), None);
        assert_eq!(r.observe(false, &t), Some(false));
        let mut l = Tracker::new(Kind::Liveness);
        assert_eq!(l.observe(true, &timing(1, 1)), None);
        assert_eq!(l.observe(false, &timing(1, 1)), Some(false));
    }

    #[test]
    fn defaults_and_named_ports() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let target = Target {
            pod_ip: "10.0.0.1".into(),
            ports: vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }],
            skiff: "skiff".into(),
            root: "/r".into(),
            container_id: "c".into(),
        };
        assert_eq!(target.port(&IntOrString::String("http".into())), Ok(8080));
        assert_eq!(target.port(&IntOrString::Int(81)), Ok(81));
        assert!(target
            .port(&IntOrString::String("web".into()))
            .unwrap_err()
            .contains("\"web\""));
    }
}
