//! The `vecino` binary's identity commands, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

fn vecino(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vecino"))
        .args(args)
        .env_remove("VECINO_KEY")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .output()
        .expect("run vecino")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn keygen_then_id_name_the_same_peer() {
    let home = tempfile::tempdir().unwrap();
    let made = vecino(&["keygen", "--json"], home.path());
    assert!(made.status.success(), "{}", stderr(&made));
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let key_file = made["key_file"].as_str().unwrap();
    assert!(key_file.ends_with("data/vecino/identity.pem"), "{key_file}");
    assert!(made["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    assert_eq!(made["public_key"].as_str().unwrap().len(), 64);

    let shown = vecino(&["id", "--json"], home.path());
    assert!(shown.status.success(), "{}", stderr(&shown));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown, made);

    let plain = vecino(&["id"], home.path());
    assert!(stdout(&plain).contains(made["peer_id"].as_str().unwrap()));
}

#[test]
fn keygen_refuses_to_overwrite() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("k.pem");
    let p = path.to_str().unwrap();
    assert!(vecino(&["keygen", "--out", p], home.path()).status.success());
    let before = std::fs::read(&path).unwrap();
    let again = vecino(&["keygen", "--out", p], home.path());
    assert!(!again.status.success());
    assert!(stderr(&again).contains("refusing to overwrite"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn id_explains_what_is_wrong() {
    let home = tempfile::tempdir().unwrap();
    let missing = vecino(&["id"], home.path());
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("vecino keygen"), "{}", stderr(&missing));

    let junk = home.path().join("junk.pem");
    std::fs::write(&junk, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = vecino(&["id", "--key", junk.to_str().unwrap()], home.path());
        assert!(stderr(&open).contains("chmod 600"), "{}", stderr(&open));
        std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let bad = vecino(&["id", "--key", junk.to_str().unwrap()], home.path());
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not a usable key"), "{}", stderr(&bad));
}

#[test]
fn run_check_config_prints_settings_and_names_bad_keys() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("vecino.toml");
    std::fs::write(&file, "name = \"edge-1\"\nsuspect_timeout_secs = 30\n").unwrap();
    let f = file.to_str().unwrap();
    let ok = vecino(&["run", "--check-config", "--config", f, "--active-view", "4"], home.path());
    assert!(ok.status.success(), "{}", stderr(&ok));
    let out = stdout(&ok);
    for want in [
        "name = \"edge-1\"",
        "suspect_timeout_secs = 30",
        "active_view = 4",
        "api = \"127.0.0.1:7300\"",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }
    std::fs::write(&file, "name = \"edge-1\"\nsuspect_timout_secs = 30\n").unwrap();
    let bad = vecino(&["run", "--check-config", "--config", f], home.path());
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("unknown field `suspect_timout_secs`"), "{}", stderr(&bad));
}

#[test]
fn run_refuses_a_store_that_is_not_ours() {
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("node");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("vecino.redb"), vec![0x42; 8192]).unwrap();
    let out = vecino(
        &[
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--api",
            "127.0.0.1:0",
            "--mdns",
            "false",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
        home.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a vecino store"), "{}", stderr(&out));
}
