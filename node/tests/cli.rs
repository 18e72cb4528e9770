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
    let made = vecino(&["init", "--data-dir", data.to_str().unwrap()], home.path());
    assert!(made.status.success(), "{}", stderr(&made));
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

/// `vecino run` with these arguments until it prints its first line (its peer id and API
/// address), then killed; `None` if it exited first (with its stderr).
fn run_until_up(args: &[&str], home: &Path) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vecino"))
        .arg("run")
        .args(args)
        .args(["--api", "127.0.0.1:0", "--mdns", "false", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--log", "warn"])
        .env_remove("VECINO_KEY")
        .env_remove("VECINO_DATA_DIR")
        .env_remove("VECINO_CONFIG")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vecino");
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let _ = child.kill();
    let _ = child.wait();
    if line.is_empty() {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        return Err(err);
    }
    Ok(line)
}

fn peer_of(line: &str) -> String {
    line.split_whitespace().nth(1).expect("vecino <peer id> api <url>").to_string()
}

#[test]
fn a_missing_data_dir_given_explicitly_is_an_error_not_a_new_peer() {
    let home = tempfile::tempdir().unwrap();
    let typo = home.path().join("vecion/node");
    let t = typo.to_str().unwrap();
    let want = format!(
        "error: no data directory at {t}; `vecino init --data-dir {t}` creates a new identity there, or `vecino run --init`"
    );
    // As a flag, as VECINO_DATA_DIR, and in the config file; with and without --check-config.
    let flag = vecino(&["run", "--data-dir", t, "--api", "127.0.0.1:0"], home.path());
    assert!(!flag.status.success());
    assert_eq!(stderr(&flag).trim(), want);
    let env = Command::new(env!("CARGO_BIN_EXE_vecino"))
        .args(["run", "--api", "127.0.0.1:0"])
        .env("VECINO_DATA_DIR", t)
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap();
    assert!(!env.status.success());
    assert_eq!(stderr(&env).trim(), want);
    let toml = home.path().join("v.toml");
    std::fs::write(&toml, format!("data_dir = {t:?}\n")).unwrap();
    let file = vecino(&["run", "--config", toml.to_str().unwrap()], home.path());
    assert_eq!(stderr(&file).trim(), want);
    let check = vecino(&["run", "--config", toml.to_str().unwrap(), "--check-config"], home.path());
    assert!(!check.status.success());
    assert_eq!(stderr(&check).trim(), want);
    assert!(!home.path().join("vecion").exists(), "nothing was created");

    // --key in a directory that does not exist, likewise.
    let data = home.path().join("node");
    std::fs::create_dir(&data).unwrap();
    let key = home.path().join("keys/peer.pem");
    let k = key.to_str().unwrap();
    let out = vecino(&["run", "--data-dir", data.to_str().unwrap(), "--key", k], home.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "no directory {} for the key file {k}; `vecino init --key {k}`",
            home.path().join("keys").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(!home.path().join("keys").exists());
}

/// A data directory that holds a peer's store but not the key named (a typo in `--key`, or
/// the key moved away) is an error, not a new identity taking over the history; `--init`
/// asks for one.
#[test]
fn a_store_without_its_key_is_an_error_not_a_new_peer() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("node");
    let d = dir.to_str().unwrap();
    let first = run_until_up(&["--data-dir", d, "--init"], home.path()).unwrap();
    assert!(dir.join("vecino.redb").is_file());
    let typo = dir.join("identiy.pem");
    let t = typo.to_str().unwrap();
    let out = vecino(&["run", "--data-dir", d, "--key", t, "--api", "127.0.0.1:0"], home.path());
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: no key file at {t}, but {} holds a peer's history; point --key at that peer's key, or `vecino run --init` to start a new identity on it",
            dir.join("vecino.redb").display()
        )
    );
    assert!(!typo.exists(), "no key was made");
    let again = run_until_up(&["--data-dir", d], home.path()).unwrap();
    assert_eq!(peer_of(&again), peer_of(&first), "the right key still runs");
    let new = run_until_up(&["--data-dir", d, "--key", t, "--init"], home.path()).unwrap();
    assert_ne!(peer_of(&new), peer_of(&first), "--init makes the new identity asked for");
}

#[test]
fn init_makes_a_private_data_dir_and_one_identity() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("a/b/node");
    let d = dir.to_str().unwrap();
    let made = vecino(&["init", "--data-dir", d, "--json"], home.path());
    assert!(made.status.success(), "{}", stderr(&made));
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(made["data_dir"], d);
    assert_eq!(made["key_file"], dir.join("identity.pem").to_str().unwrap());
    let peer = made["peer_id"].as_str().unwrap().to_string();
    assert!(peer.starts_with("12D3KooW"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
    let key_before = std::fs::read(dir.join("identity.pem")).unwrap();
    // Once only.
    let again = vecino(&["init", "--data-dir", d], home.path());
    assert!(!again.status.success());
    assert!(stderr(&again).contains(&format!("already holds peer {peer}")), "{}", stderr(&again));
    assert_eq!(std::fs::read(dir.join("identity.pem")).unwrap(), key_before);
    // The plain output names the peer and both paths.
    let other = home.path().join("other");
    let plain = vecino(&["init", "--data-dir", other.to_str().unwrap()], home.path());
    let text = stdout(&plain);
    assert!(text.contains("peer id:    12D3KooW"), "{text}");
    assert!(text.contains(&format!("data dir:   {}", other.display())), "{text}");
    // And `vecino run` runs that identity.
    let line = run_until_up(&["--data-dir", d], home.path()).unwrap();
    assert_eq!(peer_of(&line), peer);
}

#[test]
fn run_init_creates_what_is_missing_and_keeps_what_is_there() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("fresh/node");
    let d = dir.to_str().unwrap();
    let first = run_until_up(&["--data-dir", d, "--init"], home.path()).unwrap();
    assert!(dir.join("identity.pem").is_file());
    let again = run_until_up(&["--data-dir", d, "--init"], home.path()).unwrap();
    assert_eq!(peer_of(&again), peer_of(&first), "--init on an existing identity keeps it");
    let plain = run_until_up(&["--data-dir", d], home.path()).unwrap();
    assert_eq!(peer_of(&plain), peer_of(&first));
}

#[test]
fn the_default_data_dir_and_an_empty_one_still_get_a_key() {
    let home = tempfile::tempdir().unwrap();
    // $XDG_DATA_HOME/vecino, created on first run (no typo possible).
    run_until_up(&[], home.path()).unwrap();
    assert!(home.path().join("data/vecino/identity.pem").is_file());
    // An existing empty directory (systemd's StateDirectory=): a new key in it.
    let empty = home.path().join("state");
    std::fs::create_dir(&empty).unwrap();
    run_until_up(&["--data-dir", empty.to_str().unwrap()], home.path()).unwrap();
    assert!(empty.join("identity.pem").is_file());
}

#[test]
fn errors_say_each_cause_once_and_name_empty_and_directory_keys() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("none.toml");
    let out = vecino(&["run", "--config", missing.to_str().unwrap()], home.path());
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.starts_with("error: cannot read config file "), "{err}");

    let empty = home.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = vecino(&["id", "--key", empty.to_str().unwrap()], home.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: key file {} is empty", empty.display())), "{err}");
    assert!(!err.contains("PEM"), "{err}");

    let dir = home.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = vecino(&["id", "--key", dir.to_str().unwrap()], home.path());
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: key path {} is a directory", dir.display())), "{err}");
    assert!(!err.contains("readable by others") && !err.contains("os error"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    let home = tempfile::tempdir().unwrap();
    assert!(vecino(&["keygen"], home.path()).status.success());
    for args in [&["id"][..], &["id", "--json"], &["--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // every write to stdout now fails with EPIPE
        let out = Command::new(env!("CARGO_BIN_EXE_vecino"))
            .args(args)
            .env_remove("VECINO_KEY")
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .stdout(writer)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}
