//! The node agent `skiff-agent` (DESIGN.md §5): a kubelet for one machine.
//!
//! It reads Pod manifests from a directory ([`manifest`]), gives each pod a
//! sandbox — a pinned network namespace ([`netns`]) wired by CNI plugins
//! ([`cni`]) and held by a pause process ([`pause`]) — runs the containers
//! through the `skiff` runtime, each under its own monitor ([`monitor`],
//! writing [`cri_log`] files), restarts them with kubelet's back-off
//! ([`backoff`]), probes them ([`probe`]), and reports everything through
//! an HTTP API ([`agent`]).

pub mod agent;
pub mod backoff;
pub mod cni;
pub mod cri_log;
pub mod manifest;
pub mod monitor;
pub mod netns;
pub mod pause;
pub mod probe;
pub mod quantity;
