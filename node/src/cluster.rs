//! Real `vecino` processes on this machine: a small network for `vecino demo` and for
//! `vecino-testnet local`/`soak`.
//!
//! [`Cluster::start`] writes every peer's key first (the link-shim file maps peer ids to matrix
//! rows), then the shim file and the matrix, then starts `vecino run` for each peer on
//! `127.0.0.1` with ephemeral ports, its own data directory, static bootstrap to a few peers
//! already up and `--mdns false`. Peers start in small batches so no bootstrap peer is flooded.
//!
//! No orphans: every child runs in a process group of its own (a Ctrl-C at the terminal reaches
//! only the parent, which then stops the children itself), dropping the [`Cluster`] stops every
//! child (SIGTERM, then SIGKILL after a grace period) — on return, on error and on panic — and
//! [`interrupt_flag`] turns SIGINT/SIGTERM into a flag the caller's loop polls. (The workspace
//! forbids `unsafe`, so there is no `PR_SET_PDEATHSIG`: a parent killed with SIGKILL leaves its
//! children running; `pkill -g` on their group ids cleans up.)

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use vecino_coords::topology::RttMatrix;

use crate::client::Client;

/// How long a starting peer may take to print its API address.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long stopped peers get to say chau before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Peers started at once.
const BATCH: usize = 8;

/// Why a cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file or directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A peer's key could not be created.
    #[error("key for {name}: {source}")]
    Key {
        /// The peer's name.
        name: String,
        /// Why.
        source: crate::keyfile::KeyFileError,
    },
    /// The `vecino` binary could not be started.
    #[error("cannot start {bin}: {source}")]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A peer exited or stayed silent instead of printing its API address.
    #[error("peer {name} did not start (see {log})")]
    NoStart {
        /// The peer's name.
        name: String,
        /// Its log file.
        log: PathBuf,
    },
    /// A peer printed something unexpected as its first line.
    #[error("peer {name} printed {line:?} instead of its API address")]
    BadLine {
        /// The peer's name.
        name: String,
        /// What it printed.
        line: String,
    },
    /// A peer's API answered with an error or not at all.
    #[error("peer {name}: {message}")]
    Api {
        /// The peer's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// Interrupted (SIGINT or SIGTERM) while starting.
    #[error("interrupted")]
    Interrupted,
    /// No `vecino` binary was found.
    #[error(
        "no vecino binary at {0}: build it with `cargo build --release -p vecino` or pass --vecino PATH"
    )]
    NoBinary(PathBuf),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The `vecino` binary.
    pub bin: PathBuf,
    /// Working directory: `p<i>/` per peer, `links.toml`, `matrix.txt`, `p<i>.log`.
    pub dir: PathBuf,
    /// Link RTTs between the peers (`n × n`, peer `i` is row `i`); `None`: no added delay.
    pub matrix: Option<RttMatrix>,
    /// Shim rate of every link in kbit/s (0: unlimited).
    pub rate_kbps: u64,
    /// Shim loss probability of every link.
    pub loss: f64,
    /// Number of peers.
    pub n: usize,
    /// Further flags for `vecino run`.
    pub extra: Vec<String>,
    /// Log filter of the peers (their stderr goes to `p<i>.log`).
    pub log: String,
    /// Where each peer runs (`hosts[i]` for peer `i`); empty: every peer on 127.0.0.1.
    pub hosts: Vec<Host>,
}

/// Where one peer runs when not on this host's loopback: `vecino-testnet local --netns` puts
/// each in a network namespace of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Words run before the binary, e.g. `ip netns exec <namespace>` (it execs the binary, so
    /// the child's pid is the peer's).
    pub wrap: Vec<String>,
    /// The address its QUIC and TCP transports listen on (ephemeral ports).
    pub listen_ip: IpAddr,
    /// The address its API listens on (ephemeral port); it must be reachable from here.
    pub api_ip: IpAddr,
}

/// One peer of the cluster.
#[derive(Debug)]
pub struct Member {
    /// Name (`p<i>`).
    pub name: String,
    /// Data directory.
    pub dir: PathBuf,
    /// API address (`127.0.0.1:port`) of the current run.
    pub api: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// A TCP multiaddr with `/p2p/<peer id>`, of the current run.
    pub addr: String,
    /// Times restarted.
    pub restarts: u32,
    child: Option<Child>,
    /// CPU seconds and peak RSS of earlier runs.
    past_cpu_s: f64,
    past_peak_rss: u64,
}

impl Member {
    /// A client of this peer's API (with the token the peer keeps in its data directory, if
    /// its API requires one).
    pub fn client(&self) -> Client {
        Client::for_data_dir(&self.api, &self.dir)
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// CPU seconds (user + system) and peak RSS in bytes, over every run of this peer.
    pub fn usage(&self) -> (f64, u64) {
        match self.pid() {
            Some(pid) => (self.past_cpu_s + cpu_secs(pid), self.past_peak_rss.max(peak_rss(pid))),
            None => (self.past_cpu_s, self.past_peak_rss),
        }
    }

    fn account(&mut self) {
        let (cpu, peak) = self.usage();
        self.past_cpu_s = cpu;
        self.past_peak_rss = peak;
    }
}

/// A running set of peers; dropping it stops them all.
#[derive(Debug)]
pub struct Cluster {
    spec: Spec,
    /// The peers, `p0` first.
    pub members: Vec<Member>,
    interrupt: Option<Arc<AtomicBool>>,
}

/// A peer whose process runs but whose address line has not been read yet.
struct Pending {
    i: usize,
    child: Child,
    line: mpsc::Receiver<String>,
}

impl Cluster {
    /// Writes keys, the shim file and the matrix into `spec.dir`, then starts every peer and
    /// waits until each answers on its API. `interrupt`, when set, aborts the start.
    pub fn start(spec: Spec, interrupt: Option<Arc<AtomicBool>>) -> Result<Self, ClusterError> {
        if !spec.bin.is_file() {
            return Err(ClusterError::NoBinary(spec.bin.clone()));
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ClusterError::Io { path, source }
        };
        std::fs::create_dir_all(&spec.dir).map_err(io(&spec.dir))?;
        let mut members = Vec::with_capacity(spec.n);
        let mut links = String::new();
        if let Some(m) = &spec.matrix {
            let path = spec.dir.join("matrix.txt");
            std::fs::write(&path, matrix_text(m)).map_err(io(&path))?;
            links.push_str("matrix = \"matrix.txt\"\n");
        }
        links.push_str(&format!(
            "[default]\nrtt_ms = 0.0\nrate_kbps = {}\nloss = {}\n[nodes]\n",
            spec.rate_kbps, spec.loss
        ));
        for i in 0..spec.n {
            let name = format!("p{i}");
            let dir = spec.dir.join(&name);
            let key = dir.join(crate::keyfile::KEY_FILE_NAME);
            let id = if key.exists() {
                crate::keyfile::load(&key)
            } else {
                crate::keyfile::create(&key)
            }
            .map_err(|source| ClusterError::Key { name: name.clone(), source })?;
            let peer_id = crate::peer::peer_id(&id).to_string();
            links.push_str(&format!("\"{peer_id}\" = {i}\n"));
            members.push(Member {
                name,
                dir,
                api: String::new(),
                peer_id,
                addr: String::new(),
                restarts: 0,
                child: None,
                past_cpu_s: 0.0,
                past_peak_rss: 0,
            });
        }
        let path = spec.dir.join("links.toml");
        std::fs::write(&path, links).map_err(io(&path))?;
        let mut cluster = Cluster { spec, members, interrupt };
        let n = cluster.members.len();
        let mut next = 0;
        while next < n {
            // The first peer alone, then batches bootstrapping to peers already up.
            let end = if next == 0 { 1 } else { (next + BATCH).min(n) };
            let mut pending = Vec::new();
            for i in next..end {
                let boot = cluster.bootstrap_for(i, next);
                pending.push(cluster.spawn(i, &boot)?);
            }
            for p in pending {
                cluster.finish(p)?;
            }
            next = end;
        }
        Ok(cluster)
    }

    /// The shim file every peer reads.
    pub fn links_file(&self) -> PathBuf {
        self.spec.dir.join("links.toml")
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.spec.dir
    }

    /// Up to three bootstrap addresses among peers `0..up` (not `i`): the first, the middle and
    /// the newest, so joins spread over the network.
    fn bootstrap_for(&self, i: usize, up: usize) -> Vec<String> {
        let mut picks = vec![0, up / 2, up.saturating_sub(1)];
        picks.sort_unstable();
        picks.dedup();
        picks
            .into_iter()
            .filter(|&j| j < up && j != i)
            .map(|j| self.members[j].addr.clone())
            .filter(|a| !a.is_empty())
            .collect()
    }

    fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    fn spawn(&mut self, i: usize, bootstrap: &[String]) -> Result<Pending, ClusterError> {
        use std::os::unix::process::CommandExt;
        let m = &self.members[i];
        let log_path = self.spec.dir.join(format!("{}.log", m.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| ClusterError::Io { path: log_path.clone(), source })?;
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let (listen_ip, api_ip) =
            self.spec.hosts.get(i).map_or((loopback, loopback), |h| (h.listen_ip, h.api_ip));
        let mut cmd = match self.spec.hosts.get(i).and_then(|h| h.wrap.split_first()) {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.spec.bin);
                c
            }
            None => Command::new(&self.spec.bin),
        };
        let proto = if listen_ip.is_ipv4() { "ip4" } else { "ip6" };
        let listen = format!("/{proto}/{listen_ip}/tcp/0,/{proto}/{listen_ip}/udp/0/quic-v1");
        let api = std::net::SocketAddr::new(api_ip, 0).to_string();
        cmd.args(["run", "--data-dir"])
            .arg(&m.dir)
            .args(["--listen", &listen])
            .args(["--api", &api, "--mdns", "false", "--name", &m.name])
            .args(["--log", &self.spec.log, "--emulate-links"])
            .arg(self.links_file())
            .args(&self.spec.extra)
            .env_remove("VECINO_CONFIG")
            .env_remove("VECINO_API")
            .env_remove("VECINO_KEY")
            .env_remove("VECINO_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0);
        if !bootstrap.is_empty() {
            cmd.args(["--bootstrap", &bootstrap.join(",")]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| ClusterError::Spawn { bin: self.spec.bin.clone(), source })?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {} // keep the pipe drained
        });
        Ok(Pending { i, child, line: rx })
    }

    fn finish(&mut self, p: Pending) -> Result<(), ClusterError> {
        let Pending { i, mut child, line } = p;
        let name = self.members[i].name.clone();
        let log = self.spec.dir.join(format!("{name}.log"));
        let start = Instant::now();
        let line = loop {
            match line.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => break l,
                Err(mpsc::RecvTimeoutError::Timeout)
                    if start.elapsed() < START_TIMEOUT && !self.interrupted() => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(if self.interrupted() {
                        ClusterError::Interrupted
                    } else {
                        ClusterError::NoStart { name, log }
                    });
                }
            }
        };
        // "vecino <peer id> api http://<addr>"
        let parts: Vec<&str> = line.split_whitespace().collect();
        let m = &mut self.members[i];
        m.child = Some(child);
        if parts.len() != 4 || parts[0] != "vecino" || parts[2] != "api" {
            return Err(ClusterError::BadLine { name, line });
        }
        m.api = parts[3].trim_start_matches("http://").to_string();
        let api_err = |message: String| ClusterError::Api { name: name.clone(), message };
        let status = m.client().get("/v1/status").map_err(|e| api_err(format!("{e:#}")))?;
        let tcp = status["advertise"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|a| a.contains("/tcp/"))
            .ok_or_else(|| api_err("advertises no TCP address".into()))?;
        m.addr = format!("{tcp}/p2p/{}", m.peer_id);
        Ok(())
    }

    /// `kill -9` peer `i` (its CPU time and peak RSS so far are kept).
    pub fn kill9(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.account();
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts peer `i` again on its data directory, bootstrapping to up to three running peers.
    pub fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        if self.members[i].child.is_some() {
            self.kill9(i);
        }
        let n = self.members.len();
        let boot: Vec<String> = (1..n)
            .map(|k| (i + k * n.div_ceil(4).max(1)) % n)
            .filter(|&j| j != i && self.members[j].child.is_some())
            .take(3)
            .map(|j| self.members[j].addr.clone())
            .collect();
        let p = self.spawn(i, &boot)?;
        self.members[i].restarts += 1;
        self.finish(p)
    }

    /// Stops every peer: SIGTERM (they say chau and flush), SIGKILL after [`STOP_GRACE`].
    pub fn stop_all(&mut self) {
        for m in &mut self.members {
            m.account();
        }
        let pids: Vec<String> =
            self.members.iter().filter_map(Member::pid).map(|p| p.to_string()).collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .args(&pids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + STOP_GRACE;
        for m in &mut self.members {
            let Some(mut c) = m.child.take() else { continue };
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(None) => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The matrix in the shared text format, the RTTs the link shim is to use: fills included
/// (a missing pair not filled is written `-1`).
pub fn matrix_text(m: &RttMatrix) -> String {
    m.to_text(3, true)
}

/// `n` rows spread evenly over a larger matrix (`i × len / n`), as a new `n × n` matrix (which
/// pairs were measured, and the fills of the others, kept).
pub fn spread_rows(m: &RttMatrix, n: usize) -> Option<RttMatrix> {
    let len = m.len();
    if n > len || n < 2 {
        return None;
    }
    let rows: Vec<usize> = (0..n).map(|i| i * len / n).collect();
    Some(m.subset(&rows))
}

/// A flag set by SIGINT or SIGTERM (a thread waits for them); poll it in the main loop.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else { return };
            let Ok(mut int) = signal(SignalKind::interrupt()) else { return };
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                f.store(true, Ordering::Relaxed);
            }
        });
    });
    flag
}

/// Sleeps up to `d`, waking early (and returning false) once `flag` is set.
pub fn sleep_unless(flag: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if flag.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    !flag.load(Ordering::Relaxed)
}

/// User + system CPU seconds of a process (`/proc/PID/stat`; assumes 100 clock ticks/s).
pub fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size in bytes (`VmHWM` of `/proc/PID/status`).
pub fn peak_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad duration {0:?}: use a number with ms, s, m or h (e.g. 90s, 10m)")]
pub struct BadDuration(pub String);

/// Parses `500ms`, `20s`, `10m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    let t = s.trim();
    let bad = || BadDuration(s.to_string());
    let (num, mult) = if let Some(v) = t.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = t.strip_suffix('h') {
        (v, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let secs = v * mult;
    if !(0.0..1e9).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The median-of-per-peer-medians relative coordinate error against the measured pairs of
/// `matrix` (peer `i` is row `i`; a missing pair, filled or not, is not scored), from each
/// peer's `/v1/coordinate` answer (`None` where unknown).
pub fn coordinate_error(matrix: &RttMatrix, coords: &[Option<Value>]) -> Option<f64> {
    let parsed: Vec<Option<vecino_coords::Coordinate>> =
        coords.iter().map(|c| c.as_ref().and_then(parse_coordinate)).collect();
    let mut medians = Vec::new();
    for (i, ci) in parsed.iter().enumerate() {
        let Some(ci) = ci else { continue };
        let mut errs: Vec<f64> = parsed
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(j, cj)| {
                let actual = matrix.measured(i, j)?;
                let est = ci.distance_secs(cj.as_ref()?) * 1e3;
                (actual > 0.0).then(|| (est - actual).abs() / actual)
            })
            .collect();
        if let Some(m) = median(&mut errs) {
            medians.push(m);
        }
    }
    median(&mut medians)
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn parse_coordinate(v: &Value) -> Option<vecino_coords::Coordinate> {
    crate::node::coordinate_from_json(&v["coordinate"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn spread_rows_keeps_the_pairs() {
        let m = vecino_coords::topology::line(10, 10.0);
        let s = spread_rows(&m, 5).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s.ms(0, 1), m.ms(0, 2));
        assert_eq!(s.ms(1, 4), m.ms(2, 8));
        assert!(spread_rows(&m, 11).is_none());
        let again = RttMatrix::parse(&matrix_text(&s)).unwrap();
        assert_eq!(again.ms(3, 4), s.ms(3, 4));
    }

    #[test]
    fn spread_rows_keep_holes_and_fills_and_errors_skip_them() {
        // 4 hosts; 0–2 missing (two-hop fill through 1: 10 + 20 = 30).
        let m = RttMatrix::parse("4\n0 10 -1 5\n10 0 20 100\n-1 20 0 40\n5 100 40 0\n").unwrap();
        let s = spread_rows(&m.filled().unwrap(), 2).unwrap(); // rows 0 and 2
        assert_eq!((s.ms(0, 1), s.measured(0, 1)), (30.0, None));
        // The shim file gets the fill; a matrix not filled writes -1.
        assert_eq!(matrix_text(&s), "2\n0.000 30.000\n30.000 0.000\n");
        assert_eq!(matrix_text(&spread_rows(&m, 2).unwrap()), "2\n0.000 -1\n-1 0.000\n");
        // Hosts at (0, 0), (10, 0), (0, 10) ms, 0–2 missing: the fill (10 + 14.1 through
        // host 1) is far from the truth (10), but only the measured pairs are scored.
        let at = |x: f64, y: f64| {
            Some(serde_json::json!({"coordinate": {
                "vec_ms": [x, y, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "height_ms": 0.0, "error": 0.5
            }}))
        };
        let coords = vec![at(0.0, 0.0), at(10.0, 0.0), at(0.0, 10.0)];
        let d12 = 200f64.sqrt();
        let m = RttMatrix::parse(&format!("3\n0 10 -1\n10 0 {d12}\n-1 {d12} 0\n")).unwrap();
        let filled = m.filled().unwrap();
        let e = coordinate_error(&filled, &coords).unwrap();
        assert!(e < 1e-9, "{e}");
        let fill = filled.ms(0, 2);
        let as_measured =
            RttMatrix::from_ms(3, vec![0.0, 10.0, fill, 10.0, 0.0, d12, fill, d12, 0.0]).unwrap();
        assert!(coordinate_error(&as_measured, &coords).unwrap() > 0.5);
    }
}
