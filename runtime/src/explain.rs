//! `--explain`: the runtime narrates what it does, for people learning how
//! containers work.
//!
//! Every important step of `create`, `start`, `exec` and `delete` calls the
//! [`explain!`](crate::explain!) macro with the system call it is about to make, the
//! man page that documents it, and one sentence on why. When `--explain` is
//! off, the macro is a single relaxed atomic load and a branch: the message is
//! never formatted. When it is on, each step is one line on stderr, prefixed
//! with the pid that does the work, because a container is built by several
//! processes (the runtime, the container's init before and after it enters its
//! pid namespace), and seeing which one does what is half the lesson.
//! `--trace` (see [`crate::trace`]) turns the same steps into a timeline.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turn narration on or off for this process and the children it forks.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether `--explain` is on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Write one narration line. Called through [`explain!`](crate::explain!).
pub fn emit(man: &str, message: std::fmt::Arguments<'_>) {
    let pid = std::process::id();
    let mut err = std::io::stderr().lock();
    // Narration must never fail the operation it narrates.
    let _ = if man.is_empty() {
        writeln!(err, "skiff[{pid}]: {message}")
    } else {
        writeln!(err, "skiff[{pid}]: {message}  [{man}]")
    };
}

/// Narrate a step: `explain!("mount(2)", "mounting proc at {}", dest)`.
///
/// The first argument names the man page of the system call (or is empty),
/// the rest is a format string saying what happens and why.
#[macro_export]
macro_rules! explain {
    ($man:expr, $($arg:tt)+) => {
        if $crate::explain::enabled() {
            $crate::explain::emit($man, format_args!($($arg)+));
        }
        // With `--trace`, each narrated step is also a span (see `trace`).
        if $crate::trace::enabled() {
            $crate::trace::step($man, format_args!($($arg)+));
        }
    };
}
