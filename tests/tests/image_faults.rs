//! Faults of the image store: pulls killed at random moments, a full disk
//! during unpack, and blobs damaged in the store after the fact. Whatever
//! happened, the store stays consistent (every blob matches its digest,
//! `tmp/` is emptied by the next writer, `ls` is clean) and a damaged blob
//! is noticed before a container runs from it or an export carries it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::images::*;
use skiff_tests::*;

/// Every blob in the store hashes to its own name.
fn assert_blobs_match(agent: &Agent) {
    let dir = agent.store().join("blobs/sha256");
    // A pull killed before it stored anything leaves no blobs directory.
    let entries = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        r => r.unwrap(),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            digest_of(&data),
            format!("sha256:{name}"),
            "blob {name} does not match its digest"
        );
    }
}

fn pull(agent: &Agent, image: &str) -> Output {
    agent.call(&["pull", "-q", image])
}

/// A pull killed with SIGKILL at a random moment of its run (ten trials,
/// delays spread over the pull's own duration), then pulled again.
#[test]
fn pulls_killed_at_random_moments_leave_a_consistent_store() {
    let reg = TestRegistry::start(RegistrySetup::default());
    let img = busybox_layout(&["echo", "survived"], &[]);
    reg.push(&layout_ref(&img), "test/faults:v1", &[]);
    let r = format!("{}/test/faults:v1", reg.host());
    let timing = Agent::new();
    let t = Instant::now();
    pull(&timing, &r).ok();
    let span = t.elapsed().mul_f64(1.2).as_micros() as u64;
    let mut x = (std::process::id() as u64) << 17 | 1;
    for trial in 0..10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_micros(x % span.max(1));
        let agent = Agent::new();
        let mut c = Command::new(agent_bin());
        c.args(["image", "--data-dir"])
            .arg(agent.store())
            .args(["pull", "-q", &r])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the kill left, what is in blobs/ is whole.
        assert_blobs_match(&agent);
        pull(&agent, &r).ok();
        assert_eq!(
            agent.call(&["ls", "-q"]).ok().stdout,
            format!("{r}\n"),
            "trial {trial}, killed after {delay:?}"
        );
        assert!(agent.tmp_is_empty(), "trial {trial}: tmp/ not emptied");
        assert_blobs_match(&agent);
        assert_eq!(agent.run(&r, &[]).ok().stdout, "survived\n");
    }
}

/// A store on a file system that fills up during the unpack: one clear
/// error, nothing half-made; with room again, the same import works.
/// (The small file system is a tmpfs in a mount namespace of its own.)
#[test]
fn a_full_disk_during_unpack_is_reported_once_and_recovered_from() {
    let img = busybox_layout(&["echo", "roomy"], &[]);
    let mnt = tempfile::tempdir().unwrap();
    let store = mnt.path().join("store");
    let agent = agent_bin();
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=1600k tmpfs {m}
{a} image --data-dir {s} import {l} --name test/roomy:v1 2>&1; echo "rc=$?"
echo "layers: $(ls {s}/layers | wc -l) tmp: $(ls {s}/tmp | wc -l) images: $({a} image --data-dir {s} ls -q | wc -l)"
mount -o remount,size=64m {m}
{a} image --data-dir {s} import {l} --name test/roomy:v1 >/dev/null 2>&1; echo "again=$?"
{a} image --data-dir {s} ls -q; echo "ls=$?"
echo "tmp after: $(ls {s}/tmp | wc -l)"
"#,
        m = mnt.path().display(),
        a = agent.display(),
        s = store.display(),
        l = layout_ref(&img),
    );
    let out = sh_output(
        "unshare",
        &["--mount", "--propagation", "private", "sh", "-c", &script],
    )
    .ok();
    let text = out.stdout;
    let error = text.lines().next().unwrap_or("");
    assert!(error.starts_with("skiff-agent: "), "{text}");
    assert!(error.contains("No space left on device"), "{text}");
    assert_eq!(
        error.matches("No space left").count(),
        1,
        "the cause repeated: {error}"
    );
    assert!(text.contains("rc=1"), "{text}");
    assert!(text.contains("layers: 0 tmp: 0 images: 0"), "{text}");
    assert!(text.contains("again=0"), "{text}");
    assert!(text.contains("docker.io/test/roomy:v1\nls=0"), "{text}");
    assert!(text.contains("tmp after: 0"), "{text}");
}

fn blob_of(agent: &Agent, image: &str, what: &str) -> String {
    let rec = agent.call(&["inspect", image]).ok().json()["record"].clone();
    let d = match what {
        "layer" => rec["layers"][0].clone(),
        other => rec[other].clone(),
    };
    d.as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string()
}

/// Damage in the store is noticed: a truncated layer blob by `export`
/// (which then leaves the export as it was), an edited manifest by `ls`,
/// `inspect` and `bundle`, a garbage config by `inspect` naming the blob.
#[test]
fn damaged_blobs_are_noticed_before_use() {
    let img = busybox_layout(&["echo", "intact"], &[]);
    let agent = Agent::new();
    agent
        .call(&["import", &layout_ref(&img), "--name", "test/intact:v1"])
        .ok();
    let name = "docker.io/test/intact:v1";
    let blobs = agent.store().join("blobs/sha256");

    // A truncated layer: export refuses it, and adds nothing to the layout.
    let layer = blobs.join(blob_of(&agent, name, "layer"));
    let whole = std::fs::read(&layer).unwrap();
    std::fs::write(&layer, &whole[..whole.len() / 2]).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let dest = format!("oci:{}:t", out_dir.path().join("export").display());
    let err = agent.call(&["export", name, &dest]).fail();
    assert!(err.stderr.contains("damaged"), "{err}");
    assert!(
        err.stderr.contains(&blob_of(&agent, name, "layer")),
        "{err}"
    );
    let exported = out_dir.path().join("export/blobs/sha256");
    let left: Vec<_> = std::fs::read_dir(&exported)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "a failed export left blobs: {left:?}");
    assert!(!out_dir.path().join("export/index.json").exists());
    std::fs::write(&layer, &whole).unwrap();
    agent.call(&["export", name, &dest]).ok();

    // An edited manifest: ls, inspect and bundle all notice.
    let manifest = blobs.join(blob_of(&agent, name, "manifest"));
    let original = std::fs::read(&manifest).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b" ");
    std::fs::write(&manifest, &edited).unwrap();
    let ls = agent.call(&["ls"]).fail();
    assert!(
        ls.stderr.contains("damaged") && ls.stderr.contains(name),
        "{ls}"
    );
    let inspect = agent.call(&["inspect", name]).fail();
    assert!(inspect.stderr.contains("damaged"), "{inspect}");
    let b = tempfile::tempdir().unwrap();
    let bundle = b.path().join("b");
    let out = agent
        .call(&["bundle", name, bundle.to_str().unwrap()])
        .fail();
    assert!(out.stderr.contains("damaged"), "{out}");
    assert!(!bundle.join("config.json").exists());
    std::fs::write(&manifest, &original).unwrap();

    // A garbage config: inspect names the blob.
    let config_hex = blob_of(&agent, name, "config");
    let config = blobs.join(&config_hex);
    let original = std::fs::read(&config).unwrap();
    std::fs::write(&config, "{\n").unwrap();
    let inspect = agent.call(&["inspect", name]).fail();
    assert!(inspect.stderr.contains(&config_hex), "{inspect}");
    std::fs::write(&config, &original).unwrap();
    agent.call(&["ls"]).ok();
}

/// `image bundle IMG reldir`: the directory is relative to where the
/// command runs.
#[test]
fn bundle_into_a_relative_directory() {
    let img = busybox_layout(&["echo", "relative"], &[]);
    let agent = Agent::new();
    agent
        .call(&["import", &layout_ref(&img), "--name", "test/rel:v1"])
        .ok();
    let cwd = tempfile::tempdir().unwrap();
    let mut c = Command::new(agent_bin());
    c.arg("image")
        .arg("--data-dir")
        .arg(agent.store())
        .args(["bundle", "test/rel:v1", "bsrel"])
        .current_dir(cwd.path());
    output(c).ok();
    let bundle = cwd.path().join("bsrel");
    let out = Runtime::skiff().call(&["run", "--bundle", bundle.to_str().unwrap(), &unique_id()]);
    assert_eq!(out.ok().stdout, "relative\n");
    let mut c = Command::new(agent_bin());
    c.arg("image")
        .arg("--data-dir")
        .arg(agent.store())
        .args(["unbundle", "bsrel"])
        .current_dir(cwd.path());
    output(c).ok();
    assert!(!Path::new(&bundle).exists());
}
