//! `vecino-testnet`: evaluations and test networks for vecino.
//!
//! `coords` evaluates coordinate profiles on RTT matrices, `sim` runs scenarios on the
//! deterministic simulator, `local` and `soak` run real `vecino` processes on this machine.

mod coords;
mod fill;
mod local;
mod sim;
mod svg;

use clap::{Parser, Subcommand};

/// Simulations allocate and free small objects by the hundred million (frames, events,
/// queue entries), from several threads: mimalloc does that faster than the system
/// allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Evaluations and test networks for vecino.
#[derive(Debug, Parser)]
#[command(name = "vecino-testnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate coordinate profiles (vecino vs Serf) on an RTT matrix, side by side.
    Coords(coords::CoordsArgs),
    /// Run a simulation scenario (vecino, fullmesh and push side by side).
    Sim(sim::SimArgs),
    /// Run N real vecino processes on 127.0.0.1 under a fault schedule and write a report.
    Local(local::LocalArgs),
    /// A long real-process run: two halves whose link flaps, summarised per interval.
    Soak(local::SoakArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Coords(args) => coords::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Local(args) => local::run_local(args),
        Command::Soak(args) => local::run_soak(args),
    }
}
