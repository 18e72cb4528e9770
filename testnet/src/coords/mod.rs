//! `vecino-testnet coords`: evaluates coordinate profiles on an RTT matrix (or a generated
//! topology) with the protocol of `testnet/data/README.md`, side by side in one run, and
//! prints them with Serf's published figures and the offline best-fit floor.
//!
//! ```sh
//! target/release/vecino-testnet coords --matrix testnet/data/planetlab490.txt --profile both
//! target/release/vecino-testnet coords --matrix testnet/data/seattle99.txt --profile both
//! ```
//!
//! A matrix may have missing pairs (`-1`): they are never sampled and never scored, and the
//! report says how many there were.

pub(crate) mod metrics;
mod offline;
mod protocol;
mod reference;
mod report;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vecino_coords::{
    Config, Coordinate, Profile,
    topology::{RttMatrix, Topology},
};

use protocol::Noise;
use report::{CheckpointReport, ProfileReport, Report};

/// Which profiles to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProfileArg {
    /// vecino's profile.
    Vecino,
    /// Serf's reference profile.
    Serf,
    /// Both, side by side.
    Both,
}

/// Arguments of `vecino-testnet coords`.
#[derive(Debug, clap::Args)]
pub(crate) struct CoordsArgs {
    /// RTT matrix file: `n`, then n rows of n RTTs in ms, -1 where missing (e.g.
    /// testnet/data/planetlab490.txt).
    #[arg(long, required_unless_present = "topology", conflicts_with = "topology")]
    matrix: Option<PathBuf>,
    /// Generated topology instead of a matrix: line, grid, split, circle, random, internet.
    #[arg(long, value_parser = parse_topology)]
    topology: Option<Topology>,
    /// Hosts of the generated topology.
    #[arg(long, default_value_t = 100, requires = "topology")]
    nodes: usize,
    /// Profiles to evaluate.
    #[arg(long, value_enum, default_value = "both")]
    profile: ProfileArg,
    /// Checkpoints: updates per node at which the figures are taken (one run per seed).
    #[arg(long, value_delimiter = ',', default_value = "100,500,2000")]
    updates: Vec<usize>,
    /// Number of seeds; figures are means over them.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// First seed (seeds are first, first+1, …).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Measurement noise.
    #[arg(long, value_enum, default_value = "none")]
    noise: Noise,
    /// Euclidean dimensions (2, 3, 4, 5, 8 or 16).
    #[arg(long, default_value_t = 8)]
    dims: usize,
    /// Write the final coordinates of the first seed (first profile run) as JSON.
    #[arg(long, value_name = "OUT.json")]
    dump_coords: Option<PathBuf>,
    /// Print the report as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Epochs per stage of the offline best fit (0 skips it).
    #[arg(long, default_value_t = 1500)]
    offline_epochs: usize,
    /// Random starts of the offline best fit (besides one warm start per profile).
    #[arg(long, default_value_t = 1)]
    offline_starts: u64,
    /// Override a parameter of the vecino profile, e.g. `--set decay.tau=0` (ablations).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    set: Vec<(String, f64)>,
}

fn parse_set(s: &str) -> Result<(String, f64), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    let v: f64 = v.parse().map_err(|_| format!("bad number {v:?}"))?;
    Config::vecino().set(k, v).map_err(|e| format!("{e}: {k:?}"))?;
    Ok((k.to_owned(), v))
}

/// The configuration a profile runs with (vecino's with the `--set` overrides).
fn config_of(profile: Profile, args: &CoordsArgs) -> Config {
    let mut c = profile.config();
    if profile == Profile::Vecino {
        for (k, v) in &args.set {
            // Keys were validated when parsed.
            let _ = c.set(k, *v);
        }
    }
    c
}

fn parse_topology(s: &str) -> Result<Topology, String> {
    Topology::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Topology::ALL.iter().map(|t| t.name()).collect();
        format!("unknown topology {s:?} (one of {})", names.join(", "))
    })
}

/// Runs the subcommand.
pub(crate) fn run(args: &CoordsArgs) -> anyhow::Result<()> {
    match args.dims {
        2 => run_dims::<2>(args),
        3 => run_dims::<3>(args),
        4 => run_dims::<4>(args),
        5 => run_dims::<5>(args),
        8 => run_dims::<8>(args),
        16 => run_dims::<16>(args),
        d => bail!("--dims {d} is not built in (use 2, 3, 4, 5, 8 or 16)"),
    }
}

fn load(args: &CoordsArgs) -> anyhow::Result<(String, RttMatrix)> {
    if let Some(path) = &args.matrix {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading matrix {}", path.display()))?;
        let m = RttMatrix::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok((stem, m))
    } else if let Some(t) = args.topology {
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        Ok((format!("{}{}", t.name(), args.nodes), t.generate(args.nodes, &mut rng)))
    } else {
        bail!("give --matrix FILE or --topology NAME")
    }
}

fn run_dims<const D: usize>(args: &CoordsArgs) -> anyhow::Result<()> {
    let (name, matrix) = load(args)?;
    let mut checkpoints = args.updates.clone();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    if checkpoints.first().is_none_or(|&c| c == 0) {
        bail!("--updates needs positive checkpoints");
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let profiles: Vec<Profile> = match args.profile {
        ProfileArg::Vecino => vec![Profile::Vecino],
        ProfileArg::Serf => vec![Profile::Serf],
        ProfileArg::Both => Profile::ALL.to_vec(),
    };
    let seeds: Vec<u64> = (args.seed..args.seed + args.seeds).collect();
    let mut report = Report::new(&name, &matrix, &seeds, args.noise, D, &checkpoints);
    eprintln!("{}", report.header());
    for p in &profiles {
        eprintln!("config {}: {:?}", p.name(), config_of(*p, args));
    }

    let mut first_coords: Vec<Vec<Coordinate<D>>> = Vec::new();
    let last = *checkpoints.last().unwrap_or(&0);
    for &profile in &profiles {
        let mut per_seed = Vec::new();
        let mut resets = 0;
        let mut rejected = 0;
        for &seed in &seeds {
            let started = Instant::now();
            let run = protocol::run::<D>(
                &matrix,
                config_of(profile, args),
                &checkpoints,
                seed,
                args.noise,
                |u| {
                    eprintln!(
                        "  {} seed {seed}: {u}/{last} updates/node ({:.1} s)",
                        profile.name(),
                        started.elapsed().as_secs_f64()
                    );
                },
            );
            resets += run.resets;
            rejected += run.rejected;
            if seed == seeds[0] {
                first_coords.push(run.coords.clone());
            }
            per_seed.push(run.checkpoints);
        }
        report.profiles.push(ProfileReport {
            profile: profile.name(),
            config: format!("{:?}", config_of(profile, args)),
            resets,
            rejected,
            checkpoints: CheckpointReport::from_seeds(&checkpoints, &per_seed),
        });
    }

    if let Some(out) = &args.dump_coords {
        dump(out, &first_coords[0])?;
        eprintln!(
            "wrote final coordinates of {} seed {} to {}",
            profiles[0].name(),
            seeds[0],
            out.display()
        );
    }

    if args.offline_epochs > 0 {
        let started = Instant::now();
        eprintln!(
            "offline best fit: {} starts × up to 3 stages × {} epochs …",
            first_coords.len() + usize::try_from(args.offline_starts).unwrap_or(0),
            args.offline_epochs
        );
        let fit = offline::fit::<D>(
            &matrix,
            &first_coords,
            args.offline_starts,
            args.offline_epochs,
            args.seed,
        );
        eprintln!("offline best fit done ({:.1} s)", started.elapsed().as_secs_f64());
        report.offline = Some(report::OfflineReport {
            start: fit.start,
            epochs: args.offline_epochs,
            metrics: fit.metrics,
        });
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Writes `{"nodes":[{"index":i,"vec":[…],"height":h,"adjustment":a}, …]}` (seconds, as the
/// coordinates are kept), in matrix order.
fn dump<const D: usize>(out: &Path, coords: &[Coordinate<D>]) -> anyhow::Result<()> {
    let nodes: Vec<serde_json::Value> = coords
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({
                "index": i,
                "vec": c.vec.iter().collect::<Vec<_>>(),
                "height": c.height,
                "adjustment": c.adjustment,
            })
        })
        .collect();
    let doc = serde_json::json!({ "units": "seconds", "nodes": nodes });
    std::fs::write(out, serde_json::to_string(&doc)?)
        .with_context(|| format!("writing {}", out.display()))
}
