//! `vecino-testnet sim`: runs a scenario (testnet/scenarios/*.toml) on the deterministic
//! simulator of `vecino_gossip::sim`, once per disseminator (vecino, fullmesh, push) in the
//! same invocation, and prints their figures side by side; optionally writes the JSON report
//! and SVG charts of delivery and traffic over time.

mod file;
mod svg;
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use vecino_gossip::sim::disseminators::POSTCARD_BASELINES;
use vecino_gossip::sim::{self, Report};

use file::ScenarioFile;

use crate::fill::MatrixFill;

/// Arguments of `vecino-testnet sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// Scenario file (TOML; see testnet/scenarios/README.md).
    #[arg(long, value_name = "FILE.toml")]
    scenario: PathBuf,
    /// Seed (default: the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Write the report as JSON.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// Write SVG charts of delivery and traffic over time into this directory.
    #[arg(long, value_name = "DIR")]
    svg: Option<PathBuf>,
    /// Override the scenario's traffic duration (seconds), for shorter iterations; the
    /// report says what ran.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Override the scenario's number of peers (generated latencies only: a matrix fixes it).
    #[arg(long, value_name = "N")]
    peers: Option<usize>,
    /// Override the share of liars of every `kind = "lie"` fault (0 ≤ share < 1).
    #[arg(long, value_name = "SHARE")]
    lie_share: Option<f64>,
    /// Override the scenario's `[link] host_queue_bytes`: each peer's host reports frames
    /// that left on the medium and vecino keeps at most this many bytes in the host's queue
    /// (back-pressure instead of pacing to an equal share of a radio); 0 turns it off.
    #[arg(long, value_name = "BYTES")]
    host_queue: Option<u64>,
    /// Override the scenario's `[link] broadcast` (radio scenarios): whether vecino's peers
    /// broadcast on their radio, heard by every member in one transmission, or send every
    /// frame point to point.
    #[arg(long, value_name = "BOOL")]
    broadcast: Option<bool>,
    /// Disseminators to run, in order: vecino, fullmesh, push, the liveness baselines swim
    /// (memberlist/Serf) and iroh (iroh-gossip's HyParView on QUIC), and the postcard
    /// baselines direct, epidemic, spray (the vecino engine with another postcard router).
    /// Default: vecino,fullmesh,push, and the postcard baselines when the scenario sends
    /// postcards.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Change one of vecino's engine settings for this run (repeatable), e.g.
    /// `--engine root_fanout=0`: per_author_trees (0 or 1), lazy_new_links_from, probe_new_links_from,
    /// root_fanout, tree_refresh_every (0: off), tree_refresh_min_members, ihave_fanout,
    /// fisheye_members, fisheye_from_start (0 or 1), newspapers_heard_per_ks (per 1 000 s),
    /// swap_lead_ms, optimization_threshold, active_view, random_links, graft_min_ms,
    /// heartbeat_ms, tick_ms, swap_interval_s, swap_ratio_pct, newspaper_min_interval_s,
    /// link_state_min_interval_s (0: no link state), opinions (0 or 1: publish opinions),
    /// opinion_max_interval_s, barrio_radius_ms (0: no barrios).
    /// The report's header says what ran.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_setting)]
    engine: Vec<(String, u64)>,
    /// Run each disseminator in this process instead of a child process of its own (peak RSS
    /// is then only comparable for the first one).
    #[arg(long)]
    in_process: bool,
    /// Child processes (one disseminator each) run at once; default: the machine's cores.
    /// Each is deterministic, so reports do not depend on it; the wall
    /// times of runs that share the machine do.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Threads per disseminator's run: its peers are split into shards that run side by
    /// side in windows (see gossip's `sim::shards`); default: the machine's cores, shared
    /// among the child processes running at once. Reports do not depend on it (apart from
    /// the shards and lookahead they name); wall times do.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Internal: do not draw a progress bar (a child running beside another).
    #[arg(long, hide = true)]
    no_progress: bool,
    /// Internal: run the one disseminator of `--only` and write its report (JSON) here.
    #[arg(long, hide = true, value_name = "OUT.json")]
    child_report: Option<PathBuf>,
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct Output<'a> {
    scenario: &'a str,
    description: &'a str,
    seed: u64,
    peers: usize,
    simulated_s: f64,
    wall_s: f64,
    config: &'a ScenarioFile,
    /// Only for a matrix with missing pairs: how they were filled.
    #[serde(skip_serializing_if = "Option::is_none")]
    matrix_fill: Option<MatrixFill>,
    disseminators: BTreeMap<String, Report>,
}

pub(crate) fn run(args: &SimArgs) -> anyhow::Result<()> {
    let mut file = ScenarioFile::read(&args.scenario)?;
    if let Some(d) = args.duration {
        file.duration_s = d;
    }
    if let Some(n) = args.peers {
        file.peers = n;
    }
    if let Some(share) = args.lie_share {
        file.set_lie_share(share);
    }
    if let Some(q) = args.host_queue {
        file.link.host_queue_bytes = (q > 0).then_some(q);
    }
    if let Some(b) = args.broadcast {
        file.link.broadcast = b;
    }
    let seed = args.seed.unwrap_or(file.seed);
    // The scenario's engine settings, then the command line's.
    for key in file.engine.keys() {
        known_setting(key)
            .map_err(|e| anyhow::anyhow!("{}: [engine] {e}", args.scenario.display()))?;
    }
    let engine: Vec<(String, u64)> = file
        .engine
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .chain(args.engine.iter().cloned())
        .collect();
    let base = args.scenario.parent().map(PathBuf::from).unwrap_or_default();
    let child = args.child_report.is_some();
    if !child {
        eprintln!(
            "scenario {} ({}), seed {seed}: {}",
            file.name,
            args.scenario.display(),
            file.description
        );
        eprintln!("config: {}", serde_json::to_string(&file)?);
        for (key, value) in &engine {
            eprintln!("vecino engine setting: {key} = {value}");
        }
    }
    let scenario = file.resolve(&base, seed)?;
    if !child && let Some(line) = table::matrix_fill_line(&scenario) {
        eprintln!("{line}");
    }
    let started = Instant::now();
    // Several disseminators: each in a child process of its own (peak RSS per disseminator).
    let only: Vec<String> = args.only.clone().unwrap_or_else(|| {
        let baselines = scenario.postcards.is_some().then_some(POSTCARD_BASELINES);
        ["vecino", "fullmesh", "push"]
            .into_iter()
            .chain(baselines.into_iter().flatten())
            .map(String::from)
            .collect()
    });
    let in_children = !child && !args.in_process && only.len() > 1;
    let mut reports = if in_children { run_children(args, &only, seed)? } else { Vec::new() };
    let here: &[String] = if in_children { &[] } else { &only };
    for name in here {
        let dis = match (sim::disseminators::router_of(name), sim::disseminators::by_name(name)) {
            // The vecino engine (or a postcard baseline on it): the settings apply to all.
            (Some(router), Some(dis)) if !engine.is_empty() => {
                let settings = engine.clone();
                sim::disseminators::vecino_named(dis.name, move |c| {
                    c.postcard_router = router;
                    for (key, value) in &settings {
                        apply_setting(c, key, *value);
                    }
                })
            }
            (_, Some(dis)) => dis,
            (_, None) => bail!(
                "unknown or unavailable disseminator {name:?} (vecino, fullmesh, push, swim, iroh, \
                 direct, epidemic, spray)"
            ),
        };
        reset_peak_rss();
        let t = Instant::now();
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:40}] {percent:>3}% {elapsed} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(dis.name);
        let mut shown = false;
        let mut progress = |f: f64| {
            if !shown && !args.no_progress && t.elapsed() > Duration::from_secs(2) {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                shown = true;
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            bar.set_position((f * 1000.0) as u64);
        };
        let threads = args.threads.map_or_else(cores, usize::from);
        let mut report = sim::run_parallel(&scenario, &dis, seed, threads, &mut progress);
        bar.finish_and_clear();
        report.wall_s = Some(t.elapsed().as_secs_f64());
        report.peak_rss_bytes = peak_rss();
        let split = match report.lookahead_us {
            Some(l) => {
                format!(", {} shards side by side, {:.2} ms windows", report.shards, l as f64 / 1e3)
            }
            None => String::new(),
        };
        eprintln!(
            "{}: {} events in {:.1} s wall{split}",
            dis.name,
            report.events,
            report.wall_s.unwrap_or_default()
        );
        if let Some(path) = &args.child_report {
            std::fs::write(path, serde_json::to_vec(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
            return Ok(());
        }
        reports.push(report);
    }
    let wall = started.elapsed().as_secs_f64();
    print!("{}", table::render(&scenario, seed, &reports));
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (what, text) in svg::charts(&scenario, &reports) {
            let path = dir.join(format!("{}-{what}.svg", scenario.name));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.json {
        let out = Output {
            scenario: &file.name,
            description: &file.description,
            seed,
            peers: scenario.peers,
            simulated_s: (scenario.duration + scenario.drain).as_secs_f64(),
            wall_s: wall,
            config: &file,
            matrix_fill: match &scenario.latency {
                sim::Latency::Matrix(m) => MatrixFill::of(m),
                _ => None,
            },
            disseminators: reports.into_iter().map(|r| (r.disseminator.clone(), r)).collect(),
        };
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The machine's cores.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Runs each disseminator of `--only` in a child process of its own, `--jobs` at once (the
/// first one draws the progress bar); returns their reports in `--only`'s order.
fn run_children(args: &SimArgs, only: &[String], seed: u64) -> anyhow::Result<Vec<Report>> {
    let cores = cores();
    let jobs = args.jobs.map_or(cores, usize::from).max(1);
    // The cores are shared among the children running at once.
    let threads = args.threads.map_or_else(|| (cores / jobs.min(only.len())).max(1), usize::from);
    let mut reports = Vec::new();
    let mut running: std::collections::VecDeque<(&str, std::process::Child, PathBuf)> =
        std::collections::VecDeque::new();
    let mut next = 0;
    loop {
        while running.len() < jobs && next < only.len() {
            let name = only[next].as_str();
            let (child, out) = spawn_child(args, seed, name, next > 0 && jobs > 1, threads)?;
            running.push_back((name, child, out));
            next += 1;
        }
        // Wait for the oldest (reports come in `--only`'s order); the others run meanwhile.
        let Some((name, mut child, out)) = running.pop_front() else { break };
        let status = child.wait().context("waiting for a child simulation")?;
        if !status.success() {
            for (_, mut other, _) in running {
                let _ = other.kill();
            }
            bail!("the {name} run failed ({status})");
        }
        let bytes = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
        let _ = std::fs::remove_file(&out);
        reports.push(serde_json::from_slice(&bytes)?);
    }
    Ok(reports)
}

/// Starts a child process running disseminator `name` alone; returns it and where it will
/// write its report.
fn spawn_child(
    args: &SimArgs,
    seed: u64,
    name: &str,
    no_progress: bool,
    threads: usize,
) -> anyhow::Result<(std::process::Child, PathBuf)> {
    let out = std::env::temp_dir().join(format!("vecino-sim-{}-{name}.json", std::process::id()));
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("sim").arg("--scenario").arg(&args.scenario);
    if let Some(d) = args.duration {
        cmd.args(["--duration", &d.to_string()]);
    }
    if let Some(n) = args.peers {
        cmd.args(["--peers", &n.to_string()]);
    }
    if let Some(share) = args.lie_share {
        cmd.args(["--lie-share", &share.to_string()]);
    }
    if let Some(q) = args.host_queue {
        cmd.args(["--host-queue", &q.to_string()]);
    }
    if let Some(b) = args.broadcast {
        cmd.args(["--broadcast", &b.to_string()]);
    }
    for (key, value) in &args.engine {
        cmd.args(["--engine", &format!("{key}={value}")]);
    }
    if no_progress {
        cmd.arg("--no-progress");
    }
    cmd.args(["--threads", &threads.to_string()]);
    let child = cmd
        .args(["--seed", &seed.to_string(), "--only", name, "--child-report"])
        .arg(&out)
        .spawn()
        .context("starting a child simulation")?;
    Ok((child, out))
}

/// The engine settings `--engine` can change, each with how it applies its value.
type Apply = fn(&mut vecino_gossip::Config, u64);
const SETTINGS: &[(&str, Apply)] = &[
    ("per_author_trees", |c, v| c.per_author_trees = v != 0),
    ("lazy_new_links_from", |c, v| c.lazy_new_links_from = count(v)),
    ("probe_new_links_from", |c, v| c.probe_new_links_from = count(v)),
    ("root_fanout", |c, v| c.root_fanout = count(v)),
    ("tree_refresh_every", |c, v| c.tree_refresh_every = v),
    ("tree_refresh_min_members", |c, v| c.tree_refresh_min_members = count(v)),
    ("ihave_fanout", |c, v| c.ihave_fanout = count(v)),
    ("fisheye_members", |c, v| c.fisheye_members = count(v)),
    ("fisheye_from_start", |c, v| c.fisheye_from_start = v != 0),
    ("newspapers_heard_per_ks", |c, v| c.newspapers_heard_per_s = v as f64 / 1000.0),
    ("swap_lead_ms", |c, v| c.swap_lead = Some(Duration::from_millis(v))),
    ("optimization_threshold", |c, v| {
        c.optimization_threshold = u32::try_from(v).unwrap_or(u32::MAX);
    }),
    ("active_view", |c, v| c.active_view = count(v)),
    ("random_links", |c, v| c.random_links = count(v)),
    ("graft_min_ms", |c, v| c.graft_min = Duration::from_millis(v)),
    ("heartbeat_ms", |c, v| c.heartbeat = Duration::from_millis(v)),
    ("fast_links", |c, v| c.fast_links = count(v)),
    ("slow_heartbeat_ms", |c, v| c.slow_heartbeat = Duration::from_millis(v)),
    ("tick_ms", |c, v| c.tick = Duration::from_millis(v)),
    ("swap_interval_s", |c, v| c.swap_interval = Some(Duration::from_secs(v))),
    ("swap_ratio_pct", |c, v| c.swap_ratio = v as f64 / 100.0),
    ("newspaper_min_interval_s", |c, v| c.newspaper_min_interval = Duration::from_secs(v)),
    ("link_state_min_interval_s", |c, v| c.link_state_min_interval = Duration::from_secs(v)),
    ("opinions", |c, v| c.opinions = v != 0),
    ("opinion_max_interval_s", |c, v| c.opinion_max_interval = Duration::from_secs(v)),
    ("barrio_radius_ms", |c, v| c.barrio_radius = Duration::from_millis(v)),
];

fn count(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// An error naming the settings if `key` is not one of them.
fn known_setting(key: &str) -> Result<(), String> {
    if SETTINGS.iter().any(|(k, _)| *k == key) {
        return Ok(());
    }
    let names: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
    Err(format!("unknown engine setting {key:?} (one of {})", names.join(", ")))
}

/// Parses `KEY=VALUE` for `--engine`.
fn parse_setting(s: &str) -> Result<(String, u64), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    known_setting(key)?;
    let value = value.parse().map_err(|e| format!("{key}: {value:?} is not a count: {e}"))?;
    Ok((key.to_owned(), value))
}

/// Applies one parsed `--engine` setting.
fn apply_setting(c: &mut vecino_gossip::Config, key: &str, value: u64) {
    if let Some((_, apply)) = SETTINGS.iter().find(|(k, _)| *k == key) {
        apply(c, value);
    }
}

/// Resets the kernel's peak-RSS mark (VmHWM) of this process; best effort.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM of this process, bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
