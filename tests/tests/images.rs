//! `skiff-agent image ...` end to end: images built offline from Debian's
//! busybox-static with umoci and skopeo (or written blob by blob when the
//! test needs exact control), imported into a private store, turned into
//! bundles and run with skiff.

use std::process::Command;

use skiff_tests::images::*;
use skiff_tests::*;

#[test]
fn import_bundle_and_run_an_image() {
    let img = busybox_layout(
        &["sh", "-c", "echo hello from $NAME as $(id -u):$(id -G)"],
        &["NAME=skiff"],
    );
    let agent = Agent::new();
    let out = agent
        .call(&["import", &layout_ref(&img), "--name", "test/hello:v1"])
        .ok();
    assert!(
        out.stdout.starts_with("docker.io/test/hello:v1 sha256:"),
        "{out}"
    );
    // --data-dir is accepted after the subcommand too.
    let mut c = Command::new(agent_bin());
    c.args(["image", "ls", "-q", "--data-dir"])
        .arg(agent.store());
    assert_eq!(output(c).ok().stdout, "docker.io/test/hello:v1\n");
    // Overlay and copy bundles run the same.
    for extra in [&[][..], &["--copy"][..]] {
        let out = agent.run("test/hello:v1", extra).ok();
        assert_eq!(out.stdout, "hello from skiff as 0:0\n", "{extra:?}");
    }
    // The image's user, resolved against its own /etc/passwd and /etc/group,
    // and arguments replacing Cmd.
    let user_img = busybox_layout(&["id"], &[]);
    let layout = user_img.path().join("layout");
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &format!("{}:latest", layout.display()),
        "--config.user",
        "app",
    ]));
    agent
        .call(&["import", &layout_ref(&user_img), "--name", "test/user"])
        .ok();
    let out = agent.run("test/user", &[]).ok();
    assert_eq!(
        out.stdout,
        "uid=1000(app) gid=1000(app) groups=77(extra),1000(app)\n"
    );
    let out = agent.run("test/user", &["--", "echo", "replaced"]).ok();
    assert_eq!(out.stdout, "replaced\n");
    // The default seccomp profile is in the bundle's config.
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b");
    agent
        .call(&["bundle", "test/user", b.to_str().unwrap()])
        .ok();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    agent.call(&["unbundle", b.to_str().unwrap()]).ok();
    assert_eq!(cfg["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(cfg["process"]["user"]["uid"], 1000);
    assert!(agent.tmp_is_empty());
}

/// A second layer that deletes a file and replaces a directory's content
/// (`.wh.gone`, `.wh..wh..opq`), added verbatim with `umoci raw add-layer`:
/// the bundle's rootfs, file by file, is the merged view.
#[test]
fn whiteouts_and_opaque_directories() {
    let img = busybox_layout(&["sh", "-c", "cd /data && find . | sort"], &[]);
    let layer = img.path().join("layer.tar");
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("data/.wh.gone", &b""[..]),
        ("data/old/.wh..wh..opq", &b""[..]),
        ("data/old/new", &b"new"[..]),
        ("data/added", &b"added"[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }
    std::fs::write(&layer, b.into_inner().unwrap()).unwrap();
    let image = format!("{}:latest", img.path().join("layout").display());
    sh(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&layer));
    let agent = Agent::new();
    agent
        .call(&["import", &layout_ref(&img), "--name", "test/wh"])
        .ok();
    for extra in [&[][..], &["--copy"][..]] {
        let out = agent.run("test/wh", extra).ok();
        assert_eq!(out.stdout, ".\n./added\n./old\n./old/new\n", "{extra:?}");
    }
}

/// zstd layers and Docker schema2 manifests, both converted by skopeo.
#[test]
fn zstd_and_docker_schema2_images() {
    let img = busybox_layout(&["echo", "converted"], &[]);
    let agent = Agent::new();
    for (name, args) in [
        ("zstd", &["--dest-compress-format", "zstd"][..]),
        ("schema2", &["--format", "v2s2"][..]),
    ] {
        let dest = img.path().join(name);
        let mut c = Command::new("skopeo");
        c.args(["copy", "-q"]).args(args);
        c.arg(layout_ref(&img))
            .arg(format!("oci:{}:latest", dest.display()));
        sh(&mut c);
        let imported = agent
            .call(&[
                "import",
                &format!("oci:{}:latest", dest.display()),
                "--name",
                &format!("test/{name}"),
            ])
            .ok();
        let manifest = imported
            .stdout
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        let inspect = agent
            .call(&["inspect", &format!("test/{name}")])
            .ok()
            .json();
        assert_eq!(inspect["record"]["manifest"], manifest.as_str());
        let mt = inspect["manifest"]["layers"][0]["mediaType"]
            .as_str()
            .unwrap()
            .to_string();
        match name {
            "zstd" => assert!(mt.ends_with("+zstd"), "{mt}"),
            _ => assert_eq!(mt, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        }
        assert_eq!(
            agent.run(&format!("test/{name}"), &[]).ok().stdout,
            "converted\n"
        );
    }
}

/// An index with several platforms: the host's is picked by default,
/// `--platform` picks another; a platform the index lacks is a clear error.
/// Layers here are uncompressed (`...layer.v1.tar`).
#[test]
fn multi_platform_index_and_uncompressed_layers() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Layout::new(dir.path());
    let tar_mt = "application/vnd.oci.image.layer.v1.tar";
    let amd = busybox_tar(&[("which", "amd64\n")]);
    let arm = busybox_tar(&[("which", "arm64\n")]);
    let m_amd = l.manifest(
        "amd64",
        &[(amd.clone(), tar_mt, amd.clone())],
        &["cat", "/which"],
    );
    let m_arm = l.manifest(
        "arm64",
        &[(arm.clone(), tar_mt, arm.clone())],
        &["cat", "/which"],
    );
    let idx = l.multi_platform(vec![m_arm, m_amd]);
    l.tag("multi", idx);
    let agent = Agent::new();
    let loc = format!("oci:{}:multi", dir.path().display());
    agent
        .call(&["import", &loc, "--name", "test/multi:host"])
        .ok();
    agent
        .call(&[
            "import",
            &loc,
            "--name",
            "test/multi:arm",
            "--platform",
            "linux/arm64",
        ])
        .ok();
    // The arm64 image's files are plain data here, so both bundles run.
    assert_eq!(agent.run("test/multi:host", &[]).ok().stdout, "amd64\n");
    assert_eq!(agent.run("test/multi:arm", &[]).ok().stdout, "arm64\n");
    let err = agent
        .call(&[
            "import",
            &loc,
            "--name",
            "test/multi:s390",
            "--platform",
            "linux/s390x",
        ])
        .fail();
    assert!(
        err.stderr.contains("no manifest for platform linux/s390x"),
        "{err}"
    );
    assert!(err.stderr.contains("linux/arm64, linux/amd64"), "{err}");
}

/// Export to a layout and to an archive, import both into a fresh store:
/// the same manifest comes back and runs. Two images sharing a base layer:
/// after one is removed, prune takes only what the other does not use.
#[test]
fn export_import_round_trip_and_prune() {
    let img = busybox_layout(&["echo", "round trip"], &[]);
    let agent = Agent::new();
    let first = agent
        .call(&["import", &layout_ref(&img), "--name", "test/rt:v1"])
        .ok();
    let digest = first.stdout.split_whitespace().nth(1).unwrap().to_string();
    let out = tempfile::tempdir().unwrap();
    let dir = format!("oci:{}:v9", out.path().join("exported").display());
    let archive = format!("oci-archive:{}", out.path().join("exported.tar").display());
    agent.call(&["export", "test/rt:v1", &dir]).ok();
    agent.call(&["export", "test/rt:v1", &archive]).ok();
    for (loc, name) in [
        (dir.as_str(), "test/from-dir"),
        (archive.as_str(), "test/from-archive"),
    ] {
        let other = Agent::new();
        let again = other.call(&["import", loc, "--name", name]).ok();
        assert_eq!(
            again.stdout.split_whitespace().nth(1).unwrap(),
            digest,
            "{loc}"
        );
        assert_eq!(other.run(name, &[]).ok().stdout, "round trip\n");
    }

    // A second image on top of the first one's layer.
    let layer = img.path().join("extra.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(6);
    b.append_data(&mut h, "extra", &b"extra\n"[..]).unwrap();
    std::fs::write(&layer, b.into_inner().unwrap()).unwrap();
    let image = format!("{}:latest", img.path().join("layout").display());
    sh(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&layer));
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "cat",
        "--config.cmd",
        "/extra",
    ]));
    agent
        .call(&["import", &layout_ref(&img), "--name", "test/rt:v2"])
        .ok();
    let layers = |a: &Agent| std::fs::read_dir(a.store().join("layers")).unwrap().count();
    assert_eq!(layers(&agent), 2, "the base layer is shared");
    agent.call(&["rm", "test/rt:v2"]).ok();
    let pruned = agent.call(&["prune"]).ok();
    assert_eq!(
        pruned
            .stdout
            .lines()
            .filter(|l| l.starts_with("layer "))
            .count(),
        1,
        "{pruned}"
    );
    assert_eq!(layers(&agent), 1);
    assert_eq!(agent.run("test/rt:v1", &[]).ok().stdout, "round trip\n");
    assert!(agent
        .call(&["bundle", "test/rt:v2", "/nonexistent-skiff-dir"])
        .fail()
        .stderr
        .contains("no image"));
}

/// Hostile layers, written as raw tar files, are refused with an error
/// naming the entry; nothing is stored, nothing outside changes. A layer
/// past `--max-layer-size` stops at the limit; a blob whose digest does not
/// match is refused.
#[test]
fn hostile_layers_are_refused() {
    let outside = tempfile::Builder::new()
        .prefix("skiff-outside-")
        .tempdir()
        .unwrap();
    let target = outside.path().join("target");
    std::fs::create_dir(&target).unwrap();
    let raw = |entries: &[(&str, tar::EntryType, &str)]| {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(if *kind == tar::EntryType::Regular {
                4
            } else {
                0
            });
            h.set_cksum();
            let data: &[u8] = if *kind == tar::EntryType::Regular {
                b"evil"
            } else {
                b""
            };
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    };
    let up = "../".repeat(12);
    let t = target.display().to_string();
    let esc = format!("{up}{}/evil", t.trim_start_matches('/'));
    use tar::EntryType::{Link, Regular, Symlink};
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (esc.as_str(), raw(&[(esc.as_str(), Regular, "")])),
        (
            "link/evil",
            raw(&[("link", Symlink, &t), ("link/evil", Regular, "")]),
        ),
        (
            "hard",
            raw(&[("hard", Link, "../../../../../../etc/passwd")]),
        ),
        ("x/.wh..", raw(&[("x/.wh..", Regular, "")])),
    ];
    for (entry, tar) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Layout::new(dir.path());
        let m = l.manifest(
            "amd64",
            &[(
                tar.clone(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
                gzip(&tar),
            )],
            &["true"],
        );
        l.tag("evil", m);
        let agent = Agent::new();
        let err = agent
            .call(&[
                "import",
                &format!("oci:{}:evil", dir.path().display()),
                "--name",
                "t/evil",
            ])
            .fail();
        assert!(err.stderr.contains(entry), "{entry}: {err}");
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            0,
            "{entry} wrote outside"
        );
        assert_eq!(agent.call(&["ls", "-q"]).ok().stdout, "");
        assert_eq!(
            std::fs::read_dir(agent.store().join("layers"))
                .unwrap()
                .count(),
            0
        );
        assert!(agent.tmp_is_empty());
    }

    // A 64 MiB layer of zeros, a few KiB gzipped, against a 1 MiB limit.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(64 << 20);
    b.append_data(&mut h, "zeros", std::io::repeat(0).take_bytes(64 << 20))
        .unwrap();
    let bomb = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut l = Layout::new(dir.path());
    let m = l.manifest(
        "amd64",
        &[(
            bomb.clone(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
            gzip(&bomb),
        )],
        &["true"],
    );
    l.tag("bomb", m);
    let agent = Agent::new();
    let err = agent
        .call(&[
            "import",
            &format!("oci:{}:bomb", dir.path().display()),
            "--name",
            "t/bomb",
            "--max-layer-size",
            "1048576",
        ])
        .fail();
    assert!(
        err.stderr
            .contains("larger than the limit of 1048576 bytes"),
        "{err}"
    );
    assert!(agent.tmp_is_empty());

    // A blob whose bytes changed after the manifest was written.
    let img = busybox_layout(&["true"], &[]);
    let blobs = img.path().join("layout/blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(&biggest).unwrap();
    let n = data.len() / 2;
    data[n] ^= 0xff;
    std::fs::write(&biggest, data).unwrap();
    let agent = Agent::new();
    let err = agent
        .call(&["import", &layout_ref(&img), "--name", "t/corrupt"])
        .fail();
    assert!(err.stderr.contains("refusing it"), "{err}");
    let name = biggest.file_name().unwrap().to_str().unwrap();
    assert!(!agent.store().join("blobs/sha256").join(name).exists());
    assert!(agent.tmp_is_empty());
}

/// A bundle's layers stay while the bundle exists, even after its image is
/// removed and the store pruned; `unbundle` lets prune take them.
#[test]
fn prune_keeps_the_layers_of_live_bundles() {
    let img = busybox_layout(&["echo", "still runs"], &[]);
    let agent = Agent::new();
    agent
        .call(&["import", &layout_ref(&img), "--name", "test/live"])
        .ok();
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b");
    agent
        .call(&["bundle", "test/live", b.to_str().unwrap()])
        .ok();
    agent.call(&["rm", "test/live"]).ok();
    let pruned = agent.call(&["prune"]).ok();
    assert!(!pruned.stdout.contains("layer "), "{pruned}");
    let out = Runtime::skiff().run_bundle_dir(&b, &unique_id()).ok();
    assert_eq!(out.stdout, "still runs\n");
    agent.call(&["unbundle", b.to_str().unwrap()]).ok();
    let pruned = agent.call(&["prune"]).ok();
    assert!(pruned.stdout.contains("layer "), "{pruned}");
}
