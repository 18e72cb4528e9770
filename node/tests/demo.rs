//! `vecino demo` starts a real network of its own copies, prints the radar URL, and stops every
//! child on Ctrl-C (SIGINT) or at the end of `--duration`: no orphans either way.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Process ids whose parent is `parent` (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would say state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').and_then(|x| x.1.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

/// Starts the demo and returns it with a receiver of its stdout lines.
fn start(args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vecino"))
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(1))
            && l.contains(what)
        {
            return l;
        }
    }
    panic!("the demo never printed {what:?}");
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn demo_serves_the_radar_and_stops_every_peer_on_sigint() {
    let (mut demo, rx) = start(&["--peers", "4", "--post-every", "500ms"]);
    let url = wait_line(&rx, "radar: http://127.0.0.1:");
    let api = url.trim().trim_start_matches("radar: http://").trim_end_matches('/').to_string();
    let peers = children(demo.id());
    assert_eq!(peers.len(), 4, "four peers run as children: {peers:?}");
    wait_line(&rx, "the peers found each other");
    // The first peer answers on the printed address, and posts flow.
    let client = vecino::client::Client::new(&api);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = client.get("/v1/posts").unwrap()["posts"].as_array().map_or(0, Vec::len);
        if n >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no demo posts reached the first peer");
        std::thread::sleep(Duration::from_millis(200));
    }

    let _ = Command::new("kill").args(["-INT", &demo.id().to_string()]).status();
    let status = wait_exit(&mut demo);
    assert!(status.success(), "{status:?}");
    let left: Vec<u32> = peers.into_iter().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "orphaned peers: {left:?}");
}

#[test]
fn demo_with_a_duration_stops_by_itself() {
    let (mut demo, rx) = start(&["--peers", "3", "--duration", "8s"]);
    wait_line(&rx, "radar: http://127.0.0.1:");
    let peers = children(demo.id());
    assert_eq!(peers.len(), 3, "{peers:?}");
    let status = wait_exit(&mut demo);
    assert!(status.success(), "{status:?}");
    assert!(peers.iter().all(|&p| !alive(p)), "orphaned peers");
}
