//! `GET /pods/{ns}/{name}/log`: a container's output from its CRI log
//! files, plain text, optionally followed across restarts and rotation.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{err, find, Shared};
use crate::agent::state::PodRecord;
use crate::cri_log;

#[derive(Deserialize)]
pub struct LogQuery {
    container: Option<String>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    previous: bool,
}

/// Which log file a request for `container` (the only one when `None`)
/// of pod `r` means, and the container's name: its current (or last)
/// attempt's, or with `previous` the one before.
pub(crate) fn log_file(
    r: &PodRecord,
    container: Option<&str>,
    previous: bool,
) -> Result<(String, PathBuf), (StatusCode, String)> {
    let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
    let name = match container {
        Some(c) => c.to_string(),
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
    let n = if previous {
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

pub async fn logs(
    State(agent): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let Some(r) = find(&agent, &ns, &name) else {
        return err(StatusCode::NOT_FOUND, format!("pods \"{name}\" not found"));
    };
    let (cname, path) = match log_file(&r, q.container.as_deref(), q.previous) {
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
            cri_log::render(&r, false, &mut out);
        }
    }
    (out, offset + end as u64 + 1)
}
