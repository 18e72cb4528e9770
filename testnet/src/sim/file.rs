//! The scenario file format (TOML; documented in `testnet/scenarios/README.md`) and its
//! resolution into a `vecino_gossip::sim::Scenario` (matrices read, topologies generated).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use vecino_coords::topology::{InternetModel, RttMatrix, Topology};
use vecino_gossip::sim::{
    Arrivals, BarrioSampling, CompactInternet, Fault, FaultKind, FlatFlood, Latency, LinkModel,
    Loss, OpinionSampling, Pairs, PostcardTraffic, RateScope, Scenario, Traffic, TrafficScope,
    seed_for,
};

/// Above this many peers a generated topology uses the compact O(N) model.
const DENSE_MATRIX_MAX: usize = 2048;

/// A scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScenarioFile {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    pub(crate) peers: usize,
    pub(crate) duration_s: f64,
    #[serde(default = "default_drain")]
    pub(crate) drain_s: f64,
    #[serde(default = "default_seed")]
    pub(crate) seed: u64,
    #[serde(default)]
    pub(crate) start_spread_s: f64,
    #[serde(default = "default_bootstrap")]
    pub(crate) bootstrap: usize,
    #[serde(default = "default_transport_timeout")]
    pub(crate) transport_timeout_s: f64,
    #[serde(default = "default_check")]
    pub(crate) check_interval_s: f64,
    #[serde(default = "yes")]
    pub(crate) converge_from_start: bool,
    #[serde(default)]
    pub(crate) bucket_s: Option<f64>,
    /// Sizes of consecutive groups of peers; default: each peer its own group.
    #[serde(default)]
    pub(crate) groups: Option<Vec<usize>>,
    pub(crate) latency: LatencyFile,
    pub(crate) link: LinkFile,
    /// Post traffic; none without the table (a postcard-only scenario).
    #[serde(default)]
    pub(crate) traffic: TrafficFile,
    /// Postcard traffic, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) postcards: Option<PostcardsFile>,
    #[serde(default, rename = "fault")]
    pub(crate) faults: Vec<FaultFile>,
    #[serde(default)]
    pub(crate) flat_flood: Option<FlatFloodFile>,
    /// Sample what peers believe about each other (statuses, consensus per field, the
    /// `median` and `nara` baselines on the same claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) opinions: Option<OpinionsFile>,
    /// `[barrios]`: sample barrios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) barrios: Option<BarriosFile>,
    /// vecino engine settings for this scenario (the keys of `--engine`, which wins).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) engine: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LatencyFile {
    /// Same RTT for every pair.
    rtt_ms: Option<f64>,
    /// RTT inside a group / across groups.
    intra_group_ms: Option<f64>,
    inter_group_ms: Option<f64>,
    /// A matrix file (relative to the working directory, else to the scenario file's
    /// directory and its ancestors); missing pairs (`-1`) are filled.
    matrix: Option<PathBuf>,
    /// A generated topology: line, grid, split, circle, random, internet.
    topology: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkFile {
    rate_bps: Option<u64>,
    #[serde(default = "default_scope")]
    scope: String,
    #[serde(default = "default_queue")]
    queue_bytes: u64,
    #[serde(default)]
    loss: f64,
    #[serde(default)]
    burst: Option<BurstFile>,
    #[serde(default)]
    frame_overhead_bytes: u32,
    #[serde(default)]
    pub(crate) host_queue_bytes: Option<u64>,
    #[serde(default)]
    pub(crate) broadcast: bool,
    /// Per-frame delay noise: uniform ± this share of the one-way delay.
    #[serde(default)]
    jitter: f64,
    /// Share of frames whose delay is multiplied by `spike_factor`.
    #[serde(default)]
    spike_share: f64,
    #[serde(default = "default_spike_factor")]
    spike_factor: f64,
}

fn default_spike_factor() -> f64 {
    3.0
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BurstFile {
    p_bad: f64,
    p_good: f64,
    #[serde(default)]
    loss_good: f64,
    loss_bad: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrafficFile {
    rate_per_s: f64,
    #[serde(default = "default_per")]
    per: String,
    #[serde(default = "default_body")]
    body_bytes: usize,
    #[serde(default = "default_topic")]
    topic: String,
    #[serde(default)]
    start_s: f64,
    #[serde(default = "default_arrivals")]
    arrivals: String,
}

/// `[postcards]`: point-to-point messages between random pairs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostcardsFile {
    /// Postcards per second, fleet-wide.
    rate_per_s: f64,
    #[serde(default = "default_postcard_body")]
    body_bytes: usize,
    #[serde(default = "default_postcard_lifetime")]
    lifetime_s: f64,
    #[serde(default)]
    start_s: f64,
    /// `random` (any other peer) or `across_groups` (a peer of another group).
    #[serde(default = "default_pairs")]
    pairs: String,
    /// The sender's application gives the destination's coordinate.
    #[serde(default)]
    hint: bool,
}

impl PostcardsFile {
    fn traffic(&self) -> anyhow::Result<PostcardTraffic> {
        let pairs = match self.pairs.as_str() {
            "random" => Pairs::Random,
            "across_groups" => Pairs::AcrossGroups,
            other => bail!("postcards.pairs {other:?}: expected random or across_groups"),
        };
        if !(self.rate_per_s.is_finite() && self.rate_per_s >= 0.0) {
            bail!("postcards.rate_per_s must be a finite number ≥ 0");
        }
        if !(self.lifetime_s > 0.0 && self.lifetime_s <= 86_400.0) {
            bail!("postcards.lifetime_s must be in (0, 86400]");
        }
        if self.body_bytes > 48 * 1024 {
            bail!("postcards.body_bytes is over 48 KiB");
        }
        Ok(PostcardTraffic {
            rate_per_s: self.rate_per_s,
            body_bytes: self.body_bytes,
            lifetime: secs(self.lifetime_s),
            start: secs(self.start_s),
            pairs,
            hint: self.hint,
        })
    }
}

fn default_postcard_body() -> usize {
    200
}
fn default_postcard_lifetime() -> f64 {
    600.0
}
fn default_pairs() -> String {
    "random".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultFile {
    kind: String,
    start_s: f64,
    /// How long it lasts; absent: until the end.
    down_s: Option<f64>,
    /// Repeat every this many seconds until the end.
    every_s: Option<f64>,
    /// Partition: sides, as lists of group indexes.
    #[serde(default)]
    sides: Vec<Vec<u32>>,
    /// Crash, lie: peer indexes.
    #[serde(default)]
    peers: Vec<u32>,
    /// Lie, instead of `peers`: this share of the peers, those with the most others within
    /// 50 ms (liars placed near their victims, where the proximity bonus helps them most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    share: Option<f64>,
    /// Degrade: the latency multiplier of the barrio's links (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rtt_factor: Option<f64>,
    /// Lie: what the liars claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claims: Option<LieFile>,
}

/// What liars claim (`kind = "lie"`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LieFile {
    /// Every subject down.
    #[serde(default)]
    offline: bool,
    /// Added to the restarts seen.
    #[serde(default)]
    restarts_add: u32,
    /// Added to the start, seconds.
    #[serde(default)]
    start_shift_s: f64,
    /// The uptime claimed is this times the true one.
    #[serde(default = "one")]
    uptime_factor: f64,
    /// About every member held, not only the neighbours.
    #[serde(default = "yes")]
    about_all: bool,
}

fn one() -> f64 {
    1.0
}

/// `[barrios]`: how the run samples barrios.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BarriosFile {
    /// A sample every this many seconds.
    #[serde(default = "five")]
    every_s: f64,
    /// Barrio changes are counted from this many seconds on (the steady state).
    #[serde(default)]
    steady_from_s: f64,
}

fn five() -> f64 {
    5.0
}

/// `[opinions]`: how the run samples beliefs.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpinionsFile {
    /// A sample every this many seconds.
    #[serde(default = "one")]
    every_s: f64,
    /// Observers sampled.
    #[serde(default = "default_observers")]
    observers: usize,
}

fn default_observers() -> usize {
    20
}

/// The `k` peers with the most others within 50 ms RTT (ties: lower index).
fn crowded(latency: &vecino_gossip::sim::Latency, n: usize, k: usize) -> Vec<u32> {
    let mut near: Vec<(usize, u32)> = (0..n)
        .map(|a| {
            let c = (0..n).filter(|&b| b != a && latency.rtt_us(a, b) < 50_000).count();
            (c, a as u32)
        })
        .collect();
    near.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
    let mut picked: Vec<u32> = near.into_iter().take(k).map(|x| x.1).collect();
    picked.sort_unstable();
    picked
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlatFloodFile {
    newspaper_bytes: u32,
    period_s: f64,
}

fn default_drain() -> f64 {
    60.0
}
fn default_seed() -> u64 {
    1
}
fn default_bootstrap() -> usize {
    3
}
fn default_transport_timeout() -> f64 {
    20.0
}
fn default_check() -> f64 {
    0.25
}
fn yes() -> bool {
    true
}
fn default_scope() -> String {
    "uplink".into()
}
fn default_queue() -> u64 {
    4 << 20
}
impl Default for TrafficFile {
    /// No posts.
    fn default() -> Self {
        Self {
            rate_per_s: 0.0,
            per: default_per(),
            body_bytes: default_body(),
            topic: default_topic(),
            start_s: 0.0,
            arrivals: default_arrivals(),
        }
    }
}

fn default_per() -> String {
    "peer".into()
}
fn default_body() -> usize {
    100
}
fn default_topic() -> String {
    "sim".into()
}
fn default_arrivals() -> String {
    "periodic".into()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl ScenarioFile {
    /// Reads and parses a scenario file.
    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Sets the share of liars of every lie fault (`--lie-share`).
    pub(crate) fn set_lie_share(&mut self, share: f64) {
        for f in self.faults.iter_mut().filter(|f| f.kind == "lie") {
            f.share = Some(share);
            f.peers.clear();
        }
    }

    /// Resolves the file into a runnable scenario; `base` is the scenario file's directory.
    pub(crate) fn resolve(&self, base: &Path, seed: u64) -> anyhow::Result<Scenario> {
        let n = self.peers;
        ensure!(n >= 2, "peers must be at least 2");
        ensure!(self.duration_s > 0.0, "duration_s must be positive");
        let groups: Vec<u32> = match &self.groups {
            None => (0..n as u32).collect(),
            Some(sizes) => {
                ensure!(sizes.iter().sum::<usize>() == n, "group sizes must add up to peers");
                sizes
                    .iter()
                    .enumerate()
                    .flat_map(|(g, &k)| std::iter::repeat_n(g as u32, k))
                    .collect()
            }
        };
        let groups = Arc::new(groups);
        let group_count = groups.iter().max().map_or(0, |g| *g as usize + 1);
        let latency = self.latency.resolve(n, &groups, base, seed)?;
        if let Some(cap) = latency.capacity() {
            ensure!(cap >= n, "the latency model places {cap} hosts, the scenario has {n} peers");
        }
        let scope = match self.link.scope.as_str() {
            "uplink" => RateScope::Uplink,
            "pair" => RateScope::Pair,
            "radio" => RateScope::SharedRadio,
            other => bail!("link.scope {other:?}: expected uplink, pair or radio"),
        };
        ensure!(
            !self.link.broadcast || scope == RateScope::SharedRadio,
            "link.broadcast needs link.scope = \"radio\" (a medium that every member hears)"
        );
        ensure!(
            (0.0..1.0).contains(&self.link.jitter),
            "link.jitter {}: a share of the delay in [0, 1)",
            self.link.jitter
        );
        ensure!(
            (0.0..=1.0).contains(&self.link.spike_share),
            "link.spike_share {}: a share of frames in [0, 1]",
            self.link.spike_share
        );
        ensure!(
            self.link.spike_factor.is_finite() && (1.0..=1000.0).contains(&self.link.spike_factor),
            "link.spike_factor {}: a delay multiple in [1, 1000]",
            self.link.spike_factor
        );
        let loss = match (self.link.burst, self.link.loss) {
            (Some(b), _) => Loss::Bursty {
                p_bad: b.p_bad,
                p_good: b.p_good,
                loss_good: b.loss_good,
                loss_bad: b.loss_bad,
            },
            (None, p) if p > 0.0 => Loss::Bernoulli { p },
            _ => Loss::None,
        };
        let per = match self.traffic.per.as_str() {
            "peer" => TrafficScope::PerPeer,
            "fleet" => TrafficScope::Fleet,
            other => bail!("traffic.per {other:?}: expected peer or fleet"),
        };
        let arrivals = match self.traffic.arrivals.as_str() {
            "periodic" => Arrivals::Periodic,
            "poisson" => Arrivals::Poisson,
            other => bail!("traffic.arrivals {other:?}: expected periodic or poisson"),
        };
        let mut faults = Vec::new();
        for f in &self.faults {
            let kind = match f.kind.as_str() {
                "partition" | "flap" => {
                    ensure!(f.sides.len() >= 2, "a partition needs at least two sides");
                    let mut side = vec![0u8; n];
                    for (s, members) in f.sides.iter().enumerate() {
                        for &g in members {
                            ensure!((g as usize) < group_count, "no group {g}");
                            for (i, _) in groups.iter().enumerate().filter(|(_, x)| **x == g) {
                                side[i] = s as u8 + 1;
                            }
                        }
                    }
                    FaultKind::Partition { side: Arc::new(side) }
                }
                "crash" => {
                    ensure!(f.peers.iter().all(|&p| (p as usize) < n), "crash: no such peer");
                    FaultKind::Crash { peers: f.peers.clone() }
                }
                "degrade" => {
                    ensure!(
                        f.peers.len() == 1,
                        "degrade: peers = [the peer whose barrio degrades]"
                    );
                    ensure!((f.peers[0] as usize) < n, "degrade: no such peer");
                    let rtt_factor = f.rtt_factor.unwrap_or(3.0);
                    ensure!(
                        rtt_factor.is_finite() && (1.0..=100.0).contains(&rtt_factor),
                        "degrade: rtt_factor must be in [1, 100]"
                    );
                    FaultKind::Degrade { around: f.peers[0], rtt_factor }
                }
                "lie" => {
                    let c = f.claims.context("a lie needs claims = { … }")?;
                    ensure!(
                        c.uptime_factor.is_finite() && c.uptime_factor >= 0.0,
                        "claims.uptime_factor must be a finite number ≥ 0"
                    );
                    ensure!(c.start_shift_s.abs() <= 1e9, "claims.start_shift_s is out of range");
                    let peers = match f.share {
                        Some(share) => {
                            ensure!((0.0..1.0).contains(&share), "share must be in [0, 1)");
                            crowded(&latency, n, (share * n as f64).round() as usize)
                        }
                        None => f.peers.clone(),
                    };
                    ensure!(peers.iter().all(|&p| (p as usize) < n), "lie: no such peer");
                    let lie = vecino_gossip::Lie {
                        offline: c.offline,
                        restarts_add: c.restarts_add,
                        start_shift_ms: (c.start_shift_s * 1e3) as i64,
                        uptime_factor: c.uptime_factor,
                        about_all: c.about_all,
                    };
                    FaultKind::Lie { peers, lie }
                }
                other => {
                    bail!("fault.kind {other:?}: expected partition, flap, crash, lie or degrade")
                }
            };
            let mut start = f.start_s;
            loop {
                faults.push(Fault {
                    start: secs(start),
                    end: f.down_s.map(|d| secs(start + d)),
                    kind: kind.clone(),
                });
                match f.every_s {
                    Some(every) if every > 0.0 && start + every < self.duration_s => start += every,
                    _ => break,
                }
            }
        }
        let total = self.duration_s + self.drain_s;
        Ok(Scenario {
            name: self.name.clone(),
            peers: n,
            groups,
            latency,
            link: LinkModel {
                rate_bps: self.link.rate_bps,
                scope,
                queue_bytes: self.link.queue_bytes,
                loss,
                frame_overhead_bytes: self.link.frame_overhead_bytes,
                host_queue_bytes: self.link.host_queue_bytes,
                broadcast: self.link.broadcast,
                noise: vecino_gossip::sim::scenario::DelayNoise {
                    jitter: self.link.jitter,
                    spike_share: self.link.spike_share,
                    spike_factor: self.link.spike_factor,
                },
            },
            traffic: Traffic {
                rate_per_s: self.traffic.rate_per_s,
                per,
                body_bytes: self.traffic.body_bytes,
                topic: self.traffic.topic.clone(),
                start: secs(self.traffic.start_s),
                arrivals,
            },
            postcards: self.postcards.as_ref().map(|p| p.traffic()).transpose()?,
            faults,
            duration: secs(self.duration_s),
            drain: secs(self.drain_s),
            start_spread: secs(self.start_spread_s),
            bootstrap: self.bootstrap,
            transport_timeout: secs(self.transport_timeout_s),
            check_interval: secs(self.check_interval_s),
            converge_from_start: self.converge_from_start,
            bucket: secs(self.bucket_s.unwrap_or((total / 400.0).max(1.0))),
            flat_flood: self.flat_flood.map(|f| FlatFlood {
                newspaper_bytes: f.newspaper_bytes,
                period: secs(f.period_s),
            }),
            opinions: self.opinions.map(|o| OpinionSampling {
                every: secs(o.every_s.max(0.01)),
                observers: o.observers,
            }),
            barrios: self.barrios.map(|b| BarrioSampling {
                every: secs(b.every_s.max(0.01)),
                steady_from: secs(b.steady_from_s.max(0.0)),
            }),
        })
    }
}

impl LatencyFile {
    fn resolve(
        &self,
        n: usize,
        groups: &Arc<Vec<u32>>,
        base: &Path,
        seed: u64,
    ) -> anyhow::Result<Latency> {
        if let Some(path) = &self.matrix {
            let path = find(path, base)?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading matrix {}", path.display()))?;
            let m = RttMatrix::parse(&text)
                .map_err(|e| anyhow::anyhow!("matrix {}: {e}", path.display()))?;
            // A simulated link needs a delay: missing pairs are filled (and never scored).
            let m = m.filled().map_err(|e| {
                anyhow::anyhow!(
                    "matrix {}: {} of {} pairs missing and they cannot all be filled: {e}",
                    path.display(),
                    m.missing_pairs(),
                    m.pairs()
                )
            })?;
            return Ok(Latency::Matrix(Arc::new(m)));
        }
        if let Some(name) = &self.topology {
            let topo =
                Topology::from_name(name).with_context(|| format!("unknown topology {name:?}"))?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed_for(seed, 100, 0));
            if n > DENSE_MATRIX_MAX {
                ensure!(
                    topo == Topology::Internet,
                    "above {DENSE_MATRIX_MAX} peers only the internet topology is available"
                );
                let m = CompactInternet::generate(n, &InternetModel::default(), &mut rng);
                return Ok(Latency::Internet(Arc::new(m)));
            }
            return Ok(Latency::Matrix(Arc::new(topo.generate(n, &mut rng))));
        }
        if let (Some(intra), Some(inter)) = (self.intra_group_ms, self.inter_group_ms) {
            return Ok(Latency::Groups {
                groups: Arc::clone(groups),
                intra_ms: intra,
                inter_ms: inter,
            });
        }
        if let Some(rtt) = self.rtt_ms {
            return Ok(Latency::Uniform { rtt_ms: rtt });
        }
        bail!("latency: give rtt_ms, intra_group_ms + inter_group_ms, matrix or topology")
    }
}

/// A relative path, from the working directory, else from `base` and its ancestors (of its
/// absolute form, so that `testnet/data/…` in a scenario under `testnet/scenarios` resolves
/// from any working directory).
fn find(path: &Path, base: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() || path.exists() {
        return Ok(path.to_path_buf());
    }
    let base_abs = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    for dir in base_abs.ancestors() {
        let p = dir.join(path);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{} not found (from the working directory or {})", path.display(), base.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario shipped in testnet/scenarios parses and resolves, its matrix (shipped in
    /// testnet/data) included.
    #[test]
    fn shipped_scenarios_resolve() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let file = ScenarioFile::read(&path).unwrap();
            seen += 1;
            if file.peers > 1000 {
                continue; // slow to generate in a unit test
            }
            // Matrices ship in testnet/data: found from the scenario's directory upwards.
            let sc = file.resolve(&dir, file.seed).unwrap();
            assert_eq!(sc.peers, file.peers, "{}", path.display());
            if let Latency::Matrix(m) = &sc.latency
                && file.latency.matrix.is_some()
            {
                assert!(
                    m.is_complete(),
                    "{}: a shipped scenario's matrix has holes",
                    path.display()
                );
            }
        }
        assert!(seen >= 6, "only {seen} scenarios");
    }

    /// A matrix with missing pairs resolves filled (the pairs stay not measured); one whose
    /// holes cannot be filled is refused with the reason.
    #[test]
    fn matrices_with_holes_are_filled_or_refused() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let text = format!(
            "name = \"h\"\npeers = 50\nduration_s = 10\n[latency]\nmatrix = \"{}\"\n\
             [link]\nrate_bps = 1000000\n[traffic]\nrate_per_s = 1\n",
            data.join("planetlab50-holes.txt").display()
        );
        let file: ScenarioFile = toml::from_str(&text).unwrap();
        let sc = file.resolve(Path::new("."), 1).unwrap();
        let Latency::Matrix(m) = &sc.latency else { panic!("not a matrix") };
        let fill = m.fill().expect("filled");
        assert_eq!(fill.missing, m.missing_pairs());
        assert!(fill.missing > 0 && m.is_usable_everywhere());
        let holey =
            RttMatrix::parse(&std::fs::read_to_string(data.join("planetlab50-holes.txt")).unwrap())
                .unwrap();
        for i in 0..50 {
            for j in 0..50 {
                assert_eq!(m.measured(i, j), holey.measured(i, j));
                assert_eq!(sc.latency.is_measured(i, j), holey.is_measured(i, j));
                assert!(i == j || sc.latency.rtt_us(i, j) > 0);
            }
        }

        let tmp = tempfile::tempdir().unwrap();
        let split = tmp.path().join("split.txt");
        std::fs::write(&split, "4\n0 10 -1 -1\n10 0 -1 -1\n-1 -1 0 10\n-1 -1 10 0\n").unwrap();
        let text = text.replace("peers = 50", "peers = 4").replace(
            &data.join("planetlab50-holes.txt").display().to_string(),
            &split.display().to_string(),
        );
        let file: ScenarioFile = toml::from_str(&text).unwrap();
        let err = file.resolve(Path::new("."), 1).unwrap_err().to_string();
        assert!(err.contains("4 of 6 pairs missing") && err.contains("hosts 0 and 2"), "{err}");
    }

    #[test]
    fn repeating_faults_expand_until_the_end() {
        let text = r#"
            name = "t"
            peers = 4
            duration_s = 100
            [latency]
            rtt_ms = 10
            [link]
            rate_bps = 56000
            scope = "pair"
            [traffic]
            rate_per_s = 1
            [[fault]]
            kind = "partition"
            sides = [[0, 1], [2, 3]]
            start_s = 30
            down_s = 10
            every_s = 40
        "#;
        let file: ScenarioFile = toml::from_str(text).unwrap();
        let sc = file.resolve(Path::new("."), 1).unwrap();
        let starts: Vec<u64> = sc.faults.iter().map(|f| f.start.as_secs()).collect();
        assert_eq!(starts, vec![30, 70]);
        assert!(sc.faults[0].affects(0, 2) && !sc.faults[0].affects(0, 1));
    }
}
