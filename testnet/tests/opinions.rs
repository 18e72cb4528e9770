//! What real peers call each other, through `vecino-testnet local` (4 processes on loopback
//! behind the link shim, testnet/faults/opinions.toml): a peer killed with `kill -9` is called
//! offline by every other within a bounded time; the halves of a partition stop calling each
//! other online, and — what the engine's statuses promise — call each other unreachable, not
//! offline. The measured times are printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The `vecino` binary cargo built beside this package's binary.
fn vecino_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_vecino-testnet")).with_file_name("vecino");
    assert!(bin.is_file(), "{} is missing: run `cargo build -p vecino` first", bin.display());
    bin
}

/// Runs the opinions schedule on 4 peers; its report.json and its text summary.
fn run() -> (Value, String) {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let faults = Path::new(env!("CARGO_MANIFEST_DIR")).join("faults/opinions.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_vecino-testnet"))
        .args(["local", "--nodes", "4", "--posts", "1", "--sample-every", "5s"])
        .args(["--node-arg=--suspect-timeout-secs=4", "--settle", "30s", "--duration", "70s"])
        .arg("--faults")
        .arg(&faults)
        .arg("--report")
        .arg(&report)
        .arg("--vecino")
        .arg(vecino_bin())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r = serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
        .unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("statuses:")).collect();
    (r, lines.join("\n"))
}

fn secs(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn a_killed_peer_turns_offline_and_a_partition_is_noticed_across_the_cut() {
    let (r, summary) = run();
    println!("{summary}");
    let st = &r["statuses"];
    assert!(st["changes"].as_u64().unwrap() > 0, "no status change seen: {st}");
    // kill -9 of p3 for 20 s: the three others call it offline, each within 30 s (the
    // engine's own word comes within the suspicion of a silent link, 2.5 s by default).
    let kills = st["kills"].as_array().unwrap();
    assert_eq!(kills.len(), 1, "{st}");
    let k = &kills[0];
    assert_eq!((k["observers"].as_u64(), k["offline"].as_u64()), (Some(3), Some(3)), "{k}");
    let t = secs(&k["offline_s"]);
    println!("kill -9 -> offline at the 3 others after {t:?} s");
    assert!(t.iter().all(|s| *s < 30.0), "{k}");
    // The partition: 8 pairs across the cut (each of 2 peers about each of the other 2), every
    // one stops calling the other side online before the heal.
    let cut = &st["cuts"].as_array().unwrap()[0];
    assert_eq!(cut["pairs"], 8, "{cut}");
    let online_at_heal = cut["at_heal"]["online"].as_u64().unwrap_or(0);
    println!(
        "partition -> unreachable after {:?} s, offline after {:?} s (pairs: 8)",
        secs(&cut["unreachable_s"]),
        secs(&cut["offline_s"])
    );
    assert_eq!(online_at_heal, 0, "still online across the cut at the heal: {cut}");
    assert_eq!(
        cut["at_heal"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        8
    );
}

/// The statuses' promise for a partition (`vecino_gossip` opinions: "unreachable: alive by
/// the others' word, cut off from this side"): every pair across the cut reads unreachable,
/// none offline. (The engine's first cut called them offline: a peer's own observation
/// outweighed the other side's word, and a young fleet's first opinions came too late.)
#[test]
fn a_partitioned_peer_is_unreachable_not_offline_across_the_cut() {
    let (r, summary) = run();
    println!("{summary}");
    let cut = &r["statuses"]["cuts"].as_array().unwrap()[0];
    assert_eq!(cut["offline"], 0, "called offline across the cut: {cut}");
    assert_eq!(cut["unreachable"], 8, "{cut}");
    assert_eq!(cut["at_heal"]["unreachable"], 8, "{cut}");
}
