//! The node agent `skiff-agent` lives here.
//!
//! Nothing is built yet: this crate is a placeholder in the workspace so the
//! layout matches the design (DESIGN.md §5). It exports nothing and produces no
//! binary.
