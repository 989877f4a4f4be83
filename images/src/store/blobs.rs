//! Blobs: content-addressed files under `blobs/sha256/`. A blob is written
//! under `tmp/` while its digest is computed, and renamed into place only
//! when the digest (and the size, when known) match what was asked for, so
//! a blob in place is always the one its name says (image-spec
//! descriptor.md, "Digests").

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::*;

impl Store {
    /// Where blob `d` is (or would be) stored: `blobs/sha256/<hex>`.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether blob `d` is in the store (unverified; see [`Store::read_blob`]).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// The content of blob `d`, checked against its digest: a blob edited
    /// or truncated in the store is refused, never handed on.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let data = fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
            _ => io_err("read", &p)(e),
        })?;
        self.check(d, Digest::of(&data))?;
        Ok(data)
    }

    /// Copy blob `d` into `w`, hashing as it goes; `Damaged` if what was
    /// copied is not `d` (the caller throws the copy away).
    pub fn copy_blob_to(&self, d: &Digest, w: impl Write) -> Result<u64> {
        let p = self.blob_path(d);
        let mut f = File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(d.clone()),
            _ => io_err("open", &p)(e),
        })?;
        let mut h = Hasher::new(w);
        let n = io::copy(&mut f, &mut h).map_err(io_err("copy", &p))?;
        self.check(d, h.finish().0)?;
        Ok(n)
    }

    fn check(&self, d: &Digest, actual: Digest) -> Result<()> {
        if &actual == d {
            return Ok(());
        }
        Err(StoreError::Damaged {
            digest: d.clone(),
            actual,
            path: self.blob_path(d),
        })
    }

    /// Store the content of `r` as blob `expected`, verifying the digest
    /// (and `size`, if known) while it streams; nothing is visible unless it
    /// matches.
    pub fn put_blob(&self, expected: &Digest, size: Option<u64>, r: impl Read) -> Result<()> {
        if self.has_blob(expected) {
            return Ok(());
        }
        let tmp = self.root.join("tmp").join(tmp_name("blob"));
        let result = self.write_verified(&tmp, expected, size, r);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_verified(
        &self,
        tmp: &Path,
        expected: &Digest,
        size: Option<u64>,
        mut r: impl Read,
    ) -> Result<()> {
        let f = File::create(tmp).map_err(io_err("create", tmp))?;
        let mut h = Hasher::new(io::BufWriter::new(f));
        io::copy(&mut r, &mut h).map_err(io_err("write", tmp))?;
        let n = h.len();
        let (actual, w) = h.finish();
        let f = w
            .into_inner()
            .map_err(|e| io_err("write", tmp)(e.into_error()))?;
        if let Some(s) = size.filter(|s| *s != n) {
            return Err(StoreError::SizeMismatch {
                digest: expected.clone(),
                expected: s,
                actual: n,
            });
        }
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        f.sync_all().map_err(io_err("fsync", tmp))?;
        let dest = self.blob_path(expected);
        fs::rename(tmp, &dest).map_err(io_err("rename", &dest))
    }

    /// Move a downloaded file into the store as blob `d`. The caller has
    /// verified its digest while downloading (see
    /// [`crate::registry::Registry::download_blob`]); the size is checked
    /// again here, cheaply.
    pub fn adopt_blob(&self, file: &Path, d: &Digest, size: u64) -> Result<()> {
        let n = fs::metadata(file).map_err(io_err("stat", file))?.len();
        if n != size {
            let _ = fs::remove_file(file);
            return Err(StoreError::SizeMismatch {
                digest: d.clone(),
                expected: size,
                actual: n,
            });
        }
        let dest = self.blob_path(d);
        fs::rename(file, &dest).map_err(io_err("rename", &dest))
    }
}
