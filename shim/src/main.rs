//! The `containerd-shim-skiff-v2` binary: see the library's docs.

fn main() {
    // `-v`, as containerd's shims answer it, before the shim runtime (which
    // insists on a namespace) sees the arguments.
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("containerd-shim-skiff-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {}", skiff_shim::RUNTIME_ID);
        return;
    }
    containerd_shim::run::<skiff_shim::Shim>(skiff_shim::RUNTIME_ID, None);
}
