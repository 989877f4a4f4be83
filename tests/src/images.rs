//! Shared helpers for the image tests: a private store driven through
//! `skiff-agent image`, busybox images built with umoci, OCI layouts written
//! blob by blob, and a real `docker-registry` on a free loopback port.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::*;

/// A private image store and the agent's command line around it.
pub struct Agent {
    pub data: tempfile::TempDir,
}

impl Default for Agent {
    fn default() -> Self {
        Agent::new()
    }
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            data: tempfile::Builder::new()
                .prefix("skiff-store-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn call(&self, args: &[&str]) -> Output {
        let mut c = Command::new(agent_bin());
        c.arg("image")
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args);
        output(c)
    }

    pub fn store(&self) -> &Path {
        self.data.path()
    }

    pub fn tmp_is_empty(&self) -> bool {
        std::fs::read_dir(self.store().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    }

    /// Bundle `image` into a fresh dir, run it with skiff, unbundle, and
    /// return skiff's output.
    pub fn run(&self, image: &str, extra: &[&str]) -> Output {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let mut args = vec!["bundle", image, bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.call(&args).ok();
        let out = Runtime::skiff().run_bundle_dir(&bundle, &unique_id());
        self.call(&["unbundle", bundle.to_str().unwrap()]).ok();
        assert!(!bundle.exists());
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mi.contains(bundle.to_str().unwrap()),
            "bundle still mounted"
        );
        out
    }
}

pub trait RunDir {
    fn run_bundle_dir(&self, dir: &Path, id: &str) -> Output;
}

impl RunDir for Runtime {
    fn run_bundle_dir(&self, dir: &Path, id: &str) -> Output {
        self.call(&["run", "--bundle", dir.to_str().unwrap(), id])
    }
}

pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCI layout with a busybox image tagged `latest`, built with umoci:
/// `/bin/busybox` and a few applets, /etc/passwd with `app` (1000), and
/// `cmd` as its Cmd, `env` in its Env.
pub fn busybox_layout(cmd: &[&str], env: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("skiff-oci-")
        .tempdir()
        .unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:latest", layout.display());
    let unpacked = dir.path().join("unpacked");
    sh(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    sh(Command::new("umoci").args(["new", "--image", &image]));
    sh(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&unpacked));
    let rootfs = unpacked.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("data/old")).unwrap();
    std::fs::write(rootfs.join("data/old/file"), "old").unwrap();
    std::fs::write(rootfs.join("data/gone"), "gone").unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for a in [
        "sh", "echo", "id", "cat", "ls", "find", "sort", "test", "true", "sleep", "head", "tail",
        "tty", "readlink",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:77:app\n",
    )
    .unwrap();
    sh(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&unpacked));
    let mut c = Command::new("umoci");
    c.args(["config", "--image", &image]);
    for a in cmd {
        c.args(["--config.cmd", a]);
    }
    for e in env {
        c.args(["--config.env", e]);
    }
    sh(&mut c);
    std::fs::remove_dir_all(&unpacked).unwrap();
    dir
}

pub fn layout_ref(dir: &tempfile::TempDir) -> String {
    format!("oci:{}:latest", dir.path().join("layout").display())
}

/// Writes OCI layouts blob by blob, for exact control of formats.
pub struct Layout {
    pub root: PathBuf,
    index: Vec<serde_json::Value>,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            root: root.to_path_buf(),
            index: vec![],
        }
    }

    pub fn blob(&self, data: &[u8]) -> String {
        let hex = sh(Command::new("sha256sum").arg("-").stdin_bytes(data));
        let hex = hex.split_whitespace().next().unwrap().to_string();
        std::fs::write(self.root.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    }

    /// A manifest with one layer per (tar bytes, media type, stored bytes).
    pub fn manifest(
        &self,
        arch: &str,
        layers: &[(Vec<u8>, &str, Vec<u8>)],
        cmd: &[&str],
    ) -> serde_json::Value {
        let mut diff_ids = vec![];
        let mut descs = vec![];
        for (tar, mt, stored) in layers {
            diff_ids.push(digest_of(tar));
            descs.push(json!({"mediaType": mt, "digest": self.blob(stored), "size": stored.len()}));
        }
        let config = json!({"architecture": arch, "os": "linux",
                            "config": {"Cmd": cmd},
                            "rootfs": {"type": "layers", "diff_ids": diff_ids}})
        .to_string();
        let m =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": self.blob(config.as_bytes()), "size": config.len()},
                       "layers": descs})
            .to_string();
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": self.blob(m.as_bytes()), "size": m.len(),
               "platform": {"architecture": arch, "os": "linux"}})
    }

    pub fn tag(&mut self, tag: &str, mut desc: serde_json::Value) {
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.index.push(desc);
        std::fs::write(
            self.root.join("index.json"),
            json!({"schemaVersion": 2, "manifests": self.index}).to_string(),
        )
        .unwrap();
    }

    pub fn multi_platform(&self, manifests: Vec<serde_json::Value>) -> serde_json::Value {
        let idx =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": manifests})
            .to_string();
        json!({"mediaType": "application/vnd.oci.image.index.v1+json",
               "digest": self.blob(idx.as_bytes()), "size": idx.len()})
    }
}

pub trait StdinBytes {
    fn stdin_bytes(&mut self, data: &[u8]) -> &mut Self;
}
impl StdinBytes for Command {
    fn stdin_bytes(&mut self, data: &[u8]) -> &mut Self {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), data).unwrap();
        self.stdin(std::fs::File::open(f.path()).unwrap())
    }
}

pub fn digest_of(data: &[u8]) -> String {
    let hex = sh(Command::new("sha256sum").arg("-").stdin_bytes(data));
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

/// The busybox binary plus `files`, as an uncompressed tar.
pub fn busybox_tar(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name("/bin/busybox", "bin/busybox")
        .unwrap();
    for a in ["sh", "cat", "echo"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    for (p, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, p, data.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub trait TakeBytes {
    fn take_bytes(self, n: u64) -> std::io::Take<std::io::Repeat>;
}
impl TakeBytes for std::io::Repeat {
    fn take_bytes(self, n: u64) -> std::io::Take<std::io::Repeat> {
        std::io::Read::take(self, n)
    }
}

/// How a [`TestRegistry`] is set up.
#[derive(Default)]
pub struct RegistrySetup {
    /// Basic auth with this user and password (an htpasswd file, bcrypt).
    pub basic_auth: Option<(String, String)>,
    /// Serve HTTPS with a certificate from a fresh self-signed CA.
    pub tls: bool,
    /// Extra YAML appended to the config (e.g. [`TokenServer::registry_auth`]).
    pub extra: String,
    /// Run in this named network namespace (`/run/netns/NAME`) instead of
    /// the host's, for clients that live there (the agent's tests).
    pub netns: Option<String>,
}

/// A real Debian `docker-registry` on a free port of 127.0.0.1, with its
/// config, storage and log in a temporary directory; stopped (by PID) on drop.
pub struct TestRegistry {
    child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    netns: Option<String>,
}

/// `prog`, run in `netns` when given (nsenter execs it: same PID).
fn in_netns(netns: &Option<String>, prog: &str) -> Command {
    match netns {
        Some(n) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{n}")).arg(prog);
            c
        }
        None => Command::new(prog),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestRegistry {
    pub fn start(setup: RegistrySetup) -> TestRegistry {
        let dir = tempfile::Builder::new()
            .prefix("skiff-registry-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            d.join("data").display()
        );
        if setup.tls {
            make_tls(d);
            cfg += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("tls/server.crt").display(),
                d.join("tls/server.key").display()
            );
        }
        if let Some((user, pass)) = &setup.basic_auth {
            let line = sh(Command::new("htpasswd").args(["-Bbn", user, pass]));
            std::fs::write(d.join("htpasswd"), line.trim()).unwrap();
            cfg += &format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                d.join("htpasswd").display()
            );
        }
        cfg += &setup.extra;
        std::fs::write(d.join("config.yml"), cfg).unwrap();
        let log = std::fs::File::create(d.join("log")).unwrap();
        let child = in_netns(&setup.netns, "docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let reg = TestRegistry {
            child,
            port,
            dir,
            netns: setup.netns,
        };
        poll(
            std::time::Duration::from_secs(20),
            "docker-registry to listen",
            || {
                let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
                in_netns(&reg.netns, "bash")
                    .args(["-c", &probe])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .ok()
                    .filter(|s| s.success())
                    .map(drop)
            },
        );
        reg
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate of a TLS registry.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    /// `skopeo copy` `src` (e.g. `oci:DIR:TAG`) to `repo:tag` here.
    pub fn push(&self, src: &str, dest: &str, extra: &[&str]) {
        let mut c = in_netns(&self.netns, "skopeo");
        c.args(["copy", "-q", "--dest-tls-verify=false"])
            .args(extra);
        c.arg(src).arg(format!("docker://{}/{dest}", self.host()));
        sh(&mut c);
    }

    /// Where the registry keeps blob `hex`.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, with openssl.
fn make_tls(d: &Path) {
    let t = d.join("tls");
    std::fs::create_dir_all(&t).unwrap();
    let p = |n: &str| t.join(n).to_str().unwrap().to_string();
    sh(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=skiff test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
    ]));
    sh(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]));
    std::fs::write(
        t.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(Command::new("openssl").args([
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("server.crt"),
    ]));
}

/// A token server for a registry's `auth: token` mode: answers
/// `GET /token?service=..&scope=..` (with Basic credentials `user:pass`)
/// with a JWT signed RS256 by a key whose certificate the registry trusts
/// (`rootcertbundle`), carried in the token's `x5c` header, as the
/// distribution token spec describes. Runs on a thread until dropped.
pub struct TokenServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Token requests seen: (scope, whether credentials were right).
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
}

pub const TOKEN_ISSUER: &str = "skiff-test-issuer";
pub const TOKEN_SERVICE: &str = "skiff-test-registry";

impl TokenServer {
    pub fn start(user: &str, pass: &str) -> TokenServer {
        use base64::Engine;
        let dir = tempfile::Builder::new()
            .prefix("skiff-token-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("token.key");
        let crt = dir.path().join("token.crt");
        sh(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=skiff token signer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt));
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&crt)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let (stop2, seen2, user) = (stop.clone(), seen.clone(), user.to_string());
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let req = read_request(&mut conn);
                let authorised = req.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == want
                });
                let scope = query_param(&req, "scope").unwrap_or_default();
                seen2.lock().unwrap().push((scope.clone(), authorised));
                let response = if authorised {
                    let jwt = sign_jwt(&key, &x5c, &user, &scope);
                    let body =
                        format!(r#"{{"token":"{jwt}","access_token":"{jwt}","expires_in":300}}"#);
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = std::io::Write::write_all(&mut conn, response.as_bytes());
            }
        });
        TokenServer {
            port,
            dir,
            stop,
            thread: Some(thread),
            seen,
        }
    }

    /// The registry config stanza trusting this server.
    pub fn registry_auth(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            self.dir.path().join("token.crt").display()
        )
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(conn: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn query_param(req: &str, name: &str) -> Option<String> {
    let target = req.lines().next()?.split_whitespace().nth(1)?;
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?');
                out.push(h);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JWT granting every action `scope` asks for, signed with openssl.
fn sign_jwt(key: &Path, x5c: &str, sub: &str, scope: &str) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut access = vec![];
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        // repository:NAME:ACTIONS (NAME may hold ':' only with a port; not here)
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        if let [typ, name, actions] = parts.as_slice() {
            access.push(json!({"type": typ, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}));
        }
    }
    let header = json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = json!({"iss": TOKEN_ISSUER, "sub": sub, "aud": TOKEN_SERVICE,
                        "exp": now + 300, "nbf": now - 10, "iat": now,
                        "jti": format!("{now}-{}", std::process::id()), "access": access});
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), signing_input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let sig = child.wait_with_output().unwrap().stdout;
    format!("{signing_input}.{}", b64(&sig))
}

/// A server that answers every request with `307 Temporary Redirect` to the
/// same path on `target` (as registries do to send blob downloads to
/// storage). Runs on a thread until dropped; counts redirects.
pub struct Redirector {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub redirects: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Redirector {
    pub fn start(target: &str) -> Redirector {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let redirects = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, count, target) = (stop.clone(), redirects.clone(), target.to_string());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                let req = read_request(&mut conn);
                let path = req
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .unwrap_or("/");
                count.fetch_add(1, Ordering::Relaxed);
                let resp = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = std::io::Write::write_all(&mut conn, resp.as_bytes());
            }
        });
        Redirector {
            port,
            stop,
            thread: Some(thread),
            redirects,
        }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
