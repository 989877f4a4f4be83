//! Giving freed heap, and a long-lived process's start-up stack, back to
//! the kernel.
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

/// How much of the stack below the caller's page is left alone: one page,
/// for the rest of the caller's frame, its red zone and madvise(2)'s own
/// call, a few hundred bytes at most.
const STACK_MARGIN: usize = 4 << 10;

/// How far below that the stack is released: more than start-up ever uses.
const STACK_SPAN: usize = 1 << 20;

/// Give the kernel back the stack pages below the caller's frame, which
/// start-up used (argument parsing, spawning the runtime, JSON) and which
/// stay resident for as long as the process lives, though nothing is on
/// them any more: a stack's pages are never freed as it shrinks.
///
/// Only for a process's main thread, as the monitor's only thread. Below
/// the main stack the kernel keeps a gap of at least 128 MiB before any
/// other mapping (`mmap_base` in mm/util.c), so the range holds stack
/// pages or nothing; madvise(2) `MADV_DONTNEED` drops the ones there and
/// reports the rest as unmapped (ignored). A page needed again later comes
/// back zeroed on its first touch.
#[inline(never)]
pub fn release_unused_stack() {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    let Some(end) = (here & !(page - 1)).checked_sub(STACK_MARGIN) else {
        return;
    };
    let Some(start) = end.checked_sub(STACK_SPAN) else {
        return;
    };
    // SAFETY: [start, end) lies at least STACK_MARGIN below this function's
    // own frame, and the stack grows down: no live frame, and (on the main
    // thread) no other mapping, is there. Dropping its pages only makes
    // them read as zero when next touched, which a stack below its pointer
    // may.
    unsafe {
        libc::madvise(start as *mut libc::c_void, STACK_SPAN, libc::MADV_DONTNEED);
    }
}
