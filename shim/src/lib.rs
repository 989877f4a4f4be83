//! The containerd shim `containerd-shim-skiff-v2` lives here.
//!
//! Nothing is built yet: this crate is a placeholder in the workspace so the
//! layout matches the design (DESIGN.md §3). It exports nothing and produces no
//! binary, so nothing can mistake it for a working shim.
