//! `skiff-monitor`: the agent's per-container helper in a small binary.
//!
//! Every app container runs under a monitor, which lives as long as its
//! container. It needs none of the agent's HTTP, gRPC or async machinery, so
//! it gets a binary of its own that links only what it runs:
//! `skiff-monitor monitor ...` (see `monitor.rs`). The agent falls back to
//! its own `monitor` subcommand when this binary is not next to it. (The
//! pod's pause process is smaller still: see `pause.rs`.)
//!
//! Its command line is read with `lexopt` rather than clap, for the memory
//! a long-lived process keeps (see [`skiff_agent::monitor::MonitorArgs`]).

use skiff_agent::monitor::{self, USAGE};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let code = match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("monitor") => monitor::main("skiff-monitor", args),
        Some("--version" | "-V") => {
            println!("skiff-monitor {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some("--help" | "-h" | "help") => {
            println!("skiff-agent's container monitor\n{USAGE}");
            0
        }
        _ => {
            eprintln!("skiff-monitor: the only command is `monitor`\n{USAGE}");
            2
        }
    };
    std::process::exit(code);
}
