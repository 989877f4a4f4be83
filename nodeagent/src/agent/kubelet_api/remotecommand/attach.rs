//! Attach: the container's own output, followed from its log.

use super::{Ended, Io, Target};

/// Attach: the container's output as it is written, from its log (the
/// monitor that holds the container's stdio writes every line there),
/// each record to the stream it came from, until the container exits or
/// the client goes. The container's stdin is not offered.
pub(super) async fn run_attach(io: Io, t: &Target) -> Ended {
    let Io {
        stdout,
        stderr,
        mut ended,
        ..
    } = io;
    let Some(mut follower) = crate::agent::kubelet_api::logs::Follower::at_end(&t.log) else {
        return Ended::Failed(format!("open {}", t.log.display()));
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(bool, Vec<u8>)>(16);
    let (agent, id) = (t.agent.clone(), t.id.clone());
    let reader = tokio::task::spawn_blocking(move || {
        let running = || {
            agent.status.list().iter().any(|rec| {
                rec.init
                    .iter()
                    .chain(&rec.containers)
                    .any(|c| c.current.as_ref().is_some_and(|i| i.id == id))
            })
        };
        follower.follow(
            |f| {
                let mut outs: Vec<(bool, Vec<u8>)> = Vec::new();
                while f.step(|r| {
                    let mut b = Vec::new();
                    crate::cri_log::render(r, false, &mut b);
                    outs.push((r.stream == "stderr", b));
                }) {}
                outs.into_iter().all(|o| tx.blocking_send(o).is_ok()) && !tx.is_closed()
            },
            running,
        );
    });
    loop {
        tokio::select! {
            m = rx.recv() => {
                let Some((err, bytes)) = m else { break };
                // With a terminal (or no stderr asked for) everything goes
                // to stdout.
                let w = if err { stderr.as_ref().or(stdout.as_ref()) } else { stdout.as_ref() };
                if let Some(w) = w {
                    if w.write(&bytes).await.is_err() {
                        break;
                    }
                }
            }
            _ = &mut ended => {
                // The follower sees the channel closed and stops.
                drop(rx);
                drop(reader);
                return Ended::Gone;
            }
        }
    }
    Ended::Exited(0)
}
