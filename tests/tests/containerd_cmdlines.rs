//! The exact command lines containerd's runc shim (io.containerd.runc.v2)
//! issues, with `--log B/log.json --log-format json` on every call.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;
use skiff_tests::*;

/// A container driven the way the shim drives it.
struct Shim<'a> {
    rt: &'a Runtime,
    b: &'a Bundle,
    id: String,
}

impl<'a> Shim<'a> {
    fn new(rt: &'a Runtime, b: &'a Bundle) -> Shim<'a> {
        Shim {
            rt,
            b,
            id: unique_id(),
        }
    }

    fn log(&self) -> PathBuf {
        self.b.path().join("log.json")
    }

    /// `--root R --log B/log.json --log-format json ARGS...`
    fn call(&self, args: &[&str]) -> Output {
        let log = self.log();
        let mut a = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
        a.extend_from_slice(args);
        self.rt.call(&a)
    }

    /// `create --bundle B --pid-file B/init.pid ID`; returns the pid read
    /// from the pid file.
    fn create(&self) -> i32 {
        let pid_file = self.b.path().join("init.pid");
        self.call(&[
            "create",
            "--bundle",
            self.b.path_str(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &self.id,
        ])
        .ok();
        read_pid(&pid_file)
    }

    /// Last line of log.json, parsed.
    fn last_log_entry(&self) -> Value {
        let text = fs::read_to_string(self.log()).expect("log.json exists");
        let last = text
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .expect("log.json has a line");
        serde_json::from_str(last).unwrap_or_else(|e| panic!("log line not JSON ({e}): {last}"))
    }
}

fn read_pid(p: &std::path::Path) -> i32 {
    let s = fs::read_to_string(p).unwrap_or_else(|e| panic!("pid file {}: {e}", p.display()));
    s.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {} holds {s:?}: {e}", p.display()))
}

fn ps_pids(shim: &Shim) -> Vec<i64> {
    let v = shim.call(&["ps", "--format", "json", &shim.id]).ok().json();
    v.as_array()
        .expect("ps json array")
        .iter()
        .map(|p| p.as_i64().expect("pid"))
        .collect()
}

#[test]
fn shim_sequence_with_term() {
    on_both(|rt, b| {
        b.set_args(TERM_EXITS);
        let shim = Shim::new(rt, b);
        let pid = shim.create();
        assert_eq!(rt.pid(&shim.id), pid, "pid file matches state");
        shim.call(&["start", &shim.id]).ok();
        assert_eq!(rt.status(&shim.id).as_deref(), Some("running"));

        // exec --process F --detach --pid-file P ID
        let mut p = b.config()["process"].clone();
        p["args"] = json!(["sleep", "1000"]);
        let pf = b.write_file("exec-process.json", &p.to_string());
        let exec_pid_file = b.path().join("exec.pid");
        shim.call(&[
            "exec",
            "--process",
            pf.to_str().unwrap(),
            "--detach",
            "--pid-file",
            exec_pid_file.to_str().unwrap(),
            &shim.id,
        ])
        .ok();
        let exec_pid = read_pid(&exec_pid_file) as i64;
        // init (sh), its background sleep, and the exec'd sleep
        // (the shell forks its background sleep after `start` returns)
        let pids = poll(std::time::Duration::from_secs(10), "3 processes", || {
            let p = ps_pids(&shim);
            (p.len() == 3).then_some(p)
        });
        assert!(pids.contains(&(pid as i64)), "{}: {pids:?}", rt.label);
        assert!(pids.contains(&exec_pid), "{}: {pids:?}", rt.label);
        assert_eq!(pids.len(), 3, "{}: {pids:?}", rt.label);

        shim.call(&["pause", &shim.id]).ok();
        assert_eq!(rt.status(&shim.id).as_deref(), Some("paused"));
        shim.call(&["resume", &shim.id]).ok();
        assert_eq!(rt.status(&shim.id).as_deref(), Some("running"));

        rt.wait_catching_term(&shim.id);
        shim.call(&["kill", &shim.id, "15"]).ok();
        rt.wait_status(&shim.id, "stopped");
        shim.call(&["delete", &shim.id]).ok();
        rt.try_state(&shim.id).fail();
    });
}

#[test]
fn shim_kill_9_and_delete_force() {
    on_both(|rt, b| {
        b.set_args(SLEEPER);
        // kill ID 9, then delete
        let shim = Shim::new(rt, b);
        shim.create();
        shim.call(&["start", &shim.id]).ok();
        shim.call(&["kill", &shim.id, "9"]).ok();
        rt.wait_status(&shim.id, "stopped");
        shim.call(&["delete", &shim.id]).ok();
        rt.try_state(&shim.id).fail();

        // delete --force of a running container
        let shim = Shim::new(rt, b);
        shim.create();
        shim.call(&["start", &shim.id]).ok();
        shim.call(&["delete", "--force", &shim.id]).ok();
        rt.try_state(&shim.id).fail();

        // delete --force of a created (never started) container
        let shim = Shim::new(rt, b);
        shim.create();
        shim.call(&["delete", "--force", &shim.id]).ok();
        rt.try_state(&shim.id).fail();
        assert!(rt.root_entries().is_empty(), "{:?}", rt.root_entries());
    });
}

#[test]
fn shim_delete_of_unknown_container() {
    // containerd calls `delete --force` on ids that may already be gone and
    // looks at the exit code
    let (s, r) = on_both(|rt, b| {
        let shim = Shim::new(rt, b);
        let plain = shim.call(&["delete", &shim.id]);
        let forced = shim.call(&["delete", "--force", &shim.id]);
        (plain.code(), forced.code())
    });
    // RUNC-1.1.5: `delete --force` of a missing container exits 0 while
    // `delete` exits 1.
    assert_eq!(r, (1, 0));
    assert_eq!(s, r);
}

#[test]
fn errors_are_logged_as_json() {
    let (s, r) = on_both(|rt, b| {
        let shim = Shim::new(rt, b);
        let out = shim.call(&["start", &shim.id]).fail();
        let e = shim.last_log_entry();
        assert_eq!(e["level"], "error", "{e}");
        let msg = e["msg"].as_str().expect("msg string").to_owned();
        assert!(!msg.is_empty());
        assert!(e.get("time").is_some(), "{e}");
        assert!(
            mentions_any(&msg, &["does not exist", "not exist", "not found"]),
            "{msg}"
        );

        // a failing create logs its cause too
        b.set_args(&["/nope"]);
        let shim = Shim::new(rt, b);
        let pid_file = b.path().join("init.pid");
        shim.call(&[
            "create",
            "--bundle",
            b.path_str(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &shim.id,
        ])
        .fail();
        let e2 = shim.last_log_entry();
        assert_eq!(e2["level"], "error", "{e2}");
        assert!(e2["msg"].as_str().unwrap().contains("/nope"), "{e2}");
        assert!(!pid_file.exists(), "pid file written for a failed create");
        (out.code(), keys(&e), keys(&e2))
    });
    assert_eq!(s, r);
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}
