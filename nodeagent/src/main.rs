//! `skiff-agent`: for now its image commands, which work without a daemon
//! (each takes the store's lock while it writes). The pod daemon comes with
//! the node-agent issue.

mod image_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skiff-agent",
    version,
    about = "Skiff's node agent: images now, pods later"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage images in the local store
    Image(image_cmd::ImageArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Image(a) => image_cmd::run(a),
    };
    if let Err(e) = result {
        eprintln!("skiff-agent: {e:#}");
        std::process::exit(1);
    }
}
