//! `skiff-agent serve --trace-dir DIR`: a timeline of every pod start.
//!
//! A pod becomes Ready through a chain of steps, each done by a different
//! program: the agent makes sure the image is in the store, creates the
//! pod's network namespace, runs each CNI plugin (a separate executable,
//! see the CNI specification's "Execution Protocol"), starts the pause
//! container that holds the namespaces, then creates and starts each
//! container through the runtime (`skiff create`, `skiff start`, run by the
//! container's monitor), and finally probes the container until it answers.
//! kubelet's own tracing (its OpenTelemetry spans) shows the kubelet's
//! side; here the runtime's side is in the same picture.
//!
//! Each pod start gets one file, `DIR/NAMESPACE_NAME_UID.json`, in the
//! Chrome trace-event format that `skiff --trace` writes (see the runtime's
//! `trace` module): the agent adds its own spans (category `agent`, on the
//! agent's row; CNI's, which run beside the pause container's start, on
//! lanes of their own), and hands the same file to the runtime as `SKIFF_TRACE`,
//! so every `skiff create` and `skiff start` of the pod, and the container
//! init inside them, append their spans to it. Everyone stamps events with
//! CLOCK_MONOTONIC and appends under flock(2), so the spans line up on one
//! time axis and the file is valid JSON after every event.
//! `scripts/trace-svg.py` draws it; docs chapter 14 explains a picture.
//!
//! A trace covers the pod's start: each container's first run and its
//! first probe success, not later restarts (a pod in CrashLoopBackOff
//! would add to it forever). Off unless `--trace-dir` is given; a missing
//! directory is made root-only, and every file is 0600, as the names say
//! which pods run here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use skiff_runtime::trace::{append_to, complete_event, name_event, now_us};

/// The pod-start traces being written, by pod uid.
#[derive(Default)]
pub struct Traces {
    dir: Option<PathBuf>,
    open: Mutex<HashMap<String, PathBuf>>,
}

impl Traces {
    /// Traces into `dir`, made (mode 0700) if missing; a directory that
    /// exists keeps its mode (the files in it are 0600).
    pub fn new(dir: Option<PathBuf>) -> std::io::Result<Traces> {
        if let Some(d) = &dir {
            if !d.is_dir() {
                use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(d)?;
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(Traces {
            dir,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A pod's sandbox is about to be made: begin (or continue, for a
    /// sandbox made again) its trace file.
    pub fn begin(&self, uid: &str, namespace: &str, name: &str) -> Option<PodTrace> {
        let dir = self.dir.as_ref()?;
        let path = dir.join(format!("{namespace}_{name}_{uid}.json"));
        use std::os::unix::fs::OpenOptionsExt;
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            tracing::warn!("trace {}: {e}; not tracing this pod", path.display());
            return None;
        }
        self.lock().insert(uid.to_string(), path.clone());
        let t = PodTrace { path };
        let pid = std::process::id();
        t.append(&name_event(
            "process_name",
            pid,
            pid,
            &format!("skiff-agent, pod {namespace}/{name} [{pid}]"),
        ));
        t.append(&name_event(
            "thread_name",
            pid,
            lane_tid(pid, NETWORK_LANE),
            "network",
        ));
        Some(t)
    }

    /// The trace of pod `uid`, if one is being written.
    pub fn get(&self, uid: &str) -> Option<PodTrace> {
        self.lock().get(uid).map(|p| PodTrace { path: p.clone() })
    }

    /// The pod is gone: its file stays, and nothing more is added.
    pub fn end(&self, uid: &str) {
        self.lock().remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PathBuf>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One pod's trace file.
#[derive(Clone, Debug)]
pub struct PodTrace {
    path: PathBuf,
}

impl PodTrace {
    /// The file, to hand to the runtime as `SKIFF_TRACE`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A span of the agent's, from `start` ([`now`]) until now, on lane
    /// `lane` of the agent's row (0: the pod worker's own steps).
    pub fn span(&self, name: &str, start: f64, lane: u32) {
        let pid = std::process::id();
        let end = now_us();
        self.append(&complete_event(
            name,
            "agent",
            start,
            end - start,
            pid,
            lane_tid(pid, lane),
            None,
        ));
    }

    fn append(&self, event: &str) {
        // Opened for each event: a pod start writes a dozen, and a node of
        // 110 pods should not hold 110 descriptors for them.
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
        {
            Ok(f) => append_to(&f, event),
            Err(e) => tracing::debug!("trace {}: {e}", self.path.display()),
        }
    }
}

/// Now, on the clock every trace shares (µs of CLOCK_MONOTONIC).
pub fn now() -> f64 {
    now_us()
}

/// The lane of the steps that run beside the pod worker's own while a
/// sandbox is made: CNI ADD, which runs while the pause container starts.
/// Spans that overlap without nesting must be on a thread of their own
/// for trace viewers (Perfetto nests the spans of one thread).
pub const NETWORK_LANE: u32 = 1;

/// The trace's thread id of lane `lane` of process `pid`.
fn lane_tid(pid: u32, lane: u32) -> u32 {
    if lane == 0 {
        pid
    } else {
        // Above any pid (pid_max is at most 2^22): never a real thread.
        (1 << 22) + pid * 4 + lane
    }
}

/// A span that records itself when dropped: `let _s = start(&trace, "netns");`.
pub struct Timed<'a> {
    trace: Option<&'a PodTrace>,
    name: String,
    start: f64,
    lane: u32,
}

/// Start a span of `trace` (if any) named `name`, ended when dropped.
pub fn start<'a>(trace: Option<&'a PodTrace>, name: impl Into<String>) -> Timed<'a> {
    start_in(trace, 0, name)
}

/// [`start`], on lane `lane` of the agent's row ([`NETWORK_LANE`]).
pub fn start_in<'a>(trace: Option<&'a PodTrace>, lane: u32, name: impl Into<String>) -> Timed<'a> {
    Timed {
        lane,
        trace,
        name: if trace.is_some() {
            name.into()
        } else {
            String::new()
        },
        start: if trace.is_some() { now() } else { 0.0 },
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.trace {
            t.span(&self.name, self.start, self.lane);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_land_in_one_valid_file_per_pod() {
        let dir = tempfile::tempdir().unwrap();
        let traces = Traces::new(Some(dir.path().join("t"))).unwrap();
        assert!(traces.get("u1").is_none());
        let t = traces.begin("u1", "ns", "web").unwrap();
        {
            let _s = start(Some(&t), "sandbox");
            let _n = start(Some(&t), "netns");
            let _c = start_in(Some(&t), NETWORK_LANE, "CNI ADD bridge (eth0)");
        }
        let text = std::fs::read_to_string(t.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "process_name",
                "thread_name",
                "CNI ADD bridge (eth0)",
                "netns",
                "sandbox"
            ]
        );
        // The lane's span is on a thread of its own, named, never a pid.
        let events = v["traceEvents"].as_array().unwrap();
        let pid = std::process::id() as u64;
        let cni = events
            .iter()
            .find(|e| e["name"] == "CNI ADD bridge (eth0)")
            .unwrap();
        assert_eq!(cni["pid"], pid);
        assert_eq!(cni["tid"], lane_tid(pid as u32, NETWORK_LANE) as u64);
        assert!(cni["tid"].as_u64().unwrap() > 1 << 22);
        assert!(events.iter().any(|e| e["name"] == "thread_name"
            && e["tid"] == cni["tid"]
            && e["args"]["name"] == "network"));
        let sandbox = events.iter().find(|e| e["name"] == "sandbox").unwrap();
        assert_eq!(sandbox["tid"], pid);
        assert!(t.path().ends_with("ns_web_u1.json"));
        traces.end("u1");
        assert!(traces.get("u1").is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("t"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn without_a_directory_nothing_is_traced() {
        let traces = Traces::new(None).unwrap();
        assert!(traces.begin("u", "ns", "p").is_none());
        let _s = start(None, "nothing");
    }
}
