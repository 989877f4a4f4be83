//! Bad input: every case must fail with the same exit code as runc, say why
//! on stderr, and leave nothing behind (LeakCheck).

use std::fs;
use std::os::unix::fs::symlink;

use skiff_tests::*;

/// Run `act` (which must fail) under a LeakCheck with each runtime and a
/// fresh bundle; `act` gets a fresh id.  Asserts equal exit codes and that
/// both stderrs mention one of `causes` (checking runc too proves the
/// keywords are sensible).  Returns (skiff, runc).
#[track_caller]
fn bad_case(causes: &[&str], act: impl Fn(&Runtime, &Bundle, &str) -> Output) -> (Output, Output) {
    let (s, r) = on_both(|rt, b| {
        let id = unique_id();
        let leak = LeakCheck::new(&[rt], &[b], &[&id]);
        let out = act(rt, b, &id).fail();
        if rt.root_entries().contains(&id) {
            // a refused duplicate must not take the original with it: the
            // closure cleans up its own containers before returning
            panic!("{}: {id} left in root: {out}", rt.label);
        }
        leak.assert_clean();
        out
    });
    assert_eq!(
        s.code(),
        r.code(),
        "exit codes differ\nskiff: {s}\nrunc:  {r}"
    );
    assert!(
        mentions_any(&r.stderr, causes),
        "runc does not mention {causes:?}: {r}"
    );
    assert!(
        mentions_any(&s.stderr, causes),
        "skiff does not mention {causes:?}: {s}"
    );
    (s, r)
}

#[test]
fn missing_config_json() {
    bad_case(&["config.json"], |rt, b, id| {
        fs::remove_file(b.config_path()).unwrap();
        rt.run(b, id)
    });
}

#[test]
fn malformed_config_json() {
    bad_case(
        &["invalid character", "json", "syntax", "expected", "parse"],
        |rt, b, id| {
            fs::write(b.config_path(), "{bad").unwrap();
            rt.run(b, id)
        },
    );
}

#[test]
fn wrongly_typed_field() {
    bad_case(
        &["ociVersion", "invalid type", "cannot unmarshal"],
        |rt, b, id| {
            b.edit(|v| v["ociVersion"] = json!(5));
            rt.run(b, id)
        },
    );
    bad_case(
        &["args", "invalid type", "cannot unmarshal"],
        |rt, b, id| {
            b.edit(|v| v["process"]["args"] = json!("sh"));
            rt.create(b, id)
        },
    );
}

#[test]
fn invalid_ids() {
    let long = "a".repeat(1025);
    for bad_id in ["a/b", "..", "../x", long.as_str()] {
        let (_, r) = bad_case(
            &["container id", "id format", "invalid id", "too long"],
            |rt, b, _| {
                b.set_args(&["true"]);
                rt.run(b, bad_id)
            },
        );
        // RUNC-1.1.5: a 1025-char id is not rejected as an invalid id but
        // fails with ENAMETOOLONG from lstat(root/ID): "file name too long".
        if bad_id.len() > 255 {
            assert!(r.stderr.contains("file name too long"), "{r}");
        } else {
            assert!(r.stderr.contains("invalid container ID format"), "{r}");
        }
    }
}

#[test]
fn duplicate_id() {
    bad_case(&["exists"], |rt, b, id| {
        b.set_args(SLEEPER);
        rt.create(b, id).ok();
        let pid = rt.pid(id);
        let out = rt.create(b, id);
        // the original is untouched
        assert_eq!(rt.pid(id), pid);
        assert_eq!(rt.status(id).as_deref(), Some("created"));
        rt.delete_force(id).ok();
        out
    });
}

#[test]
fn start_of_running_container() {
    bad_case(&["running"], |rt, b, id| {
        rt.start_with(b, id, SLEEPER);
        let out = rt.start(id);
        assert_eq!(rt.status(id).as_deref(), Some("running"));
        rt.delete_force(id).ok();
        out
    });
}

#[test]
fn delete_of_running_container_without_force() {
    bad_case(&["running", "not stopped"], |rt, b, id| {
        rt.start_with(b, id, SLEEPER);
        let out = rt.delete(id);
        assert_eq!(rt.status(id).as_deref(), Some("running"));
        rt.delete_force(id).ok();
        out
    });
}

#[test]
fn commands_on_missing_container() {
    for cmd in [
        &["start", "ID"][..],
        &["state", "ID"],
        &["kill", "ID"],
        &["pause", "ID"],
        &["resume", "ID"],
        &["ps", "ID"],
        &["delete", "ID"],
        &["exec", "ID", "true"],
    ] {
        bad_case(
            &["does not exist", "not exist", "not found"],
            |rt, _, id| {
                let a: Vec<&str> = cmd
                    .iter()
                    .map(|x| if *x == "ID" { id } else { x })
                    .collect();
                rt.call(&a)
            },
        );
    }
}

#[test]
fn missing_bundle() {
    bad_case(
        &["no such file", "not found", "does not exist"],
        |rt, b, id| {
            let gone = b.path().join("nonexistent");
            rt.call(&["run", "--bundle", gone.to_str().unwrap(), id])
        },
    );
}

#[test]
fn missing_rootfs() {
    bad_case(&["rootfs"], |rt, b, id| {
        fs::remove_dir_all(b.rootfs()).unwrap();
        rt.run(b, id)
    });
}

#[test]
fn missing_process_binary() {
    for bin in ["/nope", "nope"] {
        bad_case(&[bin], |rt, b, id| {
            b.set_args(&[bin]);
            rt.run(b, id)
        });
        // RUNC-1.1.5: create already checks the binary and fails.
        bad_case(&[bin], |rt, b, id| {
            b.set_args(&[bin]);
            rt.create(b, id)
        });
    }
}

#[test]
fn invalid_signal() {
    bad_case(&["signal", "SIGNOPE", "NOPE"], |rt, b, id| {
        rt.start_with(b, id, SLEEPER);
        let out = rt.kill(id, "SIGNOPE");
        rt.delete_force(id).ok();
        out
    });
}

/// A mount destination that is a symlink in the rootfs pointing at a host
/// directory must be resolved inside the rootfs: the host directory is never
/// mounted over or written.  runc 1.1.5 resolves it (securejoin) to
/// rootfs/<target> and succeeds.
#[test]
fn mount_destination_symlink_does_not_escape_rootfs() {
    let (s, r) = on_both(|rt, b| {
        let host = tempfile::Builder::new()
            .prefix("skiff-host-")
            .tempdir()
            .unwrap();
        fs::write(host.path().join("keep"), "precious").unwrap();
        symlink(host.path(), b.rootfs().join("evil")).unwrap();
        b.add_mount(json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs"}));
        b.set_args(&[
            "sh",
            "-c",
            "touch /evil/marker && echo wrote; ls -A /evil; test -e /evil/keep && echo ESCAPED; exit 0",
        ]);
        let id = unique_id();
        let leak = LeakCheck::new(&[rt], &[b], &[&id]);
        let out = rt.run(b, &id);
        leak.assert_clean();

        let entries: Vec<String> = fs::read_dir(host.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries, ["keep"], "{}: host dir modified: {out}", rt.label);
        assert_eq!(
            fs::read_to_string(host.path().join("keep")).unwrap(),
            "precious"
        );
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mi.contains(host.path().to_str().unwrap()),
            "{}: host dir mounted",
            rt.label
        );
        assert!(!out.stdout.contains("ESCAPED"), "{out}");
        out.normalised(&[(b.path_str(), "$B")])
    });
    assert_eq!(r.code(), 0, "runc 1.1.5 resolves inside the rootfs: {r}");
    assert_eq!(r.stdout, "wrote\nmarker\n");
    assert_eq!(
        (s.code(), &s.stdout),
        (r.code(), &r.stdout),
        "skiff: {s}\nrunc: {r}"
    );
}

#[test]
fn environment_entry_without_equals() {
    let (s, _) = bad_case(&["environment variable"], |rt, b, id| {
        b.edit(|v| v["process"]["env"] = json!(["PATH=/bin", "NOEQUALS"]));
        rt.run(b, id)
    });
    assert!(s.stderr.contains("NOEQUALS"), "{s}");
    // exec refuses it too
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.set_args(&["sleep", "30"]);
    let id = unique_id();
    rt.run_detached(&b, &id).ok();
    let out = rt
        .call(&["exec", "--env", "ALSO_NO_EQUALS", &id, "true"])
        .fail();
    assert!(out.stderr.contains("ALSO_NO_EQUALS"), "{out}");
    rt.delete_force(&id).ok();
}

/// A memory limit below what the init needs: runc finds out as it writes
/// the limit (after the init joined the cgroup), skiff when the OOM killer
/// ends the init; both name the limit.
#[test]
fn memory_limit_below_usage() {
    let (s, _) = bad_case(&["65536", "memory limit"], |rt, b, id| {
        b.edit(|v| v["linux"]["resources"] = json!({"memory": {"limit": 65536}}));
        rt.run(b, id)
    });
    assert!(s.stderr.contains("memory"), "{s}");
}
