//! Malformed configs and ids: whatever the input, `skiff run` ends with one
//! clear error line (or runs, if the input was valid after all), never
//! panics or hangs, and leaves nothing behind.
//!
//! Named variants cover the classes a user meets (wrong types, missing
//! fields, huge values, unknown capabilities, invalid rlimits, `..` and
//! symlinked mount destinations, overlapping id maps, 10 MB of args);
//! proptest then replaces a random part of a valid config with a random
//! value, as many times as `PROPTEST_CASES` says (default 48). runc's
//! verdict on the named variants is printed beside skiff's.

use proptest::prelude::*;
use serde_json::Value;
use skiff_tests::*;

/// What a failed run must look like: exit status 1 (not a panic's 101, not
/// a signal), no panic text, and a last line that is runc's error format.
fn assert_clean_failure(out: &Output, what: &str) {
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{what}: panic\n{out}"
    );
    if out.success() {
        return;
    }
    assert_eq!(out.code(), 1, "{what}: exit status\n{out}");
    let last = out.stderr.trim_end().lines().last().unwrap_or("");
    assert!(
        last.contains("level=error msg=") && last.len() > 30,
        "{what}: no clear error line\n{out}"
    );
}

/// Run `edit`ed busybox bundle under skiff (and runc, for the table), with
/// a leak check on skiff's run. Returns (skiff failed, runc failed).
fn try_config(what: &str, edit: &dyn Fn(&Bundle)) -> (bool, bool) {
    let bundle = || {
        let b = Bundle::busybox();
        b.set_args(&["sh", "-c", "echo ran"]);
        edit(&b);
        b
    };
    let rt = Runtime::skiff();
    let b = bundle();
    let id = unique_id();
    let leak = LeakCheck::new(&[&rt], &[&b], &[&id]);
    let out = rt.run(&b, &id);
    assert_clean_failure(&out, what);
    leak.assert_clean();
    let r = Runtime::runc().run(&bundle(), &unique_id());
    (!out.success(), !r.success())
}

type Edit = Box<dyn Fn(&Bundle)>;

fn set(path: &'static str, value: Value) -> Edit {
    Box::new(move |b: &Bundle| {
        b.edit(|v| *v.pointer_mut_or_create(path) = value.clone());
    })
}

fn remove(path: &'static str) -> Edit {
    Box::new(move |b: &Bundle| {
        b.edit(|v| {
            let (parent, key) = path.rsplit_once('/').unwrap();
            if let Some(o) = v.pointer_mut(parent).and_then(Value::as_object_mut) {
                o.remove(key);
            }
        });
    })
}

trait PointerCreate {
    fn pointer_mut_or_create(&mut self, path: &str) -> &mut Value;
}

impl PointerCreate for Value {
    /// Like `pointer_mut`, making missing objects on the way.
    fn pointer_mut_or_create(&mut self, path: &str) -> &mut Value {
        let mut v = self;
        for key in path.split('/').skip(1) {
            if let Ok(i) = key.parse::<usize>() {
                if v.as_array().is_some_and(|a| a.len() > i) {
                    v = &mut v[i];
                    continue;
                }
            }
            if !v.is_object() {
                *v = json!({});
            }
            v = v
                .as_object_mut()
                .unwrap()
                .entry(key.to_string())
                .or_insert(Value::Null);
        }
        v
    }
}

fn named() -> Vec<(&'static str, Edit)> {
    let userns = |maps: Value| -> Edit {
        Box::new(move |b: &Bundle| {
            b.edit(|v| {
                v["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
                v["linux"]["uidMappings"] = maps.clone();
                v["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            });
        })
    };
    vec![
        ("ociVersion is a number", set("/ociVersion", json!(1))),
        ("no process", remove("/process")),
        ("no process.args", remove("/process/args")),
        ("empty process.args", set("/process/args", json!([]))),
        (
            "process.args is a string",
            set("/process/args", json!("sh")),
        ),
        ("relative cwd", set("/process/cwd", json!("relative/dir"))),
        ("no cwd", remove("/process/cwd")),
        ("negative uid", set("/process/user/uid", json!(-1))),
        ("uid is a string", set("/process/user/uid", json!("root"))),
        (
            "uid beyond 32 bits",
            set("/process/user/uid", json!(1u64 << 40)),
        ),
        (
            "env is an object",
            set("/process/env", json!({"PATH": "/bin"})),
        ),
        ("env entry is a number", set("/process/env", json!([1, 2]))),
        (
            "unknown bounding capability",
            set("/process/capabilities/bounding", json!(["CAP_NOPE"])),
        ),
        (
            "unknown effective capability",
            set("/process/capabilities/effective", json!(["NOT_A_CAP"])),
        ),
        (
            "capabilities is a list",
            set("/process/capabilities", json!(["CAP_KILL"])),
        ),
        (
            "unknown rlimit",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOPE", "hard": 1, "soft": 1}]),
            ),
        ),
        (
            "rlimit soft above hard",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 200}]),
            ),
        ),
        (
            "rlimit above the allowed hard limit",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "hard": 1u64 << 40, "soft": 1024}]),
            ),
        ),
        (
            "rlimit hard is negative",
            set(
                "/process/rlimits",
                json!([{"type": "RLIMIT_NOFILE", "hard": -1, "soft": 1}]),
            ),
        ),
        (
            "oomScoreAdj out of range",
            set("/process/oomScoreAdj", json!(5000)),
        ),
        ("no root", remove("/root")),
        (
            "root.path missing",
            set("/root/path", json!("no-such-rootfs")),
        ),
        ("root.path empty", set("/root/path", json!(""))),
        ("root is a string", set("/root", json!("rootfs"))),
        (
            "relative mount destination",
            set("/mounts/0/destination", json!("proc")),
        ),
        (
            "mount destination through ..",
            set(
                "/mounts",
                json!([{"destination": "/../../../tmp/skiff-escape", "type": "tmpfs", "source": "tmpfs"}]),
            ),
        ),
        (
            "mount destination through a symlink out of the rootfs",
            Box::new(|b: &Bundle| {
                let _ = std::os::unix::fs::symlink("/tmp", b.rootfs().join("escape"));
                b.edit(|v| {
                v["mounts"].as_array_mut().unwrap().push(json!({"destination": "/escape/skiff-malformed", "type": "tmpfs", "source": "tmpfs"}))
            });
            }),
        ),
        (
            "unknown filesystem type",
            set("/mounts/0/type", json!("nosuchfs")),
        ),
        (
            "bind mount of a missing source",
            set(
                "/mounts",
                json!([{"destination": "/mnt", "type": "bind", "source": "/no/such/source", "options": ["bind"]}]),
            ),
        ),
        (
            "unknown mount option",
            set("/mounts/0/options", json!(["nosuchoption=1"])),
        ),
        (
            "mounts is an object",
            set("/mounts", json!({"destination": "/x"})),
        ),
        (
            "unknown namespace type",
            set("/linux/namespaces", json!([{"type": "nope"}])),
        ),
        (
            "the same namespace twice",
            set(
                "/linux/namespaces",
                json!([{"type": "pid"}, {"type": "pid"}, {"type": "mount"}]),
            ),
        ),
        (
            "namespace path that does not exist",
            set(
                "/linux/namespaces",
                json!([{"type": "network", "path": "/no/such/netns"}, {"type": "mount"}]),
            ),
        ),
        (
            "overlapping uid maps",
            userns(
                json!([{"containerID": 0, "hostID": 100000, "size": 1000}, {"containerID": 500, "hostID": 200000, "size": 1000}]),
            ),
        ),
        ("user namespace without maps", userns(json!([]))),
        (
            "uid map with size 0",
            userns(json!([{"containerID": 0, "hostID": 100000, "size": 0}])),
        ),
        (
            "negative memory limit",
            set("/linux/resources/memory/limit", json!(-5)),
        ),
        (
            "cpu shares is a string",
            set("/linux/resources/cpu/shares", json!("lots")),
        ),
        (
            "cpuset cpus is garbage",
            set("/linux/resources/cpu/cpus", json!("abc")),
        ),
        (
            "device rule of unknown type",
            set(
                "/linux/resources/devices",
                json!([{"allow": true, "type": "z", "access": "rwm"}]),
            ),
        ),
        (
            "device outside /dev",
            set(
                "/linux/devices",
                json!([{"path": "/etc/evil", "type": "c", "major": 1, "minor": 3}]),
            ),
        ),
        (
            "device of unknown type",
            set(
                "/linux/devices",
                json!([{"path": "/dev/evil", "type": "q", "major": 1, "minor": 3}]),
            ),
        ),
        (
            "unknown sysctl",
            set("/linux/sysctl", json!({"kernel.nope": "1"})),
        ),
        (
            "sysctl with .. in its name",
            set("/linux/sysctl", json!({"net.../../../etc": "1"})),
        ),
        (
            "seccomp default action unknown",
            set("/linux/seccomp", json!({"defaultAction": "SCMP_ACT_NOPE"})),
        ),
        (
            "seccomp architecture unknown",
            set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"]}),
            ),
        ),
        (
            "seccomp operator unknown",
            set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_NOPE"}]}]}),
            ),
        ),
        (
            "seccomp argument index 9",
            set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            ),
        ),
        (
            "relative hook path",
            set("/hooks/prestart", json!([{"path": "bin/true"}])),
        ),
        (
            "hook binary missing",
            set("/hooks/createRuntime", json!([{"path": "/no/such/hook"}])),
        ),
        (
            "hostname without a uts namespace",
            Box::new(|b: &Bundle| {
                b.remove_namespace("uts");
                b.edit(|v| v["hostname"] = json!("h"));
            }),
        ),
        ("annotations is a list", set("/annotations", json!(["a"]))),
        (
            "masked path with ..",
            set("/linux/maskedPaths", json!(["/../../etc/shadow"])),
        ),
        (
            "cgroupsPath escaping its root",
            set("/linux/cgroupsPath", json!("../../../escape")),
        ),
        (
            "unknown rootfsPropagation",
            set("/linux/rootfsPropagation", json!("weird")),
        ),
        (
            "config is an array",
            Box::new(|b: &Bundle| std::fs::write(b.config_path(), "[]").unwrap()),
        ),
        (
            "config is empty",
            Box::new(|b: &Bundle| std::fs::write(b.config_path(), "").unwrap()),
        ),
        (
            "config is binary",
            Box::new(|b: &Bundle| std::fs::write(b.config_path(), [0xffu8, 0, 0xfe, 7]).unwrap()),
        ),
        (
            "10 MB of args",
            Box::new(|b: &Bundle| {
                let big = "x".repeat(1 << 20);
                b.edit(|v| {
                    v["process"]["args"] =
                        json!(["echo", big, big, big, big, big, big, big, big, big, big])
                });
            }),
        ),
    ]
}

#[test]
fn named_malformed_configs_fail_cleanly() {
    let list = named();
    assert!(list.len() >= 40, "{} variants", list.len());
    let escapes = ["/tmp/skiff-escape", "/tmp/skiff-malformed"];
    for e in escapes {
        let _ = std::fs::remove_dir(e);
    }
    let mut table = String::new();
    for (what, edit) in &list {
        let (skiff_failed, runc_failed) = try_config(what, edit.as_ref());
        let verdict = |f: bool| if f { "refused" } else { "ran" };
        table.push_str(&format!(
            "{what:<56} skiff {:<8} runc {}\n",
            verdict(skiff_failed),
            verdict(runc_failed)
        ));
    }
    eprintln!("{table}");
    // mount destinations are resolved inside the rootfs, never on the host
    for e in escapes {
        assert!(
            !std::path::Path::new(e).exists(),
            "{e} was made on the host"
        );
    }
}

#[test]
fn malformed_ids_fail_cleanly() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.set_args(&["true"]);
    let long = "a".repeat(300);
    for id in ["", ".", "..", "a/b", "../x", "a b", "a\nb", "é", &long, "-"] {
        let leak = LeakCheck::new(&[&rt], &[&b], &[]);
        let out = rt.call(&["run", "--bundle", b.path_str(), id]);
        assert!(!out.success() || id == "-", "{id:?} accepted: {out}");
        assert_clean_failure(&out, &format!("id {id:?}"));
        leak.assert_clean();
        if out.success() {
            rt.delete_force(id).ok();
        }
    }
}

/// Every place in a JSON document, as JSON pointers.
fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let p = format!("{here}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{here}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1.5e300)),
        prop::sample::select(vec![
            "",
            "..",
            "/../../..",
            "/proc/self/fd/3",
            "CAP_SYS_ADMIN",
            "SCMP_ACT_KILL",
            "RLIMIT_NOFILE",
            "/dev/null",
            "tmpfs",
            "\u{0}",
            "a\nb",
            "💥",
        ])
        .prop_map(|s| json!(s)),
        "[a-z/._-]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_part_of_a_config_replaced_by_anything(pick in any::<prop::sample::Index>(), value in any_value()) {
        let base = Bundle::busybox().config();
        let mut places = vec![];
        pointers(&base, String::new(), &mut places);
        let place = pick.get(&places).clone();
        let rt = Runtime::skiff();
        let b = Bundle::busybox();
        b.edit(|v| {
            v["process"]["args"] = json!(["sh", "-c", "echo ran"]);
            if let Some(slot) = v.pointer_mut(&place) {
                *slot = value.clone();
            }
        });
        let id = unique_id();
        let leak = LeakCheck::new(&[&rt], &[&b], &[&id]);
        let out = rt.run(&b, &id);
        let what = format!("{place} = {value}");
        assert_clean_failure(&out, &what);
        if out.success() {
            rt.delete_force(&id).ok();
        }
        leak.assert_clean();
    }
}
