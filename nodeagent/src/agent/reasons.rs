//! The reasons kubelet gives, as types.
//!
//! A container that is not running says why in `state.waiting.reason` or
//! `state.terminated.reason`; a pod that cannot run says why in
//! `status.reason`. Clients match on these strings (`kubectl get pods`
//! prints them as STATUS, controllers and alerting rules look for
//! `CrashLoopBackOff` or `OOMKilled`), so they must be kubelet's, letter
//! for letter. Each enum serializes to exactly those strings (see
//! `pkg/kubelet/container/sync_result.go` and `pkg/kubelet/images/types.go`
//! in the Kubernetes source, and "Container states" in the Pod Lifecycle
//! documentation).

use serde::{Deserialize, Serialize};

/// Why a container waits (`state.waiting.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitingReason {
    /// Not started yet (the sandbox or the image is on its way).
    ContainerCreating,
    /// An app container waits for the init containers.
    PodInitializing,
    /// Restarted too often: held back by the restart back-off.
    CrashLoopBackOff,
    /// The last pull failed.
    ErrImagePull,
    /// Pulls keep failing: held back by the image back-off.
    ImagePullBackOff,
    /// `imagePullPolicy: Never` and the image is not on the node.
    ErrImageNeverPull,
    /// The image reference does not parse.
    InvalidImageName,
    /// The container's configuration cannot be made (a volume, a
    /// secret, the bundle).
    CreateContainerConfigError,
}

impl WaitingReason {
    /// The reason as kubelet writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingReason::ContainerCreating => "ContainerCreating",
            WaitingReason::PodInitializing => "PodInitializing",
            WaitingReason::CrashLoopBackOff => "CrashLoopBackOff",
            WaitingReason::ErrImagePull => "ErrImagePull",
            WaitingReason::ImagePullBackOff => "ImagePullBackOff",
            WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitingReason::InvalidImageName => "InvalidImageName",
            WaitingReason::CreateContainerConfigError => "CreateContainerConfigError",
        }
    }

    /// Is it an image problem that the image back-off holds?
    pub fn is_image_backoff(self) -> bool {
        matches!(
            self,
            WaitingReason::ErrImagePull
                | WaitingReason::ImagePullBackOff
                | WaitingReason::ErrImageNeverPull
        )
    }
}

impl std::fmt::Display for WaitingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a container ended (`state.terminated.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TerminatedReason {
    /// Exit code 0.
    Completed,
    /// Any other exit.
    Error,
    /// The kernel's OOM killer ended it (its cgroup says so).
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// The runtime could not start it (exit code 128, as kubelet).
    StartError,
}

impl TerminatedReason {
    /// The reason as kubelet writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminatedReason::Completed => "Completed",
            TerminatedReason::Error => "Error",
            TerminatedReason::OomKilled => "OOMKilled",
            TerminatedReason::StartError => "StartError",
        }
    }
}

impl std::fmt::Display for TerminatedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a pod failed as a whole (`status.reason`), set when the node
/// refuses or ends it rather than its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodFailureReason {
    /// A static pod's manifest does not parse or check (Skiff's own: kubelet
    /// only logs such a file).
    InvalidManifest,
    /// The pod uses a field this node does not implement (Skiff's own: it
    /// refuses rather than run half the spec; the message names the path).
    UnsupportedField,
    /// The node could not admit the pod for another reason.
    UnexpectedAdmissionError,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// A sysctl that is not known to be safe and namespaced.
    SysctlForbidden,
    /// Requests beyond the node's allocatable resources.
    #[serde(rename = "OutOfcpu")]
    OutOfCpu,
    /// Memory requests beyond what the node can still allocate.
    #[serde(rename = "OutOfmemory")]
    OutOfMemory,
    /// The node already runs `--max-pods` pods.
    #[serde(rename = "OutOfpods")]
    OutOfPods,
}

impl PodFailureReason {
    /// The reason as kubelet writes it (`OutOfcpu`, the resource in lower
    /// case).
    pub fn as_str(self) -> &'static str {
        match self {
            PodFailureReason::InvalidManifest => "InvalidManifest",
            PodFailureReason::UnsupportedField => "UnsupportedField",
            PodFailureReason::UnexpectedAdmissionError => "UnexpectedAdmissionError",
            PodFailureReason::DeadlineExceeded => "DeadlineExceeded",
            PodFailureReason::SysctlForbidden => "SysctlForbidden",
            PodFailureReason::OutOfCpu => "OutOfcpu",
            PodFailureReason::OutOfMemory => "OutOfmemory",
            PodFailureReason::OutOfPods => "OutOfpods",
        }
    }
}

impl std::fmt::Display for PodFailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_serialize_to_kubelets_strings() {
        let w = WaitingReason::CrashLoopBackOff;
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"CrashLoopBackOff\"");
        assert_eq!(
            serde_json::from_str::<WaitingReason>("\"ImagePullBackOff\"").unwrap(),
            WaitingReason::ImagePullBackOff
        );
        assert_eq!(
            serde_json::to_string(&TerminatedReason::OomKilled).unwrap(),
            "\"OOMKilled\""
        );
        assert_eq!(
            serde_json::to_string(&PodFailureReason::OutOfCpu).unwrap(),
            "\"OutOfcpu\""
        );
        assert_eq!(PodFailureReason::OutOfMemory.as_str(), "OutOfmemory");
    }

    /// Every variant's `as_str` is what serde writes.
    #[test]
    fn as_str_agrees_with_serde() {
        use WaitingReason as W;
        for r in [
            W::ContainerCreating,
            W::PodInitializing,
            W::CrashLoopBackOff,
            W::ErrImagePull,
            W::ImagePullBackOff,
            W::ErrImageNeverPull,
            W::InvalidImageName,
            W::CreateContainerConfigError,
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        use TerminatedReason as T;
        for r in [T::Completed, T::Error, T::OomKilled, T::StartError] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        use PodFailureReason as P;
        for r in [
            P::UnexpectedAdmissionError,
            P::DeadlineExceeded,
            P::OutOfCpu,
            P::OutOfMemory,
            P::OutOfPods,
        ] {
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
    }
}
