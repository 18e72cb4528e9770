//! `vecino-testnet local` on real processes: 4 peers, a short partition of the halves, every
//! post at every peer and every postcard once at its destination (its receipt back) after the
//! heal, a report with its figures, and no process left behind —
//! also when interrupted with SIGINT.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `vecino` binary cargo built beside this package's binary (`cargo test --workspace`
/// builds it; alone, run `cargo build -p vecino` first).
fn vecino_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_vecino-testnet")).with_file_name("vecino");
    assert!(bin.is_file(), "{} is missing: run `cargo build -p vecino` first", bin.display());
    bin
}

fn repo_file(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel).display().to_string()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

fn local(report: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vecino-testnet"));
    c.args(["local", "--nodes", "4", "--posts", "2", "--sample-every", "3s"])
        .args(["--node-arg=--suspect-timeout-secs=4", "--settle", "30s", "--report"])
        .arg(report)
        .arg("--vecino")
        .arg(vecino_bin())
        .args(extra)
        .stdin(Stdio::null());
    c
}

#[test]
fn four_peers_through_a_partition_deliver_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let faults = repo_file("faults/quick.toml");
    let args = ["--duration", "24s", "--faults", &faults, "--postcards", "1"];
    let out = local(&report, &args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(r["nodes"], 4);
    let sent = r["posts_sent"].as_u64().unwrap();
    assert!(sent >= 40, "2 posts/s for 24 s: {sent}");
    assert_eq!(r["delivery_ratio"], 1.0, "{stdout}");
    assert_eq!(r["deliveries"].as_u64(), Some(sent * 3));
    // Postcards: every one stored once in its destination's inbox, every receipt back, also
    // those sent across the cut.
    let cards = &r["postcards"];
    let sent = cards["sent"].as_u64().unwrap();
    assert!(sent >= 20, "1 postcard/s for 24 s: {cards}");
    assert_eq!(
        (cards["delivered"].as_u64(), cards["receipts"].as_u64()),
        (Some(sent), Some(sent)),
        "{stdout}"
    );
    assert_eq!(cards["duplicates"], 0, "{cards}");
    assert!(cards["sent_during_cut"].as_u64().unwrap() > 0, "{cards}");
    let heals = r["converge_after_heal_s"].as_array().unwrap();
    assert_eq!(heals.len(), 1, "one partition, one heal");
    assert!(heals[0].as_f64().is_some_and(|s| s < 30.0), "{heals:?}");
    assert!(r["latency_p50_s"].as_f64().unwrap() > 0.0);
    assert!(r["latency_p99_s"].as_f64().unwrap() >= r["latency_p50_s"].as_f64().unwrap());
    assert!(r["coord_median_rel_err"].as_f64().is_some());
    let per_node = r["per_node"].as_array().unwrap();
    assert_eq!(per_node.len(), 4);
    for p in per_node {
        assert!(p["cpu_s"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{p}");
        assert!(p["bytes_sent"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["bytes_received"].as_f64().unwrap() > 0.0, "{p}");
    }
    // The partition shows: some links went suspected while it lasted.
    let suspected = r["samples"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["peers"].as_array().unwrap().iter())
        .any(|p| p["suspected"].as_u64().unwrap_or(0) > 0);
    assert!(suspected, "no link was ever suspected during the partition");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(!report.join("data").exists(), "the peers' data is removed without --keep");
    let left = processes_mentioning(&report.display().to_string());
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[test]
fn sigint_stops_every_peer_and_still_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let mut child = local(&report, &["--duration", "5m"]).stdout(Stdio::piped()).spawn().unwrap();
    let needle = report.display().to_string();
    // Interrupt once the run is under way: the peers have found each other (it says so; the
    // start-up wait is bounded by its --converge-timeout, so the read ends either way).
    // The reader drains stdout to the end, so the run never writes to a closed pipe.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("lists all") {
                let _ = tx.send(());
            }
        }
    });
    let converged = rx.recv_timeout(Duration::from_secs(240)).is_ok();
    assert!(converged && processes_mentioning(&needle).len() >= 4, "the peers did not start");
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "vecino-testnet did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an interrupted run says so in its exit status");
    assert!(report.join("report.json").is_file(), "the report covers the run so far");
    let left = processes_mentioning(&needle);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
