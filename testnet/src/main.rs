//! `vecino-testnet`: evaluations and test networks for vecino.
//!
//! Subcommands arrive with their issues: `coords` (coordinate evaluation on RTT matrices)
//! now; `sim`, `local` and `soak` later.

mod coords;
mod sim;

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Coords(args) => coords::run(args),
        Command::Sim(args) => sim::run(args),
    }
}
