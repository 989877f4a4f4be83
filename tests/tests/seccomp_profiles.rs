//! Profiles hostile to the runtime: a seccomp filter is written for the
//! container's program, yet it is loaded by the runtime's init, which still
//! has system calls of its own to make before the program runs. A profile
//! that forbids one of them must not stop a container that runc or crun
//! would start.
//!
//! The calls at stake are not listed by hand: `strace -f` watches skiff,
//! runc and crun start a container, and every call a runtime's init makes
//! between loading the filter and the execve(2) of the program is a
//! candidate. Each candidate is then dropped, one at a time, from the
//! default profile (a deny-by-default allow-list), and the same container
//! runs under all three runtimes: with and without `noNewPrivileges`, with
//! and without a terminal, by `run` and by `exec`. Named profiles join them:
//! Docker 19.03's default (no `close_range`), containers-common's
//! (`/usr/share/containers/seccomp.json`), skiff's own default, and a
//! profile whose default action kills the process.
//!
//! The assertion: skiff starts the program whenever runc or crun does.
//! crun refuses this machine's hybrid cgroups, so it runs in a private
//! mount namespace that hides the cgroup2 tree (as `bench/lifecycle.sh`
//! does); on pure cgroup v2 it runs as it is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use skiff_tests::*;

/// The default profile of `skiff spec --profile default` (Docker's and
/// containerd's current default): deny by default, allow what programs use.
fn default_profile() -> &'static Value {
    static P: OnceLock<Value> = OnceLock::new();
    P.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Command::new(skiff_bin());
        c.args(["spec", "--profile", "default"])
            .current_dir(dir.path());
        output(c).ok();
        let v: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let p = v["linux"]["seccomp"].clone();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO", "{p}");
        p
    })
}

/// `profile` without the system call `name`, wherever a rule names it.
fn without(profile: &Value, name: &str) -> Value {
    let mut p = profile.clone();
    let rules = p["syscalls"].as_array_mut().expect("syscalls");
    for r in rules.iter_mut() {
        r["names"]
            .as_array_mut()
            .expect("names")
            .retain(|n| n != name);
    }
    rules.retain(|r| !r["names"].as_array().unwrap().is_empty());
    p
}

/// A profile in Docker's own format (`archMap`, per-rule `includes` and
/// `excludes` of capabilities and architectures) turned into the runtime
/// spec's `linux.seccomp`, as Docker and podman do for a container with
/// the capabilities `caps` on x86_64.
fn from_docker_format(d: &Value, caps: &[String]) -> Value {
    let arches: Vec<Value> = d["archMap"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["architecture"] == "SCMP_ARCH_X86_64")
        .flat_map(|m| {
            std::iter::once(m["architecture"].clone()).chain(
                m["subArchitectures"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let mut rules = vec![];
    for r in d["syscalls"].as_array().expect("syscalls") {
        let inc_arches = strs(&r["includes"]["arches"]);
        let exc_arches = strs(&r["excludes"]["arches"]);
        let inc_caps = strs(&r["includes"]["caps"]);
        let exc_caps = strs(&r["excludes"]["caps"]);
        if (!inc_arches.is_empty() && !inc_arches.iter().any(|a| a == "amd64"))
            || exc_arches.iter().any(|a| a == "amd64")
            || !inc_caps.iter().all(|c| caps.contains(c))
            || exc_caps.iter().any(|c| caps.contains(c))
        {
            continue;
        }
        let mut rule = json!({"names": r["names"], "action": r["action"]});
        if r["args"].as_array().is_some_and(|a| !a.is_empty()) {
            rule["args"] = r["args"].clone();
        }
        if let Some(e) = r.get("errnoRet").filter(|e| !e.is_null()) {
            rule["errnoRet"] = e.clone();
        }
        rules.push(rule);
    }
    let mut p =
        json!({"defaultAction": d["defaultAction"], "architectures": arches, "syscalls": rules});
    if let Some(e) = d.get("defaultErrnoRet").filter(|e| !e.is_null()) {
        p["defaultErrnoRet"] = e.clone();
    }
    p
}

// ---------------------------------------------------------------------------
// The three runtimes
// ---------------------------------------------------------------------------

/// crun, run so that it sees a pure cgroup v1 host when this one is hybrid
/// (it refuses hybrid hierarchies): a script that makes a private mount
/// namespace and bind-mounts an empty file over the cgroup2 tree's
/// `cgroup.controllers`. Host mounts stay untouched.
fn crun_wrapper() -> &'static Path {
    static W: OnceLock<PathBuf> = OnceLock::new();
    W.get_or_init(|| {
        let dir = process_dir("skiff-crun-wrap");
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "").unwrap();
        let script = dir.join("crun");
        let hybrid = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
        let body = if hybrid {
            format!(
                "#!/bin/sh\nexec unshare --mount --propagation private sh -c 'mount --bind {} /sys/fs/cgroup/unified/cgroup.controllers && exec crun \"$@\"' crun \"$@\"\n",
                empty.display()
            )
        } else {
            "#!/bin/sh\nexec crun \"$@\"\n".to_string()
        };
        std::fs::write(&script, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    })
}

fn runtimes() -> [Runtime; 3] {
    [
        Runtime::skiff(),
        Runtime::runc(),
        Runtime::new(crun_wrapper().to_owned(), "crun"),
    ]
}

// ---------------------------------------------------------------------------
// Deriving the calls a runtime makes after loading the filter
// ---------------------------------------------------------------------------

/// From an `strace -f` log: the thread that loaded a seccomp filter, and
/// every system call it made after that, up to its first execve(2).
fn calls_after_load(log: &str) -> BTreeSet<String> {
    let mut loader: Option<&str> = None;
    let mut pending: Option<&str> = None;
    let mut calls = BTreeSet::new();
    for line in log.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        // A load is a successful seccomp(SECCOMP_SET_MODE_FILTER) or
        // prctl(PR_SET_SECCOMP) (libseccomp probes the kernel with failing
        // ones first), possibly split by another thread's line.
        let succeeded = !rest.contains(" = -1 ") && !rest.ends_with("<unfinished ...>");
        if loader.is_none() && pending == Some(tid) && rest.starts_with("<...") {
            // One system call per thread is outstanding: this ends the load.
            pending = None;
            if succeeded {
                loader = Some(tid);
            }
            continue;
        }
        if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let Some(name) = rest.split('(').next().filter(|n| !n.is_empty()) else {
            continue;
        };
        match loader {
            None => {
                let loads = (name == "seccomp" && rest.contains("SECCOMP_SET_MODE_FILTER"))
                    || (name == "prctl" && rest.contains("PR_SET_SECCOMP"));
                if loads && succeeded {
                    loader = Some(tid);
                } else if loads && rest.ends_with("<unfinished ...>") {
                    pending = Some(tid);
                }
            }
            Some(t) if t == tid => {
                if name == "execve" {
                    break;
                }
                calls.insert(name.to_string());
            }
            Some(_) => {}
        }
    }
    assert!(
        loader.is_some(),
        "no seccomp filter load in the trace:\n{log}"
    );
    calls
}

fn traced(rt: &Runtime, args: &[&str]) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-s", "0", "-o"])
        .arg(log.path())
        .arg(&rt.bin)
        .arg("--root")
        .arg(rt.root_path())
        .args(args);
    output(c).ok();
    std::fs::read_to_string(log.path()).unwrap()
}

fn bundle(profile: &Value, nnp: bool, args: &[&str]) -> Bundle {
    let b = Bundle::busybox();
    b.edit(|v| {
        v["linux"]["seccomp"] = profile.clone();
        v["process"]["noNewPrivileges"] = json!(nnp);
    });
    b.set_args(args);
    b
}

/// Every call any of the three runtimes makes after its filter is loaded,
/// by `run` and by `exec`, with and without `noNewPrivileges`: the calls a
/// profile could deny them.
fn candidate_calls() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for rt in runtimes() {
        for nnp in [true, false] {
            let b = bundle(default_profile(), nnp, &["true"]);
            let id = unique_id();
            let run = calls_after_load(&traced(&rt, &["run", "--bundle", b.path_str(), &id]));
            let id = unique_id();
            b.set_args(&["sleep", "60"]);
            rt.run_detached(&b, &id).ok();
            let exec = calls_after_load(&traced(&rt, &["exec", &id, "true"]));
            rt.delete_force(&id).ok();
            eprintln!(
                "{} (noNewPrivileges {nnp}) after loading the filter: run {run:?}, exec {exec:?}",
                rt.label
            );
            if rt.label == "skiff" {
                // skiff's own promise (see init::finalize_process): nothing
                // but execve, and one capset when it held CAP_SYS_ADMIN.
                let allowed: BTreeSet<String> = if nnp {
                    BTreeSet::new()
                } else {
                    ["capset".to_string()].into()
                };
                assert!(run.is_subset(&allowed), "skiff run: {run:?}");
                assert!(exec.is_subset(&allowed), "skiff exec: {exec:?}");
            }
            all.extend(run);
            all.extend(exec);
        }
    }
    all.remove("execve");
    all
}

// ---------------------------------------------------------------------------
// One cell of the matrix
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Verb {
    Run,
    Exec,
}

/// Did the program start under `rt`: did it print its marker?
fn starts(rt: &Runtime, profile: &Value, nnp: bool, terminal: bool, verb: Verb) -> bool {
    const MARKER: &str = "started-ok";
    let echo = ["sh", "-c", "echo started-ok"];
    let id = unique_id();
    let b = bundle(profile, nnp, &echo);
    let ok = match (verb, terminal) {
        (Verb::Run, false) => {
            let out = rt.run(&b, &id);
            out.success() && out.stdout.contains(MARKER)
        }
        (Verb::Run, true) => {
            b.edit(|v| v["process"]["terminal"] = json!(true));
            let sock = ConsoleSocket::new();
            let created = rt.call(&[
                "create",
                "--bundle",
                b.path_str(),
                "--console-socket",
                sock.path_str(),
                &id,
            ]);
            created.success() && {
                let master = sock.receive();
                rt.start(&id).success()
                    && read_pty(&master, Duration::from_secs(10), |t| t.contains(MARKER))
                        .contains(MARKER)
            }
        }
        (Verb::Exec, _) => {
            b.set_args(&["sleep", "60"]);
            rt.run_detached(&b, &id).success() && exec_prints(rt, &id, &echo, terminal, MARKER)
        }
    };
    rt.delete_force(&id);
    ok
}

fn exec_prints(rt: &Runtime, id: &str, args: &[&str], terminal: bool, marker: &str) -> bool {
    if !terminal {
        let out = rt.exec(id, args);
        return out.success() && out.stdout.contains(marker);
    }
    // As containerd does it: detached, the terminal's master end sent to
    // a console socket (runc uses its own terminal in the foreground).
    let sock = ConsoleSocket::new();
    let mut c = rt.cmd(&[
        "exec",
        "--detach",
        "--tty",
        "--console-socket",
        sock.path_str(),
        id,
    ]);
    c.args(args).stdin(Stdio::null());
    let out = output(c);
    out.success()
        && sock
            .receive_timeout(Duration::from_secs(10))
            .map(|m| read_pty(&m, Duration::from_secs(10), |t| t.contains(marker)))
            .is_some_and(|t| t.contains(marker))
}

struct Cell {
    profile: String,
    nnp: bool,
    terminal: bool,
    verb: Verb,
    started: [bool; 3],
}

/// Run every profile in every combination under the three runtimes (a few
/// at a time) and fail with the table of cells where runc or crun started
/// the program and skiff did not.
fn matrix(profiles: &[(String, Value)], verb: Verb) {
    let mut cases = vec![];
    for (name, p) in profiles {
        for nnp in [true, false] {
            for terminal in [false, true] {
                cases.push((name.clone(), p.clone(), nnp, terminal));
            }
        }
    }
    let cells = std::sync::Mutex::new(vec![]);
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let rts = runtimes();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((name, p, nnp, terminal)) = cases.get(i) else {
                        break;
                    };
                    let started = [0, 1, 2].map(|r| starts(&rts[r], p, *nnp, *terminal, verb));
                    cells.lock().unwrap().push(Cell {
                        profile: name.clone(),
                        nnp: *nnp,
                        terminal: *terminal,
                        verb,
                        started,
                    });
                }
            });
        }
    });
    let cells = cells.into_inner().unwrap();
    let mut table = String::new();
    let mut bad = 0;
    for c in &cells {
        let mark = |b: bool| if b { "starts" } else { "fails" };
        let wrong = !c.started[0] && (c.started[1] || c.started[2]);
        bad += wrong as usize;
        table.push_str(&format!(
            "{:<34} {:?} nnp={:<5} tty={:<5} skiff {:<6} runc {:<6} crun {:<6}{}\n",
            c.profile,
            c.verb,
            c.nnp,
            c.terminal,
            mark(c.started[0]),
            mark(c.started[1]),
            mark(c.started[2]),
            if wrong { "  <-- skiff fails" } else { "" }
        ));
    }
    eprintln!("{table}");
    assert!(
        cells.iter().any(|c| c.started.iter().all(|&s| s)),
        "no cell started under every runtime: the harness is broken\n{table}"
    );
    assert_eq!(bad, 0, "skiff fails where a reference starts:\n{table}");
}

fn profiles() -> Vec<(String, Value)> {
    let default = default_profile();
    let mut list: Vec<(String, Value)> = candidate_calls()
        .into_iter()
        .map(|c| (format!("default without {c}"), without(default, &c)))
        .collect();
    let caps: Vec<String> = Bundle::busybox().config()["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seccomp/docker-19.03-default.json");
    let docker: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    list.push((
        "docker 19.03 default".into(),
        from_docker_format(&docker, &caps),
    ));
    let common: Value = serde_json::from_slice(
        &std::fs::read("/usr/share/containers/seccomp.json")
            .expect("containers-common's seccomp.json (Debian golang-github-containers-common)"),
    )
    .unwrap();
    list.push((
        "containers-common".into(),
        from_docker_format(&common, &caps),
    ));
    list.push(("skiff spec --profile default".into(), default.clone()));
    let mut kill = default.clone();
    kill["defaultAction"] = json!("SCMP_ACT_KILL_PROCESS");
    list.push(("default, KILL_PROCESS by default".into(), kill));
    list
}

fn all_profiles() -> &'static [(String, Value)] {
    static P: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    P.get_or_init(profiles)
}

#[test]
fn run_starts_wherever_runc_or_crun_does() {
    matrix(all_profiles(), Verb::Run);
}

#[test]
fn exec_starts_wherever_runc_or_crun_does() {
    matrix(all_profiles(), Verb::Exec);
}

/// The three defects of the report, each on its own: a profile without
/// `close_range` (Docker before 20.10), without `getcwd` (crun starts it),
/// and without `umask` while `noNewPrivileges` is false (the init
/// panicked in nix's umask wrapper).
#[test]
fn named_regressions() {
    let skiff = Runtime::skiff();
    for (call, nnp) in [
        ("close_range", true),
        ("close_range", false),
        ("getcwd", false),
        ("umask", false),
    ] {
        let p = without(default_profile(), call);
        let b = bundle(&p, nnp, &["sh", "-c", "echo started-ok"]);
        let out = skiff.run(&b, &unique_id());
        assert!(
            out.success() && out.stdout.contains("started-ok") && !out.stderr.contains("panicked"),
            "without {call}, noNewPrivileges {nnp}: {out}"
        );
    }
}

#[test]
fn the_trace_parser_finds_the_loader_and_stops_at_execve() {
    let log = "\
100 clone3({flags=CLONE_VM}, 88) = 101
101 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, NULL) = -1 EFAULT (Bad address)
101 seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, NULL <unfinished ...>
100 getpid() = 100
101 <... seccomp resumed>) = -1 EFAULT (Bad address)
101 seccomp(SECCOMP_GET_ACTION_AVAIL, 0, [SECCOMP_RET_LOG] <unfinished ...>
101 <... seccomp resumed>) = 0
101 close_range(3, 4294967295, 0) = 0
101 prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, {len=12, filter=0x1} <unfinished ...>
100 getpid() = 100
101 <... prctl resumed>) = 0
100 wait4(101 <unfinished ...>
101 capset({version=_LINUX_CAPABILITY_VERSION_3, pid=0}, {}) = 0
101 <... capset resumed>) = 0
101 --- SIGCHLD {si_signo=SIGCHLD} ---
101 execve(\"/bin/sh\", [\"sh\"], 0x1 /* 2 vars */) = 0
101 brk(NULL) = 0x1
";
    assert_eq!(
        calls_after_load(log),
        BTreeSet::from(["capset".to_string()])
    );
}
