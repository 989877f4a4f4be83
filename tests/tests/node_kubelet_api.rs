//! The kubelet API of a Skiff node, used the way people use it: the real
//! kubectl, through the real API server (Kubernetes 1.20, see
//! `tests/k8s/control-plane.sh`), which calls the node on port 10250 with
//! its kubelet client certificate. `kubectl logs` with its options,
//! `exec` (exit codes, a terminal and its size), `cp` both ways, `attach`,
//! `port-forward`; requests without credentials or rights are refused;
//! a client that goes away leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::agent::Agent;
use skiff_tests::k8s::{cluster, condition_true, Namespace};
use skiff_tests::read_pty;
use skiff_tests::unique_id;

const T: Duration = Duration::from_secs(90);

fn label() -> String {
    unique_id().to_lowercase().replace(['_', '.'], "-")
}

/// A busybox pod on node `node` running `script`, waited for until ready.
fn pod(ns: &Namespace, node: &str, name: &str, script: &str, extra: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  \
         terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: c\n    \
         image: localhost/busybox:1\n    command: [sh, -c, {script:?}]\n"
    );
    cluster().apply(&ns.name, &yaml);
    cluster().wait_json(&["pod", name, "-n", &ns.name], T, "pod running", |p| {
        p["status"]["phase"] == "Running" && condition_true(p, "Ready")
    });
}

fn kubectl(ns: &Namespace, args: &[&str]) -> std::process::Output {
    let mut a = vec!["-n", ns.name.as_str()];
    a.extend_from_slice(args);
    cluster().kubectl(&a)
}

fn ok(ns: &Namespace, args: &[&str]) -> String {
    let o = kubectl(ns, args);
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A running kubectl, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(ns: &Namespace, args: &[&str]) -> Running {
    let mut a = vec!["-n", ns.name.as_str()];
    a.extend_from_slice(args);
    Running(
        cluster()
            .kubectl_cmd(&a)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl"),
    )
}

/// The number in a "line N" output line.
fn line_no(l: &str) -> Option<u64> {
    l.trim().strip_prefix("line ")?.parse().ok()
}

/// A node, a namespace, and in it pod `name` on that node running
/// `script`, ready.
fn node_with_pod(name: &str, script: &str) -> (Agent, Namespace) {
    let a = Agent::start_node(&label(), &[]);
    let ns = Namespace::new();
    pod(&ns, &a.node_name(), name, script, "");
    (a, ns)
}

/// A node with pod `web`: an httpd on port 8080 that serves
/// "served-from-the-pod".
fn node_with_web() -> (Agent, Namespace) {
    node_with_pod(
        "web",
        "mkdir -p /www && echo served-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
    )
}

const TALKER: &str = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done";

#[test]
fn kubectl_logs_follows_tails_and_reads_the_previous_attempt() {
    let (a, ns) = node_with_pod("talker", TALKER);
    let node = a.node_name();
    std::thread::sleep(Duration::from_secs(2));

    // --tail: exactly the last lines.
    let tail = ok(&ns, &["logs", "talker", "--tail=3"]);
    assert_eq!(tail.lines().count(), 3, "{tail}");
    assert!(tail.lines().all(|x| line_no(x).is_some()), "{tail}");
    // --limit-bytes cuts the answer.
    assert_eq!(ok(&ns, &["logs", "talker", "--limit-bytes=10"]).len(), 10);

    // --since with --timestamps: only lines of the last 2 s.
    let before = jiff::Timestamp::now();
    let since = ok(&ns, &["logs", "talker", "--since=2s", "--timestamps"]);
    let all = ok(&ns, &["logs", "talker"]);
    assert!(since.lines().count() < all.lines().count(), "{since}");
    for x in since.lines() {
        let (ts, text) = x.split_once(' ').expect("timestamped line");
        let t: jiff::Timestamp = ts.parse().expect("RFC 3339 time");
        assert!(t >= before - jiff::SignedDuration::from_secs(3), "{x}");
        assert!(line_no(text).is_some(), "{x}");
    }

    // -f: a line written after kubectl started arrives.
    let last = all.lines().filter_map(line_no).max().unwrap();
    let mut f = spawn(&ns, &["logs", "-f", "talker"]);
    let out = f.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut newest = 0;
    while newest <= last + 5 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(1)) {
            newest = newest.max(line_no(&l).unwrap_or(0));
        }
    }
    assert!(
        newest > last + 5,
        "kubectl logs -f saw up to {newest}, had {last}"
    );
    drop(f);

    // --previous after a restart: the first attempt's words.
    pod(
        &ns,
        &node,
        "crasher",
        "echo attempt $(cat /proc/sys/kernel/random/uuid); sleep 1; exit 1",
        "",
    );
    let p = cluster().wait_json(&["pod", "crasher", "-n", &ns.name], T, "a restart", |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    });
    let _ = p;
    let prev = ok(&ns, &["logs", "crasher", "--previous"]);
    assert!(prev.starts_with("attempt "), "{prev:?}");
    let cur = kubectl(&ns, &["logs", "crasher"]);
    let cur = String::from_utf8_lossy(&cur.stdout).to_string();
    assert_ne!(prev, cur, "the previous attempt is another one");
    let none = kubectl(&ns, &["logs", "talker", "--previous"]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("previous terminated container"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}

/// kubectl under a pseudo-terminal of our own: returns the master and the
/// child.
fn under_pty(
    ns: &Namespace,
    args: &[&str],
    rows: u16,
    cols: u16,
) -> (std::os::fd::OwnedFd, Running) {
    use std::os::unix::process::CommandExt;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    set_size(&pty.master, rows, cols);
    let slave = pty.slave;
    let mut a = vec!["-n", ns.name.as_str()];
    a.extend_from_slice(args);
    let mut cmd = cluster().kubectl_cmd(&a);
    let fd = slave.as_raw_fd();
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec: a new
    // session whose controlling terminal is the pty.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("kubectl under a pty");
    (pty.master, Running(child))
}

fn set_size(master: &std::os::fd::OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives for the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(r, 0);
}

fn write_pty(master: &std::os::fd::OwnedFd, s: &str) {
    nix::unistd::write(master, s.as_bytes()).expect("write to the pty");
}

#[test]
fn kubectl_exec_cp_and_attach() {
    let (node, ns) = node_with_pod("box", TALKER);

    // The exit status comes back through the v4 error stream.
    let o = kubectl(
        &ns,
        &[
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).lines().next(),
        Some("err")
    );
    assert_eq!(
        kubectl(&ns, &["exec", "box", "--", "true"]).status.code(),
        Some(0)
    );
    // stdin, to end of file.
    let o = cluster().kubectl_stdin(
        &[
            "-n", &ns.name, "exec", "-i", "box", "--", "sh", "-c", "wc -c",
        ],
        &"x".repeat(100_000),
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "100000");

    // A terminal has the client's size before the program runs: one that
    // asks at once sees it, every time (not 0x0, which `stty` reports as
    // an error).
    for _ in 0..3 {
        let (m, mut child) = under_pty(&ns, &["exec", "-it", "box", "--", "stty", "size"], 40, 120);
        let t = read_pty(&m, T, |t| t.contains("40 120") || t.contains("stty:"));
        assert!(t.contains("40 120"), "{t:?}");
        assert_eq!(child.0.wait().unwrap().code(), Some(0));
    }

    // A program on a terminal that ends at once: skiff may have sent the
    // terminal's master and ended before the agent took the master; the
    // exec still succeeds, with the program's status.
    for _ in 0..10 {
        let o = kubectl(&ns, &["exec", "-t", "box", "--", "sh", "-c", "exit 3"]);
        assert_eq!(o.status.code(), Some(3), "{o:?}");
    }

    // A terminal: its size, input, and a resize seen inside.
    let (m, mut child) = under_pty(
        &ns,
        &[
            "exec",
            "-it",
            "box",
            "--",
            "sh",
            "-c",
            "stty size; read x; echo got $x; stty size; exit 4",
        ],
        40,
        120,
    );
    let t = read_pty(&m, T, |t| t.contains("40 120"));
    assert!(t.contains("40 120"), "{t:?}");
    set_size(&m, 50, 132);
    std::thread::sleep(Duration::from_secs(1));
    write_pty(&m, "hello\r");
    let t = read_pty(&m, T, |t| t.contains("50 132"));
    assert!(t.contains("got hello") && t.contains("50 132"), "{t:?}");
    let st = child.0.wait().unwrap();
    assert_eq!(st.code(), Some(4));

    // kubectl cp: tar over exec, both ways.
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("in.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    // kubectl runs in the control plane's network namespace but the same
    // file system.
    ok(&ns, &["cp", src.to_str().unwrap(), "box:/tmp/in.bin"]);
    let sum = ok(&ns, &["exec", "box", "--", "md5sum", "/tmp/in.bin"]);
    ok(
        &ns,
        &["exec", "box", "--", "cp", "/tmp/in.bin", "/tmp/back.bin"],
    );
    let back = d.path().join("back.bin");
    ok(&ns, &["cp", "box:/tmp/back.bin", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), data, "round trip ({sum})");

    // attach: the container's output as it is written.
    let mut at = spawn(&ns, &["attach", "box"]);
    let out = at.0.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let (x, y) = (line_no(&first), line_no(&second));
    assert!(x.is_some() && y == x.map(|n| n + 1), "{first:?} {second:?}");
    drop(lines);
    let _ = at.0.kill();
    let _ = at.0.wait();

    // Every exec's pid file and process file went with it.
    let left: Vec<_> = std::fs::read_dir(node.path("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn kubectl_port_forward_reaches_a_server_in_the_pod() {
    let (_node, ns) = node_with_web();
    // A local port of our own in the control plane's namespace.
    let port = 20000 + (std::process::id() % 20000) as u16;
    let spec = format!("{port}:8080");
    let mut pf = spawn(&ns, &["port-forward", "pod/web", &spec]);
    let mut out = BufReader::new(pf.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("Forwarding from"), "{first}");
    let url = format!("http://127.0.0.1:{port}/");
    for _ in 0..3 {
        let o = cluster().exec(&["curl", "-s", "-m", "10", &url]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), "served-from-the-pod\n");
    }
    // A 404 ends its connection too.
    assert_eq!(http_code(&[&format!("{url}nope")]), 404);
    // A port nothing listens on: an error for that connection only.
    let spec2 = format!("{}:9", port + 1);
    let _pf2 = spawn(&ns, &["port-forward", "pod/web", &spec2]);
    std::thread::sleep(Duration::from_secs(2));
    let o = cluster().exec(&[
        "curl",
        "-s",
        "-m",
        "10",
        &format!("http://127.0.0.1:{}/", port + 1),
    ]);
    assert!(!o.status.success());
    let o = cluster().exec(&["curl", "-s", "-m", "10", &url]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "served-from-the-pod\n");
    drop(pf);
}

/// Make a client certificate with `openssl`, signed by the cluster CA
/// (or, with `rogue`, by nobody: self-signed).
fn client_cert(dir: &std::path::Path, name: &str, subject: &str, rogue: bool) -> (String, String) {
    let c = cluster();
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let ext = dir.join("client.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let (k, r) = (key.to_str().unwrap(), crt.to_str().unwrap());
    if rogue {
        run(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", k, "-subj", subject,
            "-out", r, "-days", "1",
        ]);
    } else {
        let csr = dir.join(format!("{name}.csr"));
        let csr = csr.to_str().unwrap();
        run(&[
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", k, "-subj", subject, "-out",
            csr,
        ]);
        let ca = c.env("CA_CERT");
        let ca_key = ca.replace("ca.crt", "ca.key");
        run(&[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            r,
            "-days",
            "1",
            "-extfile",
            ext.to_str().unwrap(),
        ]);
    }
    (r.to_string(), k.to_string())
}

/// `curl` from the control plane's namespace to the node's kubelet API;
/// returns the HTTP status (0: no HTTP answer).
fn curl(a: &Agent, path: &str, extra: &[&str]) -> u16 {
    let ip = &a.node.as_ref().unwrap().ip;
    let url = format!("https://{ip}:10250{path}");
    let mut args = vec!["-k"];
    args.extend_from_slice(extra);
    args.push(&url);
    http_code(&args)
}

/// `curl ARGS` from the control plane's network namespace: the HTTP status
/// (0: no HTTP answer).
fn http_code(args: &[&str]) -> u16 {
    let mut all = vec![
        "curl",
        "-s",
        "-m",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    all.extend_from_slice(args);
    let o = cluster().exec(&all);
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn the_kubelet_api_refuses_strangers() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let node = a.node_name();
    let d = tempfile::tempdir().unwrap();
    // The API server's own identity gets in.
    let c = cluster();
    let ca = c.env("CA_CERT");
    let api = (
        ca.replace("ca.crt", "apiserver-kubelet-client.crt"),
        ca.replace("ca.crt", "apiserver-kubelet-client.key"),
    );
    assert_eq!(
        curl(&a, "/healthz", &["--cert", &api.0, "--key", &api.1]),
        200
    );
    // No credentials: 401.
    assert_eq!(curl(&a, "/pods", &[]), 401);
    assert_eq!(
        curl(&a, "/healthz", &["-H", "Authorization: Bearer not-a-token"]),
        401
    );
    // A certificate the client CA did not sign: not even TLS.
    let rogue = client_cert(
        d.path(),
        "rogue",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        true,
    );
    assert_eq!(
        curl(&a, "/pods", &["--cert", &rogue.0, "--key", &rogue.1]),
        0
    );
    // A user the cluster knows, without nodes/proxy: 403, exec too.
    let user = format!("user-{l}");
    let who = client_cert(d.path(), "who", &format!("/O=devs/CN={user}"), false);
    let as_who = |path: &str, post: bool| {
        let mut args = vec!["--cert", who.0.as_str(), "--key", who.1.as_str()];
        if post {
            args.extend(["-X", "POST"]);
        }
        curl(&a, path, &args)
    };
    let exec = "/exec/default/x/c?command=true&output=1";
    assert_eq!(as_who("/pods", false), 403);
    assert_eq!(as_who(exec, true), 403);
    // Granted nodes/proxy (get only) by RBAC: in for GET, still out for
    // POST (exec).
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {user}}}\n\
         rules: [{{apiGroups: [\"\"], resources: [nodes/proxy], verbs: [get]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {user}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {user}}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    );
    c.apply("default", &role);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Denials are cached for 30 s, as kubelet caches them.
    while as_who("/pods", false) != 200 {
        assert!(Instant::now() < deadline, "the grant never took effect");
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(as_who(exec, true), 403);
    // A service account's token is reviewed by the API server: known, but
    // without rights.
    let ns = Namespace::new();
    let secrets = cluster().wait_json(
        &["secrets", "-n", &ns.name],
        T,
        "the default service account's token",
        |v| {
            v["items"].as_array().is_some_and(|i| {
                i.iter()
                    .any(|s| s["type"] == "kubernetes.io/service-account-token")
            })
        },
    );
    let token = secrets["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["type"] == "kubernetes.io/service-account-token")
        .and_then(|s| s["data"]["token"].as_str())
        .map(|t| {
            let o = std::process::Command::new("base64")
                .arg("-d")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(t.as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
            String::from_utf8_lossy(&o.stdout).to_string()
        });
    let token = token.expect("a token");
    let h = format!("Authorization: Bearer {token}");
    assert_eq!(curl(&a, "/pods", &["-H", &h]), 403);
    let _ = c.kubectl(&["delete", "clusterrolebinding,clusterrole", &user]);
    let _ = node;
}

/// Open descriptors of process `pid`.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Threads of process `pid`.
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Processes whose command line contains `needle`.
fn procs(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

fn settle(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_client_that_goes_away_leaves_nothing_behind() {
    let (a, ns) = node_with_web();
    // Warm up (the first request makes the API client's connections).
    ok(&ns, &["exec", "web", "--", "true"]);
    let base = fds(a.pid());
    let base_threads = threads(a.pid());

    // exec: kubectl killed while the command runs.
    let marker = format!("sleep 1{}", std::process::id() % 1000 + 1000);
    let secs = marker.trim_start_matches("sleep ").to_string();
    let mut ex = spawn(&ns, &["exec", "web", "--", "sleep", &secs]);
    settle("the exec to start", || !procs(&marker).is_empty());
    ex.0.kill().unwrap();
    let _ = ex.0.wait();
    settle("the exec'd process to be killed", || {
        procs(&marker).is_empty()
    });

    // port-forward: kubectl killed with a connection open.
    let port = 20000 + (std::process::id() % 20000) as u16 + 7;
    let spec = format!("{port}:8080");
    let mut pf = spawn(&ns, &["port-forward", "pod/web", &spec]);
    let mut out = BufReader::new(pf.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let o = cluster().exec(&[
        "curl",
        "-s",
        "-m",
        "10",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "served-from-the-pod\n");
    pf.0.kill().unwrap();
    let _ = pf.0.wait();

    settle(
        "the agent's descriptors to return to where they were",
        || fds(a.pid()) <= base,
    );
    // Threads a blocking task used idle out after 10 s.
    settle("the agent's threads to return to where they were", || {
        threads(a.pid()) <= base_threads
    });
    assert!(procs(&format!("exec --pid-file {}", a.path("state").display())).is_empty());
}

/// A counter of the container's cgroup, as the kernel keeps it: CPU time
/// (ns) and memory in use (bytes).
fn cgroup_counters(pod_uid: &str, id: &str) -> (u64, u64) {
    let rel = format!("skiff-agent/pod{pod_uid}/{id}");
    let read = |p: String| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {p}: {e}"))
            .trim()
            .to_string()
    };
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        let stat = read(format!("/sys/fs/cgroup/{rel}/cpu.stat"));
        let usec: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        let mem = read(format!("/sys/fs/cgroup/{rel}/memory.current"));
        (usec * 1000, mem.parse().unwrap())
    } else {
        let cpu = read(format!("/sys/fs/cgroup/cpuacct/{rel}/cpuacct.usage"));
        let mem = read(format!("/sys/fs/cgroup/memory/{rel}/memory.usage_in_bytes"));
        (cpu.parse().unwrap(), mem.parse().unwrap())
    }
}

#[test]
fn stats_summary_has_what_metrics_server_reads_from_the_cgroups() {
    // Some CPU time, then idle: the counters stand still while we compare.
    let (a, ns) = node_with_pod(
        "idle",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 100000",
    );
    let node = a.node_name();
    let p = cluster()
        .get_json(&["pod", "idle", "-n", &ns.name])
        .expect("pod");
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let id = p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("skiff://")
        .to_string();
    std::thread::sleep(Duration::from_secs(1));
    let raw = format!("/api/v1/nodes/{node}/proxy/stats/summary");
    let (cpu0, mem0) = cgroup_counters(&uid, &id);
    let s: serde_json::Value =
        serde_json::from_str(&cluster().kubectl_ok(&["get", "--raw", &raw])).unwrap();
    let (cpu1, mem1) = cgroup_counters(&uid, &id);
    // What metrics-server reads.
    let n = &s["node"];
    assert_eq!(n["nodeName"], node.as_str());
    assert!(
        n["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{n}"
    );
    assert!(n["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{n}");
    assert!(n["cpu"]["time"].is_string() && n["startTime"].is_string());
    assert!(n["fs"]["capacityBytes"].as_u64().unwrap() > 0);
    let pod = s["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["uid"] == uid.as_str())
        .unwrap_or_else(|| panic!("no pod {uid} in {s}"));
    assert_eq!(pod["podRef"]["name"], "idle");
    assert_eq!(pod["podRef"]["namespace"], ns.name.as_str());
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "c");
    let cpu = c["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap();
    assert!(
        cpu0 <= cpu && cpu <= cpu1 && cpu > 0,
        "{cpu0} <= {cpu} <= {cpu1}"
    );
    let mem = c["memory"]["usageBytes"].as_u64().unwrap();
    let lo = mem0.min(mem1).saturating_sub(64 << 10);
    let hi = mem0.max(mem1) + (64 << 10);
    assert!(
        lo <= mem && mem <= hi,
        "memory {mem} vs the cgroup's {mem0}..{mem1}"
    );
    assert!(c["memory"]["workingSetBytes"].as_u64().unwrap() <= mem);
    assert!(c["startTime"].is_string() && c["memory"]["time"].is_string());
    // The pod's cgroup holds the container's: at least as much.
    assert!(pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() >= cpu);
    assert!(pod["network"]["name"] == "eth0", "{pod}");
    assert!(pod["process_stats"]["process_count"].as_u64().unwrap() >= 1);
    // /pods and /runningpods list it too, through the API server's proxy.
    for (path, item) in [("pods", "items"), ("runningpods/", "items")] {
        let raw = format!("/api/v1/nodes/{node}/proxy/{path}");
        let l: serde_json::Value =
            serde_json::from_str(&cluster().kubectl_ok(&["get", "--raw", &raw])).unwrap();
        assert_eq!(l["kind"], "PodList");
        let p = l[item]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["uid"] == uid.as_str())
            .unwrap_or_else(|| panic!("{path}: no pod {uid} in {l}"));
        assert_eq!(p["metadata"]["name"], "idle");
        assert_eq!(p["spec"]["containers"][0]["name"], "c");
    }
    // A second reading has a rate.
    let s2: serde_json::Value =
        serde_json::from_str(&cluster().kubectl_ok(&["get", "--raw", &raw])).unwrap();
    assert!(
        s2["node"]["cpu"]["usageNanoCores"].is_u64(),
        "{}",
        s2["node"]
    );
    // The same numbers as Prometheus metrics.
    let m = cluster().kubectl_ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/metrics/resource"),
    ]);
    let line = format!(
        "container_cpu_usage_seconds_total{{container=\"c\",namespace=\"{}\",pod=\"idle\"}} ",
        ns.name
    );
    let secs: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {line} in\n{m}"));
    assert!(
        (secs * 1e9 - cpu as f64).abs() < 1e7,
        "{secs} s vs {cpu} ns"
    );
    assert!(m.contains("\nnode_memory_working_set_bytes "), "{m}");
}

/// A WebSocket to the API server (as cluster admin), from a thread in the
/// control plane's network namespace; `f` runs there with it.
fn with_websocket<R: Send + 'static>(
    path: &str,
    protocol: &str,
    f: impl FnOnce(
            Result<
                tungstenite::WebSocket<
                    rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
                >,
                tungstenite::Error,
            >,
        ) -> R
        + Send
        + 'static,
) -> R {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let c = cluster();
    let ca = c.env("CA_CERT");
    let (crt, key) = (
        ca.replace("ca.crt", "admin.crt"),
        ca.replace("ca.crt", "admin.key"),
    );
    let netns = c.env("NETNS_PATH");
    let api = c.apiserver();
    let host = api.trim_start_matches("https://").to_string();
    let (path, protocol) = (path.to_string(), protocol.to_string());
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let chain: Vec<_> = CertificateDer::pem_file_iter(&crt)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        let ip = host.split(':').next().unwrap().to_string();
        let name = ServerName::try_from(ip).unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let tcp = std::net::TcpStream::connect(&host).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let tls = rustls::StreamOwned::new(conn, tcp);
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
            "wss://{host}{path}"
        ))
        .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        let ws = tungstenite::client(req, tls)
            .map(|(ws, _)| ws)
            .map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
            });
        f(ws)
    })
    .join()
    .unwrap()
}

/// Every message until the server closes: (channel, data), base64
/// decoded for the base64 protocols.
fn channels<S: std::io::Read + std::io::Write>(
    ws: &mut tungstenite::WebSocket<S>,
    until: impl Fn(&[(u8, Vec<u8>)]) -> bool,
) -> Vec<(u8, Vec<u8>)> {
    use base64::Engine;
    let mut out = Vec::new();
    while !until(&out) {
        match ws.read() {
            Ok(tungstenite::Message::Binary(b)) if !b.is_empty() => {
                out.push((b[0], b[1..].to_vec()))
            }
            Ok(tungstenite::Message::Text(t)) if !t.is_empty() => {
                let t = t.as_str().as_bytes();
                let d = base64::engine::general_purpose::STANDARD
                    .decode(&t[1..])
                    .unwrap();
                out.push((t[0] - b'0', d))
            }
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    out
}

fn joined(msgs: &[(u8, Vec<u8>)], ch: u8) -> String {
    let v: Vec<u8> = msgs
        .iter()
        .filter(|(c, _)| *c == ch)
        .flat_map(|(_, d)| d.clone())
        .collect();
    String::from_utf8_lossy(&v).into_owned()
}

#[test]
fn websocket_exec_and_port_forward() {
    let (_node, ns) = node_with_web();
    let exec = format!(
        "/api/v1/namespaces/{}/pods/web/exec?command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+exit+3&stdout=true&stderr=true",
        ns.name
    );
    for protocol in ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"] {
        let msgs = with_websocket(&exec, protocol, |ws| {
            let mut ws = ws.expect("websocket handshake");
            channels(&mut ws, |_| false)
        });
        assert_eq!(joined(&msgs, 1), "out\n", "{protocol}: {msgs:?}");
        assert_eq!(joined(&msgs, 2), "err\n", "{protocol}");
        let st: serde_json::Value = serde_json::from_str(&joined(&msgs, 3)).unwrap();
        assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
        assert_eq!(st["details"]["causes"][0]["message"], "3");
    }
    // The old protocol: text on the error channel, only on failure.
    let msgs = with_websocket(&exec, "channel.k8s.io", |ws| {
        channels(&mut ws.expect("handshake"), |_| false)
    });
    assert!(joined(&msgs, 3).contains("exited with 3"), "{msgs:?}");
    // A protocol nobody speaks: refused, so that a client may fall back.
    let refused = with_websocket(&exec, "v99.channel.k8s.io", |ws| match ws {
        Err(tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
        Ok(_) => 101,
    });
    assert_eq!(refused, 403);

    // Port-forward: channel 0 carries port 8080's bytes, 1 its errors;
    // each starts with the port.
    let pf = format!(
        "/api/v1/namespaces/{}/pods/web/portforward?ports=8080",
        ns.name
    );
    let msgs = with_websocket(&pf, "v4.channel.k8s.io", |ws| {
        let mut ws = ws.expect("handshake");
        let first = channels(&mut ws, |m| m.len() >= 2);
        let mut req = vec![0u8];
        req.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        ws.send(tungstenite::Message::Binary(req.into())).unwrap();
        let rest = channels(&mut ws, |m| joined(m, 0).contains("served-from-the-pod"));
        let _ = ws.close(None);
        [first, rest].concat()
    });
    assert_eq!(msgs[0], (0, 8080u16.to_le_bytes().to_vec()));
    assert_eq!(msgs[1], (1, 8080u16.to_le_bytes().to_vec()));
    let body = joined(&msgs[2..], 0);
    assert!(
        body.starts_with("HTTP/1.") && body.contains("served-from-the-pod"),
        "{body}"
    );
}
