//! The node agent `skiff-agent` (DESIGN.md §5).
//!
//! What exists so far is its `image` command line (see `src/image_cmd.rs`),
//! built on `skiff-images`; the pod daemon, probes and API come with the
//! node-agent issue. The library exports nothing yet.
