//! Real `vecino` processes on 127.0.0.1 with ephemeral ports and temporary data directories,
//! and waiting on conditions (with a timeout) instead of sleeping.
#![allow(dead_code, unreachable_pub)]

#[allow(dead_code)]
pub mod attack;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vecino::client::Client;

/// Long enough for a loaded 2-core machine; conditions usually hold in well under a second.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The `vecino` binary: cargo's for tests, else `VECINO_BIN`, else beside the running example.
pub fn vecino_bin() -> PathBuf {
    if let Some(b) = option_env!("CARGO_BIN_EXE_vecino") {
        return b.into();
    }
    if let Some(b) = std::env::var_os("VECINO_BIN") {
        return b.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").join("vecino")
}

/// One running `vecino run`.
#[derive(Debug)]
pub struct Peer {
    pub name: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub api: String,
    pub peer_id: String,
    pub addr: String,
    extra: Vec<String>,
}

impl Peer {
    /// Starts a peer named `name` with its data in `dir`, joining `bootstrap`.
    pub fn start(name: &str, dir: &Path, bootstrap: &[String], extra: &[&str]) -> Peer {
        let mut p = Peer {
            name: name.into(),
            dir: dir.to_owned(),
            child: None,
            api: String::new(),
            peer_id: String::new(),
            addr: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        p.spawn(bootstrap);
        p
    }

    fn spawn(&mut self, bootstrap: &[String]) {
        let mut cmd = Command::new(vecino_bin());
        cmd.args(["run", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1"])
            .args(["--api", "127.0.0.1:0", "--mdns", "false", "--name", &self.name])
            .args(["--log", "warn"])
            .args(&self.extra)
            .env_remove("VECINO_CONFIG")
            .env_remove("VECINO_API")
            .env_remove("VECINO_KEY")
            .env_remove("VECINO_API_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !bootstrap.is_empty() {
            cmd.args(["--bootstrap", &bootstrap.join(",")]);
        }
        // A new peer on its first start (the data directory does not exist yet); a restart
        // runs the identity already there, as an operator's would.
        if self.child.is_none() && self.peer_id.is_empty() {
            cmd.arg("--init");
        }
        let mut child = cmd.spawn().expect("start vecino");
        let line = first_line(&mut child);
        // "vecino <peer id> api http://<addr>"
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 4, "unexpected first line: {line}");
        self.peer_id = parts[1].to_string();
        self.api = parts[3].trim_start_matches("http://").to_string();
        self.child = Some(child);
        let status = self.get("/v1/status");
        let tcp = status["advertise"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.contains("/tcp/"))
            .expect("a TCP address")
            .to_string();
        self.addr = format!("{tcp}/p2p/{}", self.peer_id);
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn client(&self) -> Client {
        Client::for_data_dir(&self.api, &self.dir)
    }

    pub fn get(&self, path: &str) -> Value {
        self.client().get(path).unwrap_or_else(|e| panic!("{}: GET {path}: {e:#}", self.name))
    }

    pub fn post(&self, topic: &str, text: &str) -> Value {
        self.client()
            .post("/v1/posts", &json!({"topic": topic, "text": text}))
            .unwrap_or_else(|e| panic!("{}: post: {e:#}", self.name))
    }

    /// Texts of the posts delivered here.
    pub fn post_texts(&self) -> Vec<String> {
        let v = self.get("/v1/posts?limit=10000");
        let mut t: Vec<String> = v["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["text"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    }

    /// Peer ids this peer lists as alive and connected (itself included).
    pub fn connected(&self) -> Vec<String> {
        let v = self.get("/v1/members");
        v.as_array()
            .unwrap()
            .iter()
            .filter(|m| m["status"] == "alive" && (m["self"] == true || m["link"] == "connected"))
            .map(|m| m["peer_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Status of this peer's link to `peer`, if it has one.
    pub fn link(&self, peer: &str) -> Option<String> {
        let v = self.get("/v1/links");
        v.as_array()
            .unwrap()
            .iter()
            .find(|l| l["peer_id"] == peer)
            .map(|l| l["status"].as_str().unwrap().to_string())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().expect("wait")
    }

    /// Starts again on the same data directory.
    pub fn restart(&mut self, bootstrap: &[String]) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn(bootstrap);
    }

    /// A counter or gauge from `/metrics` (summed over labels matching `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.client().get_text("/metrics").expect("metrics");
        metric_in(&text, name, labels)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sums the samples of `name` whose label set contains `labels` (e.g. `reason="oversized"`).
pub fn metric_in(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Polls `cond` until it holds, or panics after `TIMEOUT` saying what was awaited.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every peer lists all of `peers` as alive and connected.
pub fn wait_converged(peers: &[&Peer]) {
    let mut want: Vec<String> = peers.iter().map(|p| p.peer_id.clone()).collect();
    want.sort();
    wait_until("membership converged", || {
        peers.iter().all(|p| {
            let mut got = p.connected();
            got.sort();
            got == want
        })
    });
}

/// The first line `vecino run` prints (`vecino <peer id> api http://…`); the rest of its
/// standard output is drained, so the pipe never fills.
pub fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    rx.recv_timeout(TIMEOUT).expect("vecino printed its API address")
}

/// A bare libp2p peer speaking only the vecino frame protocol (TCP + noise + yamux), for tests
/// and load generators that write frames to a real node by hand.
pub fn raw_swarm(me: &vecino_proto::Identity) -> libp2p::Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_existing_identity(vecino::peer::keypair(me))
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("stream behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}
