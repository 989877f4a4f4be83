//! Image references: what `busybox`, `127.0.0.1:5000/team/app:v2` and
//! `alpine@sha256:…` mean.
//!
//! A reference names a repository on a registry and, optionally, a tag (a
//! movable name) and/or a digest (the immutable hash of a manifest). Docker
//! fills in what is left out, and every tool that takes Docker's references
//! does the same, so Skiff normalises exactly like it:
//!
//! - no registry (the first path component has no `.` or `:` and is not
//!   `localhost`) means Docker Hub, `docker.io`;
//! - a one-component name on Docker Hub lives under `library/`;
//! - no tag and no digest means the tag `latest`.
//!
//! So `busybox` is `docker.io/library/busybox:latest`. Docker Hub's API is
//! not served at `docker.io` but at `registry-1.docker.io`
//! ([`Reference::api_host`]). Registries on the loopback interface are
//! reached over plain HTTP unless told otherwise, as containerd does.

use std::fmt;

use crate::digest::Digest;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReferenceError {
    /// The reference is the empty string.
    #[error("invalid reference {0:?}: empty")]
    Empty(String),
    /// The reference breaks the grammar: bad tag, registry host, repository
    /// component or digest, or a repository name over 255 characters.
    #[error("invalid reference {reference:?}: {why}")]
    Invalid {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        why: String,
    },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// The registry host, with its port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The repository path on it (`library/busybox`).
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest is given); `None` when
    /// only a digest is.
    pub tag: Option<String>,
    /// The manifest digest after `@`, if given.
    pub digest: Option<Digest>,
}

fn invalid(reference: &str, why: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_string(),
        why: why.into(),
    }
}

/// One path component: lowercase alphanumerics joined by `.`, `_`, `__` or
/// runs of `-` (the distribution spec's grammar).
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        match ch {
            b'.' | b'_' if b.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) => i += 1,
            b'_' if b.get(i + 1) == Some(&b'_')
                && b.get(i + 2).is_some_and(u8::is_ascii_alphanumeric) =>
            {
                i += 2
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
                if !b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    let host_ok = if host.starts_with('[') && host.ends_with(']') {
        host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        !host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    };
    host_ok
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
}

impl Reference {
    /// Parse and normalise `s` as Docker does.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty(s.to_string()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|e| invalid(s, e.to_string()))?),
            ),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s, format!("bad tag {t:?}")));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !valid_host(first) {
                    return Err(invalid(s, format!("bad registry host {first:?}")));
                }
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.len() > 255 {
            return Err(invalid(s, "repository name longer than 255 characters"));
        }
        if let Some(bad) = repository.split('/').find(|c| !valid_component(c)) {
            return Err(invalid(
                s,
                format!(
                    "bad repository component {bad:?} (lowercase letters, digits and . _ - only)"
                ),
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host the registry API is reached at.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Loopback registries are spoken to over plain HTTP by default.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// What the manifest is asked for by: the digest if there is one, else the tag.
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("team/app"), "docker.io/team/app:latest");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(norm("127.0.0.1:5000/a/b:v2"), "127.0.0.1:5000/a/b:v2");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("quay.io/org/img"), "quay.io/org/img:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            norm(&format!("alpine@{d}")),
            format!("docker.io/library/alpine@{d}")
        );
        assert_eq!(
            norm(&format!("alpine:3@{d}")),
            format!("docker.io/library/alpine:3@{d}")
        );
    }

    #[test]
    fn api_host_and_plain_http() {
        let hub = Reference::parse("busybox").unwrap();
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        assert!(!hub.is_loopback());
        let local = Reference::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(local.api_host(), "127.0.0.1:5000");
        assert!(local.is_loopback());
        assert!(Reference::parse("localhost:8080/x").unwrap().is_loopback());
        assert!(Reference::parse("127.1.2.3:5000/x").unwrap().is_loopback());
        // A real host name that merely starts like an address is not.
        assert!(!Reference::parse("127.corp.example/x")
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "a/../b",
            "x:",
            "x:-bad",
            "x@sha256:short",
            "x@md5:abcd",
            "-leading",
            "a/b_",
            "exa mple",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
