//! `GET /containerLogs/{ns}/{pod}/{container}`: what `kubectl logs` shows.
//!
//! The API server forwards `kubectl logs` here with the PodLogOptions as
//! query parameters (`pkg/registry/core/pod/strategy.go`, `LogLocation`):
//! `follow`, `previous`, `tailLines`, `sinceSeconds` or `sinceTime`,
//! `timestamps` and `limitBytes`. The answer is the container's output,
//! read from its CRI log files (see [`crate::cri_log`]) oldest rotated
//! file first; `tailLines` counts records back across the rotated files
//! too. Following stays on the file after its end, reads what a rotation
//! moved away before it moves to the new file, and ends once the
//! container has exited and everything it wrote has been sent, as
//! kubelet's `ReadLogs` does.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::status_error;
use crate::agent::state::PodRecord;
use crate::agent::Agent;
use crate::cri_log;

/// The query: `v1.PodLogOptions`, as the API server passes it on.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    /// The container (the agent's own API; the kubelet API has it in the
    /// path).
    pub container: Option<String>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    previous: bool,
    tail_lines: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
    #[serde(default)]
    timestamps: bool,
    limit_bytes: Option<i64>,
}

/// What to send of a log, from the options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// The last this many records only.
    pub tail: Option<usize>,
    /// Records written at or after this time only.
    pub since: Option<jiff::Timestamp>,
    /// Each line starts with its time.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit: Option<u64>,
}

impl LogOptions {
    /// Check the options as the API server's validation does, and turn
    /// them into a window.
    pub fn window(&self, now: jiff::Timestamp) -> Result<Window, String> {
        if self.since_seconds.is_some() && self.since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        let since = match (&self.since_seconds, &self.since_time) {
            (Some(s), _) if *s < 1 => return Err("sinceSeconds: must be greater than 0".into()),
            (Some(s), _) => Some(now - jiff::SignedDuration::from_secs(*s)),
            (_, Some(t)) => Some(
                t.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("sinceTime {t:?}: {e}"))?,
            ),
            _ => None,
        };
        let tail = match self.tail_lines {
            Some(n) if n < 0 => return Err("tailLines: must be greater than or equal to 0".into()),
            Some(n) => Some(n as usize),
            None => None,
        };
        let limit = match self.limit_bytes {
            Some(n) if n < 1 => return Err("limitBytes: must be greater than 0".into()),
            Some(n) => Some(n as u64),
            None => None,
        };
        Ok(Window {
            tail,
            since,
            timestamps: self.timestamps,
            limit,
        })
    }
}

/// The handler.
pub async fn container_logs(
    State(agent): State<Arc<Agent>>,
    UrlPath((ns, pod, container)): super::PodPath,
    Query(q): Query<LogOptions>,
) -> Response {
    match super::find_pod(&agent, &ns, &pod, None) {
        Ok(r) => respond(agent, &r, Some(&container), &q),
        Err(resp) => *resp,
    }
}

/// Which log file a request for `container` (the only one when `None`)
/// of pod `r` means, and the container's name: its current (or last)
/// attempt's, or with `previous` the one before.
fn log_file(
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

/// Answer a log request for `container` of pod `r` (the only container
/// when `None`): the window of its log `q` asks for, then, when
/// following, what it writes until it exits.
pub(crate) fn respond(
    agent: Arc<Agent>,
    r: &PodRecord,
    container: Option<&str>,
    q: &LogOptions,
) -> Response {
    let window = match q.window(jiff::Timestamp::now()) {
        Ok(w) => w,
        Err(e) => return status_error(StatusCode::BAD_REQUEST, e),
    };
    let (cname, path) = match log_file(r, container, q.previous) {
        Ok(x) => x,
        Err((code, msg)) => return status_error(code, msg),
    };
    // Following makes sense for a running container only; the previous
    // attempt has ended.
    let follow_id = (q.follow && !q.previous)
        .then(|| {
            r.init
                .iter()
                .chain(&r.containers)
                .find(|c| c.name == cname)
                .and_then(|c| c.current.as_ref())
                .filter(|i| i.log == path)
                .map(|i| i.id.clone())
        })
        .flatten();
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let uid = r.uid.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = Sink {
            tx,
            left: window.limit,
        };
        let Some(mut follower) = send_window(&path, &window, &mut sink) else {
            return;
        };
        let Some(id) = follow_id else {
            return;
        };
        let running = || {
            agent.status.record(&uid).is_some_and(|rec| {
                rec.init
                    .iter()
                    .chain(&rec.containers)
                    .any(|c| c.current.as_ref().is_some_and(|i| i.id == id))
            })
        };
        follower.follow(
            |f| f.drain(&window, &mut sink) && !sink.tx.is_closed(),
            running,
        );
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| status_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Where the rendered text goes: the response, cut at `limitBytes`.
struct Sink {
    tx: mpsc::Sender<Vec<u8>>,
    left: Option<u64>,
}

impl Sink {
    /// Send `chunk`; false once the client is gone or the limit is reached.
    fn send(&mut self, mut chunk: Vec<u8>) -> bool {
        if let Some(left) = self.left.as_mut() {
            if chunk.len() as u64 >= *left {
                chunk.truncate(*left as usize);
                *left = 0;
            } else {
                *left -= chunk.len() as u64;
            }
        }
        if !chunk.is_empty() && self.tx.blocking_send(chunk).is_err() {
            return false;
        }
        self.left != Some(0)
    }
}

/// Send the records of `path`'s files that fall in the window. Returns
/// the current file, positioned after what was sent, to follow; `None`
/// when the client went away or the limit was reached.
fn send_window(path: &Path, w: &Window, sink: &mut Sink) -> Option<Follower> {
    let files = cri_log::files(path);
    // Where to start: the tail counts records back from the end, across
    // the rotated files.
    let (mut first, mut skip) = (0usize, 0usize);
    if let Some(n) = w.tail {
        let counts: Vec<usize> = files.iter().map(|f| count_records(f)).collect();
        let mut need = n;
        first = files.len();
        for (i, c) in counts.iter().enumerate().rev() {
            first = i;
            if *c >= need {
                skip = c - need;
                break;
            }
            need -= c;
        }
        if n == 0 {
            first = files.len() - 1;
            skip = counts.last().copied().unwrap_or(0);
        }
    }
    let mut follower = None;
    for (i, f) in files.iter().enumerate().skip(first) {
        let Ok(file) = std::fs::File::open(f) else {
            continue;
        };
        let mut fl = Follower {
            path: f.clone(),
            file,
            pending: Vec::new(),
            skip: if i == first { skip } else { 0 },
        };
        if !fl.drain(w, sink) {
            return None;
        }
        follower = Some(fl);
    }
    // The current file may not exist yet (nothing written).
    follower.or_else(|| {
        Some(Follower {
            path: path.to_path_buf(),
            file: std::fs::File::open(path).ok()?,
            pending: Vec::new(),
            skip: 0,
        })
    })
}

fn count_records(path: &Path) -> usize {
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += buf[..k].iter().filter(|b| **b == b'\n').count(),
        }
    }
}

/// An open log file being read to its end, again and again.
pub(crate) struct Follower {
    path: PathBuf,
    file: std::fs::File,
    /// The start of a record whose newline has not been read yet.
    pending: Vec<u8>,
    /// Records still to be skipped (the part before the tail).
    skip: usize,
}

impl Follower {
    /// The log at `path`, from its current end on (attach).
    pub(crate) fn at_end(path: &Path) -> Option<Follower> {
        let mut file = std::fs::File::open(path).ok()?;
        file.seek(SeekFrom::End(0)).ok()?;
        Some(Follower {
            path: path.to_path_buf(),
            file,
            pending: Vec::new(),
            skip: 0,
        })
    }

    /// Read one chunk and hand each complete record in it to `each`;
    /// false when there was nothing to read.
    pub(crate) fn step(&mut self, mut each: impl FnMut(&cri_log::Record<'_>)) -> bool {
        let mut buf = vec![0u8; 64 << 10];
        let n = match self.file.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        self.pending.extend_from_slice(&buf[..n]);
        let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') else {
            return true;
        };
        for line in self.pending[..end].split(|b| *b == b'\n') {
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if let Some(r) = cri_log::parse(&String::from_utf8_lossy(line)) {
                each(&r);
            }
        }
        self.pending.drain(..=end);
        true
    }

    /// Read and send what the file holds now; false when sending stopped.
    fn drain(&mut self, w: &Window, sink: &mut Sink) -> bool {
        loop {
            let mut out = Vec::new();
            let more = self.step(|r| {
                if let Some(since) = w.since {
                    if r.time.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
                        return;
                    }
                }
                cri_log::render(r, w.timestamps, &mut out);
            });
            if !sink.send(out) {
                return false;
            }
            if !more {
                return true;
            }
        }
    }

    /// Call `drain` on what is appended, across rotations, while
    /// `running` says the container runs and `drain` returns true; then
    /// once more for its last words, and stop.
    pub(crate) fn follow(
        &mut self,
        mut drain: impl FnMut(&mut Follower) -> bool,
        running: impl Fn() -> bool,
    ) {
        loop {
            if !drain(self) {
                return;
            }
            // Rotated: the name now belongs to a new file. What is left of
            // ours was just read; go on with the new one.
            let ino = self.file.metadata().map(|m| m.ino()).ok();
            if let Ok(m) = std::fs::metadata(&self.path) {
                if Some(m.ino()) != ino {
                    if let Ok(f) = std::fs::File::open(&self.path) {
                        self.file = f;
                        self.pending.clear();
                        continue;
                    }
                }
            }
            if !running() {
                drain(self);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path, w: &Window) -> String {
        let (tx, mut rx) = mpsc::channel(1000);
        let mut sink = Sink { tx, left: w.limit };
        send_window(path, w, &mut sink);
        drop(sink);
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            out.extend(c);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn windows_over_rotated_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let mut wr = cri_log::Writer::open(&p, 300, 5).unwrap();
        for i in 0..30 {
            wr.record("stdout", true, format!("line {i}").as_bytes())
                .unwrap();
        }
        assert!(cri_log::files(&p).len() > 2);
        let all = collect(&p, &Window::default());
        let kept: Vec<&str> = all.lines().collect();
        assert_eq!(kept.last(), Some(&"line 29"));
        // Every record the kept files hold, in order.
        for pair in kept.windows(2) {
            let n = |s: &str| s[5..].parse::<u32>().unwrap();
            assert_eq!(n(pair[0]) + 1, n(pair[1]));
        }
        let tail = Window {
            tail: Some(7),
            ..Default::default()
        };
        assert_eq!(
            collect(&p, &tail),
            (23..30).map(|i| format!("line {i}\n")).collect::<String>()
        );
        let none = Window {
            tail: Some(0),
            ..Default::default()
        };
        assert_eq!(collect(&p, &none), "");
        let limited = Window {
            limit: Some(10),
            ..Default::default()
        };
        assert_eq!(collect(&p, &limited).len(), 10);
        let stamped = collect(
            &p,
            &Window {
                tail: Some(1),
                timestamps: true,
                ..Default::default()
            },
        );
        assert!(stamped.ends_with("Z line 29\n") && stamped.len() == 31 + 8);
        let future = Window {
            since: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)),
            ..Default::default()
        };
        assert_eq!(collect(&p, &future), "");
    }

    #[test]
    fn options_are_checked() {
        let now = jiff::Timestamp::now();
        let bad = |q: &str| {
            serde_urlencoded::from_str::<LogOptions>(q)
                .unwrap()
                .window(now)
                .unwrap_err()
        };
        assert!(bad("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z").contains("at most one"));
        assert!(bad("tailLines=-1").contains("tailLines"));
        assert!(bad("limitBytes=0").contains("limitBytes"));
        assert!(bad("sinceTime=yesterday").contains("sinceTime"));
        let w =
            serde_urlencoded::from_str::<LogOptions>("sinceSeconds=10&timestamps=true&follow=true")
                .unwrap()
                .window(now)
                .unwrap();
        assert_eq!(w.since, Some(now - jiff::SignedDuration::from_secs(10)));
        assert!(w.timestamps);
    }
}
