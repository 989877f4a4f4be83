//! The client subcommands: `get`, `describe`, `logs`, `exec`, `apply`,
//! `delete`. They speak HTTP/1.1 to the agent's API over its unix socket
//! (or TCP with a bearer token) and print what kubectl would.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use skiff_agent::agent::status::pod_status as status;

mod describe;
pub use describe::describe;

#[derive(clap::Args, Clone)]
pub struct Conn {
    /// The agent's API: unix:///PATH or tcp://127.0.0.1:PORT
    #[arg(long, default_value = super::DEFAULT_LISTEN, global = true)]
    listen: String,
    /// Bearer token file (TCP)
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Namespace
    #[arg(short, long, default_value = "default", global = true)]
    namespace: String,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// Only `pods` (or `pod`, `po`)
    #[arg(value_parser = ["pods", "pod", "po"])]
    what: String,
    /// One pod
    name: Option<String>,
    /// wide, json or yaml
    #[arg(short, long)]
    output: Option<String>,
    /// Pods of every namespace
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct DescribeArgs {
    #[arg(value_parser = ["pod", "pods", "po"])]
    what: String,
    name: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct LogsArgs {
    pod: String,
    #[arg(short, long)]
    container: Option<String>,
    #[arg(short, long)]
    follow: bool,
    #[arg(short, long)]
    previous: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    pod: String,
    #[arg(short, long)]
    container: Option<String>,
    /// Keep stdin open
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Allocate a terminal
    #[arg(short, long)]
    tty: bool,
    #[arg(last = true, required = true)]
    command: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    #[arg(short, long)]
    filename: PathBuf,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    #[arg(value_parser = ["pod", "pods", "po"])]
    what: String,
    name: String,
    #[command(flatten)]
    conn: Conn,
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// One request; the response status and a body sink called per chunk.
async fn request(
    c: &Conn,
    method: &str,
    path: &str,
    body: Vec<u8>,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u16> {
    let (stream, token): (Box<dyn Io>, Option<String>) =
        if let Some(p) = c.listen.strip_prefix("unix://") {
            let s = tokio::net::UnixStream::connect(p).await.with_context(|| {
                format!("connect to the agent at {p} (is `skiff-agent serve` running?)")
            })?;
            (Box::new(s), None)
        } else if let Some(a) = c.listen.strip_prefix("tcp://") {
            let s = tokio::net::TcpStream::connect(a)
                .await
                .with_context(|| format!("connect to the agent at {a}"))?;
            let token = match &c.token_file {
                Some(f) => Some(skiff_agent::agent::api::read_token(f)?),
                None => None,
            };
            (Box::new(s), token)
        } else {
            bail!("--listen: want unix:///PATH or tcp://HOST:PORT");
        };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            sink(&data)?;
        }
    }
    Ok(status)
}

/// GET, POST... and the whole body; a non-2xx answer is an error with the
/// server's message.
fn call(c: &Conn, method: &str, path: &str, body: Vec<u8>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let status = runtime()?.block_on(request(c, method, path, body, |d| {
        out.extend_from_slice(d);
        Ok(())
    }))?;
    if !(200..300).contains(&status) {
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        let msg = v["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&out).trim().to_string());
        bail!("{msg}");
    }
    Ok(out)
}

fn list(c: &Conn) -> Result<Vec<Pod>> {
    let v: Value = serde_json::from_slice(&call(c, "GET", "/pods", Vec::new())?)?;
    Ok(serde_json::from_value(v["items"].clone())?)
}

fn get_pod(c: &Conn, name: &str) -> Result<Pod> {
    let body = call(
        c,
        "GET",
        &format!("/pods/{}/{name}", c.namespace),
        Vec::new(),
    )?;
    Ok(serde_json::from_slice(&body)?)
}

pub fn get(a: &GetArgs) -> Result<()> {
    let mut pods = list(&a.conn)?;
    pods.retain(|p| {
        a.all_namespaces || p.metadata.namespace.as_deref() == Some(a.conn.namespace.as_str())
    });
    if let Some(n) = &a.name {
        pods.retain(|p| p.metadata.name.as_deref() == Some(n.as_str()));
        if pods.is_empty() {
            bail!("pods \"{n}\" not found");
        }
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    match a.output.as_deref() {
        Some("json") => {
            let v = if a.name.is_some() {
                serde_json::to_value(&pods[0])?
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": pods})
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        Some("yaml") => {
            let v = if a.name.is_some() {
                serde_json::to_value(&pods[0])?
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": pods})
            };
            write!(out, "{}", serde_norway::to_string(&v)?)?;
        }
        None | Some("wide") => {
            let wide = a.output.is_some();
            if pods.is_empty() {
                eprintln!("No resources found in {} namespace.", a.conn.namespace);
                return Ok(());
            }
            let mut rows = vec![];
            let mut head = vec![];
            if a.all_namespaces {
                head.push("NAMESPACE");
            }
            head.extend(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
            if wide {
                head.extend(["IP", "NODE"]);
            }
            rows.push(head.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            for p in &pods {
                let mut row = vec![];
                if a.all_namespaces {
                    row.push(p.metadata.namespace.clone().unwrap_or_default());
                }
                row.push(p.metadata.name.clone().unwrap_or_default());
                row.push(status::ready_column(p));
                row.push(status::display_status(p));
                row.push(status::restarts_column(p));
                row.push(
                    p.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| status::age(t.0))
                        .unwrap_or_default(),
                );
                if wide {
                    let st = p.status.clone().unwrap_or_default();
                    row.push(st.pod_ip.unwrap_or_else(|| "<none>".into()));
                    row.push(
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default(),
                    );
                }
                rows.push(row);
            }
            table(&mut out, &rows)?;
        }
        Some(o) => bail!("unknown output format {o:?} (wide, json or yaml)"),
    }
    Ok(())
}

fn table(out: &mut impl Write, rows: &[Vec<String>]) -> Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |s| s.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i + 1 == r.len() {
                    s.clone()
                } else {
                    format!("{s:<w$}", w = widths[i])
                }
            })
            .collect();
        writeln!(out, "{}", line.join("   "))?;
    }
    Ok(())
}

pub fn logs(a: &LogsArgs) -> Result<()> {
    let mut q = format!("follow={}&previous={}", a.follow, a.previous);
    if let Some(c) = &a.container {
        q.push_str(&format!("&container={c}"));
    }
    let path = format!("/pods/{}/{}/log?{q}", a.conn.namespace, a.pod);
    let out = std::io::stdout();
    let mut first = Vec::new();
    let mut status = 0;
    let result = runtime()?.block_on(async {
        let mut head = true;
        status = request(&a.conn, "GET", &path, Vec::new(), |d| {
            if head && first.len() < 4096 {
                first.extend_from_slice(d);
            }
            head = false;
            let mut o = out.lock();
            o.write_all(d)?;
            o.flush()?;
            Ok(())
        })
        .await?;
        Ok::<(), anyhow::Error>(())
    });
    result?;
    if !(200..300).contains(&status) {
        bail!("request failed ({status})");
    }
    Ok(())
}

pub fn exec(a: &ExecArgs) -> Result<()> {
    let mut path = format!("/pods/{}/{}/exec", a.conn.namespace, a.pod);
    if let Some(c) = &a.container {
        path.push_str(&format!("?container={c}"));
    }
    let v: Value = serde_json::from_slice(&call(&a.conn, "GET", &path, Vec::new())?)?;
    let runtime = v["runtime"].as_str().context("agent gave no runtime")?;
    let root = v["root"].as_str().context("agent gave no root")?;
    let id = v["id"].as_str().context("agent gave no container id")?;
    // The runtime's state is local: exec as the runtime itself would.
    let mut cmd = std::process::Command::new(runtime);
    cmd.args(["--root", root, "exec"]);
    if a.tty {
        cmd.arg("--tty");
    }
    cmd.arg(id).args(&a.command);
    if !a.stdin && !a.tty {
        cmd.stdin(std::process::Stdio::null());
    }
    let st = cmd.status().with_context(|| format!("run {runtime}"))?;
    std::process::exit(st.code().unwrap_or(1));
}

pub fn apply(a: &ApplyArgs) -> Result<()> {
    let body =
        std::fs::read(&a.filename).with_context(|| format!("read {}", a.filename.display()))?;
    let name = a
        .filename
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .to_string();
    let out = call(&a.conn, "PUT", &format!("/manifests/{name}"), body)?;
    print!("{}", String::from_utf8_lossy(&out));
    Ok(())
}

pub fn delete(a: &DeleteArgs) -> Result<()> {
    let out = call(
        &a.conn,
        "DELETE",
        &format!("/pods/{}/{}", a.conn.namespace, a.name),
        Vec::new(),
    )?;
    print!("{}", String::from_utf8_lossy(&out));
    Ok(())
}
