//! `vecino-testnet local` and `soak`: N real `vecino` processes on 127.0.0.1 with the link shim
//! (latencies from an RTT matrix or a generated topology, optional rate and loss), a fault
//! schedule (partitions, flapping links, `kill -9` and restart; testnet/faults/*.toml), posts
//! at a steady rate through the API, and a report (report.json + report.html with inline SVG
//! charts) from every peer's API, `/metrics` and `/proc` — among its figures, how soon the
//! peers called a killed one offline and what each side of a cut called the other
//! ([`statuses`]).
//!
//! With `--netns` (root), each peer runs in a network namespace of its own behind real kernel
//! links: rate by `tc tbf`, loss and cuts by nft, delay still in the shim ([`netns`]); the
//! report is the same, with every qdisc's counters beside it (`tc-qdisc.txt`, and `netns` in report.json).
//!
//! The peers are started and stopped by [`vecino::cluster`]: every child is stopped when the
//! run ends, fails, panics or is interrupted (Ctrl-C or SIGTERM), and the namespaces are
//! deleted after them. Every wait is bounded.

mod cards;
pub(crate) mod faults;
mod netns;
mod record;
mod report;
mod statuses;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use vecino::cluster::{self, Cluster, Spec, parse_duration};
use vecino_coords::topology::{RttMatrix, Topology};

use faults::{Action, FaultFile, Schedule};
use netns::Netns;
use record::{Counters, Sample, Shared};

/// Flags shared by `local` and `soak`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CommonArgs {
    /// Peers to start (2 to 200)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(2..=200))]
    nodes: u16,
    /// RTT matrix file (first line n, then n rows of n ms, -1 where missing: filled); n ≥
    /// --nodes, rows spread over it (e.g. testnet/data/planetlab50.txt)
    #[arg(long, value_name = "FILE", conflicts_with = "topology")]
    matrix: Option<PathBuf>,
    /// Generated latency model when no --matrix: internet, line, grid, split, circle, random
    #[arg(long, value_name = "NAME", default_value = "internet")]
    topology: String,
    /// Seed of the topology and of the choice of posting peers
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Posts per second over the whole network, each from a random running peer (0 to 100)
    #[arg(long, value_name = "RATE", default_value_t = 1.0)]
    posts: f64,
    /// Bytes of text per post
    #[arg(long, value_name = "BYTES", default_value_t = 200)]
    post_bytes: usize,
    /// Postcards per second over the whole network, each from a random running peer to
    /// another random peer (0 to 100): delivered exactly once? receipts back? (the report's
    /// postcards line)
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    postcards: f64,
    /// Bytes of text per postcard
    #[arg(long, value_name = "BYTES", default_value_t = 200)]
    postcard_bytes: usize,
    /// Rate of every link in kbit/s, 0 = unlimited [default: 0 for local, 256 for soak]; per
    /// pair of peers in the shim, per peer each way with --netns
    #[arg(long, value_name = "KBPS")]
    rate_kbps: Option<u64>,
    /// Loss probability of every link (0 to 1): per frame in the shim, per packet with --netns
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Each peer in a network namespace of its own (root): rate by `tc tbf`, loss and cuts by
    /// nft on real kernel links (veth pairs to a bridge); delay stays in the shim
    #[arg(long)]
    netns: bool,
    /// With --netns: a tbf per pair of peers each way (as the shim's rate), not one per peer
    #[arg(long, requires = "netns")]
    tbf_per_pair: bool,
    /// Directory for report.json and report.html (created)
    #[arg(long, value_name = "DIR", default_value = "testnet-report")]
    report: PathBuf,
    /// The vecino binary [default: `vecino` next to this executable]
    #[arg(long, value_name = "PATH")]
    vecino: Option<PathBuf>,
    /// Sample every peer's links, counters and coordinate this often
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    sample_every: Duration,
    /// Longest wait for the start-up convergence (every peer lists all as alive)
    #[arg(long, value_name = "DURATION", default_value = "180s", value_parser = parse_duration)]
    converge_timeout: Duration,
    /// Longest wait after the traffic for every post to reach every peer
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    settle: Duration,
    /// A further flag for every `vecino run` (repeatable), e.g. --node-arg=--suspect-timeout-secs=20
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    node_arg: Vec<String>,
    /// Keep the peers' data directories and logs (in <report>/data) instead of deleting them
    #[arg(long)]
    keep: bool,
}

/// `vecino-testnet local`.
#[derive(Debug, clap::Args)]
pub(crate) struct LocalArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Traffic phase length, after the start-up convergence (e.g. 90s, 10m)
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    duration: Duration,
    /// Fault schedule (TOML; see testnet/faults/README.md)
    #[arg(long, value_name = "FILE.toml")]
    faults: Option<PathBuf>,
}

/// `vecino-testnet soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Run length, after the start-up convergence
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    duration: Duration,
    /// Length of each summarised interval
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    interval: Duration,
    /// The two halves' link is down this long per flap
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    down: Duration,
    /// ...and up this long between flaps
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    up: Duration,
    /// Steady (no flapping) for this long at the start, as a reference interval
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    steady: Duration,
}

/// What one run needs beyond the common flags.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) duration: Duration,
    pub(crate) schedule: Schedule,
    pub(crate) rate_kbps: u64,
    /// `soak`: summarise per interval; the label of each interval's scenario.
    pub(crate) intervals: Option<(Duration, Vec<String>)>,
    pub(crate) command: String,
}

/// A post the run sent.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) author: usize,
    pub(crate) t: f64,
}

/// Everything observed, for the report.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) n: usize,
    pub(crate) names: Vec<String>,
    pub(crate) peer_ids: Vec<String>,
    pub(crate) restarts: Vec<u32>,
    pub(crate) sent: Vec<Sent>,
    pub(crate) failed_posts: u64,
    /// `seen[post][peer]`, s after the start of traffic.
    pub(crate) seen: Vec<Vec<f64>>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) heals: Vec<f64>,
    pub(crate) faults: Vec<(f64, f64)>,
    pub(crate) converge_s: Option<f64>,
    pub(crate) traffic_end: f64,
    pub(crate) settled: bool,
    pub(crate) interrupted: bool,
    /// `--netns`: the layout and every qdisc's counters at the end.
    pub(crate) netns: Option<serde_json::Value>,
    /// The postcards sent (`--postcards`), by number.
    pub(crate) cards: Vec<cards::Card>,
    /// Custodian kills: (time, peer, postcards it held).
    pub(crate) custodian_kills: Vec<(f64, usize, u64)>,
    /// Every peer killed during the traffic: (peer, killed at, started again at).
    pub(crate) outages: Vec<(usize, f64, f64)>,
    /// Every change of the status a peer gave another.
    pub(crate) statuses: statuses::Log,
}

/// Runs `local`.
pub(crate) fn run_local(args: &LocalArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let end = args.duration.as_secs_f64();
    let schedule = match &args.faults {
        Some(f) => FaultFile::load(f)?.compile(usize::from(c.nodes), end)?,
        None => Vec::new(),
    };
    let plan = Plan {
        duration: args.duration,
        schedule,
        rate_kbps: c.rate_kbps.unwrap_or(0),
        intervals: None,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    run(c, &plan)
}

/// Runs `soak`: a steady reference interval, then the two halves' link flapping.
pub(crate) fn run_soak(args: &SoakArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let end = args.duration.as_secs_f64();
    let steady = args.steady.as_secs_f64().min(end);
    let (down, up) = (args.down.as_secs_f64(), args.up.as_secs_f64());
    let schedule = FaultFile::convoy(steady, end, down, up).compile(usize::from(c.nodes), end)?;
    if args.interval.is_zero() {
        bail!("--interval must be longer than 0");
    }
    let count = (end / args.interval.as_secs_f64()).ceil().max(1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let labels = (0..count as usize)
        .map(|k| {
            let from = k as f64 * args.interval.as_secs_f64();
            if from < steady {
                "steady".to_string()
            } else {
                format!("flap {down:.0}s down / {up:.0}s up")
            }
        })
        .collect();
    let plan = Plan {
        duration: args.duration,
        schedule,
        rate_kbps: c.rate_kbps.unwrap_or(256),
        intervals: Some((args.interval, labels)),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    run(c, &plan)
}

/// The vecino binary: given, else next to this executable.
fn vecino_bin(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let beside = exe.with_file_name("vecino");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(cluster::ClusterError::NoBinary(beside).into())
}

/// The peers' RTTs (peer `i` is row `i`), and the name of where they come from. A matrix with
/// missing pairs is filled over all its hosts (an emulated link needs a delay; the pairs stay
/// not measured, so the coordinate error skips them), and the rows are spread over it.
fn matrix(c: &CommonArgs, n: usize) -> anyhow::Result<(RttMatrix, String)> {
    match &c.matrix {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let m = RttMatrix::parse(&text).with_context(|| format!("{}", path.display()))?;
            let filled = m.filled().map_err(|e| {
                anyhow::anyhow!(
                    "{}: {} of {} pairs missing and they cannot all be filled: {e}",
                    path.display(),
                    m.missing_pairs(),
                    m.pairs()
                )
            })?;
            let m = cluster::spread_rows(&filled, n).with_context(|| {
                format!("{} has {} hosts, fewer than --nodes {n}", path.display(), m.len())
            })?;
            Ok((m, path.display().to_string()))
        }
        None => {
            let t = Topology::from_name(&c.topology)
                .with_context(|| format!("unknown topology {:?}", c.topology))?;
            let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
            Ok((t.generate(n, &mut rng), format!("generated {} (seed {})", t.name(), c.seed)))
        }
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    if let Ok(s) = ProgressStyle::with_template(template) {
        b.set_style(s.progress_chars("=> "));
    }
    b.enable_steady_tick(Duration::from_millis(250));
    b
}

fn run(c: &CommonArgs, plan: &Plan) -> anyhow::Result<()> {
    let n = usize::from(c.nodes);
    if !(0.0..=100.0).contains(&c.posts) {
        bail!("--posts must be between 0 and 100 per second");
    }
    if !(0.0..=100.0).contains(&c.postcards) {
        bail!("--postcards must be between 0 and 100 per second");
    }
    let max_card = vecino_proto::limits::MAX_POSTCARD_BODY_BYTES;
    if c.postcard_bytes > max_card {
        bail!("--postcard-bytes must be at most {max_card}");
    }
    if !(0.0..=1.0).contains(&c.loss) {
        bail!("--loss must be between 0 and 1");
    }
    let (m, matrix_name) = matrix(c, n)?;
    if let Some(f) = m.fill() {
        println!(
            "vecino-testnet: matrix {matrix_name}, among the {n} peers: {}; the coordinate \
             error never counts them",
            f.describe(m.pairs())
        );
    }
    std::fs::create_dir_all(&c.report)
        .with_context(|| format!("cannot create {}", c.report.display()))?;
    let data = c.report.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("cannot clear {}", data.display()))?;
    }
    let interrupt = cluster::interrupt_flag();
    let bin = vecino_bin(c.vecino.as_deref())?;
    // Declared before the cluster, so dropped after it: the peers stop, then their namespaces go.
    let mut net = if c.netns {
        Some(Netns::create(n, plan.rate_kbps, c.loss, c.tbf_per_pair)?)
    } else {
        None
    };
    let spec = Spec {
        bin,
        dir: data.clone(),
        matrix: Some(m.clone()),
        // With --netns the kernel applies rate and loss; the shim only the delay.
        rate_kbps: if net.is_some() { 0 } else { plan.rate_kbps },
        loss: if net.is_some() { 0.0 } else { c.loss },
        n,
        extra: c.node_arg.clone(),
        log: "warn".into(),
        hosts: net.as_ref().map(Netns::hosts).unwrap_or_default(),
    };
    println!(
        "vecino-testnet: {n} peers {}, latencies {matrix_name}, rate {} kbit/s, loss {}, posts {}/s, postcards {}/s, {} s, {} fault actions",
        if net.is_some() { "in network namespaces (tbf, nft)" } else { "through the link shim" },
        plan.rate_kbps,
        c.loss,
        c.posts,
        c.postcards,
        plan.duration.as_secs(),
        plan.schedule.len()
    );
    let spin = bar(0, "{spinner} {elapsed_precise} {msg}");
    spin.set_message(format!("starting {n} peers"));
    let started = Instant::now();
    let mut cl = Cluster::start(spec, Some(interrupt.clone()))?;
    spin.finish_and_clear();
    println!("{n} peers up in {:.1} s", started.elapsed().as_secs_f64());
    let mut observed = drive(&mut cl, net.as_mut(), c, plan, &m, &interrupt)?;
    cl.stop_all();
    drop(cl);
    if let Some(net) = &net {
        let path = c.report.join("tc-qdisc.txt");
        std::fs::write(&path, net.qdisc_counters())
            .with_context(|| format!("cannot write {}", path.display()))?;
        observed.netns = Some(net.qdisc_json());
    }
    drop(net);
    let out = report::write(&c.report, c, plan, (&matrix_name, &m), &observed)?;
    if !c.keep {
        let _ = std::fs::remove_dir_all(&data);
    }
    println!("{out}");
    println!("report: {}", c.report.join("report.html").display());
    if observed.interrupted {
        bail!("interrupted; the report covers the run so far");
    }
    Ok(())
}

/// Waits until every peer lists all `n` as alive; the time taken, or None at the timeout.
fn converge(cl: &mut Cluster, n: usize, timeout: Duration, stop: &AtomicBool) -> Option<f64> {
    let b =
        bar(n as u64, "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} peers know all {msg}");
    let t = Instant::now();
    let result = loop {
        let full = cl
            .members
            .iter()
            .filter(|m| {
                m.client().get("/v1/members").ok().is_some_and(|v| {
                    v.as_array()
                        .is_some_and(|a| a.iter().filter(|x| x["status"] == "alive").count() == n)
                })
            })
            .count();
        b.set_position(full as u64);
        if full == n {
            break Some(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > timeout || !cluster::sleep_unless(stop, Duration::from_millis(500)) {
            break None;
        }
    };
    b.finish_and_clear();
    result
}

/// Cuts in force: `(a, b)` = peer a's shim (or namespace) drops peer b.
type Cuts = BTreeSet<(usize, usize)>;

fn shim(cl: &Cluster, at: usize, peers: &[usize], path: &str) {
    let ids: Vec<&str> = peers.iter().map(|&p| cl.members[p].peer_id.as_str()).collect();
    let _ = cl.members[at].client().post(path, &json!({ "peers": ids }));
}

fn cut(
    cl: &Cluster,
    net: Option<&mut Netns>,
    cuts: &mut Cuts,
    a: &[usize],
    b: &[usize],
    restore: bool,
) -> anyhow::Result<()> {
    match net {
        Some(net) => net.cut(a, b, restore)?,
        None => {
            let path = if restore { "/v1/shim/restore" } else { "/v1/shim/cut" };
            for (x, y) in [(a, b), (b, a)] {
                for &i in x {
                    shim(cl, i, y, path);
                }
            }
        }
    }
    for (x, y) in [(a, b), (b, a)] {
        for &i in x {
            for &j in y {
                if restore {
                    cuts.remove(&(i, j));
                } else {
                    cuts.insert((i, j));
                }
            }
        }
    }
    Ok(())
}

fn drive(
    cl: &mut Cluster,
    mut net: Option<&mut Netns>,
    c: &CommonArgs,
    plan: &Plan,
    m: &RttMatrix,
    interrupt: &Arc<AtomicBool>,
) -> anyhow::Result<Observed> {
    let n = cl.members.len();
    let converge_s = converge(cl, n, c.converge_timeout, interrupt);
    match converge_s {
        Some(s) => println!("every peer lists all {n} as alive after {s:.1} s"),
        None => println!("not converged after {:?}: going on anyway", c.converge_timeout),
    }
    let shared = Shared::new(
        cl.members.iter().map(|m| m.api.clone()).collect(),
        cl.members.iter().map(|m| m.dir.clone()).collect(),
    );
    for i in 0..n {
        record::follow(shared.clone(), i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed ^ 0x7e57);
    let mut counters = Counters::default();
    let mut samples = vec![record::sample(cl, &mut counters, 0.0, Some(m))];
    let mut sent: Vec<Sent> = Vec::new();
    let mut failed_posts = 0u64;
    let mut heals = Vec::new();
    let mut cuts = Cuts::new();
    let mut next = 0usize;
    let end = plan.duration.as_secs_f64();
    let mut posts = Arrivals::new(c.posts, end);
    let mut next_sample = c.sample_every.as_secs_f64();
    let filler = "x".repeat(c.post_bytes.saturating_sub(12));
    let mut postcards = Arrivals::new(c.postcards, end);
    let card_filler = "x".repeat(c.postcard_bytes.saturating_sub(12));
    // Postcards sent across a cut in force, waiting for its heal (bounded by the run's).
    let mut across_cut: Vec<usize> = Vec::new();
    let mut custodians: std::collections::BTreeMap<usize, usize> = Default::default();
    let mut custodian_kills = Vec::new();
    let mut outages: Vec<(usize, f64, f64)> = Vec::new();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let b = bar(end.ceil() as u64, "{elapsed_precise} [{bar:30}] {pos}/{len} s {msg}");
    let mut interrupted = false;
    loop {
        let t = shared.now();
        if t >= end {
            break;
        }
        if interrupt.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        while next < plan.schedule.len() && plan.schedule[next].0 <= t {
            let action = &plan.schedule[next].1;
            let mut custody = Custody {
                chosen: &mut custodians,
                kills: &mut custodian_kills,
                outages: &mut outages,
            };
            apply(
                cl,
                net.as_deref_mut(),
                &shared,
                &mut cuts,
                &mut heals,
                action,
                t,
                &b,
                &mut custody,
            )?;
            next += 1;
            if matches!(action, Action::Restore(..)) {
                healed(&shared, &mut across_cut, &cuts, t);
            }
        }
        // Postcards due (at most 100 per pass).
        for _ in 0..100 {
            let Some(author) = postcards.due(t, cl, &mut rng) else { break };
            let dest = (author + rng.random_range(1..n)) % n;
            let Ok(mut all) = shared.cards.lock() else { break };
            let k = all.len();
            all.push(cards::Card::new(author, dest, f64::NAN));
            drop(all);
            let text = format!("{k} c{author} {card_filler}");
            let body = json!({"to": cl.members[dest].peer_id, "text": text});
            let now = shared.now();
            let ok = cl.members[author].client().post("/v1/postcards", &body).is_ok();
            if let Ok(mut all) = shared.cards.lock() {
                all[k].t = if ok { now } else { f64::NAN };
            }
            if ok && cuts.contains(&(author, dest)) {
                across_cut.push(k);
            }
        }
        // Posts due (at most 100 per pass, so faults and samples keep their time).
        for _ in 0..100 {
            let Some(author) = posts.due(t, cl, &mut rng) else { break };
            let k = sent.len();
            shared.expect(k, n);
            let text = format!("{k} p{author} {filler}");
            let now = shared.now();
            let body = json!({"topic": record::TOPIC, "text": text});
            match cl.members[author].client().post("/v1/posts", &body) {
                Ok(_) => {
                    shared.record(author, &text, now);
                    sent.push(Sent { author, t: now });
                }
                Err(_) => {
                    failed_posts += 1;
                    // Keep the slot (the record is indexed by k) but mark it as never sent.
                    sent.push(Sent { author, t: f64::NAN });
                }
            }
        }
        if t >= next_sample {
            next_sample += c.sample_every.as_secs_f64();
            samples.push(record::sample(cl, &mut counters, t, Some(m)));
        }
        let seen = shared.snapshot();
        let (got, want) = delivered(&sent, &seen, n);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        b.set_position(t as u64);
        let cards_line = shared.cards.lock().map_or(String::new(), |all| {
            if all.is_empty() {
                return String::new();
            }
            let at = all.iter().filter(|c| c.delivered.is_finite()).count();
            format!(" postcards {} at {}", all.len(), at)
        });
        b.set_message(format!(
            "posts {} delivered {:.1} %{cards_line} cuts {} down {}",
            sent.len(),
            100.0 * got as f64 / want.max(1) as f64,
            cuts.len(),
            (0..n).filter(|&i| !cl.members[i].is_running()).count()
        ));
        cluster::sleep_unless(interrupt, Duration::from_millis(100));
    }
    b.finish_and_clear();
    let traffic_end = shared.now();
    // End of the schedule: lift every cut, restart every peer that is down.
    if !cuts.is_empty() {
        match net.as_deref_mut() {
            Some(net) => net.restore_all()?,
            None => {
                for i in 0..n {
                    let _ = cl.members[i].client().post("/v1/shim/restore", &json!({}));
                }
            }
        }
        cuts.clear();
        heals.push(shared.now());
        healed(&shared, &mut across_cut, &cuts, shared.now());
    }
    let in_netns = net.is_some();
    for i in 0..n {
        if !cl.members[i].is_running() {
            restart(cl, &shared, &cuts, i, in_netns)?;
        }
    }
    let back = shared.now();
    for o in outages.iter_mut().filter(|o| o.2.is_nan()) {
        o.2 = back;
    }
    // Settle: every post at every peer, bounded.
    let s = bar(0, "{spinner} {elapsed_precise} settling: {msg}");
    let t = Instant::now();
    let mut settled = false;
    while !interrupted && t.elapsed() < c.settle {
        let (got, want) = delivered(&sent, &shared.snapshot(), n);
        let (cards_got, cards_want) = shared.cards.lock().map_or((0, 0), |all| {
            let sent = all.iter().filter(|c| c.t.is_finite());
            let done = sent.clone().filter(|c| c.delivered.is_finite() && c.receipt.is_finite());
            (done.count(), sent.count())
        });
        s.set_message(format!(
            "{got} of {want} deliveries, {cards_got} of {cards_want} postcards with receipts"
        ));
        if got == want && cards_got == cards_want {
            settled = true;
            break;
        }
        if !cluster::sleep_unless(interrupt, Duration::from_millis(500)) {
            interrupted = true;
        }
    }
    s.finish_and_clear();
    // The authoritative count: every peer's stored posts.
    let any_cards = shared.cards.lock().is_ok_and(|all| !all.is_empty());
    for (i, mem) in cl.members.iter().enumerate() {
        record::catch_up(&shared, i, &mem.client(), 0);
        if any_cards {
            cards::count(&shared, i, &mem.client());
        }
    }
    samples.push(record::sample(cl, &mut counters, shared.now(), Some(m)));
    shared.stop.store(true, Ordering::Relaxed);
    Ok(Observed {
        n,
        names: cl.members.iter().map(|m| m.name.clone()).collect(),
        peer_ids: cl.members.iter().map(|m| m.peer_id.clone()).collect(),
        restarts: cl.members.iter().map(|m| m.restarts).collect(),
        sent,
        failed_posts,
        seen: shared.snapshot(),
        samples,
        heals,
        faults: faults::intervals(&plan.schedule),
        converge_s,
        traffic_end,
        settled,
        interrupted,
        netns: None,
        cards: shared.cards.lock().map(|c| c.clone()).unwrap_or_default(),
        custodian_kills,
        outages,
        statuses: shared.statuses.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default(),
    })
}

/// Steady arrivals at `rate` per second over the traffic phase, each from a random running
/// peer (posts, postcards).
struct Arrivals {
    gap: f64,
    next: f64,
}

impl Arrivals {
    fn new(rate: f64, end: f64) -> Self {
        let gap = if rate > 0.0 { 1.0 / rate } else { f64::INFINITY };
        Arrivals { gap, next: gap.min(end) }
    }

    /// The author of the next arrival due by `t`, if one is (and a peer runs).
    fn due(&mut self, t: f64, cl: &mut Cluster, rng: &mut ChaCha8Rng) -> Option<usize> {
        if self.next > t {
            return None;
        }
        self.next += self.gap;
        let running: Vec<usize> =
            (0..cl.members.len()).filter(|&i| cl.members[i].is_running()).collect();
        (!running.is_empty()).then(|| running[rng.random_range(0..running.len())])
    }
}

/// A cut was lifted at `t`: the postcards sent across it are now between connected peers.
fn healed(shared: &Shared, across_cut: &mut Vec<usize>, cuts: &Cuts, t: f64) {
    let Ok(mut all) = shared.cards.lock() else { return };
    across_cut.retain(|&k| {
        let c = &mut all[k];
        if cuts.contains(&(c.author, c.dest)) {
            return true;
        }
        c.heal = Some(t);
        false
    });
}

/// The custodian kills of a run: which peer each chose, and what it held; and every peer's
/// time down (any kill).
struct Custody<'a> {
    chosen: &'a mut std::collections::BTreeMap<usize, usize>,
    kills: &'a mut Vec<(f64, usize, u64)>,
    /// (peer, killed at, started again at: NaN while down).
    outages: &'a mut Vec<(usize, f64, f64)>,
}

impl Custody<'_> {
    fn down(&mut self, i: usize, t: f64) {
        self.outages.push((i, t, f64::NAN));
    }

    fn up(&mut self, i: usize, t: f64) {
        if let Some(o) = self.outages.iter_mut().rev().find(|o| o.0 == i && o.2.is_nan()) {
            o.2 = t;
        }
    }
}

/// The running peer holding the most postcards (and receipts) in custody, by its
/// `vecino_postcards_custody` gauge, and how many (the lowest index on a tie).
fn custodian(cl: &mut Cluster) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64)> = None;
    for (i, m) in cl.members.iter_mut().enumerate() {
        if !m.is_running() {
            continue;
        }
        let Ok(text) = m.client().get_text("/metrics") else { continue };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let held = record::metric(&text, "vecino_postcards_custody") as u64;
        if best.is_none_or(|(_, h)| held > h) {
            best = Some((i, held));
        }
    }
    best
}

/// (deliveries made, deliveries expected) to peers other than the author.
pub(crate) fn delivered(sent: &[Sent], seen: &[Vec<f64>], n: usize) -> (usize, usize) {
    let mut got = 0;
    let mut want = 0;
    for (k, s) in sent.iter().enumerate() {
        if s.t.is_nan() {
            continue;
        }
        want += n - 1;
        if let Some(row) = seen.get(k) {
            got += row.iter().enumerate().filter(|(i, t)| *i != s.author && !t.is_nan()).count();
        }
    }
    (got, want)
}

fn restart(
    cl: &mut Cluster,
    shared: &Shared,
    cuts: &Cuts,
    i: usize,
    in_netns: bool,
) -> anyhow::Result<()> {
    cl.restart(i)?;
    if let Ok(mut apis) = shared.apis.write() {
        apis[i] = cl.members[i].api.clone();
    }
    if in_netns {
        // The cuts are in its namespace, which outlives the process.
        return Ok(());
    }
    // Its own shim cuts were lost with the process: apply them again.
    let mine: Vec<usize> = cuts.iter().filter(|(a, _)| *a == i).map(|(_, b)| *b).collect();
    if !mine.is_empty() {
        shim(cl, i, &mine, "/v1/shim/cut");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply(
    cl: &mut Cluster,
    net: Option<&mut Netns>,
    shared: &Shared,
    cuts: &mut Cuts,
    heals: &mut Vec<f64>,
    action: &Action,
    t: f64,
    b: &ProgressBar,
    custody: &mut Custody<'_>,
) -> anyhow::Result<()> {
    let in_netns = net.is_some();
    match action {
        Action::KillCustodian(j) => match custodian(cl) {
            Some((i, held)) => {
                cl.kill9(i);
                custody.down(i, t);
                custody.chosen.insert(*j, i);
                custody.kills.push((t, i, held));
                b.println(format!(
                    "[{t:>6.1} s] kill -9 {} (custodian of {held} postcards)",
                    cl.members[i].name
                ));
            }
            None => b.println(format!("[{t:>6.1} s] no running peer to kill as a custodian")),
        },
        Action::RestartCustodian(j) => {
            let Some(&i) = custody.chosen.get(j) else { return Ok(()) };
            match restart(cl, shared, cuts, i, in_netns) {
                Ok(()) => {
                    custody.up(i, t);
                    b.println(format!("[{t:>6.1} s] restarted {}", cl.members[i].name));
                }
                Err(e) => b.println(format!("[{t:>6.1} s] restart of p{i} failed: {e:#}")),
            }
        }
        Action::Cut(a, x) => cut(cl, net, cuts, a, x, false)?,
        Action::Restore(a, x) => {
            cut(cl, net, cuts, a, x, true)?;
            heals.push(t);
        }
        Action::Kill(i) => {
            cl.kill9(*i);
            custody.down(*i, t);
            b.println(format!("[{t:>6.1} s] kill -9 {}", cl.members[*i].name));
        }
        Action::Restart(i) => match restart(cl, shared, cuts, *i, in_netns) {
            Ok(()) => {
                custody.up(*i, t);
                b.println(format!("[{t:>6.1} s] restarted {}", cl.members[*i].name));
            }
            Err(e) => b.println(format!("[{t:>6.1} s] restart of p{i} failed: {e:#}")),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn common(args: &[&str]) -> CommonArgs {
        Args::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap().common
    }

    /// A matrix with missing pairs is filled over all its hosts before the peers' rows are
    /// picked; the pairs stay not measured. One that cannot be filled is refused clearly.
    #[test]
    fn matrices_with_holes_are_filled_for_the_shim_or_refused() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let path = data.join("planetlab50-holes.txt");
        let c = common(&["--nodes", "25", "--matrix", path.to_str().unwrap()]);
        let (m, name) = matrix(&c, 25).unwrap();
        assert_eq!((m.len(), name), (25, path.display().to_string()));
        let holey = RttMatrix::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let rows: Vec<usize> = (0..25).map(|i| i * 50 / 25).collect();
        let mut missing = 0;
        for (a, &i) in rows.iter().enumerate() {
            for (b, &j) in rows.iter().enumerate() {
                assert_eq!(m.measured(a, b), holey.measured(i, j));
                assert!(a == b || m.ms(a, b) > 0.0);
                missing += usize::from(a < b && !holey.is_measured(i, j));
            }
        }
        let fill = m.fill().expect("the 25 peers have missing pairs");
        assert_eq!((fill.missing, m.missing_pairs()), (missing, missing));
        // What the shim reads: every RTT, no -1.
        assert!(!cluster::matrix_text(&m).contains("-1"));

        let tmp = tempfile::tempdir().unwrap();
        let split = tmp.path().join("split.txt");
        std::fs::write(&split, "4\n0 10 -1 -1\n10 0 -1 -1\n-1 -1 0 10\n-1 -1 10 0\n").unwrap();
        let c = common(&["--nodes", "2", "--matrix", split.to_str().unwrap()]);
        let err = matrix(&c, 2).unwrap_err().to_string();
        assert!(err.contains("4 of 6 pairs missing") && err.contains("hosts 0 and 2"), "{err}");
    }
}
