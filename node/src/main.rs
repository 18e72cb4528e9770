//! `vecino`: run a vecino peer, and talk to it.
//!
//! Until the daemon lands (`vecino run`), the binary manages the peer's identity: `keygen`
//! creates the key file and `id` shows who the key names.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vecino::{keyfile, peer};
use vecino_proto::Identity;

/// vecino: a peer-to-peer overlay node (one per host).
#[derive(Debug, Parser)]
#[command(name = "vecino", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new peer key (PKCS#8 PEM, mode 0600); never overwrites an existing one.
    Keygen {
        /// Where to write the key [default: $XDG_DATA_HOME/vecino/identity.pem]
        #[arg(long, short, env = "VECINO_KEY", value_name = "PATH")]
        out: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the peer id and public key of a key file.
    Id {
        /// The key file [default: $XDG_DATA_HOME/vecino/identity.pem]
        #[arg(long, short, env = "VECINO_KEY", value_name = "PATH")]
        key: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn key_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    given.or_else(keyfile::default_key_path).context(
        "cannot tell where the key lives: no home directory; pass --key/--out or set VECINO_KEY",
    )
}

fn show(identity: &Identity, path: &std::path::Path, json: bool, created: bool) {
    let peer_id = peer::peer_id(identity);
    if json {
        let v = serde_json::json!({
            "peer_id": peer_id.to_base58(),
            "public_key": identity.public().to_string(),
            "key_type": "ed25519",
            "key_file": path.display().to_string(),
        });
        println!("{v}");
        return;
    }
    if created {
        println!("created {}", path.display());
    }
    println!("peer id:    {peer_id}");
    println!("public key: {} (ed25519)", identity.public());
    println!("key file:   {}", path.display());
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { out, json } => {
            let path = key_path(out)?;
            let identity = keyfile::create(&path)?;
            show(&identity, &path, json, true);
        }
        Command::Id { key, json } => {
            let path = key_path(key)?;
            let identity = keyfile::load(&path)?;
            show(&identity, &path, json, false);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
