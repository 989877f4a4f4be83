//! `--trace FILE`: where a container's milliseconds go, as a timeline.
//!
//! `--explain` says *what* the runtime does; a trace says *when*, and for
//! how long. With `skiff --trace FILE` (or `SKIFF_TRACE=FILE` in the
//! environment, for calls made by containerd or podman), every step that
//! `--explain` narrates becomes a span: a bar with a start and a duration,
//! in the process that does it, nested in the phase it belongs to
//! (`create` → `cgroup` → the `mkdir` of each hierarchy ...). The file is in
//! the Chrome trace-event format ("Trace Event Format", the JSON object
//! form: `{"traceEvents": [...]}`), which Perfetto (ui.perfetto.dev) and
//! chrome://tracing open, and which `scripts/trace-svg.py` draws.
//!
//! Three details make the picture true:
//!
//! - **One clock.** Every process stamps its events with CLOCK_MONOTONIC
//!   (clock_gettime(2)), which all processes of a machine share, so the
//!   runtime's bars and the init's line up. (A container with a time
//!   namespace shifts that clock for its init; the init subtracts the
//!   offset it was given.)
//! - **Host pids.** The init moves into a new pid namespace, where it is
//!   pid 1. Each process takes its pid from the first field of `NSpid` in
//!   `/proc/self/status` while `/proc` is still the host's, so the rows are
//!   labelled as `ps` on the host would label them.
//! - **Several writers, one valid file.** The runtime, the init and later
//!   commands (`start`, `delete`) write to the same file. Each event is
//!   added under an flock(2): the closing `]}` is overwritten by `,` and the
//!   event, and written again after it, so the file is a complete JSON
//!   document after every event, whoever wrote last.
//!
//! When tracing is off, each span costs one relaxed atomic load. With the
//! `trace` cargo feature off it costs nothing at all (the macros expand to
//! nothing); `bench/lifecycle.sh` measures both.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::OnceLock;

static ON: AtomicBool = AtomicBool::new(false);
static FILE: OnceLock<File> = OnceLock::new();
/// This process's pid as the host sees it (0: not read yet).
static PID: AtomicU32 = AtomicU32::new(0);
/// Nanoseconds to subtract from CLOCK_MONOTONIC (a time namespace's offset).
static CLOCK_OFFSET_NS: AtomicI64 = AtomicI64::new(0);

/// The environment variable that turns tracing on for calls that cannot
/// pass `--trace` (containerd's shim, podman).
pub const ENV: &str = "SKIFF_TRACE";
/// Set by a process that re-executes itself (see `cloned_binary`): when it
/// started, so the new image can draw the time the re-exec took.
pub const ENV_T0: &str = "SKIFF_TRACE_T0";

/// Start tracing to `path` (created if missing, appended to otherwise).
/// Failure to open it turns tracing off with a warning: a trace must never
/// fail the command it watches.
pub fn init(path: &std::path::Path) {
    if !cfg!(feature = "trace") {
        return;
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
    {
        Ok(f) => {
            // O_CLOEXEC is std's default: the container's program never
            // inherits the trace file.
            let _ = FILE.set(f);
            ON.store(true, Ordering::Relaxed);
        }
        Err(e) => tracing::warn!("--trace {}: {e}; not tracing", path.display()),
    }
}

/// Whether tracing is on.
#[inline]
pub fn enabled() -> bool {
    cfg!(feature = "trace") && ON.load(Ordering::Relaxed)
}

/// Microseconds on the shared clock.
pub fn now_us() -> f64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() * 1_000_000_000 + t.tv_nsec())
        .unwrap_or(0);
    (ts - CLOCK_OFFSET_NS.load(Ordering::Relaxed)) as f64 / 1000.0
}

/// Subtract `ns` from every later timestamp of this process (the
/// CLOCK_MONOTONIC offset of a time namespace it entered).
pub fn set_clock_offset(ns: i64) {
    CLOCK_OFFSET_NS.store(ns, Ordering::Relaxed);
}

/// The host's pid of this process, read once from `/proc/self/status`.
fn pid() -> u32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            let p = host_pid();
            PID.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

fn host_pid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(std::process::id)
}

/// Call first thing in a forked child: it has a pid of its own, and the
/// step its parent had open is not its to close. `name` labels its row.
pub fn forked(name: &str) {
    if !enabled() {
        return;
    }
    PID.store(host_pid(), Ordering::Relaxed);
    STEP.with(|s| s.borrow_mut().take());
    own_open_file();
    process_name(name);
}

/// Give this (forked) process an open file description of the trace file
/// of its own. flock(2) locks belong to the open file description, which a
/// child shares with its parent after fork: without this, the parent and
/// the init would each "hold" the lock at once and could write over each
/// other. Reopening through `/proc/self/fd/N` makes a new description, and
/// dup3(2) puts it under the same descriptor number. If the reopen fails
/// (a user namespace that does not map the file's owner), the two keep
/// sharing one and may, rarely, interleave.
fn own_open_file() {
    let Some(f) = FILE.get() else {
        return;
    };
    let fd = f.as_raw_fd();
    let Ok(fresh) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))
    else {
        return;
    };
    // SAFETY: dup3 replaces descriptor `fd`, which FILE owns and keeps
    // owning (it now names the new description); `fresh` is closed after.
    unsafe { libc::dup3(fresh.as_raw_fd(), fd, libc::O_CLOEXEC) };
}

/// Label this process's row (a `process_name` metadata event).
pub fn process_name(name: &str) {
    if !enabled() {
        return;
    }
    let pid = pid();
    append(&name_event(
        "process_name",
        pid,
        pid,
        &format!("{name} [{pid}]"),
    ));
}

/// A metadata event naming a row: `kind` is `process_name` or
/// `thread_name`.
pub fn name_event(kind: &str, pid: u32, tid: u32, name: &str) -> String {
    format!(
        r#"{{"name":{},"ph":"M","pid":{pid},"tid":{tid},"args":{{"name":{}}}}}"#,
        json(kind),
        json(name)
    )
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
}

/// One complete event ("ph":"X"): a bar from `start` lasting `dur` µs.
fn complete(name: &str, cat: &str, start: f64, dur: f64, detail: Option<&str>) {
    let pid = pid();
    append(&complete_event(name, cat, start, dur, pid, pid, detail));
}

/// One complete event ("ph":"X") as JSON: a bar on row `pid`/`tid` from
/// `start` (µs on the shared clock, [`now_us`]) lasting `dur` µs. Also for
/// other writers of trace files (the node agent's pod-start traces).
pub fn complete_event(
    name: &str,
    cat: &str,
    start: f64,
    dur: f64,
    pid: u32,
    tid: u32,
    detail: Option<&str>,
) -> String {
    let args = detail.map_or(String::new(), |d| {
        format!(r#","args":{{"detail":{}}}"#, json(d))
    });
    format!(
        r#"{{"name":{},"cat":{},"ph":"X","ts":{start:.3},"dur":{dur:.3},"pid":{pid},"tid":{tid}{args}}}"#,
        json(name),
        json(cat)
    )
}

/// Add one event to this process's trace file.
fn append(event: &str) {
    if let Some(f) = FILE.get() {
        append_to(f, event);
    }
}

/// Add one event to the trace file `f` (read and write access), keeping it
/// one valid JSON document whoever else writes to it (see the module docs).
pub fn append_to(f: &File, event: &str) {
    const HEAD: &str = "{\"traceEvents\":[\n";
    const TAIL: &str = "\n]}\n";
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return;
    }
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        let _ = f.write_all_at(format!("{HEAD}{event}{TAIL}").as_bytes(), 0);
    } else if len >= TAIL.len() as u64 {
        let mut end = [0u8; 4];
        let at = len - TAIL.len() as u64;
        // Only a file that ends as this module leaves it is extended.
        if f.read_exact_at(&mut end, at).is_ok() && end == *TAIL.as_bytes() {
            let _ = f.write_all_at(format!(",\n{event}{TAIL}").as_bytes(), at);
        }
    }
    // SAFETY: as above.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
}

/// A phase: a span from its creation to its drop. Made by [`span!`](crate::span!).
pub struct Span {
    name: std::borrow::Cow<'static, str>,
    start: f64,
}

impl Span {
    /// Open a span named `name` (tracing is on).
    pub fn open(name: impl Into<std::borrow::Cow<'static, str>>) -> Span {
        end_step();
        Span {
            name: name.into(),
            start: now_us(),
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        end_step();
        let end = now_us();
        complete(&self.name, "phase", self.start, end - self.start, None);
    }
}

/// The narrated step now open in this process: its name, man page and
/// start. A step lasts until the next narration, or the end of its phase.
struct Step {
    name: String,
    man: &'static str,
    start: f64,
}

thread_local! {
    static STEP: RefCell<Option<Step>> = const { RefCell::new(None) };
}

fn end_step() {
    if let Some(s) = STEP.with(|s| s.borrow_mut().take()) {
        let detail = (!s.man.is_empty()).then_some(s.man);
        complete(&s.name, "step", s.start, now_us() - s.start, detail);
    }
}

/// A step narrated by [`explain!`](crate::explain!): it closes the one
/// before and opens the next. Its name is the narration's first clause.
pub fn step(man: &'static str, message: std::fmt::Arguments<'_>) {
    end_step();
    let text = message.to_string();
    let name = text
        .split([':', '('])
        .next()
        .unwrap_or(&text)
        .trim()
        .chars()
        .take(80)
        .collect();
    STEP.with(|s| {
        *s.borrow_mut() = Some(Step {
            name,
            man,
            start: now_us(),
        })
    });
}

/// Close the open step now, without opening another: before a process
/// blocks or execs, so the step does not swallow the wait.
pub fn end() {
    if enabled() {
        end_step();
    }
}

/// A span that has already ended: `name` from `start` (µs, [`now_us`]) to
/// now. For work whose start another process saw (the re-exec).
pub fn since(name: &str, start: f64) {
    if enabled() {
        end_step();
        complete(name, "phase", start, now_us() - start, None);
    }
}

/// Open a phase span until the end of the enclosing block:
/// `let _s = span!("cgroup");`. Nothing when tracing is off.
#[macro_export]
macro_rules! span {
    ($name:expr) => {
        if $crate::trace::enabled() {
            Some($crate::trace::Span::open($name))
        } else {
            None
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_writers_keep_one_valid_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let _ = FILE.set(f);
        ON.store(true, Ordering::Relaxed);
        complete("a", "phase", 1.0, 2.0, None);
        complete("b \"quoted\"", "step", 1.5, 0.5, Some("mount(2)"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let ev = v["traceEvents"].as_array().unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1]["name"], "b \"quoted\"");
        assert_eq!(ev[1]["args"]["detail"], "mount(2)");
        assert_eq!(ev[0]["ph"], "X");
        assert_eq!(ev[0]["dur"], 2.0);
    }
}
