//! OCI image layouts on disk (image-spec image-layout.md): how images travel
//! without a registry.
//!
//! ```text
//! DIR/oci-layout       {"imageLayoutVersion": "1.0.0"}
//! DIR/index.json       an index; each entry's org.opencontainers.image.ref.name is its tag
//! DIR/blobs/sha256/…   every blob, by digest
//! ```
//!
//! `oci:DIR[:TAG]` names one image in such a directory and
//! `oci-archive:FILE[:TAG]` the same layout packed in a tar file (what
//! `skopeo copy` and `podman save --format oci-archive` write).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::ingest::{self, BlobSource, IngestError, IngestOptions};
use crate::manifest::{self, Descriptor, Index, REF_NAME};
use crate::store::{ImageRecord, Store};

/// Where an image is imported from or exported to.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// `oci:DIR[:TAG]`: a layout directory.
    Dir {
        /// The layout's directory.
        path: PathBuf,
        /// The image's tag in the layout (`org.opencontainers.image.ref.name`);
        /// `None`: the only image on import, a default tag on export.
        tag: Option<String>,
    },
    /// `oci-archive:FILE[:TAG]`: a layout packed in a tar file.
    Archive {
        /// The tar file.
        path: PathBuf,
        /// The image's tag in the layout (`org.opencontainers.image.ref.name`);
        /// `None`: the only image on import, a default tag on export.
        tag: Option<String>,
    },
}

/// Why importing from or exporting to an OCI layout failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The location starts with neither `oci:` nor `oci-archive:`.
    #[error("unknown image location {0:?}: want oci:DIR[:TAG] or oci-archive:FILE[:TAG]")]
    BadLocation(String),
    /// Reading or writing the layout, or unpacking or packing its archive,
    /// failed.
    #[error("{path}: {err}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// The directory lacks a readable `oci-layout` (version 1.0.0) or
    /// `index.json`.
    #[error("{path}: not an OCI image layout: {why}")]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        why: String,
    },
    /// No manifest in the layout carries the tag asked for.
    #[error("{path}: no image tagged {tag:?} (tags: {have})")]
    NoTag {
        /// The layout's directory.
        path: PathBuf,
        /// The tag asked for.
        tag: String,
        /// The tags the layout has, comma-separated, or `none`.
        have: String,
    },
    /// No tag was given, and the layout holds more than one image.
    #[error("{path}: {n} images in the layout: name one with :TAG (tags: {have})")]
    Ambiguous {
        /// The layout's directory.
        path: PathBuf,
        /// How many images the layout holds.
        n: usize,
        /// The tags the layout has, comma-separated, or `none`.
        have: String,
    },
    /// Storing the image from the layout failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The store failed while exporting or importing.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |err| LayoutError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// `path[:tag]`: the tag is what follows the last `:` if it has no `/`.
fn split_tag(s: &str) -> (PathBuf, Option<String>) {
    match s.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') && !t.is_empty() && !p.is_empty() => {
            (PathBuf::from(p), Some(t.to_string()))
        }
        _ => (PathBuf::from(s), None),
    }
}

impl Location {
    /// Parse `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`.
    pub fn parse(s: &str) -> Result<Location, LayoutError> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = split_tag(rest);
            return Ok(Location::Dir { path, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, tag) = split_tag(rest);
            return Ok(Location::Archive { path, tag });
        }
        Err(LayoutError::BadLocation(s.to_string()))
    }
}

struct LayoutDir<'a> {
    root: &'a Path,
}

/// Open `path` only if it is a regular file, never through a symlink: a
/// layout (above all one unpacked from an archive) may hold links to
/// `/dev/zero` or to host files in place of blobs.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// Read a small regular file (index.json, oci-layout), at most 4 MiB.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    open_regular(path)?.take(4 << 20).read_to_end(&mut out)?;
    Ok(out)
}

impl BlobSource for LayoutDir<'_> {
    fn open(&self, d: &Descriptor) -> Result<Box<dyn Read + '_>, IngestError> {
        let p = self.root.join("blobs/sha256").join(d.digest.hex());
        let f = open_regular(&p).map_err(|e| IngestError::Source {
            source_name: self.root.display().to_string(),
            digest: d.digest.clone(),
            err: e.to_string(),
        })?;
        // Never more than the descriptor says (+1, so an overlong blob
        // fails the size check instead of filling the disk).
        Ok(Box::new(
            io::BufReader::new(f).take(d.size.saturating_add(1)),
        ))
    }
}

fn read_index(root: &Path) -> Result<Index, LayoutError> {
    let not = |why: String| LayoutError::NotALayout {
        path: root.to_path_buf(),
        why,
    };
    let marker =
        read_small(&root.join("oci-layout")).map_err(|e| not(format!("oci-layout: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&marker).map_err(|e| not(format!("oci-layout: {e}")))?;
    if v["imageLayoutVersion"] != "1.0.0" {
        return Err(not(format!(
            "imageLayoutVersion {}",
            v["imageLayoutVersion"]
        )));
    }
    let idx = read_small(&root.join("index.json")).map_err(|e| not(format!("index.json: {e}")))?;
    serde_json::from_slice(&idx).map_err(|e| not(format!("index.json: {e}")))
}

fn tags(idx: &Index) -> String {
    let t: Vec<_> = idx
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME).cloned())
        .collect();
    if t.is_empty() {
        "none".into()
    } else {
        t.join(", ")
    }
}

/// Import the image `tag` (or the only one) of the layout at `root`.
pub fn import_dir(
    store: &Store,
    root: &Path,
    tag: Option<&str>,
    name: &str,
    opts: &IngestOptions,
) -> Result<ImageRecord, LayoutError> {
    let idx = read_index(root)?;
    let top = match tag {
        Some(t) => idx
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(t))
            .ok_or_else(|| LayoutError::NoTag {
                path: root.to_path_buf(),
                tag: t.to_string(),
                have: tags(&idx),
            })?,
        None => match idx.manifests.as_slice() {
            [one] => one,
            many => {
                return Err(LayoutError::Ambiguous {
                    path: root.to_path_buf(),
                    n: many.len(),
                    have: tags(&idx),
                })
            }
        },
    };
    Ok(ingest::ingest(store, &LayoutDir { root }, top, name, opts)?)
}

/// Import from `loc`; an archive is unpacked to a temporary directory in
/// the store first (the tar crate refuses entries that would leave it).
pub fn import(
    store: &Store,
    loc: &Location,
    name: &str,
    opts: &IngestOptions,
) -> Result<ImageRecord, LayoutError> {
    match loc {
        Location::Dir { path, tag } => import_dir(store, path, tag.as_deref(), name, opts),
        Location::Archive { path, tag } => {
            let tmp = store
                .root()
                .join("tmp")
                .join(format!("archive-{}", std::process::id()));
            let result = (|| {
                fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
                let f = File::open(path).map_err(io_err(path))?;
                let mut ar = tar::Archive::new(io::BufReader::new(f));
                ar.set_preserve_permissions(false);
                ar.unpack(&tmp).map_err(io_err(path))?;
                import_dir(store, &tmp, tag.as_deref(), name, opts)
            })();
            let _ = fs::remove_dir_all(&tmp);
            result
        }
    }
}

/// Write `data` at `path`, replacing a regular file but never writing
/// through a symlink someone planted in the destination.
fn write_new(path: &Path, data: &mut dyn Read) -> Result<(), LayoutError> {
    if fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(io_err(path)(io::Error::other(
            "exists and is not a regular file",
        )));
    }
    let tmp = path.with_extension("skiff-partial");
    let _ = fs::remove_file(&tmp);
    let mut f = new_file(&tmp)?;
    io::copy(data, &mut f).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// A new regular file, never through a symlink an export directory may hold.
fn new_file(path: &Path) -> Result<File, LayoutError> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(path))
}

/// Copy a blob out of the store (a copy, not a hardlink: editing the
/// export must never change the store).
/// Returns whether the blob was new to the layout.
fn copy_blob(store: &Store, d: &Digest, dest_root: &Path) -> Result<bool, LayoutError> {
    let to = dest_root.join("blobs/sha256").join(d.hex());
    if fs::symlink_metadata(&to).is_ok_and(|m| m.is_file()) {
        return Ok(false);
    }
    // Verified as it is copied: a damaged blob never reaches the export.
    let tmp = to.with_extension("skiff-partial");
    let _ = fs::remove_file(&tmp);
    let f = new_file(&tmp)?;
    let copied = store
        .copy_blob_to(d, io::BufWriter::new(&f))
        .map_err(LayoutError::from)
        .and_then(|_| f.sync_all().map_err(io_err(&tmp)))
        .and_then(|_| fs::rename(&tmp, &to).map_err(io_err(&to)));
    if copied.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    copied.map(|_| true)
}

/// Write `rec` as a layout at `root` (created if missing; an existing
/// layout gains the image, replacing one with the same tag).
pub fn export_dir(
    store: &Store,
    rec: &ImageRecord,
    root: &Path,
    tag: &str,
) -> Result<(), LayoutError> {
    fs::create_dir_all(root.join("blobs/sha256")).map_err(io_err(root))?;
    let manifest_bytes = store.read_blob(&rec.manifest)?;
    let m: manifest::Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| LayoutError::NotALayout {
            path: store.blob_path(&rec.manifest),
            why: e.to_string(),
        })?;
    // Blobs this export adds are taken back if a later one fails: a
    // failed export leaves the layout as it was.
    let mut added = vec![];
    for d in std::iter::once(&rec.manifest)
        .chain(std::iter::once(&rec.config))
        .chain(rec.layers.iter())
    {
        match copy_blob(store, d, root) {
            Ok(true) => added.push(root.join("blobs/sha256").join(d.hex())),
            Ok(false) => {}
            Err(e) => {
                for p in &added {
                    let _ = fs::remove_file(p);
                }
                return Err(e);
            }
        }
    }
    let mut idx = read_index(root).unwrap_or(Index {
        schema_version: 2,
        media_type: Some(manifest::OCI_INDEX.into()),
        manifests: vec![],
    });
    idx.manifests
        .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(REF_NAME.to_string(), tag.to_string());
    idx.manifests.push(Descriptor {
        media_type: m
            .media_type
            .unwrap_or_else(|| manifest::OCI_MANIFEST.into()),
        digest: rec.manifest.clone(),
        size: manifest_bytes.len() as u64,
        platform: None,
        annotations,
    });
    let write = |name: &str, data: Vec<u8>| write_new(&root.join(name), &mut &data[..]);
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())?;
    write(
        "index.json",
        serde_json::to_vec(&idx).expect("index serialises"),
    )
}

/// Export to `loc` (an archive is a tar of the layout directory).
pub fn export(
    store: &Store,
    rec: &ImageRecord,
    loc: &Location,
    default_tag: &str,
) -> Result<(), LayoutError> {
    match loc {
        Location::Dir { path, tag } => {
            export_dir(store, rec, path, tag.as_deref().unwrap_or(default_tag))
        }
        Location::Archive { path, tag } => {
            let tmp = store
                .root()
                .join("tmp")
                .join(format!("export-{}", std::process::id()));
            let result = (|| {
                export_dir(store, rec, &tmp, tag.as_deref().unwrap_or(default_tag))?;
                let partial = path.with_extension("partial");
                let f = File::create(&partial).map_err(io_err(&partial))?;
                let mut b = tar::Builder::new(io::BufWriter::new(f));
                b.append_dir_all(".", &tmp).map_err(io_err(path))?;
                b.into_inner()
                    .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                    .map_err(io_err(path))?;
                fs::rename(&partial, path).map_err(io_err(path))
            })();
            let _ = fs::remove_dir_all(&tmp);
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse("oci:/tmp/img:v1").unwrap(),
            Location::Dir {
                path: "/tmp/img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Location::parse("oci:/tmp/img").unwrap(),
            Location::Dir {
                path: "/tmp/img".into(),
                tag: None
            }
        );
        assert_eq!(
            Location::parse("oci-archive:a.tar:latest").unwrap(),
            Location::Archive {
                path: "a.tar".into(),
                tag: Some("latest".into())
            }
        );
        assert!(Location::parse("docker://x").is_err());
    }
}
