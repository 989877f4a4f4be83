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

/// What a long-lived helper (a monitor) used to start and no longer needs:
/// the stack below the caller's frame, then the heap's free pages
/// (including the buffer the first step read its maps into).
pub fn release_start_up_memory() {
    release_unused_stack();
    release_free_memory();
}

/// How far below the caller's frame the stack is released at most: more
/// than start-up ever uses.
const STACK_SPAN: usize = 1 << 20;

/// Give the kernel back the stack pages below the caller's frame, which
/// start-up used (argument parsing, spawning the runtime, JSON) and which
/// stay resident for as long as the process lives, though nothing is on
/// them any more: a stack's pages are never freed as it shrinks.
///
/// The range ends one page below the page of this function's own frame
/// (room for the rest of the frame, its red zone and madvise(2)'s call)
/// and never leaves the stack's own mapping, read from /proc/self/maps: the
/// main thread's, or a thread's. madvise(2) `MADV_DONTNEED` drops its
/// pages; a page needed again later comes back zeroed on its first touch,
/// which is all a stack below its pointer may hold.
#[inline(never)]
fn release_unused_stack() {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize);
    let Some(low) = mapping_start(here) else {
        return;
    };
    let Some(end) = (here & !(page - 1)).checked_sub(page) else {
        return;
    };
    let start = end.saturating_sub(STACK_SPAN).max(low);
    if start >= end {
        return;
    }
    // SAFETY: [start, end) lies inside the mapping that holds this frame,
    // below it by at least a page, and a stack grows down: no live frame
    // and no other mapping is there.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

/// The start of the mapping that holds address `addr` (/proc/self/maps,
/// proc(5)).
fn mapping_start(addr: usize) -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|l| {
        let (lo, hi) = l.split_whitespace().next()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        (lo <= addr && addr < hi).then_some(lo)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deep frames, so the stack below has pages to give back.
    #[inline(never)]
    fn deep(n: u32) -> u64 {
        let buf = std::hint::black_box([n as u8; 512]);
        if n == 0 {
            buf.iter().map(|b| *b as u64).sum()
        } else {
            deep(n - 1) + buf[0] as u64
        }
    }

    #[test]
    fn the_stack_below_is_given_back_and_used_again() {
        let x = 0u8;
        let here = std::hint::black_box(&x) as *const u8 as usize;
        let low = mapping_start(here).expect("a mapping holds the stack");
        assert!(low <= here);
        let before = deep(64);
        // On this test's thread (not the main one): the range stays in the
        // thread's own stack mapping.
        release_unused_stack();
        assert_eq!(deep(64), before, "the stack works after its release");
    }
}
