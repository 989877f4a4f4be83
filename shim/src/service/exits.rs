//! Exits: the shim is the parent (subreaper) of every process of its
//! container, so the kernel reports each one's end to it (wait(2),
//! `PR_SET_CHILD_SUBREAPER` in prctl(2)). One thread matches every reaped
//! pid to the init or an exec and publishes TaskExit; an exit that comes
//! before `skiff exec` has told its pid waits for it. The OOM watcher
//! publishes TaskOOM when the container's cgroup counts a kill.

use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics;

use super::tasks::{EarlyExit, Status, EARLY_EXITS_KEPT, EARLY_EXIT_MAX_AGE};
use super::{now, publish, TaskService};

impl TaskService {
    /// One thread for the shim's life: every reaped child's exit status,
    /// matched to our processes; TaskExit for each.
    pub(super) fn watch_exits(&self) {
        let Ok(sub) = monitor_subscribe(Topic::Pid) else {
            log::error!("cannot subscribe to process exits");
            return;
        };
        let (tasks, publisher, ns) = (
            self.tasks.clone(),
            self.publisher.clone(),
            self.namespace.clone(),
        );
        let ooms = self.ooms.clone();
        std::thread::spawn(move || {
            while let Ok(ev) = sub.rx.recv() {
                let Subject::Pid(pid) = ev.subject else {
                    continue;
                };
                let (lock, cv) = &*tasks;
                let mut t = lock.lock().unwrap_or_else(|e| e.into_inner());
                let at = now();
                let id = t.id.clone();
                let cgroup = t.cgroup.clone();
                let found = t
                    .procs
                    .iter_mut()
                    .find(|(_, p)| p.pid == pid && p.status != Status::Stopped);
                let Some((exec_id, p)) = found else {
                    if t.early_exits.len() >= EARLY_EXITS_KEPT {
                        t.early_exits.pop_front();
                    }
                    t.early_exits.push_back(EarlyExit {
                        pid,
                        code: ev.exit_code as u32,
                        at,
                        seen: std::time::Instant::now(),
                    });
                    continue;
                };
                let starting = p.starting;
                p.status = Status::Stopped;
                p.exit_status = ev.exit_code as u32;
                p.exited_at = Some(at.clone());
                // An init killed by the OOM killer: report it now, while the
                // cgroup still exists (containerd deletes it after TaskExit).
                let oom = exec_id.is_empty() && cgroup.as_ref().is_some_and(|c| ooms.rose(c));
                let exit = TaskExit {
                    container_id: id.clone(),
                    id: if exec_id.is_empty() {
                        id.clone()
                    } else {
                        exec_id.clone()
                    },
                    pid: pid as u32,
                    exit_status: ev.exit_code as u32,
                    exited_at: MessageField::some(at),
                    ..Default::default()
                };
                cv.notify_all();
                // Start has not returned yet: it publishes the exit after
                // TaskStart. (An OOM is reported now either way.)
                let exit = if starting {
                    if let Some((_, p)) = t.procs.iter_mut().find(|(_, p)| p.pid == pid) {
                        p.deferred_exit = Some(exit);
                    }
                    None
                } else {
                    Some(exit)
                };
                drop(t);
                if oom {
                    let ev = TaskOOM {
                        container_id: id.clone(),
                        ..Default::default()
                    };
                    publish(&publisher, &ns, topics::TASK_OOM_EVENT_TOPIC, Box::new(ev));
                }
                if let Some(exit) = exit {
                    publish(
                        &publisher,
                        &ns,
                        topics::TASK_EXIT_EVENT_TOPIC,
                        Box::new(exit),
                    );
                }
            }
        });
    }

    /// Record that `exec_id` runs as `pid`, taking an exit that came first;
    /// returns the TaskExit to publish after TaskExecStarted, if any.
    pub(super) fn set_pid(&self, exec_id: &str, pid: i32) -> Option<TaskExit> {
        let mut t = self.lock();
        t.early_exits
            .retain(|e| e.seen.elapsed() < EARLY_EXIT_MAX_AGE);
        let early = t
            .early_exits
            .iter()
            .position(|e| e.pid == pid)
            .and_then(|i| t.early_exits.remove(i));
        let id = t.id.clone();
        let p = t.procs.get_mut(exec_id)?;
        p.pid = pid;
        p.status = Status::Running;
        let exit = match early {
            Some(e) => {
                p.status = Status::Stopped;
                p.exit_status = e.code;
                p.exited_at = Some(e.at.clone());
                Some(TaskExit {
                    container_id: id,
                    id: exec_id.to_string(),
                    pid: pid as u32,
                    exit_status: e.code,
                    exited_at: MessageField::some(e.at),
                    ..Default::default()
                })
            }
            None => p.deferred_exit.take(),
        };
        self.tasks.1.notify_all();
        exit
    }

    pub(super) fn watch_oom(&self, paths: skiff_runtime::cgroups::CgroupPaths, id: &str) {
        let tasks = self.tasks.clone();
        let alive = move || {
            let t = tasks.0.lock().unwrap_or_else(|e| e.into_inner());
            t.procs.get("").is_some_and(|p| p.status != Status::Stopped)
        };
        let (publisher, ns, id) = (
            self.publisher.clone(),
            self.namespace.clone(),
            id.to_string(),
        );
        crate::stats::watch_oom(paths, self.ooms.clone(), alive, move || {
            let ev = TaskOOM {
                container_id: id.clone(),
                ..Default::default()
            };
            publish(&publisher, &ns, topics::TASK_OOM_EVENT_TOPIC, Box::new(ev));
        });
    }
}
