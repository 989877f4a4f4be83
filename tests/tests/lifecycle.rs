//! Container lifecycle through the runc command line: create, start, state,
//! kill, delete, run, list, ps, pause/resume, spec.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;
use skiff_tests::*;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// create -> created (with a live pid), start -> running, kill -> stopped,
/// delete -> gone.  Returns the `state` JSON seen after `create`.
fn full_cycle(rt: &Runtime, b: &Bundle, signal: Option<&str>) -> Value {
    let id = unique_id();
    b.set_args(TERM_EXITS);
    rt.create(b, &id).ok();
    let created = rt.state(&id);
    assert_eq!(created["status"], "created", "{}: {created}", rt.label);
    let pid = created["pid"].as_i64().expect("pid after create");
    assert!(pid > 0, "{}: pid {pid}", rt.label);
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    rt.start(&id).ok();
    assert_eq!(rt.state(&id)["status"], "running");
    rt.wait_catching_term(&id);
    match signal {
        Some(sig) => rt.kill(&id, sig).ok(),
        None => rt.call(&["kill", &id]).ok(),
    };
    rt.wait_status(&id, "stopped");

    rt.delete(&id).ok();
    rt.try_state(&id).fail();
    assert!(
        !rt.root_entries().contains(&id),
        "{}: {id} still in root after delete",
        rt.label
    );
    created
}

#[test]
fn create_start_kill_delete_with_every_signal_spelling() {
    for sig in [Some("SIGTERM"), Some("TERM"), Some("15"), None] {
        on_both(|rt, b| full_cycle(rt, b, sig));
    }
}

#[test]
fn state_json_has_runc_keys() {
    let (s, r) = on_both(|rt, b| {
        let id = unique_id();
        b.set_args(SLEEPER);
        rt.create(b, &id).ok();
        let created = rt.state(&id);
        rt.start(&id).ok();
        let running = rt.state(&id);

        // Sane absolute values.
        assert_eq!(created["id"], id.as_str());
        assert_eq!(created["bundle"], b.path_str());
        assert_eq!(created["rootfs"], b.rootfs().to_str().unwrap());
        assert_eq!(running["status"], "running");
        assert_eq!(created["pid"], running["pid"]);
        assert!(created["created"].as_str().unwrap().contains('T'));
        assert!(created["ociVersion"].as_str().unwrap().starts_with("1."));
        assert!(created.get("annotations").is_none(), "{created}");

        // annotations appear once set
        let id2 = unique_id();
        b.edit(|v| v["annotations"] = json!({"org.skiff.test": "yes"}));
        rt.create(b, &id2).ok();
        let annotated = rt.state(&id2);
        assert_eq!(annotated["annotations"]["org.skiff.test"], "yes");
        (keys(&created), keys(&running), keys(&annotated))
    });
    let base = [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ];
    assert_eq!(r.0, base.map(String::from).into_iter().collect());
    assert!(r.2.contains("annotations"));
    assert_eq!(s, r, "state keys (left skiff, right runc)");
}

#[test]
fn run_foreground_exit_codes() {
    let both = run_both(|b| {
        b.set_args(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    });
    assert_eq!(both.same_code(), 3);
    assert_eq!(both.same_stdout(), "out\n");
    assert!(both.skiff.stderr.contains("err"), "{}", both.skiff);

    // Killed by a signal -> 128 + n.  Without a PID namespace, because PID 1
    // of a namespace cannot be killed by signals it does not handle.
    let both = run_both(|b| {
        b.remove_namespace("pid");
        b.set_args(&["sh", "-c", "kill -TERM $$; sleep 5"]);
    });
    assert_eq!(both.same_code(), 143);
}

#[test]
fn run_detach_then_delete_force() {
    on_both(|rt, b| {
        let id = unique_id();
        b.set_args(SLEEPER);
        let out = rt.run_detached(b, &id).ok();
        assert_eq!(out.stdout, "", "{out}");
        assert_eq!(rt.status(&id).as_deref(), Some("running"));
        let pid = rt.pid(&id);
        rt.delete_force(&id).ok();
        rt.try_state(&id).fail();
        poll(
            std::time::Duration::from_secs(10),
            "init to disappear",
            || {
                // gone, or a zombie not yet reaped by its (foreign) parent
                match fs::read_to_string(format!("/proc/{pid}/stat")) {
                    Err(_) => Some(()),
                    Ok(s) => s
                        .rsplit(')')
                        .next()?
                        .trim_start()
                        .starts_with('Z')
                        .then_some(()),
                }
            },
        );
    });
}

#[test]
fn list_formats() {
    let (s, r) = on_both(|rt, b| {
        let id = unique_id();
        b.set_args(SLEEPER);
        rt.create(b, &id).ok();

        let table = rt.call(&["list"]).ok().stdout;
        let mut lines = table.lines();
        let header: Vec<String> = lines
            .next()
            .expect("header")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let row: Vec<String> = lines
            .next()
            .expect("one row")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines.next(), None, "{table}");
        assert_eq!(row[0], id);
        assert_eq!(row[1], rt.pid(&id).to_string());
        assert_eq!(row[2], "created");
        assert_eq!(row[3], b.path_str());

        let quiet = rt.call(&["list", "-q"]).ok().stdout;
        assert_eq!(quiet, format!("{id}\n"));

        let j = rt.call(&["list", "--format", "json"]).ok().json();
        let arr = j.as_array().expect("array");
        assert_eq!(arr.len(), 1, "{j}");
        assert_eq!(arr[0]["id"], id.as_str());
        assert_eq!(arr[0]["status"], "created");
        (header, row.len(), keys(&arr[0]))
    });
    assert_eq!(
        s.0,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)
    );
    assert_eq!(s, r, "list output shape (left skiff, right runc)");
}

#[test]
fn list_of_empty_root() {
    let (s, r) = on_both(|rt, _| {
        let q = rt.call(&["list", "-q"]).ok().stdout;
        let j = rt.call(&["list", "--format", "json"]).ok().stdout;
        (q, j.trim().to_owned())
    });
    assert_eq!(s, r);
    assert_eq!(r.0, "");
}

#[test]
fn ps_json_lists_init() {
    on_both(|rt, b| {
        let id = unique_id();
        let pid = rt.start_with(b, &id, SLEEPER);
        let pids = rt.call(&["ps", "--format", "json", &id]).ok().json();
        let pids: Vec<i64> = pids
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p.as_i64().expect("pid number"))
            .collect();
        assert_eq!(pids, vec![pid as i64], "{}", rt.label);
    });
}

/// freezer.state of the (v1) freezer cgroup of `pid`, read on the host.
/// The freezer state of `pid`'s cgroup as v1 spells it: from the v1
/// freezer's `freezer.state`, or from v2's `cgroup.freeze` on a pure v2 host.
fn freezer_state(pid: i32) -> String {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    if let Some(path) = cg
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_owned()))
    {
        return fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
            .expect("freezer.state")
            .trim()
            .to_owned();
    }
    let path = cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a v1 freezer or a v2 cgroup");
    let frozen =
        fs::read_to_string(format!("/sys/fs/cgroup{path}/cgroup.freeze")).expect("cgroup.freeze");
    if frozen.trim() == "1" {
        "FROZEN"
    } else {
        "THAWED"
    }
    .to_string()
}

fn proc_state(pid: i32) -> String {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("State:"))
        .expect("State line")
        .trim()
        .to_owned()
}

#[test]
fn pause_and_resume() {
    on_both(|rt, b| {
        let id = unique_id();
        let pid = rt.start_with(b, &id, SLEEPER);
        rt.pause(&id).ok();
        assert_eq!(rt.status(&id).as_deref(), Some("paused"));
        assert_eq!(freezer_state(pid), "FROZEN");
        let st = proc_state(pid);
        // frozen tasks show as D (v1 freezer) or S, never running
        assert!(st.starts_with('D') || st.starts_with('S'), "{st}");

        rt.resume(&id).ok();
        assert_eq!(rt.status(&id).as_deref(), Some("running"));
        assert_eq!(freezer_state(pid), "THAWED");
        poll(std::time::Duration::from_secs(5), "thawed sleep", || {
            proc_state(pid).starts_with('S').then_some(())
        });
    });
}

#[test]
fn kill_all_stops_every_process() {
    on_both(|rt, b| {
        let id = unique_id();
        rt.start_with(b, &id, &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
        let pids = poll(std::time::Duration::from_secs(10), "3 processes", || {
            let v = rt.call(&["ps", "--format", "json", &id]).ok().json();
            let v: Vec<i64> = v.as_array()?.iter().filter_map(Value::as_i64).collect();
            (v.len() == 3).then_some(v)
        });
        rt.call(&["kill", "--all", &id, "KILL"]).ok();
        rt.wait_status(&id, "stopped");
        for p in pids {
            poll(std::time::Duration::from_secs(10), "process gone", || {
                let s = fs::read_to_string(format!("/proc/{p}/stat")).ok();
                match s {
                    None => Some(()),
                    Some(s) => s
                        .rsplit(')')
                        .next()?
                        .trim_start()
                        .starts_with('Z')
                        .then_some(()),
                }
            });
        }
        rt.delete(&id).ok();
    });
}

#[test]
fn spec_equals_runc_spec() {
    let (s, r) = on_both(|rt, _| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = rt.cmd(&["spec"]);
        c.current_dir(dir.path());
        output(c).ok();
        let text = fs::read_to_string(dir.path().join("config.json")).expect("config.json");
        serde_json::from_str::<Value>(&text).expect("spec is JSON")
    });
    assert_eq!(r["process"]["args"], json!(["sh"]));
    assert_eq!(s, r);
}

#[test]
fn spec_refuses_to_overwrite() {
    let (s, r) = on_both(|rt, _| {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("config.json"), "keep").unwrap();
        let mut c = rt.cmd(&["spec"]);
        c.current_dir(dir.path());
        let out = output(c).fail();
        assert_eq!(
            fs::read_to_string(dir.path().join("config.json")).unwrap(),
            "keep"
        );
        assert!(mentions_any(&out.stderr, &["exists"]), "{out}");
        out.code()
    });
    assert_eq!(s, r);
}

#[test]
fn kill_term_ends_a_created_container() {
    let (s, r) = on_both(|rt, b| {
        b.set_args(&["true"]);
        let id = unique_id();
        rt.create(b, &id).ok();
        rt.kill(&id, "TERM").ok();
        rt.wait_status(&id, "stopped");
        rt.delete(&id).ok();
        "stopped"
    });
    assert_eq!(s, r);
}

#[test]
fn start_interrupted_after_releasing_the_init_does_not_confuse_status() {
    // A `start` killed between releasing the init and removing exec.fifo
    // leaves the fifo behind. skiff still sees that the init has exec'd:
    // the container is running, and a second start fails at once instead of
    // waiting forever. (skiff only: runc 1.1.5 reports "created" and hangs.)
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.set_args(SLEEPER);
    let id = unique_id();
    rt.create(&b, &id).ok();
    let fifo = rt.root_path().join(&id).join("exec.fifo");
    // What the killed start did: open the fifo and read the init's byte.
    let mut f = std::fs::File::open(&fifo).unwrap();
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut f, &mut byte).unwrap();
    drop(f);
    assert!(fifo.exists());
    poll(std::time::Duration::from_secs(10), "status running", || {
        (rt.status(&id).as_deref() == Some("running")).then_some(())
    });
    let again = rt.start(&id).fail();
    assert!(again.stderr.contains("already running"), "{again}");
    rt.delete_force(&id).ok();
}
