//! `vecino-testnet coords` and `sim` on a measured matrix with missing pairs
//! (`testnet/data/planetlab50-holes.txt`: 115 of its 1 225 pairs are `-1`): coords never
//! samples or scores them and says how many there were; sim fills them, says so once, puts the
//! count and the method in the JSON report, and still runs to full delivery.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn data(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(file).display().to_string()
}

fn testnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vecino-testnet"))
}

#[test]
fn coords_on_a_matrix_with_holes_leaves_them_out() {
    let out = testnet()
        .args(["coords", "--matrix", &data("planetlab50-holes.txt"), "--profile", "both"])
        .args(["--updates", "30,120", "--seeds", "2", "--offline-epochs", "20", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "missing: 115 of 1225 pairs have no measurement: never sampled, never scored"
        ),
        "{stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["missing"]["pairs_missing"], 115);
    assert_eq!(r["missing"]["pairs"], 1225);
    assert_eq!(r["missing"]["hosts_excluded"], serde_json::json!([]));
    for p in r["profiles"].as_array().unwrap() {
        // A sampled hole has no RTT: the client would reject the update.
        assert_eq!(p["rejected"], 0, "{p}");
        for c in p["checkpoints"].as_array().unwrap() {
            for key in ["median", "p90", "top10", "nn_loss_ms"] {
                assert!(c["mean"][key].as_f64().is_some_and(f64::is_finite), "{key}: {c}");
            }
        }
        let last = &p["checkpoints"][1]["mean"];
        assert!(last["median"].as_f64().unwrap() < 0.3, "{p}");
    }
    assert!(r["offline"]["metrics"]["median"].as_f64().is_some_and(f64::is_finite));

    // The same command on the complete matrix reports no missing pairs at all.
    let out = testnet()
        .args(["coords", "--matrix", &data("planetlab50.txt"), "--profile", "vecino"])
        .args(["--updates", "30", "--seeds", "1", "--offline-epochs", "0", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r.get("missing").is_none(), "{r}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn sim_on_a_matrix_with_holes_fills_them_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("holes.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"holes\"\npeers = 50\nduration_s = 20\ndrain_s = 15\n\
             [latency]\nmatrix = \"{}\"\n[link]\nrate_bps = 10000000\n\
             [traffic]\nrate_per_s = 2\nper = \"fleet\"\nstart_s = 5\n",
            data("planetlab50-holes.txt")
        ),
    )
    .unwrap();
    let json = tmp.path().join("out.json");
    let out = testnet()
        .args(["sim", "--scenario"])
        .arg(&scenario)
        .args(["--only", "vecino,fullmesh", "--in-process", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    let line = "matrix: 115 of 1225 pairs missing, filled by the shortest two-hop path through a \
                host measured to both";
    assert_eq!(stderr.matches(line).count(), 1, "said once at the start: {stderr}");
    assert!(stdout.contains(line), "and in the table: {stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let fill = &r["matrix_fill"];
    assert_eq!(fill["pairs_missing"], 115, "{fill}");
    assert_eq!(fill["pairs"], 1225);
    assert_eq!(fill["two_hop"], 115);
    assert_eq!(fill["longer"], 0);
    assert_eq!(fill["method"], "shortest two-hop path (metric closure)");
    for name in ["vecino", "fullmesh"] {
        let d = &r["disseminators"][name];
        assert!(d["delivery_ratio"].as_f64().is_some_and(|x| x >= 0.99), "{name}: {d}");
        assert!(d["stretch_p50"].as_f64().is_some_and(|s| s >= 1.0), "{name}: {d}");
    }
}

#[test]
fn sim_refuses_a_matrix_whose_holes_cannot_be_filled() {
    let tmp = tempfile::tempdir().unwrap();
    let matrix = tmp.path().join("split.txt");
    std::fs::write(&matrix, "4\n0 10 -1 -1\n10 0 -1 -1\n-1 -1 0 10\n-1 -1 10 0\n").unwrap();
    let scenario = tmp.path().join("split.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"split\"\npeers = 4\nduration_s = 5\n[latency]\nmatrix = \"{}\"\n\
             [link]\nrate_bps = 1000000\n[traffic]\nrate_per_s = 1\n",
            matrix.display()
        ),
    )
    .unwrap();
    let out = testnet().args(["sim", "--scenario"]).arg(&scenario).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("4 of 6 pairs missing and they cannot all be filled")
            && stderr.contains("no path of measured pairs joins hosts 0 and 2"),
        "{stderr}"
    );
}
