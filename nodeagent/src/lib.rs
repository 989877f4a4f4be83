//! The node agent `skiff-agent` (docs/ARCHITECTURE.md, "The node agent"):
//! a kubelet, for one machine or as a node of a Kubernetes cluster.
//!
//! It reads Pod manifests from a directory ([`manifest`]) and, with
//! `--kubeconfig`, the pods the API server binds to its node; gives each pod a
//! sandbox — a pinned network namespace ([`netns`]) wired by CNI plugins
//! ([`cni`]) and held by a pause process ([`pause`]) — runs the containers
//! through the `skiff` runtime, each under its own monitor ([`monitor`],
//! writing [`cri_log`] files), restarts them with kubelet's back-off
//! ([`backoff`]), probes them ([`probe`]), and reports everything through
//! an HTTP API ([`agent`]).

#![warn(missing_docs)]

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
pub mod spdy;
