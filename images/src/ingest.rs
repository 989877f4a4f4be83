//! Storing an image from any source: an OCI layout on disk, an archive, or
//! a registry. The walk is the same for all of them: the top blob (an index
//! or a manifest) → the manifest for this platform → its config → its
//! layers, each verified against its digest as it is written, each layer
//! unpacked under its chain id and checked against the config's diff_id.
//! Only when all of it is in the store does the name point at it.

use std::io::Read;

use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Index, Manifest, Platform, PlatformError};
use crate::store::{chain_ids, ImageRecord, Store, StoreError};
use crate::unpack::Limits;

/// Why storing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store refused a blob or layer, or could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The index has no manifest for the wanted platform.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// A blob could not be read from its source.
    #[error("{source_name}: blob {digest}: {err}")]
    Source {
        /// The source: an OCI layout's directory, or `pull`.
        source_name: String,
        /// The blob asked for.
        digest: Digest,
        /// What went wrong reading it.
        err: String,
    },
    /// A blob's JSON (index, manifest or image config) does not parse, or a
    /// diff_id in the config is not a valid digest.
    #[error("{what} {digest}: {err}")]
    Parse {
        /// What the blob should have been (`"manifest"`, `"image config"`...).
        what: &'static str,
        /// The blob that failed to parse.
        digest: Digest,
        /// The parser's message.
        err: String,
    },
    /// The image does not hang together (the manifest's layers do not match the
    /// config's diff_ids).
    #[error("{0}")]
    Invalid(String),
}

/// Somewhere blobs can be read from.
pub trait BlobSource {
    /// A reader over the blob `d` describes (the store verifies what it reads).
    fn open(&self, d: &Descriptor) -> Result<Box<dyn Read + '_>, IngestError>;
}

/// Choices for storing an image, whatever its source.
pub struct IngestOptions {
    /// The platform to pick from an index.
    pub platform: Platform,
    /// Caps for unpacking each layer.
    pub limits: Limits,
}

fn fetch(store: &Store, src: &dyn BlobSource, d: &Descriptor) -> Result<(), IngestError> {
    if store.has_blob(&d.digest) {
        return Ok(());
    }
    let r = src.open(d)?;
    store.put_blob(&d.digest, Some(d.size), r)?;
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    digest: &Digest,
) -> Result<T, IngestError> {
    serde_json::from_slice(bytes).map_err(|e| IngestError::Parse {
        what,
        digest: digest.clone(),
        err: e.to_string(),
    })
}

/// The diff_ids an image config lists (`rootfs.diff_ids`).
pub fn diff_ids(config: &[u8], digest: &Digest) -> Result<Vec<Digest>, IngestError> {
    let cfg: oci_spec::image::ImageConfiguration = parse(config, "image config", digest)?;
    cfg.rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            Digest::parse(d).map_err(|e| IngestError::Parse {
                what: "image config",
                digest: digest.clone(),
                err: format!("diff_id: {e}"),
            })
        })
        .collect()
}

/// Store the image `top` points at under `name`.
pub fn ingest(
    store: &Store,
    src: &dyn BlobSource,
    top: &Descriptor,
    name: &str,
    opts: &IngestOptions,
) -> Result<ImageRecord, IngestError> {
    fetch(store, src, top)?;
    let (index, mdesc) = if manifest::is_index(&top.media_type) {
        let idx: Index = parse(&store.read_blob(&top.digest)?, "index", &top.digest)?;
        let m = manifest::select_platform(&idx, &opts.platform)?.clone();
        fetch(store, src, &m)?;
        (Some(top.digest.clone()), m)
    } else {
        (None, top.clone())
    };
    let m: Manifest = parse(&store.read_blob(&mdesc.digest)?, "manifest", &mdesc.digest)?;
    fetch(store, src, &m.config)?;
    let diffs = diff_ids(&store.read_blob(&m.config.digest)?, &m.config.digest)?;
    if diffs.len() != m.layers.len() {
        return Err(IngestError::Invalid(format!(
            "manifest {}: {} layers but the config lists {} diff_ids",
            mdesc.digest,
            m.layers.len(),
            diffs.len()
        )));
    }
    let chain = chain_ids(&diffs);
    for ((layer, diff), ch) in m.layers.iter().zip(&diffs).zip(&chain) {
        if store.has_layer(ch) {
            continue; // shared with an image already here
        }
        fetch(store, src, layer)?;
        store.unpack_layer(&layer.digest, &layer.media_type, diff, ch, &opts.limits)?;
    }
    let rec = ImageRecord {
        name: name.to_string(),
        manifest: mdesc.digest.clone(),
        index,
        config: m.config.digest.clone(),
        layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
        chain,
        size: m.layers.iter().map(|l| l.size).sum(),
        stored: now_rfc3339(),
    };
    store.put_image(rec.clone())?;
    Ok(rec)
}

/// The current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
