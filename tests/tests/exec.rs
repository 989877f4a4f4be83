//! `exec` into a running container.

use std::fs;
use std::time::Duration;

use skiff_tests::*;

/// A running container with `SLEEPER` as init, hostname `execbox`.
fn running(rt: &Runtime, b: &Bundle) -> String {
    let id = unique_id();
    b.edit(|v| v["hostname"] = json!("execbox"));
    rt.start_with(b, &id, SLEEPER);
    id
}

#[test]
fn exec_exit_code_and_output() {
    let (s, r) = on_both(|rt, b| {
        let id = running(rt, b);
        let out = rt.exec(&id, &["sh", "-c", "echo hi; echo oops >&2; exit 4"]);
        assert_eq!(rt.status(&id).as_deref(), Some("running"));
        (out.code(), out.stdout, out.stderr.contains("oops"))
    });
    assert_eq!(r, (4, "hi\n".to_owned(), true));
    assert_eq!(s, r);
}

#[test]
fn exec_process_json() {
    let (s, r) = on_both(|rt, b| {
        let id = running(rt, b);
        let mut p = b.config()["process"].clone();
        p["args"] = json!(["sh", "-c", "echo $FOO; pwd; id -u; exit 5"]);
        p["env"] = json!(["PATH=/bin", "FOO=from-process-json"]);
        p["cwd"] = json!("/tmp");
        p["user"] = json!({"uid": 1234, "gid": 1234});
        let f = b.write_file("process.json", &p.to_string());
        let out = rt.call(&["exec", "--process", f.to_str().unwrap(), &id]);
        (out.code(), out.stdout)
    });
    assert_eq!(r, (5, "from-process-json\n/tmp\n1234\n".to_owned()));
    assert_eq!(s, r);
}

#[test]
fn exec_flags_env_cwd_user() {
    let (s, r) = on_both(|rt, b| {
        let id = running(rt, b);
        let out = rt
            .call(&[
                "exec",
                "--env",
                "BAR=baz",
                "--cwd",
                "/proc",
                "--user",
                "99:98",
                &id,
                "sh",
                "-c",
                "echo $BAR; pwd; id -u; id -g",
            ])
            .ok();
        out.stdout
    });
    assert_eq!(r, "baz\n/proc\n99\n98\n");
    assert_eq!(s, r);
}

#[test]
fn exec_detach_writes_pid_file() {
    on_both(|rt, b| {
        let id = running(rt, b);
        let pid_file = b.path().join("exec.pid");
        let out = rt
            .call(&[
                "exec",
                "--detach",
                "--pid-file",
                pid_file.to_str().unwrap(),
                &id,
                "sleep",
                "999",
            ])
            .ok();
        assert_eq!(out.stdout, "", "{out}");
        let text = fs::read_to_string(&pid_file).expect("pid file written");
        let pid: i32 = text.trim().parse().expect("pid file holds a number");
        // runc writes the pid file before its process has finished execve:
        // wait (bounded) for the command line to appear.
        poll(Duration::from_secs(5), "exec'd process to exec", || {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("exec'd process alive");
            (cmdline == b"sleep\0999\0").then_some(())
        });
        // the detached process is part of the container
        let ps = rt.call(&["ps", "--format", "json", &id]).ok().json();
        assert!(ps.as_array().unwrap().contains(&json!(pid)), "{ps}");
        rt.delete_force(&id).ok();
    });
}

#[test]
fn exec_shares_pid_namespace_and_hostname() {
    let (s, r) = on_both(|rt, b| {
        let id = running(rt, b);
        rt.exec(
            &id,
            &["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; \
                 test $(readlink /proc/1/ns/pid) = $(readlink /proc/self/ns/pid) && echo same-pidns"],
        )
        .ok()
        .stdout
    });
    assert_eq!(r, "sleep 1000 \nexecbox\nsame-pidns\n");
    assert_eq!(s, r);
}

#[test]
fn exec_missing_binary() {
    for bin in ["/nope", "nope"] {
        let (s, r) = on_both(|rt, b| {
            let id = running(rt, b);
            let out = rt.exec(&id, &[bin]).fail();
            assert!(out.stderr.contains(bin), "{out}");
            assert_eq!(rt.status(&id).as_deref(), Some("running"));
            out.code()
        });
        assert_eq!(s, r, "exit code for exec {bin}");
    }
}

#[test]
fn exec_into_stopped_or_missing_container_fails() {
    let (s, r) = on_both(|rt, b| {
        let id = unique_id();
        rt.start_with(b, &id, &["true"]);
        rt.wait_status(&id, "stopped");
        let stopped = rt.exec(&id, &["true"]).fail();
        assert!(!stopped.stderr.is_empty(), "{stopped}");
        let missing = rt.exec("skiff-no-such-container", &["true"]).fail();
        assert!(
            mentions_any(
                &missing.stderr,
                &["does not exist", "not exist", "not found"]
            ),
            "{missing}"
        );
        (stopped.code(), missing.code())
    });
    assert_eq!(s, r);
}
