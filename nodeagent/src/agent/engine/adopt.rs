//! Picking up what a previous agent left running: the sandbox and every
//! container instance of a pod's record are watched again, and probes of
//! running app containers restarted where they were (started, ready). An
//! adopted sandbox's network is checked with CNI CHECK.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::super::events::Kind as EventKind;
use super::super::state::{self, PodRecord};
use super::super::Agent;
use super::{container, container_spec, probes, sandbox, Local, Msg};

/// Pick up what a previous agent left running.
pub fn adopt(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    rec: &PodRecord,
) {
    if let Some(sb) = &rec.sandbox {
        watch_sandbox(tx, sb);
    }
    let pod_ip = rec.pod_ip.clone().unwrap_or_default();
    for (init, list) in [(true, &rec.init), (false, &rec.containers)] {
        for c in list {
            let Some(inst) = &c.current else { continue };
            container::watch(
                tx.clone(),
                inst.id.clone(),
                inst.dir.clone(),
                inst.pid,
                inst.monitor_pid,
            );
            if !init {
                if let Some(spec) = container_spec(rec, false, &c.name) {
                    let h = probes::start_probes(
                        agent, uid, tx, &spec, inst, &pod_ip, c.started, c.ready,
                    );
                    local.probes.insert(inst.id.clone(), h);
                }
            }
        }
    }
}

/// An adopted sandbox's network is verified with CNI CHECK; if the
/// plugins find it broken (a veth or address gone while the agent was
/// down), the sandbox is replaced as if its pause process had died.
pub async fn check_network(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    rec: &PodRecord,
) {
    let (Some(sb), Ok(cni)) = (&rec.sandbox, &agent.cni) else {
        return;
    };
    let (Some(netns), Some(result)) = (&sb.netns, &sb.cni_result) else {
        return;
    };
    let a = sandbox::attachment(rec, netns, &sb.id);
    if let Err(e) = cni.check(&a, result).await {
        agent.event(
            uid,
            EventKind::Warning,
            "FailedCNICheck",
            e.to_string(),
            None,
        );
        let _ = tx.send(Msg::Exited { id: sb.id.clone() });
    }
}

pub fn watch_sandbox(tx: &mpsc::UnboundedSender<Msg>, sb: &state::Sandbox) {
    container::watch(
        tx.clone(),
        sb.id.clone(),
        sb.dir.join("monitor"),
        sb.pid,
        sb.monitor_pid,
    );
}
