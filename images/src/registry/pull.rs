//! `image pull`: from a reference to a stored, unpacked image.
//!
//! 1. Resolve the tag to a manifest (or an index, then the manifest for
//!    this platform); keep the bytes, verified against their digest.
//! 2. Download the config and every layer the store does not have yet, in
//!    parallel, each into `partial/<digest>` under a per-blob lock: two
//!    pulls of the same image cooperate (the second waits, then finds the
//!    blob), and a download that was interrupted, even by `kill -9`,
//!    continues where it stopped with an HTTP Range request. A blob enters
//!    the store only once its digest is right.
//! 3. Under the store lock, unpack missing layers and name the image
//!    ([`crate::ingest`]).

use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{ClientOptions, Registry, RegistryError};
use crate::digest::Digest;
use crate::ingest::{self, BlobSource, IngestError, IngestOptions};
use crate::manifest::{self, Descriptor, Index, Manifest};
use crate::reference::Reference;
use crate::store::{ImageRecord, Store, StoreError};

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Talking to the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Storing the image failed, or no manifest matches the platform.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The store refused a blob, or could not be locked or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The registry sent a manifest or index that does not parse, or of a
    /// media type a pull does not understand.
    #[error("{0}")]
    Invalid(String),
}

/// How a pull reports progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// A bar per layer when stderr is a terminal, nothing otherwise.
    Auto,
    /// No progress output.
    Quiet,
}

/// What a pull does and how.
pub struct PullOptions {
    /// How to reach the registry.
    pub client: ClientOptions,
    /// Platform and unpacking limits.
    pub ingest: IngestOptions,
    /// How to report progress.
    pub progress: Progress,
    /// Layers downloaded at once.
    pub parallel: usize,
}

/// The partial-download directory: kept across crashes (unlike `tmp/`).
fn partial_dir(store: &Store) -> PathBuf {
    store.root().join("partial")
}

/// All blobs the manifest names are in the store already.
struct AlreadyStored;
impl BlobSource for AlreadyStored {
    fn open(&self, d: &Descriptor) -> Result<Box<dyn std::io::Read + '_>, IngestError> {
        Err(IngestError::Source {
            source_name: "pull".into(),
            digest: d.digest.clone(),
            err: "not downloaded".into(),
        })
    }
}

/// flock(2) on `path`, held while the returned file lives.
fn lock_file(path: &std::path::Path) -> Result<File, RegistryError> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|err| RegistryError::Io {
            path: path.to_path_buf(),
            err,
        })?;
    // SAFETY: flock on a descriptor we own; blocks until granted.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(RegistryError::Io {
            path: path.to_path_buf(),
            err: std::io::Error::last_os_error(),
        });
    }
    Ok(f)
}

/// Get one blob into the store (see the module docs).
fn fetch_blob(
    store: &Store,
    reg: &Registry,
    repo: &str,
    d: &Descriptor,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(), PullError> {
    if store.has_blob(&d.digest) {
        return Ok(());
    }
    let dir = partial_dir(store);
    let _lock = lock_file(&dir.join(format!("{}.lock", d.digest.hex())))?;
    if store.has_blob(&d.digest) {
        return Ok(()); // another pull got it while we waited
    }
    let partial = dir.join(d.digest.hex());
    let progress = |n: u64| {
        if let Some(b) = bar {
            b.set_position(n);
        }
    };
    reg.download_blob(repo, &d.digest, d.size, &partial, &progress)?;
    store.adopt_blob(&partial, &d.digest, d.size)?;
    let _ = std::fs::remove_file(dir.join(format!("{}.lock", d.digest.hex())));
    if let Some(b) = bar {
        b.finish_with_message("done");
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    d: &Digest,
) -> Result<T, PullError> {
    serde_json::from_slice(bytes).map_err(|e| PullError::Invalid(format!("{what} {d}: {e}")))
}

/// Pull `r` into `store` and name it `r`.
pub fn pull(store: &Store, r: &Reference, opts: &PullOptions) -> Result<ImageRecord, PullError> {
    // No prune while blobs are on their way in (they are referenced only
    // once the image is recorded).
    let _gc = store.gc_guard()?;
    std::fs::create_dir_all(partial_dir(store)).map_err(|err| RegistryError::Io {
        path: partial_dir(store),
        err,
    })?;
    let reg = Registry::new(r, &opts.client)?;
    let repo = &r.repository;
    let (bytes, media_type, digest) = reg.manifest(repo, &r.manifest_key())?;
    let top = Descriptor {
        media_type: media_type.clone(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    store.put_blob(&digest, Some(top.size), &bytes[..])?;
    let mdesc = if manifest::is_index(&media_type) {
        let idx: Index = parse(&bytes, "index", &digest)?;
        let m = manifest::select_platform(&idx, &opts.ingest.platform)
            .map_err(IngestError::from)?
            .clone();
        let (mb, _, md) = reg.manifest(repo, &m.digest.to_string())?;
        store.put_blob(&md, Some(mb.len() as u64), &mb[..])?;
        m
    } else if manifest::is_manifest(&media_type) {
        top.clone()
    } else {
        return Err(PullError::Invalid(format!(
            "{r}: unsupported manifest type {media_type}"
        )));
    };
    let m: Manifest = parse(&store.read_blob(&mdesc.digest)?, "manifest", &mdesc.digest)?;
    let mut wanted: Vec<Descriptor> = vec![m.config.clone()];
    wanted.extend(m.layers.iter().cloned());
    wanted.retain(|d| !store.has_blob(&d.digest));

    let show = opts.progress == Progress::Auto && std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let queue = Mutex::new(wanted.into_iter());
    let first_error: Mutex<Option<PullError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..opts.parallel.max(1) {
            s.spawn(|| loop {
                if first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                    return;
                }
                let Some(d) = queue.lock().ok().and_then(|mut q| q.next()) else {
                    return;
                };
                let bar = show.then(|| {
                    let b = multi.add(indicatif::ProgressBar::new(d.size));
                    b.set_style(style.clone());
                    b.set_prefix(d.digest.hex()[..12].to_string());
                    b
                });
                if let Err(e) = fetch_blob(store, &reg, repo, &d, bar.as_ref()) {
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                    return;
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    let _lock = store.lock()?;
    Ok(ingest::ingest(
        store,
        &AlreadyStored,
        &top,
        &r.to_string(),
        &opts.ingest,
    )?)
}
