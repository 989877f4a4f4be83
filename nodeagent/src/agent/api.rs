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

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::state::PodRecord;
use super::status::pod_status;
use super::Agent;
use crate::cri_log;

/// Where the API listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Unix(PathBuf),
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

type Shared = Arc<Agent>;

/// A bearer token from its file (surrounding whitespace dropped).
pub fn read_token(path: &std::path::Path) -> Result<String, std::io::Error> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| std::io::Error::new(e.kind(), format!("read {}: {e}", path.display())))
}

pub fn router(agent: Shared, token: Option<String>) -> Router {
    let r = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/pods/{ns}/{name}", get(one_pod).delete(delete_pod))
        .route("/pods/{ns}/{name}/log", get(logs))
        .route("/pods/{ns}/{name}/exec", get(exec_info))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/manifests/{file}", axum::routing::put(put_manifest))
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

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"kind": "Status", "status": "Failure", "message": msg.into(), "code": code.as_u16()})))
        .into_response()
}

fn find(agent: &Agent, ns: &str, name: &str) -> Option<PodRecord> {
    agent.status.find(ns, name)
}

fn pod_json(agent: &Agent, r: &PodRecord) -> k8s_openapi::api::core::v1::Pod {
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
struct LogQuery {
    container: Option<String>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    previous: bool,
}

/// Which log file the request means, and the container it belongs to.
fn log_file(r: &PodRecord, q: &LogQuery) -> Result<(String, PathBuf), (StatusCode, String)> {
    let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
    let name = match &q.container {
        Some(c) => c.clone(),
        None if names.len() == 1 => names[0].to_string(),
        None => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "a container name must be specified for pod {}, choose one of: [{}]",
                    r.name,
                    names.join(" ")
                ),
            ))
        }
    };
    let c = r
        .init
        .iter()
        .chain(&r.containers)
        .find(|c| c.name == name)
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("container {name} is not valid for pod {}", r.name),
            )
        })?;
    let latest = c.logs.keys().next_back().copied();
    let n = if q.previous {
        // The attempt before the current (or last) one.
        latest
            .and_then(|l| c.logs.range(..l).next_back().map(|(k, _)| *k))
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{name}\" in pod \"{}\" not found",
                        r.name
                    ),
                )
            })?
    } else {
        latest.ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "container \"{name}\" in pod \"{}\" is waiting to start",
                    r.name
                ),
            )
        })?
    };
    Ok((name, c.logs[&n].clone()))
}

async fn logs(
    State(agent): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let Some(r) = find(&agent, &ns, &name) else {
        return err(StatusCode::NOT_FOUND, format!("pods \"{name}\" not found"));
    };
    let (cname, path) = match log_file(&r, &q) {
        Ok(x) => x,
        Err((code, msg)) => return err(code, msg),
    };
    if !q.follow {
        let mut out = Vec::new();
        let _ = cri_log::plain(&path, &mut out);
        return ([("content-type", "text/plain; charset=utf-8")], out).into_response();
    }
    // Follow: send what there is, then new records as they come, moving to
    // the next attempt's file when the container restarts, until the pod
    // goes away.
    let uid = r.uid.clone();
    let state = (agent.clone(), uid, cname, path, 0u64, false);
    let stream = futures_util::stream::unfold(
        state,
        |(agent, uid, cname, mut path, mut offset, done)| async move {
            if done {
                return None;
            }
            loop {
                let (chunk, new_offset) = read_from(&path, offset);
                offset = new_offset;
                if !chunk.is_empty() {
                    return Some((
                        Ok::<_, std::io::Error>(chunk),
                        (agent, uid, cname, path, offset, false),
                    ));
                }
                let rec = agent.status.record(&uid)?;
                let c = rec
                    .init
                    .iter()
                    .chain(&rec.containers)
                    .find(|c| c.name == cname)?;
                if let Some((_, p)) = c.logs.iter().next_back() {
                    if *p != path {
                        path = p.clone();
                        offset = 0;
                        continue;
                    }
                }
                if c.current.is_none() && rec.finished {
                    return None;
                }
                tokio::select! {
                    _ = agent.status.changed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        },
    );
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "stream"))
}

/// New complete records of a CRI log from `offset`, as plain text.
fn read_from(path: &std::path::Path, offset: u64) -> (Vec<u8>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Rotated underneath: start over.
    let offset = if len < offset { 0 } else { offset };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_end(&mut buf).is_err() {
        return (Vec::new(), offset);
    }
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return (Vec::new(), offset);
    };
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&buf[..end]).lines() {
        if let Some(r) = cri_log::parse(line) {
            out.extend_from_slice(r.text.as_bytes());
            if r.full {
                out.push(b'\n');
            }
        }
    }
    (out, offset + end as u64 + 1)
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

async fn put_manifest(
    State(agent): State<Shared>,
    Path(file): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if file.is_empty() || file.contains('/') || file.starts_with('.') || file.len() > 200 {
        return err(
            StatusCode::BAD_REQUEST,
            format!("invalid manifest file name {file:?}"),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return err(StatusCode::BAD_REQUEST, "manifest is not UTF-8");
    };
    let docs = crate::manifest::parse_file(std::path::Path::new(&file), text);
    let errors: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            d.pod
                .as_ref()
                .err()
                .map(|e| format!("pod {:?}: {e}", d.name))
        })
        .collect();
    if !errors.is_empty() || docs.is_empty() {
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            if docs.is_empty() {
                "no pod in manifest".into()
            } else {
                errors.join("\n")
            },
        );
    }
    let dir = &agent.cfg.manifests;
    let tmp = dir.join(format!(".{file}.tmp"));
    let done = std::fs::write(&tmp, &body).and_then(|()| std::fs::rename(&tmp, dir.join(&file)));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("write {file}: {e}"),
        );
    }
    let names: Vec<String> = docs
        .iter()
        .map(|d| format!("pod/{} configured", d.name))
        .collect();
    (StatusCode::OK, names.join("\n") + "\n").into_response()
}

/// Remove the pod's document from its manifest file (the file goes when
/// it was the only one); the watcher then stops the pod.
async fn delete_pod(
    State(agent): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let Some(r) = find(&agent, &ns, &name) else {
        return err(StatusCode::NOT_FOUND, format!("pods \"{name}\" not found"));
    };
    let file = r.file.clone();
    let Ok(text) = std::fs::read_to_string(&file) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("manifest {} is gone", file.display()),
        );
    };
    let docs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&text)
        .filter_map(|d| serde_json::Value::deserialize(d).ok())
        .filter(|v| !v.is_null())
        .collect();
    let keep: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|v| {
            let n = v.pointer("/metadata/name").and_then(|x| x.as_str());
            let s = v
                .pointer("/metadata/namespace")
                .and_then(|x| x.as_str())
                .unwrap_or("default");
            !(n == Some(name.as_str()) && s == ns)
        })
        .collect();
    let result = if keep.is_empty() || keep.len() == docs.len() && r.invalid.is_some() {
        std::fs::remove_file(&file)
    } else {
        let mut out = String::new();
        for v in keep {
            out.push_str("---\n");
            out.push_str(&serde_norway::to_string(v).unwrap_or_default());
        }
        let tmp = file.with_file_name(format!(
            ".{}.tmp",
            file.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::write(&tmp, out).and_then(|()| std::fs::rename(&tmp, &file))
    };
    match result {
        Ok(()) => {
            super::sources::file::rescan(&agent);
            (StatusCode::OK, format!("pod \"{name}\" deleted\n")).into_response()
        }
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", file.display()),
        ),
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(agent): State<Shared>, _h: HeaderMap) -> Response {
    let (recs, probes, latencies) = {
        let m = agent.metrics();
        (
            agent.status.list(),
            m.probes.clone(),
            m.start_latencies.clone(),
        )
    };
    let mut o = String::new();
    let mut phases = std::collections::BTreeMap::new();
    for p in ["Pending", "Running", "Succeeded", "Failed"] {
        phases.insert(p, 0u64);
    }
    for r in &recs {
        *phases.entry(pod_status::phase(r)).or_default() += 1;
    }
    o.push_str("# HELP skiff_pods Pods known to the agent, by phase.\n# TYPE skiff_pods gauge\n");
    for (p, n) in &phases {
        let _ = writeln!(o, "skiff_pods{{phase=\"{p}\"}} {n}");
    }
    o.push_str("# HELP skiff_pod_ready Whether the pod's Ready condition is true.\n# TYPE skiff_pod_ready gauge\n");
    for r in &recs {
        let p = pod_json(&agent, r);
        let ready = p
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let _ = writeln!(
            o,
            "skiff_pod_ready{{namespace=\"{}\",pod=\"{}\"}} {}",
            esc(&r.namespace),
            esc(&r.name),
            u8::from(ready)
        );
    }
    o.push_str("# HELP skiff_container_state Container state (1 for the current one), with its reason.\n# TYPE skiff_container_state gauge\n");
    let mut restarts = String::new();
    let mut ready = String::new();
    for r in &recs {
        let pod = pod_json(&agent, r);
        let st = pod.status.unwrap_or_default();
        for c in st
            .container_statuses
            .iter()
            .flatten()
            .chain(st.init_container_statuses.iter().flatten())
        {
            let s = c.state.clone().unwrap_or_default();
            let (state, reason) = if let Some(w) = s.waiting {
                ("waiting", w.reason.unwrap_or_default())
            } else if let Some(t) = s.terminated {
                ("terminated", t.reason.unwrap_or_default())
            } else {
                ("running", String::new())
            };
            let labels = format!(
                "namespace=\"{}\",pod=\"{}\",container=\"{}\"",
                esc(&r.namespace),
                esc(&r.name),
                esc(&c.name)
            );
            let _ = writeln!(
                o,
                "skiff_container_state{{{labels},state=\"{state}\",reason=\"{}\"}} 1",
                esc(&reason)
            );
            let _ = writeln!(
                restarts,
                "skiff_container_restarts_total{{{labels}}} {}",
                c.restart_count
            );
            let _ = writeln!(
                ready,
                "skiff_container_ready{{{labels}}} {}",
                u8::from(c.ready)
            );
        }
    }
    o.push_str("# HELP skiff_container_restarts_total Restarts of each container.\n# TYPE skiff_container_restarts_total counter\n");
    o.push_str(&restarts);
    o.push_str("# HELP skiff_container_ready Whether the container is ready.\n# TYPE skiff_container_ready gauge\n");
    o.push_str(&ready);
    o.push_str(
        "# HELP skiff_probe_total Probe attempts by result.\n# TYPE skiff_probe_total counter\n",
    );
    let mut durations: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    for ((ns, pod, c, kind, result), s) in &probes {
        let labels = format!(
            "namespace=\"{}\",pod=\"{}\",container=\"{}\",probe_type=\"{kind}\"",
            esc(ns),
            esc(pod),
            esc(c)
        );
        let _ = writeln!(
            o,
            "skiff_probe_total{{{labels},result=\"{result}\"}} {}",
            s.total
        );
        let d = durations.entry(labels).or_default();
        d.0 += s.total;
        d.1 += s.seconds_sum;
    }
    o.push_str("# HELP skiff_probe_duration_seconds Time probes took.\n# TYPE skiff_probe_duration_seconds summary\n");
    for (labels, (n, sum)) in &durations {
        let _ = writeln!(o, "skiff_probe_duration_seconds_sum{{{labels}}} {sum}");
        let _ = writeln!(o, "skiff_probe_duration_seconds_count{{{labels}}} {n}");
    }
    o.push_str("# HELP skiff_pod_start_duration_seconds From first seeing a pod to all its containers running.\n# TYPE skiff_pod_start_duration_seconds summary\n");
    let _ = writeln!(
        o,
        "skiff_pod_start_duration_seconds_sum {}",
        latencies.iter().sum::<f64>()
    );
    let _ = writeln!(
        o,
        "skiff_pod_start_duration_seconds_count {}",
        latencies.len()
    );
    ([("content-type", "text/plain; version=0.0.4")], o).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    fn agent(dir: &std::path::Path) -> Shared {
        Agent::new(super::super::Config {
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
        })
        .unwrap()
    }

    async fn status(app: Router, method: &str, uri: &str, auth: Option<&str>, body: &str) -> u16 {
        let mut req = HttpRequest::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = app
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
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
        let bad = good.replace("image: i", "image: i, lifecycle: {}");
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
