//! Manifests, indexes and descriptors: the JSON that ties an image's blobs
//! together (OCI image-spec manifest.md, image-index.md, descriptor.md, and
//! Docker's schema2 / manifest list, which have the same shape under other
//! media types).
//!
//! A *descriptor* points at a blob: media type, digest, size. A *manifest*
//! is a config descriptor plus layer descriptors; an *index* (Docker: a
//! "manifest list") is manifest descriptors, each for a platform. Parsing is
//! deliberately lenient about fields Skiff does not use, strict about the
//! ones it does (a digest that does not parse is an error, not a path).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a Docker manifest list (the Docker name for an index).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of a Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The annotation an OCI layout's index uses for a manifest's tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A pointer to a blob (descriptor.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is (a manifest, a config, a compressed layer...).
    pub media_type: String,
    /// The blob's digest, which is also its name in the store.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The platform a manifest is for, in an index's entries; `None` elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form metadata, e.g. [`REF_NAME`] in an OCI layout's index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OS, architecture and optional variant, as in Go's GOOS/GOARCH
/// (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The CPU architecture (`amd64`, `arm64`, `ppc64le`...).
    pub architecture: String,
    /// The operating system (`linux`).
    pub os: String,
    /// The CPU variant (`v7` for arm, `v8` for arm64), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (manifest.md): the config and the layers of one image
/// for one platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `schemaVersion`: 2 in the OCI and Docker schema 2 formats (not checked).
    pub schema_version: u32,
    /// The manifest's own media type, if it states one (optional for OCI,
    /// required by Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An image index or Docker manifest list (image-index.md): one manifest
/// per platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// `schemaVersion`: 2 in the OCI and Docker schema 2 formats (not checked).
    pub schema_version: u32,
    /// The index's own media type, if it states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests, each with its platform.
    pub manifests: Vec<Descriptor>,
}

/// Whether `media_type` is an index (OCI or Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Whether `media_type` is a manifest (OCI or Docker).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Why no manifest for a platform could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A `--platform` value that is not `os/arch[/variant]`.
    #[error("invalid platform {0:?}: want os/arch[/variant], like linux/arm64/v8")]
    Invalid(String),
    /// The index lists no manifest for the wanted platform.
    #[error("no manifest for platform {want} (the index has: {have})")]
    NoMatch {
        /// The platform asked for.
        want: String,
        /// The platforms the index has, comma-separated.
        have: String,
    },
}

impl Platform {
    /// The machine this runs on, in Go's GOOS/GOARCH names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
        }
    }

    /// `os/arch[/variant]`, as `--platform` takes it.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(PlatformError::Invalid(s.to_string())),
        }
    }

    /// Does an index entry for `other` run here? A missing variant matches
    /// the default one (arm64 means v8).
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        let default = match self.architecture.as_str() {
            "arm64" => Some("v8"),
            _ => None,
        };
        let norm = |v: &Option<String>| v.as_deref().or(default).map(str::to_string);
        match (&self.variant, &other.variant) {
            (None, _) => true,
            (Some(_), _) => norm(&self.variant) == norm(&other.variant),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Pick the manifest for `want` from an index.
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
) -> Result<&'a Descriptor, PlatformError> {
    index
        .manifests
        .iter()
        .filter(|d| is_manifest(&d.media_type))
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .ok_or_else(|| PlatformError::NoMatch {
            want: want.to_string(),
            have: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::of(p.as_bytes()),
            size: 1,
            platform: Some(Platform::parse(p).unwrap()),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platform_selection() {
        let idx = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                entry("linux/arm/v7"),
                entry("linux/arm64/v8"),
                entry("linux/amd64"),
            ],
        };
        let pick = |p: &str| {
            select_platform(&idx, &Platform::parse(p).unwrap())
                .unwrap()
                .digest
                .clone()
        };
        assert_eq!(pick("linux/amd64"), Digest::of(b"linux/amd64"));
        assert_eq!(pick("linux/arm64"), Digest::of(b"linux/arm64/v8"));
        assert_eq!(pick("linux/arm/v7"), Digest::of(b"linux/arm/v7"));
        let err = select_platform(&idx, &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("linux/arm/v7, linux/arm64/v8, linux/amd64"),
            "{err}"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/../x").is_err());
    }
}
