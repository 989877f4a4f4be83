//! The image store under `--data-dir` (default `/var/lib/skiff`).
//!
//! ```text
//! blobs/sha256/<hex>        every manifest, config and layer blob, by digest
//! layers/<chain-id hex>/    one unpacked layer (an overlayfs lower dir),
//!                           shared by every image whose stack starts alike
//! images.json               which names point at which manifest
//! tmp/                      work in progress, never visible elsewhere
//! lock                      flock(2): one writer at a time
//! ```
//!
//! A layer directory is keyed by its *chain id*, the digest of the layer
//! together with everything below it (`chain(n) = sha256(chain(n-1) + " " +
//! diff_id(n))`, image-spec config.md): the same tar on top of different
//! parents is a different file system. Crash safety comes from one rule:
//! everything is written under `tmp/` and appears in its final place with a
//! single rename(2), after fsync. A process killed at any point leaves at
//! most garbage in `tmp/`, which the next writer clears. `images.json` is
//! rewritten the same way. Blobs and layers no image refers to stay until
//! `prune`, which counts references from `images.json`.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::unpack::{self, Compression, Limits};

mod blobs;
mod records;

/// Where the store lives unless `--data-dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/skiff";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation on the store failed.
    #[error("{op} {path}: {err}")]
    Io {
        /// The operation (`"open"`, `"rename"`, `"fsync"`...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// Content written as a blob does not hash to its digest; nothing was
    /// stored.
    #[error("blob {expected}: content has digest {actual}: refusing it")]
    DigestMismatch {
        /// The digest the blob was to have.
        expected: Digest,
        /// The digest of the content received.
        actual: Digest,
    },
    /// A blob's content is not the size its descriptor says.
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size in bytes the descriptor gives.
        expected: u64,
        /// The size in bytes received.
        actual: u64,
    },
    /// An unpacked layer's tar stream does not hash to the diff_id the image
    /// config lists for it.
    #[error("layer {blob}: its diff_id is {actual}, the image config says {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        blob: Digest,
        /// The diff_id from the image config.
        expected: Digest,
        /// The digest of the uncompressed tar stream.
        actual: Digest,
    },
    /// A layer could not be unpacked.
    #[error("layer {blob}: {err}")]
    Unpack {
        /// The layer blob.
        blob: Digest,
        /// Why unpacking failed.
        #[source]
        err: unpack::UnpackError,
    },
    /// A blob that should be in the store is not.
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    /// A stored blob no longer matches its digest (edited or truncated on
    /// disk).
    #[error("blob {digest} in the store is damaged (its content has digest {actual}): {path}; pull or import the image again")]
    Damaged {
        /// The blob's digest (its name in the store).
        digest: Digest,
        /// The digest of what the file now holds.
        actual: Digest,
        /// The blob's file.
        path: PathBuf,
    },
    /// No image of that name or manifest digest prefix.
    #[error("no image {0} in the store")]
    NoImage(String),
    /// `images.json` does not parse.
    #[error("{path}: {err}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        err: String,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |err| StoreError::Io {
        op,
        path: path.to_path_buf(),
        err,
    }
}

/// One named image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalised reference (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The manifest (for one platform) this name points at.
    pub manifest: Digest,
    /// The digest of the index it was picked from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// The image config blob.
    pub config: Digest,
    /// Layer blobs, bottom first.
    pub layers: Vec<Digest>,
    /// Chain ids of the unpacked layers, bottom first.
    pub chain: Vec<Digest>,
    /// Sum of the layer blobs' sizes.
    pub size: u64,
    /// When it was stored (RFC 3339).
    pub stored: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Images {
    images: Vec<ImageRecord>,
}

/// What `prune` removed.
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    /// The blobs removed.
    pub blobs: Vec<Digest>,
    /// The layer directories removed, by chain id.
    pub layers: Vec<Digest>,
}

/// The image store at a data directory: blobs, unpacked layers and the
/// image names (see the module docs for the layout).
pub struct Store {
    root: PathBuf,
}

/// Held while writing: an exclusive flock(2) on `<data-dir>/lock`,
/// released when dropped (or when the process dies).
pub struct StoreLock {
    _file: File,
}

/// `chain(n) = sha256(chain(n-1) + " " + diff_id(n))`, `chain(0) = diff_id(0)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn mkdir_private(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(io_err("create directory", p))
}

/// A unique name under `tmp/` (pid and a counter: no two writers collide).
fn tmp_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Remove a directory tree without following symlinks (layer content is
/// untrusted: `remove_dir_all` does not follow links either).
fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
    }
}

impl Store {
    /// Open (creating if needed) the store at `root`, root-only (0700).
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["blobs/sha256", "layers", "tmp"] {
            mkdir_private(&root.join(sub))?;
        }
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", root))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Take the writer lock (blocking), then clear what dead writers left
    /// in `tmp/`.
    pub fn lock(&self) -> Result<StoreLock> {
        let lock = self.flock("lock", libc::LOCK_EX)?;
        self.clear_tmp();
        Ok(lock)
    }

    /// Leftovers of writers that died. Names carry the writer's pid
    /// (`blob-PID-N`): a live process's work in progress is left alone.
    fn clear_tmp(&self) {
        if let Ok(rd) = fs::read_dir(self.root.join("tmp")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
                let alive = pid.is_some_and(|p| {
                    p == std::process::id() || Path::new(&format!("/proc/{p}")).exists()
                });
                if !alive {
                    let _ = remove_tree(&e.path());
                }
            }
        }
    }

    fn flock(&self, name: &str, how: libc::c_int) -> Result<StoreLock> {
        let path = self.root.join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        // SAFETY: flock on a descriptor we own; it blocks until granted.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), how) } != 0 {
            return Err(io_err("lock", &path)(io::Error::last_os_error()));
        }
        Ok(StoreLock { _file: file })
    }

    /// Held (shared) by everything that adds content or uses layers
    /// (pull, import, bundle) for as long as it works, and taken exclusive
    /// by `prune`: content on its way to being referenced is never pruned.
    /// Always taken before [`Store::lock`], never after, so the two cannot
    /// deadlock.
    pub fn gc_guard(&self) -> Result<StoreLock> {
        self.flock("gc.lock", libc::LOCK_SH)
    }

    /// The exclusive side of [`Store::gc_guard`], for `prune`.
    pub fn gc_exclusive(&self) -> Result<StoreLock> {
        self.flock("gc.lock", libc::LOCK_EX)
    }

    fn bundle_ref(&self, dir: &Path) -> PathBuf {
        let key = Digest::of(dir.as_os_str().as_encoded_bytes());
        self.root.join("bundles").join(key.hex())
    }

    /// Record that the bundle at `dir` stacks the layers `chain`, so that
    /// `prune` keeps them while it exists.
    pub fn add_bundle_ref(&self, dir: &Path, chain: &[Digest]) -> Result<()> {
        let p = self.bundle_ref(dir);
        mkdir_private(&self.root.join("bundles"))?;
        let data = serde_json::to_vec(&serde_json::json!({"dir": dir, "chain": chain}))
            .expect("bundle refs serialise");
        fs::write(&p, data).map_err(io_err("write", &p))
    }

    /// Forget the bundle at `dir` (see [`Store::add_bundle_ref`]); a missing
    /// record is not an error.
    pub fn remove_bundle_ref(&self, dir: &Path) {
        let _ = fs::remove_file(self.bundle_ref(dir));
    }

    /// Chain ids used by live bundles.
    fn bundle_layers(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Ok(rd) = fs::read_dir(self.root.join("bundles")) else {
            return out;
        };
        for e in rd.flatten() {
            let v: serde_json::Value = fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            for c in v["chain"].as_array().into_iter().flatten() {
                if let Some(d) = c.as_str().and_then(|s| Digest::parse(s).ok()) {
                    out.insert(d.hex().to_string());
                }
            }
        }
        out
    }

    /// The unpacked directory of the layer with chain id `chain`.
    pub fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("layers").join(chain.hex())
    }

    /// Whether the layer with chain id `chain` is unpacked in the store.
    pub fn has_layer(&self, chain: &Digest) -> bool {
        self.layer_dir(chain).is_dir()
    }

    /// Unpack stored blob `blob` as the layer `chain`, checking its
    /// diff_id; it appears under `layers/` only when complete.
    pub fn unpack_layer(
        &self,
        blob: &Digest,
        media_type: &str,
        diff_id: &Digest,
        chain: &Digest,
        limits: &Limits,
    ) -> Result<()> {
        if self.has_layer(chain) {
            return Ok(());
        }
        let path = self.blob_path(blob);
        let mut f = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(blob.clone()),
            _ => io_err("open", &path)(e),
        })?;
        let compression = match Compression::from_media_type(media_type) {
            Some(c) => c,
            None => {
                let mut head = [0u8; 4];
                let n = f.read(&mut head).map_err(io_err("read", &path))?;
                drop(f);
                f = File::open(&path).map_err(io_err("open", &path))?;
                Compression::sniff(&head[..n])
            }
        };
        let tmp = self.root.join("tmp").join(tmp_name("layer"));
        mkdir_private(&tmp)?;
        let result = unpack::unpack(io::BufReader::new(f), compression, &tmp, limits)
            .map_err(|err| StoreError::Unpack {
                blob: blob.clone(),
                err,
            })
            .and_then(|u| {
                if &u.diff_id != diff_id {
                    return Err(StoreError::DiffIdMismatch {
                        blob: blob.clone(),
                        expected: diff_id.clone(),
                        actual: u.diff_id,
                    });
                }
                // Make the new tree durable before it becomes visible:
                // syncfs(2) flushes the store's file system only.
                if let Ok(d) = File::open(&tmp) {
                    let _ = nix::unistd::syncfs(&d);
                }
                let dest = self.layer_dir(chain);
                fs::rename(&tmp, &dest).map_err(io_err("rename", &dest))
            });
        if result.is_err() {
            let _ = remove_tree(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn blobs_are_verified_before_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let _l = s.lock().unwrap();
        let good = Digest::of(b"content");
        s.put_blob(&good, Some(7), &b"content"[..]).unwrap();
        assert_eq!(s.read_blob(&good).unwrap(), b"content");
        let err = s
            .put_blob(&Digest::of(b"other"), None, &b"content"[..])
            .unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        let err = s
            .put_blob(&Digest::of(b"x"), Some(9), &b"x"[..])
            .unwrap_err();
        assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
        assert!(!s.has_blob(&Digest::of(b"other")));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn records_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let _l = s.lock().unwrap();
        let blob = |b: &[u8]| {
            let d = Digest::of(b);
            s.put_blob(&d, None, b).unwrap();
            d
        };
        let (m1, c1, l1) = (blob(b"m1"), blob(b"c1"), blob(b"l1"));
        let (m2, c2) = (blob(b"m2"), blob(b"c2"));
        let chain1 = Digest::of(b"chain1");
        fs::create_dir(s.layer_dir(&chain1)).unwrap();
        let orphan = Digest::of(b"orphan");
        fs::create_dir(s.layer_dir(&orphan)).unwrap();
        let rec = |name: &str, m: &Digest, c: &Digest| ImageRecord {
            name: name.into(),
            manifest: m.clone(),
            index: None,
            config: c.clone(),
            layers: vec![l1.clone()],
            chain: vec![chain1.clone()],
            size: 2,
            stored: "now".into(),
        };
        s.put_image(rec("a/one:1", &m1, &c1)).unwrap();
        s.put_image(rec("a/two:1", &m2, &c2)).unwrap();
        assert_eq!(s.find(&m2.hex()[..12]).unwrap().name, "a/two:1");
        s.remove_image("a/two:1").unwrap();
        let pruned = s.prune().unwrap();
        let mut want = vec![m2.clone(), c2.clone()];
        want.sort();
        let mut got = pruned.blobs.clone();
        got.sort();
        assert_eq!(got, want);
        assert_eq!(pruned.layers, vec![orphan]);
        assert!(s.has_blob(&l1) && s.has_layer(&chain1));
        assert!(matches!(s.find("a/two:1"), Err(StoreError::NoImage(_))));
    }
}
