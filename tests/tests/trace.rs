//! `--trace FILE` and `SKIFF_TRACE`: the timeline of a container's birth,
//! checked for what makes it a true picture: valid Chrome trace-event JSON
//! after every writer, spans from both the runtime and the container's
//! init under their host pids, nesting, one clock, and nothing when off.

use serde_json::Value;
use skiff_tests::*;
use std::fs;
use std::path::Path;

/// The complete ("X") events of a trace file, and its process names.
fn events(path: &Path) -> (Vec<Value>, Vec<Value>) {
    let text = fs::read_to_string(path).expect("trace file");
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the trace is not one JSON document: {e}\n{text}"));
    let all = doc["traceEvents"].as_array().expect("traceEvents").clone();
    let (x, m): (Vec<Value>, Vec<Value>) = all.into_iter().partition(|e| e["ph"] == "X");
    (x, m)
}

fn span<'a>(ev: &'a [Value], name: &str) -> &'a Value {
    ev.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {:#?}", names(ev)))
}

fn names(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| e["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn within(inner: &Value, outer: &Value) -> bool {
    let (a, b) = (
        inner["ts"].as_f64().unwrap(),
        inner["dur"].as_f64().unwrap(),
    );
    let (c, d) = (
        outer["ts"].as_f64().unwrap(),
        outer["dur"].as_f64().unwrap(),
    );
    a >= c - 1.0 && a + b <= c + d + 1.0
}

#[test]
fn run_with_trace_draws_runtime_and_init_on_one_clock() {
    let b = Bundle::busybox();
    b.set_args(&["true"]);
    let rt = Runtime::skiff();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.json");
    let id = unique_id();
    rt.call(&[
        "--trace",
        file.to_str().unwrap(),
        "run",
        "--bundle",
        b.path_str(),
        &id,
    ])
    .ok();
    let (ev, meta) = events(&file);
    let run = span(&ev, "run");
    let create = span(&ev, "create");
    let cgroup = span(&ev, "create: cgroup (made ahead)");
    assert!(within(create, run) && within(cgroup, create));
    // On a v1 or hybrid host the init moves itself into its cgroups, first
    // thing (see cgroups::self_join): its span, in its process. On v2 it is
    // born there and moves nothing.
    if unified_host() {
        assert!(!names(&ev).iter().any(|n| n.contains("move itself")));
    } else {
        let join = span(&ev, "init: move itself into its cgroups");
        assert!(within(join, create) && join["pid"] != run["pid"], "{join}");
    }
    // The re-exec from the sealed copy comes first, before the command.
    let reexec = span(&ev, "start and re-exec from a sealed copy");
    assert!(reexec["ts"].as_f64().unwrap() <= run["ts"].as_f64().unwrap());
    // The init's spans: another process, named by its host pid (not 1),
    // and on the same clock: inside the runtime's `create`.
    let rootfs = span(&ev, "init: root filesystem");
    assert_ne!(rootfs["pid"], run["pid"]);
    assert_ne!(rootfs["pid"], 1);
    assert!(within(rootfs, create), "{rootfs} not within {create}");
    let wait = span(&ev, "init: wait for start (exec.fifo)");
    assert!(wait["ts"].as_f64().unwrap() >= rootfs["ts"].as_f64().unwrap());
    // Every step --explain narrates is a span too, with its man page.
    assert!(
        ev.iter()
            .any(|e| e["cat"] == "step" && e["args"]["detail"] == "pivot_root(2)"),
        "{:#?}",
        names(&ev)
    );
    let labels: Vec<&str> = meta
        .iter()
        .filter_map(|m| m["args"]["name"].as_str())
        .collect();
    assert!(
        labels.iter().any(|l| l.starts_with("skiff run [")),
        "{labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.starts_with("container init")),
        "{labels:?}"
    );

    // The picture: an SVG with the spans' names in it.
    let svg = dir.path().join("run.svg");
    let mut c = std::process::Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/trace-svg.py"),
    );
    c.arg(&file).arg(&svg).args(["--min-label-ms", "0"]);
    output(c).ok();
    let text = fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<?xml") && text.contains("<svg"),
        "not SVG"
    );
    assert!(text.contains("create: cgroup"), "span names drawn");
}

#[test]
fn skiff_trace_env_collects_create_start_and_delete_in_one_file() {
    let b = Bundle::busybox();
    b.set_args(&["true"]);
    let rt = Runtime::skiff();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lifecycle.json");
    let id = unique_id();
    for args in [
        vec!["create", "--bundle", b.path_str(), &id],
        vec!["start", &id],
    ] {
        let mut c = rt.cmd(&args);
        c.env("SKIFF_TRACE", &file);
        output(c).ok();
    }
    rt.wait_status(&id, "stopped");
    let mut c = rt.cmd(&["delete", &id]);
    c.env("SKIFF_TRACE", &file);
    output(c).ok();
    let (ev, _) = events(&file);
    let (create, start, delete) = (span(&ev, "create"), span(&ev, "start"), span(&ev, "delete"));
    // Three processes, one after the other, and the init between them.
    let pids: std::collections::BTreeSet<String> = [create, start, delete]
        .iter()
        .map(|e| e["pid"].to_string())
        .collect();
    assert_eq!(pids.len(), 3);
    assert!(start["ts"].as_f64() > create["ts"].as_f64());
    assert!(delete["ts"].as_f64() > start["ts"].as_f64());
    let wait = span(&ev, "init: wait for start (exec.fifo)");
    let end = wait["ts"].as_f64().unwrap() + wait["dur"].as_f64().unwrap();
    assert!(
        end >= start["ts"].as_f64().unwrap() - 1.0,
        "the init waits until start: {wait} {start}"
    );
}

#[test]
fn no_trace_unless_asked_and_a_bad_path_only_warns() {
    let b = Bundle::busybox();
    b.set_args(&["true"]);
    let rt = Runtime::skiff();
    let dir = tempfile::tempdir().unwrap();
    let mut c = rt.cmd(&["run", "--bundle", b.path_str(), &unique_id()]);
    c.current_dir(dir.path());
    let out = output(c).ok();
    assert_eq!(out.stderr, "");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    // A trace that cannot be written never fails the command.
    let out = rt
        .call(&[
            "--trace",
            "/nonexistent/dir/t.json",
            "run",
            "--bundle",
            b.path_str(),
            &unique_id(),
        ])
        .ok();
    assert!(out.stderr.contains("not tracing"), "{out}");
}

/// `skiff-agent serve --trace-dir`: one file per pod start, holding the
/// agent's steps (image, sandbox, network namespace, each CNI plugin, the
/// pause container, each container's create and start, the first probe
/// success) and, stitched in by the runtime itself through `SKIFF_TRACE`,
/// the spans of every `skiff create` and `skiff start` and of the inits,
/// all on one clock.
#[test]
fn the_agent_traces_a_pod_start_with_the_runtimes_spans() {
    use skiff_tests::agent::{condition, pod_yaml, Agent};
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("traces");
    let a = Agent::start_with(&["--trace-dir", dir.to_str().unwrap()]);
    a.manifest(
        "web.yaml",
        &pod_yaml(
            "web",
            r#"  containers:
  - name: web
    image: IMAGE
    command: [httpd, -f, -p, "8080", -h, /www]
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
"#,
        ),
    );
    let p = a.wait_pod("web", std::time::Duration::from_secs(60), "Ready", |p| {
        condition(p, "Ready") == "True"
    });
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let file = dir.join(format!("default_web_{uid}.json"));
    // The probe span is written just after the status turns Ready.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !fs::read_to_string(&file)
        .unwrap_or_default()
        .contains("probe success")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no probe span in {}",
            file.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ev, meta) = events(&file);
    let agent_pid = a.pid() as u64;
    let mine = |e: &&Value| e["pid"] == agent_pid && e["cat"] == "agent";
    let agent_spans: Vec<Value> = ev.iter().filter(mine).cloned().collect();
    for name in [
        "image localhost/busybox:1",
        "sandbox",
        "network namespace",
        "pause container",
        "container web: bundle",
        "container web: create and start",
        "container web: started, until the first readiness probe success",
    ] {
        span(&agent_spans, name);
    }
    assert!(
        names(&agent_spans)
            .iter()
            .any(|n| n.starts_with("CNI ADD ") && n.ends_with("(eth0)")),
        "the network's own plugin: {:?}",
        names(&agent_spans)
    );
    let sandbox = span(&agent_spans, "sandbox");
    for inner in ["network namespace", "pause container"] {
        assert!(
            within(span(&agent_spans, inner), sandbox),
            "{inner} within the sandbox"
        );
    }
    // The runtime's own spans, from other processes: a create and a start
    // for the pause container and for web, each inside the agent's span
    // that asked for it, and the inits' steps.
    let runtime: Vec<Value> = ev
        .iter()
        .filter(|e| e["pid"] != agent_pid)
        .cloned()
        .collect();
    let creates: Vec<&Value> = runtime.iter().filter(|e| e["name"] == "create").collect();
    let starts: Vec<&Value> = runtime.iter().filter(|e| e["name"] == "start").collect();
    assert_eq!(creates.len(), 2, "two skiff create: {:?}", names(&runtime));
    assert_eq!(starts.len(), 2, "two skiff start: {:?}", names(&runtime));
    let pause = span(&agent_spans, "pause container");
    let web = span(&agent_spans, "container web: create and start");
    assert!(
        within(creates[0], pause) && within(starts[0], pause),
        "pause's runtime spans"
    );
    assert!(
        within(creates[1], web) && within(starts[1], web),
        "web's runtime spans"
    );
    assert!(
        runtime
            .iter()
            .any(|e| e["name"] == "init: pivot_root and paths"),
        "the inits' steps: {:?}",
        names(&runtime)
    );
    assert!(
        meta.iter().any(|m| m["args"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("skiff-agent, pod default/web"))),
        "the agent's row is named"
    );
    a.stop_all();
    a.assert_clean();
}

/// A pod-start trace covers the start, not the restarts after it: a pod
/// in CrashLoopBackOff must not grow its file for as long as it crashes.
#[test]
fn a_pod_trace_ends_with_the_start_not_the_restarts() {
    use skiff_tests::agent::{container, pod_yaml, Agent};
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("traces");
    let a = Agent::start_with(&["--trace-dir", dir.to_str().unwrap()]);
    a.manifest(
        "crash.yaml",
        &pod_yaml(
            "crash",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'exit 3']\n",
        ),
    );
    let p = a.wait_pod(
        "crash",
        std::time::Duration::from_secs(60),
        "two restarts",
        |p| container(p, "c")["restartCount"].as_u64().unwrap_or(0) >= 2,
    );
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let (ev, _) = events(&dir.join(format!("default_crash_{uid}.json")));
    let launches = ev
        .iter()
        .filter(|e| e["name"] == "container c: create and start")
        .count();
    let creates = ev.iter().filter(|e| e["name"] == "create").count();
    assert_eq!(launches, 1, "the first run only: {:?}", names(&ev));
    assert_eq!(
        creates,
        2,
        "the pause container's and the first run's: {:?}",
        names(&ev)
    );
    a.stop_all();
    a.assert_clean();
}
