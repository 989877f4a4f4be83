//! Leak checks: mounts, cgroups, fds, children and root entries before and after.

use super::*;

// ---------------------------------------------------------------------------
// Leak checking
// ---------------------------------------------------------------------------

/// One measurement of everything a runtime could leak.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Snapshot {
    /// Number of lines in /proc/self/mountinfo.
    pub mount_count: usize,
    /// `mountpoint fstype source` of every mount (multiset, sorted).
    pub mounts: Vec<String>,
    /// Mount points whose path contains a watched directory.
    pub watched_mounts: Vec<String>,
    /// Cgroup directories named after a watched id, in any hierarchy
    /// (`find_cgroups`).
    pub cgroups: Vec<PathBuf>,
    /// Our open fds: fd -> link target.
    pub fds: BTreeMap<i32, String>,
    /// Our child processes: pid -> comm.
    pub children: BTreeMap<i32, String>,
    /// Entries of every watched runtime root.
    pub root_entries: Vec<(PathBuf, BTreeSet<String>)>,
}

/// Snapshot of mounts, cgroups, fds, children and runtime roots, compared
/// with [`LeakCheck::assert_clean`] at the end of a test.
///
/// While alive it holds the process-wide exclusive lock (see crate docs), so
/// other test threads cannot add fds or children under its nose.
pub struct LeakCheck {
    before: Snapshot,
    roots: Vec<PathBuf>,
    paths: Vec<String>,
    ids: Vec<String>,
    _lock: ExclusiveGuard,
}

/// How deep below each /sys/fs/cgroup/<hierarchy>/ to look for cgroups.
const CGROUP_DEPTH: usize = 6;

impl LeakCheck {
    /// Watch the roots of `runtimes`, mounts under the `bundles` and the
    /// runtime roots, and cgroups whose name contains one of `ids`.
    pub fn new(runtimes: &[&Runtime], bundles: &[&Bundle], ids: &[&str]) -> LeakCheck {
        let lock = exclusive();
        let roots: Vec<PathBuf> = runtimes.iter().map(|r| r.root_path().to_owned()).collect();
        let mut paths: Vec<String> = bundles.iter().map(|b| b.path_str().to_owned()).collect();
        paths.extend(roots.iter().map(|r| r.to_string_lossy().into_owned()));
        let mut lc = LeakCheck {
            before: Snapshot::empty(),
            roots,
            paths,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            _lock: lock,
        };
        lc.before = lc.snapshot();
        lc
    }

    /// The snapshot taken at construction.
    pub fn before(&self) -> &Snapshot {
        &self.before
    }

    /// Measure now.
    pub fn snapshot(&self) -> Snapshot {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts = Vec::new();
        let mut watched = Vec::new();
        let mut count = 0;
        for l in mountinfo.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let post: Vec<&str> = l.split(" - ").nth(1).unwrap_or("").split(' ').collect();
            let mp = f.get(4).copied().unwrap_or("");
            // `ip netns add` by the network-namespace test (possibly in a
            // parallel nextest process) is ours but not the runtime's.
            if mp.starts_with("/run/netns/skiff-t-") {
                continue;
            }
            count += 1;
            mounts.push(format!(
                "{mp} {} {}",
                post.first().unwrap_or(&""),
                post.get(1).unwrap_or(&"")
            ));
            if self.paths.iter().any(|p| mp.contains(p.as_str())) {
                watched.push(mp.to_owned());
            }
        }
        mounts.sort();
        Snapshot {
            mount_count: count,
            mounts,
            watched_mounts: watched,
            cgroups: find_cgroups(&self.ids),
            fds: open_fds(),
            children: child_processes(),
            root_entries: self
                .roots
                .iter()
                .map(|r| (r.clone(), dir_names(r)))
                .collect(),
        }
    }

    /// Poll (5 s) until nothing is left that was not there at the start,
    /// else panic listing what leaked.
    ///
    /// "Leaked" means: more mountinfo lines or any new mount, any new mount
    /// under the test's dirs, any new cgroup named after a watched id, any
    /// new fd (number and target) or child process of ours, and any change
    /// of the runtime roots' entries.  Things that *vanished* meanwhile are
    /// not leaks (other test threads close fds of their own).
    #[track_caller]
    pub fn assert_clean(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut leaks = self.before.leaks(&self.snapshot());
        while !leaks.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            leaks = self.before.leaks(&self.snapshot());
        }
        assert!(leaks.is_empty(), "leak detected:\n{leaks}");
    }

    /// Stricter than [`LeakCheck::assert_clean`], for a test that is alone
    /// in its process: poll (5 s) until the snapshot is *exactly* the one
    /// from the start (same mount count and mounts, fds, children, cgroups,
    /// root entries), else panic with both.
    #[track_caller]
    pub fn assert_unchanged(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut now = self.snapshot();
        while now != self.before && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            now = self.snapshot();
        }
        assert!(
            now == self.before,
            "state changed:\n{}\nbefore: {:#?}\nafter: {:#?}",
            self.before.leaks(&now),
            self.before,
            now
        );
    }
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot {
            mount_count: 0,
            mounts: vec![],
            watched_mounts: vec![],
            cgroups: vec![],
            fds: BTreeMap::new(),
            children: BTreeMap::new(),
            root_entries: vec![],
        }
    }

    /// What `after` has that `self` (before) had not, human-readable;
    /// empty when nothing leaked.
    pub fn leaks(&self, after: &Snapshot) -> String {
        let mut s = String::new();
        let (added, _) = multiset_diff(&self.mounts, &after.mounts);
        if after.mount_count > self.mount_count || !added.is_empty() {
            s += &format!(
                "  mountinfo lines: {} -> {}\n",
                self.mount_count, after.mount_count
            );
        }
        for m in added {
            s += &format!("  new mount: {m}\n");
        }
        let new_watched: Vec<_> = after
            .watched_mounts
            .iter()
            .filter(|m| !self.watched_mounts.contains(m))
            .collect();
        if !new_watched.is_empty() {
            s += &format!("  mounts under test dirs: {new_watched:?}\n");
        }
        let new_cg: Vec<_> = after
            .cgroups
            .iter()
            .filter(|c| !self.cgroups.contains(c))
            .collect();
        if !new_cg.is_empty() {
            s += &format!("  cgroups: {new_cg:?}\n");
        }
        let new_fds: Vec<_> = after
            .fds
            .iter()
            .filter(|(fd, t)| self.fds.get(fd) != Some(t))
            .collect();
        if !new_fds.is_empty() {
            s += &format!(
                "  fds ({} -> {}), new: {new_fds:?}\n",
                self.fds.len(),
                after.fds.len()
            );
        }
        let new_children: Vec<_> = after
            .children
            .iter()
            .filter(|(p, _)| !self.children.contains_key(p))
            .collect();
        if !new_children.is_empty() {
            s += &format!("  child processes: {new_children:?}\n");
        }
        if self.root_entries != after.root_entries {
            s += &format!(
                "  runtime root entries: {:?} -> {:?}\n",
                self.root_entries, after.root_entries
            );
        }
        s
    }
}

fn multiset_diff(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for m in after {
        *count.entry(m).or_default() += 1;
    }
    for m in before {
        *count.entry(m).or_default() -= 1;
    }
    let mut added = vec![];
    let mut removed = vec![];
    for (m, n) in count {
        for _ in 0..n.abs() {
            if n > 0 { &mut added } else { &mut removed }.push(m.to_owned());
        }
    }
    (added, removed)
}

/// Cgroup directories (depth-limited) whose name contains one of `ids`, in
/// every hierarchy: on a hybrid or v1 host below each controller's mount,
/// on a pure v2 host below /sys/fs/cgroup itself, whose entries are then
/// cgroups, not hierarchies (a container without a cgroupsPath gets
/// /sys/fs/cgroup/ID there).
pub fn find_cgroups<S: AsRef<str>>(ids: &[S]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, ids: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if ids.iter().any(|id| name.contains(id)) {
                out.push(e.path());
            }
            if depth > 1 {
                walk(&e.path(), depth - 1, ids, out);
            }
        }
    }
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    let mut out = vec![];
    if ids.is_empty() {
        return out;
    }
    walk(
        Path::new("/sys/fs/cgroup"),
        CGROUP_DEPTH + 1,
        &ids,
        &mut out,
    );
    out.sort();
    out
}

/// Our open fds and what they point to (without the fd used to read the
/// directory itself).
pub fn open_fds() -> BTreeMap<i32, String> {
    let own_dir = format!("/proc/{}/fd", std::process::id());
    let mut m = BTreeMap::new();
    if let Ok(rd) = fs::read_dir("/proc/self/fd") {
        for e in rd.flatten() {
            if let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() {
                let t = fs::read_link(e.path())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if t != own_dir {
                    m.insert(fd, t);
                }
            }
        }
    }
    m
}

/// Processes whose parent is this (test) process: pid -> comm.
pub fn child_processes() -> BTreeMap<i32, String> {
    let me = std::process::id() as i32;
    let mut m = BTreeMap::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return m;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok());
        if ppid == Some(me) {
            m.insert(pid, stat[open + 1..close].to_owned());
        }
    }
    m
}
