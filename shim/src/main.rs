//! The `containerd-shim-skiff-v2` binary: see the library's docs.

fn main() {
    // One malloc arena for all threads: a shim lives as long as its
    // container and is mostly idle, so per-thread arenas (each touching its
    // own pages) cost resident memory for nothing. See mallopt(3).
    // SAFETY: mallopt with integer arguments, before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    // `-v`, as containerd's shims answer it, before the shim runtime (which
    // insists on a namespace) sees the arguments.
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("containerd-shim-skiff-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {}", skiff_shim::RUNTIME_ID);
        return;
    }
    // `-info` (containerd 2.x): a RuntimeInfo protobuf on stdout, with
    // skiff's `features` document so containerd can check specs against it.
    if std::env::args().nth(1).as_deref() == Some("-info") {
        match skiff_shim::runtime_info() {
            Ok(bytes) => {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&bytes);
                return;
            }
            Err(e) => {
                eprintln!("{}: {e}", skiff_shim::RUNTIME_ID);
                std::process::exit(1);
            }
        }
    }
    containerd_shim::run::<skiff_shim::Shim>(skiff_shim::RUNTIME_ID, None);
}
