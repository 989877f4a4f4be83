//! `containerd-shim-skiff-v2`: containerd's runtime v2 shim for skiff
//! (runtime type `io.containerd.skiff.v2`).
//!
//! containerd does not run containers itself. For each one it starts a
//! *shim*, a small long-lived process that owns the container: containerd
//! runs `containerd-shim-skiff-v2 -namespace NS -id ID -address SOCK start`,
//! the shim forks a copy of itself that serves the task API over ttrpc on a
//! unix socket, prints that socket's address and exits. The serving shim
//! then outlives containerd restarts, reaps the container's processes (it is
//! their subreaper), keeps their exit statuses, and wires their stdio to the
//! fifos containerd gives it. When the shim itself is lost, containerd runs
//! `containerd-shim-skiff-v2 ... delete` to clean up.
//!
//! See containerd's runtime/v2 README, and [`service`] for the task API.

#![warn(missing_docs)]

pub mod io;
pub mod runtime;
pub mod service;
pub mod stats;

use std::sync::Arc;

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, DeleteResponse, ExitSignal, Flags, StartOpts};

/// The answer to `-info`: name, version, and `skiff features` (JSON, typed
/// as the runtime spec's Features document), as a `RuntimeInfo` protobuf.
pub fn runtime_info() -> Result<Vec<u8>, String> {
    use protos_v2::protobuf::Message;
    use protos_v2::types::introspection::{RuntimeInfo, RuntimeVersion};
    let out = std::process::Command::new(runtime::find_binary())
        .arg("features")
        .output()
        .map_err(|e| format!("run skiff features: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "skiff features: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let info = RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        version: protos_v2::protobuf::MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        features: protos_v2::protobuf::MessageField::some(
            protos_v2::protobuf::well_known_types::any::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
                    .into(),
                value: out.stdout,
                ..Default::default()
            },
        ),
        ..Default::default()
    };
    info.write_to_bytes()
        .map_err(|e| format!("encode runtime info: {e}"))
}

/// The runtime type containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.skiff.v2";

/// The shim for one container, as the containerd-shim crate runs it: starts
/// the serving shim, cleans up after a lost one, and creates the
/// [`service::TaskService`].
pub struct Shim {
    namespace: String,
    id: String,
    bundle: String,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for Shim {
    type T = service::TaskService;

    fn new(_runtime_id: &str, args: &Flags, config: &mut Config) -> Self {
        // Logs go to the fifo containerd reads (`log` in the bundle).
        config.no_setup_logger = false;
        Shim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> Result<String, containerd_shim::Error> {
        // One shim per container.
        let grouping = opts.id.clone();
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        // containerd reconnects after a restart through `address` in the
        // bundle (our working directory); the crate leaves it unwritten.
        std::fs::write("address", &address)
            .map_err(|e| containerd_shim::Error::Other(format!("write address file: {e}")))?;
        Ok(address)
    }

    /// The shim died: force-delete the container and release its rootfs.
    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        // containerd runs `delete` in the bundle directory; newer ones also
        // pass -bundle.
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            std::path::PathBuf::from(&self.bundle)
        };
        let rt = runtime::Runtime::new(&self.namespace, &bundle);
        let _ = rt.call(&["delete", "--force", &self.id], runtime::CallIo::default());
        let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        // The dead shim's socket (under /run/containerd/s) stays otherwise.
        if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
            if let Some(path) = address.trim().strip_prefix("unix://") {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: containerd_shim::protos::protobuf::MessageField::some(
                containerd_shim::util::timestamp().unwrap_or_default(),
            ),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        service::TaskService::new(&self.namespace, publisher, self.exit.clone())
    }
}
