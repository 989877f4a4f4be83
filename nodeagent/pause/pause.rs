//! The pod sandbox's pause process: a complete program in a few hundred
//! bytes of machine code, with no C library and no Rust standard library.
//!
//! A pod's containers share a network, IPC and UTS namespace. A namespace
//! lives as long as something holds it, so every pod gets one process that
//! only holds them (Kubernetes' `pause` image does the same, see
//! build/pause/linux/pause.c in its source). It runs as PID 1 of the sandbox
//! container, so it also reaps every zombie re-parented to it when the pod
//! shares its PID namespace (`shareProcessNamespace`), and it exits 0 on
//! SIGTERM or SIGINT.
//!
//! Why it is written this way: a node runs one pause per pod for as long as
//! the pod lives, so what counts is the private memory each one holds. Any
//! program linked with a C library and Rust's `std` holds about 120 KiB
//! before it does anything: the C library's start-up data and heap, thread
//! structures, and the pages its relocations write. This one makes four
//! kinds of system call and nothing else (syscall(2)):
//!
//! - rt_sigprocmask(2) blocks SIGINT, SIGTERM and SIGCHLD. A blocked signal
//!   stays pending until it is asked for. That also matters for PID 1 of a
//!   namespace: the kernel drops a signal sent to it that has no handler,
//!   but never a blocked one (`sig_ignored` in kernel/signal.c);
//! - rt_sigtimedwait(2) sleeps until one of them is pending and takes it
//!   (sigwaitinfo(2) without a timeout). No handler runs, so there is no
//!   signal frame and no need for a restorer;
//! - wait4(2) with WNOHANG reaps zombies until none is left;
//! - exit_group(2) ends it.
//!
//! Its private memory is the kernel's start-up stack (arguments, environment,
//! auxiliary vector) and nothing else. It has no data that holds an address,
//! so as a position-independent executable it needs no relocation and no
//! start-up code to apply one: the kernel maps it anywhere and jumps to
//! `_start`.
//!
//! It is compiled by the agent's build script (`nodeagent/build.rs`), with
//! `panic=abort` and without the start files, and embedded in `skiff-agent`,
//! which writes it to its data directory (`nodeagent/src/pause.rs`).

#![no_std]
#![no_main]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the pause process is written for x86_64 Linux system calls only");

use core::arch::{asm, global_asm};

// x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const RT_SIGPROCMASK: usize = 14;
const WAIT4: usize = 61;
const RT_SIGTIMEDWAIT: usize = 128;
const EXIT_GROUP: usize = 231;

const SIG_BLOCK: usize = 0;
const EINTR: isize = -4;
const WNOHANG: usize = 1;
const SIGINT: isize = 2;
const SIGTERM: isize = 15;
const SIGCHLD: isize = 17;

/// The kernel's signal set: one bit per signal, bit `n - 1` for signal `n`,
/// 8 bytes on x86_64 (what the calls' last argument says).
const SET: u64 = 1 << (SIGINT - 1) | 1 << (SIGTERM - 1) | 1 << (SIGCHLD - 1);
const SET_SIZE: usize = core::mem::size_of::<u64>();

/// One system call with up to four arguments; returns what the kernel put in
/// rax: a result, or minus an errno.
///
/// # Safety
/// The arguments must be valid for call `nr` (pointers to live memory of the
/// size the call expects).
unsafe fn syscall4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; the syscall instruction
    // clobbers only rax (the result), rcx and r11, declared here, and touches
    // no stack of ours.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes a number and does not return.
    unsafe {
        syscall4(EXIT_GROUP, code, 0, 0, 0);
    }
    // Not reached; a loop satisfies the type without a panic path.
    #[allow(clippy::empty_loop)]
    loop {}
}

// The entry point. The kernel starts a program with the stack pointer on
// argc and 16-byte aligned; a function expects the alignment a `call` leaves
// (8 off), so `_start` calls `main` rather than being it.
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym main,
);

/// Reap every child that has ended, without waiting for the others.
fn reap() {
    // SAFETY: no status or usage is asked for; pid -1 is any child. It
    // returns 0 when no child has ended, and -ECHILD when there is none.
    while unsafe { syscall4(WAIT4, usize::MAX, 0, WNOHANG, 0) } > 0 {}
}

extern "C" fn main() -> ! {
    let set = SET;
    let set_ptr = &set as *const u64 as usize;
    // SAFETY: the set lives on this never-returning frame; no old set asked.
    if unsafe { syscall4(RT_SIGPROCMASK, SIG_BLOCK, set_ptr, 0, SET_SIZE) } != 0 {
        exit(1);
    }
    // A child that ended before the mask was set sent a SIGCHLD nobody will
    // see again.
    reap();
    loop {
        // SAFETY: as above; no siginfo and no timeout are asked for.
        match unsafe { syscall4(RT_SIGTIMEDWAIT, set_ptr, 0, 0, SET_SIZE) } {
            SIGCHLD => reap(),
            SIGINT | SIGTERM => exit(0),
            // The process was stopped and continued: wait again.
            EINTR => {}
            // Nothing else can come back with these arguments; should it,
            // ending is better than spinning on it.
            _ => exit(1),
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}
