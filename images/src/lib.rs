//! Image handling (pull, store, unpack, image config to runtime spec) lives here.
//!
//! Nothing is built yet: this crate is a placeholder in the workspace so the
//! layout matches the design (DESIGN.md §4). It exports nothing.
