//! `vecino demo`: a small real network on this machine, to watch on the radar.
//!
//! Starts `--peers` copies of this very executable (`vecino run`, through [`crate::cluster`])
//! on 127.0.0.1 with latencies from a generated Internet-like topology applied by the link
//! shim (the matrix is written to a temporary directory: nothing outside the binary is needed),
//! prints the radar URL of the first peer and progress as the peers find each other, posts a
//! little traffic from random peers so the map is alive, and runs until Ctrl-C (or
//! `--duration`), then stops every peer and removes the directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use vecino_coords::topology::Topology;

use crate::cluster::{self, Cluster, ClusterError, Spec};

/// Prints a line; once nobody reads the demo's output (`vecino demo | head -3`) it stops, as on
/// Ctrl-C, instead of running its peers unseen (or panicking).
macro_rules! say {
    ($stop:expr) => { say!($stop, "") };
    ($stop:expr, $($t:tt)*) => {
        if crate::client::print_out(format_args!("{}\n", format_args!($($t)*))).is_err() {
            $stop.store(true, Ordering::Relaxed);
        }
    };
}

/// `vecino demo`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Peers to start (2 to 64)
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u16).range(2..=64))]
    pub peers: u16,
    /// Latency model between the peers: internet, line, grid, split, circle or random
    #[arg(long, default_value = "internet", value_name = "NAME")]
    pub topology: String,
    /// Seed of the topology and of the traffic
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A post from a random peer this often (0 = no posts); e.g. 3s, 500ms
    #[arg(long, default_value = "3s", value_parser = cluster::parse_duration, value_name = "DURATION")]
    pub post_every: Duration,
    /// Stop by itself after this long (e.g. 90s, 10m) [default: run until Ctrl-C]
    #[arg(long, value_parser = cluster::parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Keep the peers' data directory (printed) instead of deleting it at the end
    #[arg(long)]
    pub keep: bool,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Not a topology name.
    #[error("unknown topology {0:?}: use internet, line, grid, split, circle or random")]
    Topology(String),
    /// This executable's path is unknown.
    #[error("cannot find this executable: {0}")]
    Exe(std::io::Error),
    /// Starting the peers failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Runs the demo until Ctrl-C, SIGTERM or `--duration`.
pub fn run(args: &DemoArgs) -> Result<(), DemoError> {
    let topology = Topology::from_name(&args.topology)
        .ok_or_else(|| DemoError::Topology(args.topology.clone()))?;
    let n = usize::from(args.peers);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let matrix = topology.generate(n, &mut rng);
    let dir = std::env::temp_dir().join(format!("vecino-demo-{}", std::process::id()));
    let _cleanup = DirGuard { dir: dir.clone(), keep: args.keep };
    let interrupt = cluster::interrupt_flag();
    let spec = Spec {
        bin: std::env::current_exe().map_err(DemoError::Exe)?,
        dir: dir.clone(),
        matrix: Some(matrix),
        rate_kbps: 0,
        loss: 0.0,
        n,
        extra: Vec::new(),
        log: "warn".into(),
        hosts: Vec::new(),
    };
    say!(
        interrupt,
        "vecino demo: starting {n} peers on 127.0.0.1 ({} topology, seed {}) in {}",
        topology.name(),
        args.seed,
        dir.display()
    );
    let started = Instant::now();
    let mut cl = match Cluster::start(spec, Some(interrupt.clone())) {
        Err(ClusterError::Interrupted) => return Ok(()),
        other => other?,
    };
    say!(interrupt, "all {n} peers running after {:.1} s", started.elapsed().as_secs_f64());
    say!(interrupt);
    say!(interrupt, "  radar: http://{}/", cl.members[0].api);
    say!(interrupt);
    say!(interrupt, "(Ctrl-C stops every peer)");
    drive(&mut cl, args, &interrupt, &mut rng, started);
    say!(interrupt, "stopping {n} peers…");
    cl.stop_all();
    say!(interrupt, "stopped");
    Ok(())
}

/// Posts and progress until interrupted or out of time.
fn drive(
    cl: &mut Cluster,
    args: &DemoArgs,
    interrupt: &AtomicBool,
    rng: &mut ChaCha8Rng,
    started: Instant,
) {
    let n = cl.members.len();
    let mut last_seen = usize::MAX;
    let mut converged = false;
    let mut next_post = Instant::now() + args.post_every;
    let mut next_report = Instant::now();
    let mut posts = 0u64;
    loop {
        if interrupt.load(Ordering::Relaxed)
            || args.duration.is_some_and(|d| started.elapsed() >= d)
        {
            return;
        }
        let now = Instant::now();
        if now >= next_report {
            next_report = now + Duration::from_secs(2);
            let knows: Vec<usize> = cl.members.iter().map(|m| alive_members(&m.client())).collect();
            let all = knows.iter().filter(|&&k| k == n).count();
            if !converged && all != last_seen {
                say!(
                    interrupt,
                    "[{:>5.1} s] {all} of {n} peers know all {n} (fewest known: {})",
                    started.elapsed().as_secs_f64(),
                    knows.iter().min().copied().unwrap_or(0)
                );
                last_seen = all;
                if all == n {
                    converged = true;
                    say!(
                        interrupt,
                        "the peers found each other; posting every {:?}",
                        args.post_every
                    );
                }
            }
        }
        if !args.post_every.is_zero() && now >= next_post {
            next_post = now + args.post_every;
            let i = rng.random_range(0..n);
            posts += 1;
            let body = json!({"topic": "demo", "text": format!("hola from p{i} (#{posts})")});
            if let Err(e) = cl.members[i].client().post("/v1/posts", &body) {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "p{i}: post failed: {e:#}");
            }
            if posts.is_multiple_of(20) {
                let held = cl.members[0]
                    .client()
                    .get("/v1/status")
                    .ok()
                    .and_then(|v| v["stats"]["posts_delivered"].as_u64());
                say!(
                    interrupt,
                    "[{:>5.1} s] {posts} posts sent; p0 has delivered {}",
                    started.elapsed().as_secs_f64(),
                    held.map_or("?".into(), |h| h.to_string())
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive_members(c: &crate::client::Client) -> usize {
    c.get("/v1/members")
        .ok()
        .as_ref()
        .and_then(Value::as_array)
        .map_or(0, |ms| ms.iter().filter(|m| m["status"] == "alive").count())
}

/// Removes the demo's directory at the end (after the cluster, declared later, is dropped).
#[derive(Debug)]
struct DirGuard {
    dir: PathBuf,
    keep: bool,
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if self.keep {
            let _ = crate::client::print_out(format_args!("data kept in {}\n", self.dir.display()));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
