//! `skiff run`: create, start, and (in the foreground) wait.
//!
//! In the foreground skiff stays the parent of the container's init (it is
//! a child subreaper, prctl(2) `PR_SET_CHILD_SUBREAPER`), forwards the
//! signals it receives to it, reaps it and exits with its status: the exit
//! code, or 128+N when a signal N killed it, as a shell does. Signals are
//! taken through a signalfd(2), so forwarding is ordinary code rather than
//! a signal handler. Unless `--keep`, the container is deleted afterwards.

use super::create::{create, CreateOptions};
use crate::signals::{block_forwarded, wait_forwarding};
use crate::Result;

/// `run`: returns the exit code to exit with.
pub fn run(mut opts: CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    if !detach {
        block_forwarded();
    }
    opts.foreground = !detach;
    let span = crate::span!("create");
    let created = create(&opts)?;
    drop(span);
    let mut c = created.container;
    let proxy = match created.console {
        Some(fc) => Some(fc.start_proxy()?),
        None => None,
    };
    let span = crate::span!("start");
    let started = super::start::start(&mut c);
    drop(span);
    if let Err(e) = started {
        let _ = super::delete::delete(&mut c, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let span = crate::span!("wait for the container to exit");
    let code = wait_forwarding(c.state.pid, proxy.as_ref());
    drop(span);
    let _span = crate::span!("delete");
    drop(proxy);
    if !keep {
        if let Err(e) = super::delete::delete(&mut c, true) {
            // runc reports a failing poststop hook but keeps the exit code.
            tracing::error!("{e}");
        }
    }
    Ok(code)
}
