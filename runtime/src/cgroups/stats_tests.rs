//! Unit tests of [`super`].

use super::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A fake cgroup directory: `files` written into a fresh temp dir.
fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn v2(d: &Path) -> CgroupPaths {
    CgroupPaths {
        mode: Some(super::super::Mode::Unified),
        paths: BTreeMap::from([(String::new(), d.to_path_buf())]),
    }
}

#[test]
fn small_files_parse_as_runc_reads_them() {
    let d = dir(&[
        ("n", "42\n"),
        ("max", "max\n"),
        ("junk", "x\n"),
        ("kv", "anon 10\nfile 20\nbroken\n"),
    ]);
    assert_eq!(read_u64(&d.path().join("n")), 42);
    assert_eq!(read_u64(&d.path().join("max")), u64::MAX);
    assert_eq!(read_u64(&d.path().join("junk")), 0);
    assert_eq!(read_u64(&d.path().join("missing")), 0, "missing is zero");
    assert_eq!(pids_limit(&d.path().join("max")), 0, "no limit is 0");
    let kv = read_kv(&d.path().join("kv"));
    assert_eq!(kv.get("anon"), Some(&10));
    assert_eq!(kv.get("file"), Some(&20));
    assert_eq!(kv.len(), 2);
}

#[test]
fn cpuset_lists_expand_ranges() {
    assert_eq!(parse_list("0-2,5\n"), vec![0, 1, 2, 5]);
    assert_eq!(parse_list(""), Vec::<u16>::new());
    assert_eq!(parse_list("7"), vec![7]);
    assert_eq!(parse_list("3-x,4"), vec![4], "a bad range is skipped");
}

#[test]
fn empty_values_are_omitted_like_go() {
    let m = Map::from_iter([
        ("zero".to_string(), json!(0)),
        ("empty".to_string(), json!([])),
        ("kept".to_string(), json!(3)),
    ]);
    assert_eq!(omit_empty(m), json!({"kept": 3}));
    assert_eq!(
        memory_entry(100, 0, 0, 2),
        json!({"limit": 100, "failcnt": 2})
    );
}

#[test]
fn v2_stats_in_runcs_shape() {
    let d = dir(&[
        (
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 20\n",
        ),
        ("memory.current", "4096\n"),
        ("memory.max", "max\n"),
        ("memory.peak", "8192\n"),
        ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
        ("memory.stat", "anon 1024\nfile 2048\n"),
        ("pids.current", "2\n"),
        ("pids.max", "10\n"),
        ("io.stat", "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0\n"),
        ("cpuset.cpus.effective", "0-1\n"),
    ]);
    let s = stats(&v2(d.path()));
    assert_eq!(s["cpu"]["usage"]["total"], 1_500_000, "µs become ns");
    assert_eq!(s["cpu"]["usage"]["kernel"], 500_000);
    assert_eq!(s["cpu"]["throttling"]["throttledPeriods"], 1);
    assert_eq!(s["memory"]["usage"]["usage"], 4096);
    assert_eq!(s["memory"]["usage"]["limit"], u64::MAX);
    assert_eq!(s["memory"]["usage"]["max"], 8192);
    assert_eq!(s["memory"]["usage"]["failcnt"], 3, "memory.events max");
    assert_eq!(s["memory"]["cache"], 2048);
    assert_eq!(s["memory"]["raw"]["anon"], 1024);
    assert_eq!(s["pids"], json!({"current": 2, "limit": 10}));
    assert_eq!(s["cpuset"]["cpus"], json!([0, 1]));
    let bytes = s["blkio"]["ioServiceBytesRecursive"].as_array().unwrap();
    assert_eq!(bytes.len(), 2);
    assert_eq!(
        bytes[0],
        json!({"major": 8, "minor": 0, "op": "Read", "value": 100})
    );
    assert_eq!(s["blkio"]["ioServicedRecursive"][1]["value"], 2);
    assert_eq!(oom_kills(&v2(d.path())), 1);
    assert_eq!(memory_peak(&v2(d.path())), Some(8192));
}

#[test]
fn v1_stats_from_the_controllers_directories() {
    let cpuacct = dir(&[
        ("cpuacct.usage", "3000\n"),
        ("cpuacct.usage_percpu", "1000 2000\n"),
        ("cpuacct.stat", "user 1\nsystem 2\n"),
    ]);
    let memory = dir(&[
        ("memory.usage_in_bytes", "4096\n"),
        ("memory.max_usage_in_bytes", "8192\n"),
        ("memory.limit_in_bytes", "65536\n"),
        ("memory.failcnt", "5\n"),
        (
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        ),
        ("memory.stat", "cache 100\nrss 200\n"),
    ]);
    let pids = dir(&[("pids.current", "3\n"), ("pids.max", "max\n")]);
    let blkio = dir(&[(
        "blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
    )]);
    let paths = CgroupPaths {
        mode: Some(super::super::Mode::Hybrid),
        paths: BTreeMap::from([
            ("cpu,cpuacct".to_string(), cpuacct.path().to_path_buf()),
            ("memory".to_string(), memory.path().to_path_buf()),
            ("pids".to_string(), pids.path().to_path_buf()),
            ("blkio".to_string(), blkio.path().to_path_buf()),
            ("".to_string(), PathBuf::from("/nonexistent")),
        ]),
    };
    let s = stats(&paths);
    assert_eq!(s["cpu"]["usage"]["total"], 3000);
    assert_eq!(s["cpu"]["usage"]["percpu"], json!([1000, 2000]));
    assert_eq!(s["memory"]["usage"]["usage"], 4096);
    assert_eq!(s["memory"]["usage"]["limit"], 65536);
    assert_eq!(s["memory"]["usage"]["failcnt"], 5);
    assert_eq!(s["pids"], json!({"current": 3}), "no limit is omitted");
    let io = s["blkio"]["ioServiceBytesRecursive"].as_array().unwrap();
    assert_eq!(io.len(), 2, "the Total line is not a device");
    assert_eq!(oom_kills(&paths), 2);
    assert_eq!(memory_peak(&paths), Some(8192));
}
