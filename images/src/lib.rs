//! `skiff-images`: image references, digests, a content store and safe
//! layer unpacking (docs/ARCHITECTURE.md, "Images").
//!
//! An OCI image is a small graph of content-addressed blobs: a *manifest*
//! lists a *config* (what to run, environment, user...) and *layers* (tar
//! archives of file-system changes); an *index* may point at one manifest
//! per platform. This crate turns such a graph into directories an overlayfs
//! mount can stack into a container's root filesystem, and a config into an
//! OCI runtime spec. See the OCI image spec (image-spec/manifest.md,
//! layer.md, config.md).

#![warn(missing_docs)]

pub mod digest;
pub mod ingest;
pub mod manifest;
pub mod oci_layout;
pub mod reference;
pub mod registry;
pub mod runtime_spec;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use reference::Reference;
