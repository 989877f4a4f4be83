//! Faults and load: the runtime killed with SIGKILL at random moments of
//! each verb, and many containers at once against one state root.
//!
//! After every kill, two things must hold, for skiff (runc's figures are
//! measured in the same run and printed beside them, not asserted):
//!
//! - *the truth*: `state` and `list` agree with the live system. A
//!   container they call created, creating, running or paused has its init
//!   alive; one they do not know has no process left;
//! - *nothing left*: after `delete --force`, no state directory, cgroup,
//!   process or mount of the container remains.
//!
//! Each verb gets `SKIFF_FAULT_TRIALS` trials (default 100), with delays
//! drawn uniformly from zero to a little more than the verb's own duration
//! on this machine, so kills land everywhere in it. The seed is printed.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skiff_tests::fault::Rng;
use skiff_tests::*;

fn trials() -> usize {
    std::env::var("SKIFF_FAULT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Verb {
    Create,
    Start,
    Delete,
    Exec,
    RunDetached,
}

/// What must exist before the verb runs, and the verb's command line.
fn prepare(rt: &Runtime, b: &Bundle, id: &str, verb: Verb) -> Vec<String> {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match verb {
        Verb::Create => own(&["create", "--bundle", b.path_str(), id]),
        Verb::Start => {
            rt.create(b, id).ok();
            own(&["start", id])
        }
        Verb::Delete => {
            rt.run_detached(b, id).ok();
            own(&["delete", "--force", id])
        }
        Verb::Exec => {
            rt.run_detached(b, id).ok();
            own(&["exec", id, "sh", "-c", "sleep 0.05"])
        }
        Verb::RunDetached => own(&["run", "--detach", "--bundle", b.path_str(), id]),
    }
}

/// Start the verb, marked so that every process it forks can be found
/// (until the container's program replaces its environment).
fn spawn_verb(rt: &Runtime, args: &[String], marker: &str) -> std::process::Child {
    let mut c = rt.cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
    c.env("SKIFF_FAULT_MARKER", marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("spawn runtime")
}

/// Live (not zombie) processes of the container: in a cgroup named after
/// it, or carrying the marker in their environment.
fn processes(id: &str, marker: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let needle = format!("SKIFF_FAULT_MARKER={marker}");
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            || stat.is_empty()
        {
            continue;
        }
        let cg = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let marked = env.split(|&b| b == 0).any(|v| v == needle.as_bytes());
        if cg.lines().any(|l| l.contains(id)) || marked {
            out.insert(pid);
        }
    }
    out
}

fn alive(pid: i64) -> bool {
    pid > 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z'))
}

/// Does what `state` and `list` say match the system? `None` if so,
/// else what is wrong. Polled for a while: a dying init takes a moment.
fn untruth(rt: &Runtime, id: &str, marker: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let st = rt.try_state(id);
        let listed = rt.call(&["list", "-q"]).stdout.lines().any(|l| l == id);
        let procs = processes(id, marker);
        let wrong = if st.success() {
            let v = st.json();
            let status = v["status"].as_str().unwrap_or("").to_string();
            let pid = v["pid"].as_i64().unwrap_or(0);
            if !listed {
                Some(format!("state knows it ({status}) but list does not"))
            } else if status != "stopped" && !alive(pid) {
                Some(format!(
                    "state says {status} with pid {pid}, which is not alive"
                ))
            } else if status == "stopped" && alive(pid) {
                Some(format!("state says stopped, but pid {pid} lives"))
            } else {
                None
            }
        } else if listed {
            Some("list shows it, state does not know it".into())
        } else if !procs.is_empty() {
            Some(format!(
                "state does not know it, but processes {procs:?} live"
            ))
        } else {
            None
        };
        match wrong {
            None => return None,
            Some(w) if Instant::now() > deadline => return Some(w),
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// What is left of the container after `delete --force`.
fn leftovers(rt: &Runtime, id: &str, marker: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut left = vec![];
        if rt.root_path().join(id).exists() {
            left.push("state directory".to_string());
        }
        for cg in find_cgroups(&[id]) {
            left.push(format!("cgroup {}", cg.display()));
        }
        let procs = processes(id, marker);
        if !procs.is_empty() {
            left.push(format!("processes {procs:?}"));
        }
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for l in mi.lines().filter(|l| l.contains(id)) {
            left.push(format!("mount {l}"));
        }
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Remove what a reference runtime left, so the machine stays clean:
/// only this container's processes, cgroups and directory.
fn scrub(rt: &Runtime, id: &str, marker: &str) {
    for pid in processes(id, marker) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut cgs = find_cgroups(&[id]);
    cgs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for cg in cgs {
        let _ = std::fs::remove_dir(cg);
    }
    let _ = std::fs::remove_dir_all(rt.root_path().join(id));
}

/// The verb's own duration here (median of 5, with its preparation done).
fn duration_of(rt: &Runtime, b: &Bundle, verb: Verb) -> Duration {
    let mut times = vec![];
    for _ in 0..5 {
        let id = unique_id();
        let args = prepare(rt, b, &id, verb);
        let t = Instant::now();
        let mut c = spawn_verb(rt, &args, "timing");
        let _ = c.wait();
        times.push(t.elapsed());
        rt.delete_force(&id);
    }
    times.sort();
    times[2]
}

#[derive(Default)]
struct Tally {
    untruths: Vec<String>,
    leaks: Vec<String>,
}

/// One runtime, one verb: the trials, four at a time.
fn kill_trials(make: fn() -> Runtime, verb: Verb, rng: &Rng) -> Tally {
    let probe = make();
    let b = Bundle::busybox();
    b.set_args(&["sleep", "60"]);
    let span = duration_of(&probe, &b, verb).mul_f64(1.3);
    let n = trials();
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let rt = make();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let id = unique_id();
                    let marker = format!("{id}-m");
                    let args = prepare(&rt, &b, &id, verb);
                    let delay = rng.within(span);
                    let mut child = spawn_verb(&rt, &args, &marker);
                    std::thread::sleep(delay);
                    let _ = child.kill();
                    let _ = child.wait();
                    let untrue = untruth(&rt, &id, &marker);
                    rt.call(&["delete", "--force", &id]);
                    let left = leftovers(&rt, &id, &marker);
                    let mut t = tally.lock().unwrap();
                    if let Some(u) = untrue {
                        t.untruths
                            .push(format!("{verb:?} killed at {delay:?}: {u}"));
                    }
                    if !left.is_empty() {
                        t.leaks
                            .push(format!("{verb:?} killed at {delay:?}: {}", left.join("; ")));
                        drop(t);
                        scrub(&rt, &id, &marker);
                    }
                }
            });
        }
    });
    tally.into_inner().unwrap()
}

fn sigkill_during(verb: Verb) {
    let rng = Rng::new("fault");
    let skiff = kill_trials(Runtime::skiff, verb, &rng);
    let runc = kill_trials(Runtime::runc, verb, &rng);
    eprintln!(
        "SIGKILL during {verb:?}, {} trials: skiff {} untrue, {} leaking; runc {} untrue, {} leaking",
        trials(),
        skiff.untruths.len(),
        skiff.leaks.len(),
        runc.untruths.len(),
        runc.leaks.len()
    );
    for l in runc.untruths.iter().chain(&runc.leaks).take(5) {
        eprintln!("  runc: {l}");
    }
    assert!(
        skiff.untruths.is_empty() && skiff.leaks.is_empty(),
        "skiff after SIGKILL during {verb:?}:\n{}",
        skiff
            .untruths
            .iter()
            .chain(&skiff.leaks)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn sigkill_during_create() {
    sigkill_during(Verb::Create);
}

#[test]
fn sigkill_during_start() {
    sigkill_during(Verb::Start);
}

#[test]
fn sigkill_during_delete() {
    sigkill_during(Verb::Delete);
}

#[test]
fn sigkill_during_exec() {
    sigkill_during(Verb::Exec);
}

#[test]
fn sigkill_during_run() {
    sigkill_during(Verb::RunDetached);
}

/// 50 containers started at once against one state root: all run, all
/// are deleted, nothing is left.
#[test]
fn fifty_parallel_runs_share_one_root() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.set_args(&["sh", "-c", "echo ran"]);
    let ids: Vec<String> = (0..50).map(|_| unique_id()).collect();
    let children: Vec<_> = ids
        .iter()
        .map(|id| {
            let mut c = rt.cmd(&["run", "--bundle", b.path_str(), id]);
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c.spawn().expect("spawn run")
        })
        .collect();
    let mut failed = vec![];
    for (id, c) in ids.iter().zip(children) {
        let out = c.wait_with_output().expect("wait run");
        if !out.status.success() || String::from_utf8_lossy(&out.stdout) != "ran\n" {
            failed.push(format!(
                "{id}: {:?} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "parallel runs failed:\n{}",
        failed.join("\n")
    );
    let entries = rt.root_entries();
    assert!(entries.is_empty(), "left in the root: {entries:?}");
    // By exact name: other tests of this binary run beside this one, with
    // ids that share a prefix (skiff-t-N-5 and skiff-t-N-51).
    let cgs: Vec<_> = find_cgroups(&ids)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| ids.iter().any(|id| n == id.as_str()))
        })
        .collect();
    assert!(cgs.is_empty(), "cgroups left: {cgs:?}");
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(b.path_str()),
        "mounts of the bundle left:\n{mi}"
    );
}
