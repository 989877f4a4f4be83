//! `skiff-monitor`: the agent's per-container helper in a small binary.
//!
//! Every app container runs under a monitor, which lives as long as its
//! container. It needs none of the agent's HTTP, gRPC or async machinery, so
//! it gets a binary of its own that links only what it runs:
//! `skiff-monitor monitor ...` (see `monitor.rs`). The agent falls back to
//! its own `monitor` subcommand when this binary is not next to it. (The
//! pod's pause process is smaller still: see `pause.rs`.)

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skiff-monitor",
    version,
    about = "skiff-agent's container monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch over one container
    Monitor(skiff_agent::monitor::MonitorArgs),
}

fn main() {
    let code = match Cli::parse().command {
        Command::Monitor(a) => skiff_agent::monitor::run(&a),
    };
    std::process::exit(code);
}
