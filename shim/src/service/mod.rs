//! The task service containerd talks to (ttrpc, `containerd.task.v2.Task`):
//! one container, its init process and its exec'd processes.
//!
//! containerd drives a task through Create, Start, (Exec, Start)*, Kill,
//! Wait, Delete; every change is also published as an event (TaskCreate,
//! TaskStart, TaskExecAdded, TaskExecStarted, TaskExit, TaskDelete...), in
//! that order, to containerd's event service. Each operation here runs the
//! `skiff` binary ([`crate::runtime`]); exit statuses come from the exit
//! monitor, watched by one thread for the shim's whole life.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use containerd_shim::api;
use containerd_shim::protos::events::task::{
    TaskDelete, TaskExecAdded, TaskExecStarted, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{Code, Error as TtrpcError, Status as TtrpcStatus};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, TtrpcContext, TtrpcResult};

mod create;
mod exits;
mod tasks;

use crate::io::{self, Stdio};
use crate::runtime::{CallIo, Runtime};
use create::{read_pid, unmount_rootfs};
use tasks::{Proc, Status, Tasks};

fn err(code: Code, msg: impl Into<String>) -> TtrpcError {
    TtrpcError::RpcStatus(TtrpcStatus {
        code: code.into(),
        message: msg.into(),
        ..Default::default()
    })
}

fn now() -> Timestamp {
    containerd_shim::util::timestamp().unwrap_or_default()
}

/// The task API (`containerd.task.v2.Task`) for the shim's one container,
/// publishing task events to containerd as they happen.
pub struct TaskService {
    namespace: String,
    ooms: Arc<crate::stats::OomCount>,
    tasks: Arc<(Mutex<Tasks>, Condvar)>,
    publisher: Arc<Mutex<RemotePublisher>>,
    exit: Arc<containerd_shim::ExitSignal>,
}

fn publish(p: &Mutex<RemotePublisher>, ns: &str, topic: &str, ev: Box<dyn MessageDyn>) {
    if let Ok(p) = p.lock() {
        if let Err(e) = p.publish(Context::default(), topic, ns, ev) {
            log::warn!("publish {topic}: {e}");
        }
    }
}

impl TaskService {
    /// Start serving: spawns the thread that matches reaped exits to the
    /// container's processes, publishing through `publisher` to containerd's
    /// `namespace`; `exit` is signalled when the shim should exit (Shutdown).
    pub fn new(
        namespace: &str,
        publisher: RemotePublisher,
        exit: Arc<containerd_shim::ExitSignal>,
    ) -> TaskService {
        let svc = TaskService {
            namespace: namespace.to_string(),
            ooms: Arc::new(crate::stats::OomCount::default()),
            tasks: Arc::new((Mutex::new(Tasks::default()), Condvar::new())),
            publisher: Arc::new(Mutex::new(publisher)),
            exit,
        };
        svc.watch_exits();
        svc
    }

    fn runtime(&self, bundle: &Path) -> Runtime {
        Runtime::new(&self.namespace, bundle)
    }

    /// Run `skiff <args>` for this container; a failure becomes a ttrpc
    /// error prefixed with `what`.
    fn skiff(&self, bundle: &Path, args: &[&str], io: CallIo, what: &str) -> TtrpcResult<String> {
        self.runtime(bundle)
            .call(args, io)
            .map_err(|e| err(Code::UNKNOWN, format!("{what}: {e}")))
    }

    /// The container's id and bundle.
    fn container(&self) -> (String, PathBuf) {
        let t = self.lock();
        (t.id.clone(), t.bundle.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.tasks.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, topic: &str, ev: Box<dyn MessageDyn>) {
        publish(&self.publisher, &self.namespace, topic, ev);
    }

    fn state_of(&self, exec_id: &str) -> TtrpcResult<api::StateResponse> {
        let t = self.lock();
        let p = t
            .procs
            .get(exec_id)
            .ok_or_else(|| err(Code::NOT_FOUND, format!("process {exec_id} not found")))?;
        Ok(api::StateResponse {
            id: if exec_id.is_empty() {
                t.id.clone()
            } else {
                exec_id.to_string()
            },
            bundle: t.bundle.display().to_string(),
            pid: p.pid as u32,
            status: p.status.api().into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: p.exit_status,
            exited_at: p.exited_at.clone().into(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        })
    }
}

impl containerd_shim::Task for TaskService {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        self.create_task(req)
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let (id, bundle) = self.container();
        let rt = self.runtime(&bundle);
        if req.exec_id.is_empty() {
            if let Some(p) = self.lock().procs.get_mut("") {
                p.starting = true;
            }
            let started = rt.call(&["start", &id], CallIo::default());
            let (pid, exit) = {
                let mut t = self.lock();
                let p = t
                    .procs
                    .get_mut("")
                    .ok_or_else(|| err(Code::NOT_FOUND, "no init process"))?;
                p.starting = false;
                if started.is_ok() && p.status == Status::Created {
                    p.status = Status::Running;
                }
                (p.pid, p.deferred_exit.take())
            };
            if let Err(e) = started {
                if let Some(exit) = exit {
                    self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(exit));
                }
                return Err(err(Code::UNKNOWN, format!("OCI runtime start failed: {e}")));
            }
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart {
                    container_id: id,
                    pid: pid as u32,
                    ..Default::default()
                }),
            );
            if let Some(exit) = exit {
                self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(exit));
            }
            return Ok(api::StartResponse {
                pid: pid as u32,
                ..Default::default()
            });
        }
        let (stdio, pj) = {
            let t = self.lock();
            let p = t
                .procs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            (p.stdio.clone(), p.process_json.clone().unwrap_or_default())
        };
        let prepared =
            io::prepare(&stdio).map_err(|e| err(Code::INTERNAL, format!("open stdio: {e}")))?;
        let pid_file = bundle.join(format!("exec-{}.pid", req.exec_id));
        let (pjs, pfs) = (pj.display().to_string(), pid_file.display().to_string());
        let mut args = vec!["exec", "--process", &pjs, "--detach", "--pid-file", &pfs];
        let sock_path;
        if let Some(s) = &prepared.console_socket {
            sock_path = s.path().display().to_string();
            args.extend(["--console-socket", sock_path.as_str()]);
        }
        args.push(&id);
        if let Err(e) = rt.call(&args, prepared.call) {
            // It never ran: waiters learn so (as from runc's shim, status 255).
            if let Some(p) = self.lock().procs.get_mut(&req.exec_id) {
                p.status = Status::Stopped;
                p.exit_status = 255;
                p.exited_at = Some(now());
            }
            self.tasks.1.notify_all();
            return Err(err(Code::UNKNOWN, format!("OCI runtime exec failed: {e}")));
        }
        let mut keep = prepared.keep;
        if let Some(s) = prepared.console_socket {
            io::receive_console(s, &stdio, &mut keep)
                .map_err(|e| err(Code::INTERNAL, format!("console: {e}")))?;
        }
        let pid = read_pid(&pid_file).map_err(|e| err(Code::INTERNAL, e))?;
        if let Some(p) = self.lock().procs.get_mut(&req.exec_id) {
            p.io = keep;
        }
        let exit = self.set_pid(&req.exec_id, pid);
        self.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Box::new(TaskExecStarted {
                container_id: id,
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            }),
        );
        if let Some(exit) = exit {
            self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(exit));
        }
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let bundle = self.lock().bundle.clone();
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .ok_or_else(|| err(Code::INVALID_ARGUMENT, "exec without a process spec"))?;
        if self.lock().procs.contains_key(&req.exec_id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("exec {} already exists", req.exec_id),
            ));
        }
        let pj = bundle.join(format!("exec-{}.json", req.exec_id));
        std::fs::write(&pj, &spec)
            .map_err(|e| err(Code::INTERNAL, format!("write {}: {e}", pj.display())))?;
        let mut p = Proc::new(Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        });
        p.process_json = Some(pj);
        let id = {
            let mut t = self.lock();
            t.procs.insert(req.exec_id.clone(), p);
            t.id.clone()
        };
        self.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: id,
                exec_id: req.exec_id,
                ..Default::default()
            }),
        );
        Ok(api::Empty::new())
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        self.state_of(&req.exec_id)
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let (lock, cv) = &*self.tasks;
        let mut t = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let p = t.procs.get(&req.exec_id).ok_or_else(|| {
                err(
                    Code::NOT_FOUND,
                    format!("process {} not found", req.exec_id),
                )
            })?;
            if p.status == Status::Stopped {
                return Ok(api::WaitResponse {
                    exit_status: p.exit_status,
                    exited_at: p.exited_at.clone().into(),
                    ..Default::default()
                });
            }
            t = cv.wait(t).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let (id, bundle, pid, status) = {
            let t = self.lock();
            let p = t.procs.get(&req.exec_id).ok_or_else(|| {
                err(
                    Code::NOT_FOUND,
                    format!("process {} not found", req.exec_id),
                )
            })?;
            (t.id.clone(), t.bundle.clone(), p.pid, p.status)
        };
        if status == Status::Stopped {
            return Err(err(Code::NOT_FOUND, "process already finished"));
        }
        if pid <= 0 {
            // An exec that never started: kill(0) would hit the shim itself.
            return Err(err(
                Code::NOT_FOUND,
                format!("process {} has not started", req.exec_id),
            ));
        }
        if req.exec_id.is_empty() {
            let sig = req.signal.to_string();
            let mut args = vec!["kill"];
            if req.all {
                args.push("--all");
            }
            args.extend([id.as_str(), sig.as_str()]);
            self.skiff(&bundle, &args, CallIo::default(), "kill")?;
        } else {
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|e| {
                err(
                    Code::INVALID_ARGUMENT,
                    format!("signal {}: {e}", req.signal),
                )
            })?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
                .map_err(|e| err(Code::NOT_FOUND, format!("kill exec {}: {e}", req.exec_id)))?;
        }
        Ok(api::Empty::new())
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let mut t = self.lock();
            let p = t
                .procs
                .get(&req.exec_id)
                .ok_or_else(|| err(Code::NOT_FOUND, format!("exec {} not found", req.exec_id)))?;
            if p.status != Status::Stopped && p.status != Status::Created {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} is still running", req.exec_id),
                ));
            }
            let p = t.procs.remove(&req.exec_id).expect("checked above");
            self.tasks.1.notify_all();
            if let Some(pj) = p.process_json {
                let _ = std::fs::remove_file(pj);
            }
            return Ok(api::DeleteResponse {
                pid: p.pid as u32,
                exit_status: p.exit_status,
                exited_at: p.exited_at.into(),
                ..Default::default()
            });
        }
        let (id, bundle, mounted) = {
            let t = self.lock();
            (t.id.clone(), t.bundle.clone(), t.rootfs_mounted)
        };
        self.skiff(
            &bundle,
            &["delete", "--force", &id],
            CallIo::default(),
            "delete",
        )?;
        if mounted {
            unmount_rootfs(&bundle);
        }
        // A running init was just killed by `delete --force`: wait (briefly)
        // for its exit, so the status reported is the real one.
        let p = {
            let (lock, cv) = &*self.tasks;
            let t = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut t, _) = cv
                .wait_timeout_while(t, std::time::Duration::from_secs(5), |t| {
                    t.procs
                        .get("")
                        .is_some_and(|p| p.status != Status::Stopped && p.pid > 0)
                })
                .unwrap_or_else(|e| e.into_inner());
            t.procs
                .remove("")
                .ok_or_else(|| err(Code::NOT_FOUND, "no init process"))?
        };
        let at = p.exited_at.clone().unwrap_or_else(now);
        self.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: id.clone(),
                id,
                pid: p.pid as u32,
                exit_status: p.exit_status,
                exited_at: MessageField::some(at.clone()),
                ..Default::default()
            }),
        );
        Ok(api::DeleteResponse {
            pid: p.pid as u32,
            exit_status: p.exit_status,
            exited_at: MessageField::some(at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, _req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let (id, bundle) = self.container();
        let capture = CallIo {
            capture: true,
            ..Default::default()
        };
        let out = self.skiff(&bundle, &["ps", "--format", "json", &id], capture, "ps")?;
        let pids: Vec<u32> = serde_json::from_str(&out)
            .map_err(|e| err(Code::INTERNAL, format!("ps output: {e}")))?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| containerd_shim::protos::types::task::ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, _req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        self.freeze("pause", Status::Paused)
    }

    fn resume(&self, _ctx: &TtrpcContext, _req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        self.freeze("resume", Status::Running)
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        if req.stdin {
            // Take the pipe out without holding the task lock: the stdin
            // thread may be blocked writing to it with its own lock held.
            let stdin = self
                .lock()
                .procs
                .get(&req.exec_id)
                .map(|p| p.io.stdin.clone());
            if let Some(s) = stdin {
                s.lock().unwrap_or_else(|e| e.into_inner()).take();
            }
        }
        Ok(api::Empty::new())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let console = self
            .lock()
            .procs
            .get(&req.exec_id)
            .and_then(|p| p.io.console.clone());
        if let Some(m) = console {
            io::resize(&m, req.width as u16, req.height as u16)
                .map_err(|e| err(Code::INTERNAL, format!("resize: {e}")))?;
        }
        Ok(api::Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let (id, bundle) = self.container();
        let res = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .ok_or_else(|| err(Code::INVALID_ARGUMENT, "update without resources"))?;
        let path = bundle.join("update.json");
        std::fs::write(&path, res)
            .map_err(|e| err(Code::INTERNAL, format!("write {}: {e}", path.display())))?;
        let p = path.display().to_string();
        self.skiff(
            &bundle,
            &["update", "--resources", &p, &id],
            CallIo::default(),
            "update",
        )?;
        Ok(api::Empty::new())
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        _req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let paths = self
            .lock()
            .cgroup
            .clone()
            .ok_or_else(|| err(Code::NOT_FOUND, "the container has no cgroup"))?;
        let any = crate::stats::metrics(&paths).map_err(|e| err(Code::INTERNAL, e))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let pid = self.lock().procs.get("").map_or(0, |p| p.pid as u32);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pid,
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        if self.lock().procs.is_empty() {
            self.exit.signal();
        }
        Ok(api::Empty::new())
    }
}

impl TaskService {
    fn freeze(&self, verb: &str, to: Status) -> TtrpcResult<api::Empty> {
        let (id, bundle) = self.container();
        self.skiff(&bundle, &[verb, &id], CallIo::default(), verb)?;
        if let Some(p) = self.lock().procs.get_mut("") {
            // An exit seen meanwhile (a paused task killed, then thawed) wins.
            if p.status != Status::Stopped {
                p.status = to;
            }
        }
        if to == Status::Paused {
            self.publish(
                topics::TASK_PAUSED_EVENT_TOPIC,
                Box::new(TaskPaused {
                    container_id: id,
                    ..Default::default()
                }),
            );
        } else {
            self.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                Box::new(TaskResumed {
                    container_id: id,
                    ..Default::default()
                }),
            );
        }
        Ok(api::Empty::new())
    }
}
