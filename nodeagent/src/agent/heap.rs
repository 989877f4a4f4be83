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
//! faults in a fresh zeroed page. The agent calls it once the work that
//! allocates most (starting a container, tearing a pod down) has settled,
//! and at least once a minute. Each call costs a walk of the free lists;
//! Go's runtime, and so kubelet, does the same in its background scavenger.
//! Measured with 50 pods, 5 s after the last one was Ready: the arenas held
//! 6 MiB before the first trim and 3.2 MiB after it.

use std::time::Duration;

/// How often free memory is given back when nothing else asks for it.
const PERIOD: Duration = Duration::from_secs(60);
/// How long the heavy work must have paused before its memory is given
/// back: a burst of pod starts is one trim, not one per pod.
const SETTLE: Duration = Duration::from_secs(2);
/// At most one trim in this time (a container in a crash loop restarts
/// every 10 s or more, each start a burst of its own).
const MIN_GAP: Duration = Duration::from_secs(10);

/// Heavy work done since the last trim (a permit when nobody waits).
static WORK: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Say that a step which allocates much has just ended (a container
/// started, a pod torn down): its free memory is given back once the work
/// has settled.
pub fn work_done() {
    WORK.notify_one();
}

/// Give the kernel back the free pages of every malloc arena, now.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns memory that no allocation holds; it
    // takes each arena's lock, as malloc and free do.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Give free memory back when the heavy work has settled ([`work_done`],
/// then [`SETTLE`] without more), at most every [`MIN_GAP`], and at the
/// latest [`PERIOD`] after the last time, settled or not, for as long as the
/// agent runs.
pub async fn trim_periodically() {
    trim_when_settled(&WORK, || async {
        // It takes every arena's lock in turn: not on a runtime worker.
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    })
    .await
}

/// [`trim_periodically`]'s schedule, with the work signal and the trim
/// passed in.
async fn trim_when_settled<F, Fut>(work: &tokio::sync::Notify, trim: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::time::{sleep_until, timeout_at, Instant};
    let mut last: Option<Instant> = None;
    // The latest the next trim may come: work that never settles (pods
    // starting one after another) must not put it off for ever.
    let mut due = Instant::now() + PERIOD;
    loop {
        tokio::select! {
            _ = work.notified() => {
                while Instant::now() < due
                    && timeout_at((Instant::now() + SETTLE).min(due), work.notified())
                        .await
                        .is_ok()
                {}
                if let Some(last) = last {
                    sleep_until(last + MIN_GAP).await;
                }
            }
            _ = sleep_until(due) => {}
        }
        trim().await;
        let now = Instant::now();
        last = Some(now);
        due = now + PERIOD;
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

    /// Trims counted on tokio's paused clock, `at` seconds after the start.
    async fn trims_after(work: std::sync::Arc<tokio::sync::Notify>, at: &[u64]) -> Vec<u64> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let n = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = n.clone();
        let schedule = tokio::spawn(async move {
            trim_when_settled(&work, || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {}
            })
            .await
        });
        let start = tokio::time::Instant::now();
        let mut seen = Vec::new();
        for &t in at {
            tokio::time::sleep_until(start + Duration::from_secs(t)).await;
            seen.push(n.load(Ordering::SeqCst) as u64);
        }
        schedule.abort();
        seen
    }

    /// Work signalled at each of `at` seconds after the start.
    fn work_at(at: Vec<u64>) -> std::sync::Arc<tokio::sync::Notify> {
        let work = std::sync::Arc::new(tokio::sync::Notify::new());
        let w = work.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for t in at {
                tokio::time::sleep_until(start + Duration::from_secs(t)).await;
                w.notify_one();
            }
        });
        work
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_trim_once_it_has_settled() {
        // Work every second from 0 to 4 s (a burst of starts), and once
        // more at 8 s.
        let work = work_at(vec![0, 1, 2, 3, 4, 8]);
        // The burst settles 2 s after its last work: one trim at 6 s. The
        // work at 8 s settles at 10 s, but waits until 10 s after the last
        // trim (16 s). Then nothing until a minute later (76 s).
        let seen = trims_after(work, &[4, 5, 7, 15, 17, 75, 77]).await;
        assert_eq!(seen, [0, 0, 1, 1, 2, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn work_that_never_settles_still_gets_a_trim_a_minute() {
        // Work every second for three minutes (a node that keeps starting
        // pods, or many containers in crash loops).
        let work = work_at((0..180).collect());
        let seen = trims_after(work, &[59, 61, 119, 121, 181]).await;
        assert_eq!(seen, [0, 1, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_work_is_a_trim_a_minute() {
        let work = std::sync::Arc::new(tokio::sync::Notify::new());
        let seen = trims_after(work, &[30, 61, 121]).await;
        assert_eq!(seen, [0, 1, 2]);
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
