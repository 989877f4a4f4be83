//! `skiff-monitor`: the agent's two long-lived helpers in a small binary.
//!
//! Every app container runs under a monitor and every pod has a pause
//! process, each living as long as its container or pod. They need none of the
//! agent's HTTP, gRPC or async machinery, so they get a binary of their own
//! that links only what they run: `skiff-monitor monitor ...` (see
//! `monitor.rs`) and `skiff-monitor pause` (see `pause.rs`). The agent
//! falls back to its own `monitor` and `pause` subcommands when this binary
//! is not next to it.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skiff-monitor",
    version,
    about = "skiff-agent's container monitor and pause process"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch over one container
    Monitor(skiff_agent::monitor::MonitorArgs),
    /// A pod sandbox's pause process
    Pause,
}

fn main() {
    let code = match Cli::parse().command {
        Command::Monitor(a) => skiff_agent::monitor::run(&a),
        Command::Pause => skiff_agent::pause::run(),
    };
    std::process::exit(code);
}
