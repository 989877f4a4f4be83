//! Content digests: `sha256:<64 hex>`, the name of every blob.
//!
//! Everything an image is made of (layers, configs, manifests) is stored and
//! fetched by the hash of its bytes, so content verifies itself: whatever a
//! registry sends is hashed while it streams in and refused if the hash is
//! not the one asked for. A digest is also a file name in the store, so only
//! well-formed ones are accepted (no `/`, no `..`, fixed length).

use std::fmt;
use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

/// Why a string is not a digest Skiff accepts.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DigestError {
    /// Not `<algorithm>:<hex>`, or the hex part is not 64 lowercase hex digits.
    #[error("invalid digest {0:?}: want sha256:<64 lowercase hex digits>")]
    Invalid(String),
    /// An algorithm other than `sha256` (`sha512:…`, say).
    #[error("unsupported digest algorithm {0:?} (only sha256)")]
    Algorithm(String),
}

/// A validated `sha256:` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parse `sha256:<64 lowercase hex digits>`; anything else is refused.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Invalid(s.to_string()))?;
        if alg != "sha256" {
            return Err(DigestError::Algorithm(alg.to_string()));
        }
        if hex.len() != 64 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::Invalid(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest {
            hex: hex(&Sha256::digest(data)),
        }
    }

    /// The 64 hex digits (a safe file name).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A writer (or reader tap) that hashes and counts every byte passing through.
pub struct Hasher<W> {
    inner: W,
    sha: Sha256,
    len: u64,
}

impl<W> Hasher<W> {
    /// Wrap `inner`, with nothing hashed or counted yet.
    pub fn new(inner: W) -> Self {
        Hasher {
            inner,
            sha: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte has passed through yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything seen, and the wrapped value back.
    pub fn finish(self) -> (Digest, W) {
        (
            Digest {
                hex: hex(&self.sha.finalize()),
            },
            self.inner,
        )
    }
}

impl<W: Write> Write for Hasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: io::Read> io::Read for Hasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_validation() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Digest::parse("sha256:../../etc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert_eq!(
            Digest::parse("sha512:00"),
            Err(DigestError::Algorithm("sha512".into()))
        );
    }

    #[test]
    fn hasher_counts_and_hashes_a_stream() {
        let mut h = Hasher::new(Vec::new());
        h.write_all(b"hello ").unwrap();
        h.write_all(b"world").unwrap();
        assert_eq!(h.len(), 11);
        let (d, out) = h.finish();
        assert_eq!(out, b"hello world");
        assert_eq!(d, Digest::of(b"hello world"));
    }
}
