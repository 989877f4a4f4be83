//! The process-wide lock that [`crate::LeakCheck`] takes (see the crate docs).

use super::*;

// ---------------------------------------------------------------------------
// The process-wide lock used by LeakCheck (see the crate docs)
// ---------------------------------------------------------------------------

static EXCLUSIVE: RwLock<()> = RwLock::new(());

thread_local! {
    static SHARED_DEPTH: Cell<usize> = const { Cell::new(0) };
    static HOLDS_EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// Held while a harness operation may create fds or child processes.
/// Re-entrant per thread; a no-op in the thread that holds a [`LeakCheck`].
pub(crate) struct SharedGuard {
    _read: Option<RwLockReadGuard<'static, ()>>,
}

pub(crate) fn shared() -> SharedGuard {
    let nested = SHARED_DEPTH.with(|d| {
        let n = d.get();
        d.set(n + 1);
        n > 0
    });
    if nested || HOLDS_EXCLUSIVE.with(Cell::get) {
        return SharedGuard { _read: None };
    }
    SharedGuard {
        _read: Some(EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())),
    }
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        SHARED_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

pub(crate) struct ExclusiveGuard(Option<RwLockWriteGuard<'static, ()>>);

pub(crate) fn exclusive() -> ExclusiveGuard {
    assert_eq!(
        SHARED_DEPTH.with(Cell::get),
        0,
        "LeakCheck::new inside a harness operation"
    );
    assert!(
        !HOLDS_EXCLUSIVE.with(Cell::get),
        "two LeakChecks alive in one thread"
    );
    let g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    HOLDS_EXCLUSIVE.with(|h| h.set(true));
    ExclusiveGuard(Some(g))
}

impl Drop for ExclusiveGuard {
    fn drop(&mut self) {
        HOLDS_EXCLUSIVE.with(|h| h.set(false));
        self.0.take();
    }
}
