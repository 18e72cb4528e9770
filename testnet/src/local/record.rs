//! What a real-process run observes: when each post first shows up at each peer (one event
//! stream follower per peer, catching up through `GET /v1/posts` after every reconnect or lag),
//! when each postcard reaches its destination and its receipt its author (`cards`), every
//! change of the status each peer gives the others (`statuses`), and periodic samples of every peer's links, traffic counters, coordinate, CPU and memory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use vecino::client::Client;
use vecino::cluster::Cluster;

/// The topic of the run's posts.
pub(crate) const TOPIC: &str = "testnet";

/// State shared with the follower threads.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Current API address of each peer (changes on restart).
    pub(crate) apis: RwLock<Vec<String>>,
    /// Each peer's data directory (where it keeps its API token, if it requires one).
    pub(crate) dirs: Vec<PathBuf>,
    /// `seen[post][peer]`: first time (s after t0) the post was seen at the peer, NaN if not.
    pub(crate) seen: Mutex<Vec<Vec<f64>>>,
    /// The run's postcards, by number (`--postcards`).
    pub(crate) cards: Mutex<Vec<super::cards::Card>>,
    /// Every change of the status a peer gives another, from the event streams.
    pub(crate) statuses: Mutex<super::statuses::Log>,
    /// The run's time origin.
    pub(crate) t0: Instant,
    /// Set at the end: followers stop at their next event.
    pub(crate) stop: AtomicBool,
}

impl Shared {
    pub(crate) fn new(apis: Vec<String>, dirs: Vec<PathBuf>) -> Arc<Self> {
        Arc::new(Shared {
            apis: RwLock::new(apis),
            dirs,
            seen: Mutex::new(Vec::new()),
            cards: Mutex::new(Vec::new()),
            statuses: Mutex::new(super::statuses::Log::default()),
            t0: Instant::now(),
            stop: AtomicBool::new(false),
        })
    }

    pub(crate) fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Makes room for post `k` (called before it is sent).
    pub(crate) fn expect(&self, k: usize, n: usize) {
        if let Ok(mut s) = self.seen.lock() {
            while s.len() <= k {
                s.push(vec![f64::NAN; n]);
            }
        }
    }

    /// Records that the post with this text is at peer `i` (at `t`, if earlier than known).
    pub(crate) fn record(&self, i: usize, text: &str, t: f64) {
        let Some(k) = text.split_whitespace().next().and_then(|k| k.parse::<usize>().ok()) else {
            return;
        };
        if let Ok(mut s) = self.seen.lock()
            && let Some(cell) = s.get_mut(k).and_then(|row| row.get_mut(i))
            && (cell.is_nan() || t < *cell)
        {
            *cell = t;
        }
    }

    /// A copy of the record.
    pub(crate) fn snapshot(&self) -> Vec<Vec<f64>> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn api(&self, i: usize) -> String {
        self.apis.read().map(|a| a[i].clone()).unwrap_or_default()
    }
}

/// Pages through `/v1/posts?topic=…` after `cursor`, recording each post; returns the cursor.
pub(crate) fn catch_up(shared: &Shared, i: usize, c: &Client, mut cursor: u64) -> u64 {
    // Bounded: 1000 pages of 10 000.
    for _ in 0..1000 {
        let Ok(page) = c.get(&format!("/v1/posts?topic={TOPIC}&since={cursor}&limit=10000")) else {
            break;
        };
        let posts = page["posts"].as_array().cloned().unwrap_or_default();
        let now = shared.now();
        for p in &posts {
            shared.record(i, p["text"].as_str().unwrap_or(""), now);
        }
        cursor = page["next"].as_u64().unwrap_or(cursor);
        if posts.len() < 10_000 {
            break;
        }
    }
    cursor
}

/// Starts the follower thread of peer `i`; it reconnects (to the current API address) until
/// `shared.stop`.
pub(crate) fn follow(shared: Arc<Shared>, i: usize) {
    std::thread::spawn(move || {
        let mut cursor = 0u64;
        while !shared.stop.load(Ordering::Relaxed) {
            let c = match shared.dirs.get(i) {
                Some(dir) => Client::for_data_dir(&shared.api(i), dir),
                None => Client::new(&shared.api(i)),
            };
            let _ = c.follow(|event, data| {
                match event {
                    "ready" | "lagged" => {
                        cursor = catch_up(&shared, i, &c, cursor);
                        super::statuses::catch_up(&shared, i, &c);
                        if shared.cards.lock().is_ok_and(|c| !c.is_empty()) {
                            super::cards::catch_up(&shared, i, &c);
                        }
                    }
                    "status" => super::statuses::on_event(&shared, i, data),
                    "postcard" | "postcard_status" => {
                        super::cards::note(&shared, i, data, shared.now());
                    }
                    "post" if data["topic"] == TOPIC => {
                        shared.record(i, data["text"].as_str().unwrap_or(""), shared.now());
                        cursor = cursor.max(data["cursor"].as_u64().unwrap_or(0));
                    }
                    _ => {}
                }
                !shared.stop.load(Ordering::Relaxed)
            });
            std::thread::sleep(Duration::from_millis(300));
        }
    });
}

/// One peer at one sample.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct PeerSample {
    pub(crate) up: bool,
    pub(crate) alive_members: usize,
    pub(crate) connected: usize,
    pub(crate) suspected: usize,
    pub(crate) disconnected: usize,
    /// Since the start of the run, across restarts.
    pub(crate) bytes_sent: f64,
    pub(crate) bytes_received: f64,
    pub(crate) cpu_s: f64,
    pub(crate) peak_rss_bytes: u64,
    #[serde(skip)]
    pub(crate) coordinate: Option<Value>,
}

/// Every peer at one time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    pub(crate) t: f64,
    pub(crate) peers: Vec<PeerSample>,
    pub(crate) coord_median_rel_err: Option<f64>,
}

/// Traffic counters across restarts (a restarted process starts its counters at zero).
#[derive(Debug, Default, Clone)]
pub(crate) struct Counters {
    last: Vec<(f64, f64)>,
    offset: Vec<(f64, f64)>,
    run: Vec<u32>,
}

impl Counters {
    fn total(&mut self, i: usize, run: u32, sent: f64, recv: f64) -> (f64, f64) {
        if self.last.len() <= i {
            self.last.resize(i + 1, (0.0, 0.0));
            self.offset.resize(i + 1, (0.0, 0.0));
            self.run.resize(i + 1, 0);
        }
        let (ls, lr) = self.last[i];
        if run != self.run[i] {
            self.run[i] = run;
            self.offset[i].0 += ls;
            self.offset[i].1 += lr;
        }
        self.last[i] = (sent, recv);
        (self.offset[i].0 + sent, self.offset[i].1 + recv)
    }
}

/// Sums the samples of a Prometheus metric (every label set).
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let n = series.split_once('{').map_or(series, |x| x.0);
            (n == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Samples every peer.
pub(crate) fn sample(
    cl: &mut Cluster,
    counters: &mut Counters,
    t: f64,
    matrix: Option<&vecino_coords::topology::RttMatrix>,
) -> Sample {
    let mut peers = Vec::with_capacity(cl.members.len());
    for (i, m) in cl.members.iter_mut().enumerate() {
        let (cpu_s, peak_rss_bytes) = m.usage();
        let mut p = PeerSample { cpu_s, peak_rss_bytes, ..PeerSample::default() };
        if m.is_running() {
            let c = m.client();
            if let Ok(links) = c.get("/v1/links") {
                p.up = true;
                for l in links.as_array().into_iter().flatten() {
                    match l["status"].as_str() {
                        Some("connected") => p.connected += 1,
                        Some("suspected") => p.suspected += 1,
                        _ => p.disconnected += 1,
                    }
                }
            }
            if let Ok(ms) = c.get("/v1/members") {
                p.alive_members =
                    ms.as_array().into_iter().flatten().filter(|m| m["status"] == "alive").count();
            }
            if let Ok(text) = c.get_text("/metrics") {
                let sent = metric(&text, "vecino_transport_bytes_sent_total");
                let recv = metric(&text, "vecino_transport_bytes_received_total");
                (p.bytes_sent, p.bytes_received) = counters.total(i, m.restarts, sent, recv);
            }
            p.coordinate = c.get("/v1/coordinate").ok();
        }
        if !p.up && i < counters.last.len() {
            p.bytes_sent = counters.offset[i].0 + counters.last[i].0;
            p.bytes_received = counters.offset[i].1 + counters.last[i].1;
        }
        peers.push(p);
    }
    let coords: Vec<Option<Value>> = peers.iter().map(|p| p.coordinate.clone()).collect();
    let coord_median_rel_err = matrix.and_then(|m| vecino::cluster::coordinate_error(m, &coords));
    Sample { t, peers, coord_median_rel_err }
}
