//! `vecino-testnet`: evaluations and test networks for vecino.
//!
//! Subcommands arrive with their issues (`coords`, `sim`, `local`, `soak`).

use clap::Parser;

/// Evaluations and test networks for vecino.
#[derive(Debug, Parser)]
#[command(name = "vecino-testnet", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
