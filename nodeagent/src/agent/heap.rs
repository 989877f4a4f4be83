//! Giving freed heap back to the kernel.
//!
//! glibc's malloc(3) keeps what a program frees, to hand it out again:
//! small blocks go back on free lists inside an *arena* (the main heap, and
//! one arena more for each thread that allocates at the same time as
//! another: tokio's worker threads have theirs). Pages of an arena stay
//! resident, even when every block on them is free, unless they are at its
//! very top and above `M_TRIM_THRESHOLD`. So a burst of pod starts (a
//! sandbox, a bundle, API requests and their TLS buffers for each) leaves
//! megabytes of free but resident memory behind, long after the pods have
//! settled: measured with 50 pods, the agent's private memory stayed where
//! the burst left it even once every pod was deleted.
//!
//! malloc_trim(3) walks every arena and returns the whole free pages in it
//! to the kernel (madvise(2) `MADV_DONTNEED`); the next allocation there
//! faults in a fresh zeroed page. The agent calls it once a minute, which
//! costs it a walk of its free lists; Go's runtime, and so kubelet, does
//! the same in its background scavenger.

use std::time::Duration;

/// How often free memory is given back.
const PERIOD: Duration = Duration::from_secs(60);

/// Give the kernel back the free pages of every malloc arena, now.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns memory that no allocation holds; it
    // takes each arena's lock, as malloc and free do.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Do it every [`PERIOD`], for as long as the agent runs.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // It takes every arena's lock in turn: not on a runtime worker.
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
