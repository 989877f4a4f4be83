//! `skiff-agent image pull` against a real registry (Debian's
//! `docker-registry` on a free loopback port), with images built offline
//! and pushed with skopeo: formats, platforms, basic auth, TLS through a
//! hosts directory, corrupt blobs, interrupted and concurrent pulls.

use std::process::Command;

use skiff_tests::images::*;
use skiff_tests::*;

fn pull(agent: &Agent, args: &[&str]) -> Output {
    let mut a = vec!["pull", "--quiet"];
    a.extend_from_slice(args);
    agent.call(&a)
}

#[test]
fn pull_and_run_oci_schema2_and_zstd_images() {
    let reg = TestRegistry::start(RegistrySetup::default());
    let img = busybox_layout(&["sh", "-c", "echo pulled $FLAVOUR"], &["FLAVOUR=fresh"]);
    reg.push(&layout_ref(&img), "test/oci:v1", &[]);
    reg.push(&layout_ref(&img), "test/schema2:v1", &["--format", "v2s2"]);
    reg.push(
        &layout_ref(&img),
        "test/zstd:v1",
        &["--dest-compress-format", "zstd"],
    );
    let agent = Agent::new();
    for repo in ["oci", "schema2", "zstd"] {
        let r = format!("{}/test/{repo}:v1", reg.host());
        let out = pull(&agent, &[&r]).ok();
        assert!(out.stdout.starts_with(&format!("{r} sha256:")), "{out}");
        assert_eq!(agent.run(&r, &[]).ok().stdout, "pulled fresh\n", "{repo}");
    }
    // Three images, one unpacked layer: whatever the compression or
    // manifest format, the uncompressed tar (diff_id), hence the chain id,
    // is the same, and the layer directory is shared.
    let names = agent.call(&["ls", "-q"]).ok().stdout;
    assert_eq!(names.lines().count(), 3, "{names}");
    assert_eq!(
        std::fs::read_dir(agent.store().join("layers"))
            .unwrap()
            .count(),
        1
    );
    // By digest, and a tag that does not exist.
    let digest = pull(&agent, &[&format!("{}/test/oci:v1", reg.host())])
        .ok()
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    pull(&agent, &[&format!("{}/test/oci@{digest}", reg.host())]).ok();
    let err = pull(&agent, &[&format!("{}/test/oci:nope", reg.host())]).fail();
    assert!(err.stderr.contains("not found"), "{err}");
    // (That the OCI manifest was served at all shows the pull listed the OCI
    // types in Accept: docker-registry answers 404 otherwise.)
    assert!(agent.tmp_is_empty());
}

#[test]
fn pull_picks_the_platform_from_an_index() {
    let reg = TestRegistry::start(RegistrySetup::default());
    let dir = tempfile::tempdir().unwrap();
    let mut l = Layout::new(dir.path());
    let mt = "application/vnd.oci.image.layer.v1.tar+gzip";
    let amd = busybox_tar(&[("which", "amd64\n")]);
    let arm = busybox_tar(&[("which", "arm64\n")]);
    let m_amd = l.manifest(
        "amd64",
        &[(amd.clone(), mt, gzip(&amd))],
        &["cat", "/which"],
    );
    let m_arm = l.manifest(
        "arm64",
        &[(arm.clone(), mt, gzip(&arm))],
        &["cat", "/which"],
    );
    let idx = l.multi_platform(vec![m_arm, m_amd]);
    l.tag("multi", idx);
    reg.push(
        &format!("oci:{}:multi", dir.path().display()),
        "test/multi:v1",
        &["--all"],
    );
    let r = format!("{}/test/multi:v1", reg.host());
    let agent = Agent::new();
    pull(&agent, &[&r]).ok();
    assert_eq!(agent.run(&r, &[]).ok().stdout, "amd64\n");
    let other = Agent::new();
    pull(&other, &[&r, "--platform", "linux/arm64"]).ok();
    assert_eq!(other.run(&r, &[]).ok().stdout, "arm64\n");
}

#[test]
fn basic_auth_creds_and_wrong_password() {
    let reg = TestRegistry::start(RegistrySetup {
        basic_auth: Some(("alice".into(), "s3cret".into())),
        ..Default::default()
    });
    let img = busybox_layout(&["echo", "authorised"], &[]);
    reg.push(
        &layout_ref(&img),
        "test/private:v1",
        &["--dest-creds", "alice:s3cret"],
    );
    let r = format!("{}/test/private:v1", reg.host());
    let agent = Agent::new();
    let err = pull(&agent, &[&r]).fail();
    assert!(
        err.stderr.contains("wants a username and password"),
        "{err}"
    );
    let err = pull(&agent, &[&r, "--creds", "alice:wrong"]).fail();
    assert!(err.stderr.contains("authentication failed"), "{err}");
    assert_eq!(
        std::fs::read_dir(agent.store().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(agent.call(&["ls", "-q"]).ok().stdout, "");
    pull(&agent, &[&r, "--creds", "alice:s3cret"]).ok();
    assert_eq!(agent.run(&r, &[]).ok().stdout, "authorised\n");

    // Credentials from a Docker config.json ($DOCKER_CONFIG).
    let cfg = tempfile::tempdir().unwrap();
    std::fs::write(
        cfg.path().join("config.json"),
        json!({"auths": {reg.host(): {"auth": "YWxpY2U6czNjcmV0"}}}).to_string(),
    )
    .unwrap();
    let other = Agent::new();
    let mut c = Command::new(agent_bin());
    c.env("DOCKER_CONFIG", cfg.path());
    c.args(["image", "--data-dir"])
        .arg(other.store())
        .args(["pull", "-q", &r]);
    output(c).ok();
}

#[test]
fn tls_with_a_ca_from_the_hosts_directory() {
    let reg = TestRegistry::start(RegistrySetup {
        tls: true,
        ..Default::default()
    });
    let img = busybox_layout(&["echo", "over tls"], &[]);
    reg.push(&layout_ref(&img), "test/tls:v1", &[]);
    // A loopback registry is spoken to over plain HTTP unless the hosts
    // directory has an entry for it: then HTTPS, trusting its CA files.
    let r = format!("{}/test/tls:v1", reg.host());
    let hosts = tempfile::tempdir().unwrap();
    let h = hosts.path().to_str().unwrap();
    let agent = Agent::new();
    pull(&agent, &[&r, "--hosts-dir", h]).fail();
    std::fs::create_dir(hosts.path().join(reg.host())).unwrap();
    let err = pull(&agent, &[&r, "--hosts-dir", h]).fail();
    assert!(err.stderr.to_lowercase().contains("certificate"), "{err}");
    std::fs::copy(reg.ca(), hosts.path().join(reg.host()).join("ca.crt")).unwrap();
    pull(&agent, &[&r, "--hosts-dir", h]).ok();
    assert_eq!(agent.run(&r, &[]).ok().stdout, "over tls\n");
}

/// A blob whose bytes in the registry's storage no longer match its digest
/// is refused, and nothing of it stays in the store.
#[test]
fn corrupt_blob_is_refused() {
    let reg = TestRegistry::start(RegistrySetup::default());
    let img = busybox_layout(&["true"], &[]);
    reg.push(&layout_ref(&img), "test/corrupt:v1", &[]);
    let r = format!("{}/test/corrupt:v1", reg.host());
    let agent = Agent::new();
    let inspect_src = Agent::new();
    pull(&inspect_src, &[&r]).ok();
    let layer = inspect_src.call(&["inspect", &r]).ok().json()["record"]["layers"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let path = reg.blob_path(&layer);
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len() / 2;
    data[n] ^= 0xff;
    std::fs::write(&path, data).unwrap();
    let err = pull(&agent, &[&r]).fail();
    assert!(err.stderr.contains("refusing it"), "{err}");
    assert!(!agent.store().join("blobs/sha256").join(&layer).exists());
    assert!(!agent.store().join("partial").join(&layer).exists());
    assert_eq!(agent.call(&["ls", "-q"]).ok().stdout, "");
}

/// A pull killed with SIGKILL at some point leaves the store consistent: a
/// second pull succeeds and `ls` shows the image once. A partial download
/// found on disk is continued with a Range request.
#[test]
fn interrupted_pulls_resume() {
    let reg = TestRegistry::start(RegistrySetup::default());
    let img = busybox_layout(&["echo", "survived"], &[]);
    // A 24 MiB incompressible layer, so the pull takes a while.
    let big = img.path().join("big.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut noise = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in noise.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(noise.len() as u64);
    b.append_data(&mut h, "noise", &noise[..]).unwrap();
    std::fs::write(&big, b.into_inner().unwrap()).unwrap();
    let image = format!("{}:latest", img.path().join("layout").display());
    sh(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&big));
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "echo",
        "--config.cmd",
        "survived",
    ]));
    reg.push(&layout_ref(&img), "test/big:v1", &[]);
    let r = format!("{}/test/big:v1", reg.host());

    for delay_ms in [5u64, 40, 150] {
        let agent = Agent::new();
        let mut c = Command::new(agent_bin());
        c.args(["image", "--data-dir"]).arg(agent.store()).args([
            "pull",
            "-q",
            "--parallel",
            "1",
            &r,
        ]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        pull(&agent, &[&r]).ok();
        assert_eq!(agent.call(&["ls", "-q"]).ok().stdout, format!("{r}\n"));
        assert_eq!(agent.run(&r, &[]).ok().stdout, "survived\n");
        assert!(agent.tmp_is_empty());
    }

    // Resume: half of the big layer already in partial/.
    let src = Agent::new();
    pull(&src, &[&r]).ok();
    let layers = src.call(&["inspect", &r]).ok().json()["record"]["layers"].clone();
    let big_layer = layers
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .max_by_key(|h| {
            std::fs::metadata(src.store().join("blobs/sha256").join(h))
                .unwrap()
                .len()
        })
        .unwrap();
    let full = std::fs::read(src.store().join("blobs/sha256").join(&big_layer)).unwrap();
    let agent = Agent::new();
    std::fs::create_dir_all(agent.store().join("partial")).unwrap();
    std::fs::write(
        agent.store().join("partial").join(&big_layer),
        &full[..full.len() / 2],
    )
    .unwrap();
    pull(&agent, &[&r]).ok();
    assert_eq!(
        std::fs::read(agent.store().join("blobs/sha256").join(&big_layer)).unwrap(),
        full
    );
    let log = reg.log();
    let resumed = log
        .lines()
        .any(|l| l.contains(&big_layer) && l.contains(" 206 "));
    assert!(
        resumed,
        "no 206 Partial Content for the layer in the registry log"
    );
}

/// Two pulls of the same image into one store at once both succeed, and
/// each blob is stored once.
#[test]
fn concurrent_pulls_cooperate() {
    let reg = TestRegistry::start(RegistrySetup::default());
    let img = busybox_layout(&["echo", "together"], &[]);
    reg.push(&layout_ref(&img), "test/both:v1", &[]);
    let r = format!("{}/test/both:v1", reg.host());
    let agent = Agent::new();
    let spawn = || {
        let mut c = Command::new(agent_bin());
        c.args(["image", "--data-dir"])
            .arg(agent.store())
            .args(["pull", "-q", &r]);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(agent.call(&["ls", "-q"]).ok().stdout, format!("{r}\n"));
    // manifest + config + one layer
    assert_eq!(
        std::fs::read_dir(agent.store().join("blobs/sha256"))
            .unwrap()
            .count(),
        3
    );
    assert_eq!(agent.run(&r, &[]).ok().stdout, "together\n");
}

/// The bearer-token flow: the registry answers 401 with a `Bearer realm=…,
/// service=…,scope=…` challenge, the client asks the token server (with the
/// credentials) for a token for `repository:test/tok:pull`, and the
/// registry verifies the token's signature against the certificate it
/// trusts. Wrong credentials: the token server refuses, nothing is stored.
#[test]
fn bearer_token_registry() {
    let tokens = TokenServer::start("bob", "hunter2");
    let reg = TestRegistry::start(RegistrySetup {
        extra: tokens.registry_auth(),
        ..Default::default()
    });
    let img = busybox_layout(&["echo", "token ok"], &[]);
    reg.push(
        &layout_ref(&img),
        "test/tok:v1",
        &["--dest-creds", "bob:hunter2"],
    );
    let r = format!("{}/test/tok:v1", reg.host());
    let agent = Agent::new();
    let err = pull(&agent, &[&r, "--creds", "bob:wrong"]).fail();
    assert!(err.stderr.contains("refused the credentials"), "{err}");
    assert_eq!(
        std::fs::read_dir(agent.store().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    pull(&agent, &[&r, "--creds", "bob:hunter2"]).ok();
    assert_eq!(agent.run(&r, &[]).ok().stdout, "token ok\n");
    let seen = tokens.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(scope, ok)| scope == "repository:test/tok:pull" && *ok),
        "{seen:?}"
    );
}

/// Registries send blob downloads elsewhere with a redirect (to object
/// storage, a CDN): here every request to a redirector comes back as a 307
/// to the real registry, and the pull follows them.
#[test]
fn redirects_are_followed() {
    let reg = TestRegistry::start(RegistrySetup::default());
    let img = busybox_layout(&["echo", "redirected"], &[]);
    reg.push(&layout_ref(&img), "test/redir:v1", &[]);
    let redirector = Redirector::start(&reg.host());
    let r = format!("127.0.0.1:{}/test/redir:v1", redirector.port);
    let agent = Agent::new();
    pull(&agent, &[&r]).ok();
    assert_eq!(agent.run(&r, &[]).ok().stdout, "redirected\n");
    // manifest, config and layer each came through a redirect
    assert!(
        redirector
            .redirects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}
