//! `process.terminal: true` with `--console-socket`: the runtime sends the pty
//! master over the socket and the container's stdio is the slave.

use std::time::Duration;

use skiff_tests::*;

const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn console_socket_gets_pty_master() {
    let (s, r) = on_both(|rt, b| {
        create_with_console(
            rt,
            b,
            &[
                "sh",
                "-c",
                "tty; test -t 0 && test -t 1 && echo both-tty; echo done",
            ],
            "done\n",
        )
    });
    assert!(r.contains("/dev/pts/0\n"), "{r:?}");
    assert!(r.contains("both-tty\n"), "{r:?}");
    assert_eq!(s, r, "terminal output (left skiff, right runc)");
}

#[test]
fn console_size_is_honoured() {
    let (s, r) = on_both(|rt, b| {
        b.edit(|v| v["process"]["consoleSize"] = json!({"height": 33, "width": 101}));
        create_with_console(rt, b, &["sh", "-c", "stty size; echo done"], "done\n")
    });
    assert!(r.contains("33 101\n"), "{r:?}");
    assert_eq!(s, r);
}

#[test]
fn terminal_without_console_socket_is_refused_for_create() {
    let (s, r) = on_both(|rt, b| {
        b.set_args(&["true"]);
        b.edit(|v| v["process"]["terminal"] = json!(true));
        let id = unique_id();
        let out = rt.create(b, &id).fail();
        rt.try_state(&id).fail();
        out
    });
    assert_eq!(s.code(), r.code(), "skiff: {s}\nrunc: {r}");
    assert!(
        mentions_any(&s.stderr, &["console-socket", "console socket"]),
        "{s}"
    );
}

#[test]
fn exec_tty_with_console_socket() {
    let (s, r) = on_both(|rt, b| {
        let id = unique_id();
        rt.start_with(b, &id, SLEEPER);
        let sock = ConsoleSocket::new();
        rt.call(&[
            "exec",
            "--tty",
            "--detach",
            "--console-socket",
            sock.path_str(),
            &id,
            "sh",
            "-c",
            "tty; test -t 1 && echo is-tty; echo done",
        ])
        .ok();
        let master = sock.receive();
        let text = read_pty(&master, READ_TIMEOUT, |t| t.contains("done\n"));
        rt.delete_force(&id).ok();
        text
    });
    assert!(r.contains("/dev/pts/") && r.contains("is-tty\n"), "{r:?}");
    assert_eq!(s, r);
}

#[test]
fn run_detach_with_terminal() {
    let (s, r) = on_both(|rt, b| {
        b.set_args(&["sh", "-c", "echo hello-from-$(tty); echo done"]);
        b.edit(|v| v["process"]["terminal"] = json!(true));
        let sock = ConsoleSocket::new();
        let id = unique_id();
        rt.call(&[
            "run",
            "--detach",
            "--bundle",
            b.path_str(),
            "--console-socket",
            sock.path_str(),
            &id,
        ])
        .ok();
        let master = sock.receive();
        let text = read_pty(&master, READ_TIMEOUT, |t| t.contains("done\n"));
        rt.wait_status(&id, "stopped");
        rt.delete(&id).ok();
        text
    });
    assert!(r.contains("hello-from-/dev/pts/0\n"), "{r:?}");
    assert_eq!(s, r);
}

#[test]
fn terminal_gets_dev_console() {
    let (s, r) = on_both(|rt, b| {
        let text = create_with_console(
            rt,
            b,
            &[
                "sh",
                "-c",
                "stat -c '%t:%T' /dev/console; stat -c '%t:%T' $(tty); echo done",
            ],
            "done",
        );
        text.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
    });
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(s[0], s[1], "/dev/console is the pty slave: {s:?}");
    assert_eq!(s, r);
}

#[test]
fn foreground_run_proxies_the_terminal() {
    // `run` without --console-socket keeps the pty master and copies between
    // it and its own terminal (here one made by script(1)). The outer
    // terminal echoes a NUL as "^@" first, under runc and skiff alike.
    let (s, r) = on_both(|rt, b| {
        b.edit(|v| v["process"]["terminal"] = json!(true));
        b.set_args(&["sh", "-c", "tty; stty size; echo done"]);
        let id = unique_id();
        let run = format!(
            "stty rows 31 cols 97; {} --root {} run --bundle {} {}",
            rt.bin.display(),
            rt.root_path().display(),
            b.path_str(),
            id
        );
        let out = sh_output("script", &["-qec", &run, "/dev/null"]).ok();
        out.stdout
            .replace('\r', "")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim_start_matches("^@").to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(s.len(), 3, "{s:?}");
    assert!(s[0].starts_with("/dev/pts/"), "{s:?}");
    assert_eq!(s[1..], ["31 97".to_string(), "done".to_string()]);
    // runc 1.1.5's `stty size` here now and then fails with "No child
    // processes" (its console proxy racing the size): compare the rest.
    assert_eq!((&s[0], &s[2]), (&r[0], &r[r.len() - 1]));
}

#[test]
fn foreground_exec_tty_drains_the_last_output() {
    // The process writes and exits at once: its output is still in the pty
    // when skiff sees the exit, and must reach our terminal all the same
    // (it was lost about one time in three on a loaded machine).
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    let id = unique_id();
    rt.start_with(&b, &id, &["sleep", "1000"]);
    let exec = format!(
        "{} --root {} exec -t {} sh -c 'echo last-line'",
        rt.bin.display(),
        rt.root_path().display(),
        id
    );
    for i in 0..20 {
        let out = sh_output("script", &["-qec", &exec, "/dev/null"]).ok();
        assert!(out.stdout.contains("last-line"), "run {i}: {out}");
    }
    // A background process keeps the pty open after the exec'd process
    // has exited: skiff waits for its output only a bounded while.
    let exec = format!(
        "{} --root {} exec -t {} sh -c 'sleep 30 & echo left-behind'",
        rt.bin.display(),
        rt.root_path().display(),
        id
    );
    let t0 = std::time::Instant::now();
    let out = sh_output("script", &["-qec", &exec, "/dev/null"]).ok();
    assert!(out.stdout.contains("left-behind"), "{out}");
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "exec -t waited {:?} for a pty its background child holds",
        t0.elapsed()
    );
    rt.delete_force(&id).ok();
}
