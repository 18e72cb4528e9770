//! What the `vecino` client commands print, run as an operator would: text that other peers
//! chose (names, topics, texts) reaches the terminal with its control and bidirectional
//! characters escaped, `--json` stays exact JSON, a closed standard output ends a command
//! quietly, and the API token is sent on every request and never shown.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use common::Peer;
use serde_json::{Value, json};
use vecino::client::is_unsafe_char;

fn vecino(args: &[&str], home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vecino"));
    c.args(args)
        .env_remove("VECINO_API")
        .env_remove("VECINO_DATA_DIR")
        .env_remove("VECINO_API_TOKEN")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .stdin(Stdio::null());
    c
}

fn output(args: &[&str], home: &Path) -> Output {
    vecino(args, home).output().expect("run vecino")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// No character a terminal would act on, other than the line ends we print ourselves.
fn assert_terminal_safe(out: &str) {
    let bad: Vec<char> = out.chars().filter(|&c| c != '\n' && is_unsafe_char(c)).collect();
    assert!(bad.is_empty(), "raw {bad:?} in:\n{out}");
}

/// The first line `vecino tail …` prints (it follows the stream until killed).
fn first_tail_line(args: &[&str], home: &Path) -> String {
    let mut child = vecino(args, home).stdout(Stdio::piped()).spawn().expect("run vecino tail");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

const EVIL_NAME: &str = "\u{1b}[31mevil\u{202e}gnp.exe";
const EVIL_TOPIC: &str = "t\u{1b}[2J\u{9b}";
const EVIL_TEXT: &str =
    "hi\u{0}\u{7}\u{1b}]0;owned\u{7} \u{2066}x\u{2069}\n[ops] forged line ñ 東京";

#[test]
fn what_peers_sent_is_escaped_in_every_human_readable_output() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let a = Peer::start(EVIL_NAME, &h.join("a"), &[], &[]);
    a.post(EVIL_TOPIC, EVIL_TEXT);
    let api = a.api.as_str();

    let members = output(&["members", "--api", api], h);
    assert!(members.status.success(), "{}", text(&members.stderr));
    let out = text(&members.stdout);
    assert_terminal_safe(&out);
    assert!(out.contains("\\u{1b}[31mevil\\u{202e}gnp.exe"), "{out}");

    let status = output(&["status", "--api", api], h);
    let out = text(&status.stdout);
    assert_terminal_safe(&out);
    assert!(out.contains("name:      \\u{1b}[31mevil\\u{202e}gnp.exe\n"), "{out}");

    let line = first_tail_line(&["tail", "-n", "5", "--api", api], h);
    assert_terminal_safe(line.trim_end_matches('\n'));
    assert!(line.starts_with("[t\\u{1b}[2J\\u{9b}] "), "{line}");
    assert!(
        line.ends_with(
            ": hi\\u{0}\\u{7}\\u{1b}]0;owned\\u{7} \\u{2066}x\\u{2069}\\n[ops] forged line ñ 東京\n"
        ),
        "one line per post, ordinary text kept: {line}"
    );

    // --json: exact text for a parser, still nothing raw for a terminal.
    let line = first_tail_line(&["tail", "-n", "5", "--json", "--api", api], h);
    assert_terminal_safe(&line);
    let post: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(post["topic"], EVIL_TOPIC);
    assert_eq!(post["text"], EVIL_TEXT);
    let members = output(&["members", "--json", "--api", api], h);
    let out = text(&members.stdout);
    assert_terminal_safe(&out);
    let members: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(members[0]["name"], EVIL_NAME);

    // `vecino opinions` at a neighbour: the peer's name and the observer's, escaped.
    let b = Peer::start("b", &h.join("b"), std::slice::from_ref(&a.addr), &[]);
    common::wait_until("b holds its own observation of a", || {
        b.get("/v1/opinions").as_array().is_some_and(|l| !l.is_empty())
    });
    for args in [vec!["opinions"], vec!["opinions", a.peer_id.as_str()]] {
        let out = output(&[args.as_slice(), &["--api", b.api.as_str()]].concat(), h);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let out = text(&out.stdout);
        assert_terminal_safe(&out);
        assert!(out.contains("\\u{1b}[31mevil\\u{202e}gnp.exe"), "{args:?}: {out}");
    }
    let out = text(&output(&["opinions", "--json", "--api", b.api.as_str()], h).stdout);
    assert_terminal_safe(&out);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()[0]["name"], EVIL_NAME);
}

#[cfg(unix)]
#[test]
fn client_commands_end_quietly_when_stdout_is_closed() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let a = Peer::start("a", &h.join("a"), &[], &[]);
    a.post("news", "hola");
    let api = a.api.as_str();
    let commands: &[&[&str]] = &[
        &["status"],
        &["members"],
        &["opinions"],
        &["opinions", "--json"],
        &["links"],
        &["postcards"],
        &["health"],
        &["rtt", "a"],
        &["tail", "-n", "5"],
        &["tail", "-n", "5", "--json"],
        &["status", "--json"],
        &["post", "news", "again"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // like `vecino status | head -0`: every write fails with EPIPE
        let out = vecino(args, h).args(["--api", api]).stdout(writer).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{args:?} said something on stderr");
    }
}

/// One request as the fake node saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

/// A stand-in for a node's API that records what it is asked and answers every request with
/// `status` (a success answers as a node would, with an empty node).
fn fake_node(status: u16) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut authorization = None;
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                let (name, value) = h.split_once(':').unwrap_or((&h, ""));
                match name.trim().to_ascii_lowercase().as_str() {
                    "authorization" => authorization = Some(value.trim().to_string()),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(Seen { path: path.clone(), authorization });
            let (kind, answer) = match (status, path.split('?').next().unwrap_or("")) {
                (200, "/v1/events") => (
                    "text/event-stream",
                    format!(
                        "event: post\ndata: {}\n\n",
                        json!({"cursor": 1, "topic": "news", "text": "from the stream", "peer_id": "p"})
                    ),
                ),
                (200, "/v1/posts") => {
                    ("application/json", json!({"posts": [], "next": 0}).to_string())
                }
                (200, _) => ("application/json", json!({"name": "fake"}).to_string()),
                (s, _) => {
                    ("application/json", json!({"error": format!("refused with {s}")}).to_string())
                }
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (addr, seen)
}

fn auths(seen: &Mutex<Vec<Seen>>) -> Vec<(String, Option<String>)> {
    let mut v: Vec<_> = seen
        .lock()
        .unwrap()
        .drain(..)
        .map(|s| (s.path.split('?').next().unwrap_or("").to_string(), s.authorization))
        .collect();
    v.sort();
    v
}

#[test]
fn the_token_goes_on_every_request_the_event_stream_included() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (addr, seen) = fake_node(200);
    // From the data directory the client finds the node by: api.addr and api.token.
    let dir = h.join("node");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("api.addr"), format!("{addr}\n")).unwrap();
    std::fs::write(dir.join("api.token"), "file-token\n").unwrap();
    let d = dir.to_str().unwrap();
    let tail = output(&["tail", "--data-dir", d], h);
    assert!(tail.status.success(), "{}", text(&tail.stderr));
    assert_eq!(text(&tail.stdout), "[news] p: from the stream\n");
    let bearer = Some("Bearer file-token".to_string());
    assert_eq!(
        auths(&seen),
        vec![("/v1/events".into(), bearer.clone()), ("/v1/posts".into(), bearer.clone())]
    );
    let post = output(&["post", "news", "hola", "--data-dir", d], h);
    assert!(post.status.success(), "{}", text(&post.stderr));
    assert_eq!(auths(&seen), vec![("/v1/posts".into(), bearer.clone())]);
    // --api equal to the data directory's api.addr: the same node, the same token.
    assert!(output(&["status", "--api", &addr, "--data-dir", d], h).status.success());
    assert_eq!(auths(&seen), vec![("/v1/status".into(), bearer)]);

    // --token and VECINO_API_TOKEN win over the file.
    assert!(output(&["status", "--data-dir", d, "--token", "flag-token"], h).status.success());
    assert_eq!(auths(&seen), vec![("/v1/status".into(), Some("Bearer flag-token".into()))]);
    let env = vecino(&["links", "--data-dir", d], h).env("VECINO_API_TOKEN", "env-token").output();
    assert!(env.unwrap().status.success());
    assert_eq!(auths(&seen), vec![("/v1/links".into(), Some("Bearer env-token".into()))]);

    // The default data directory's token is not handed to another node named by --api.
    let default = h.join("data/vecino");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::write(default.join("api.addr"), "127.0.0.1:1\n").unwrap();
    std::fs::write(default.join("api.token"), "local-token\n").unwrap();
    assert!(output(&["status", "--api", &addr], h).status.success());
    assert_eq!(auths(&seen), vec![("/v1/status".into(), None)]);
    // Nor any when there is none.
    let bare = h.join("bare");
    std::fs::create_dir(&bare).unwrap();
    std::fs::write(bare.join("api.addr"), format!("{addr}\n")).unwrap();
    assert!(output(&["health", "--data-dir", bare.to_str().unwrap()], h).status.success());
    assert_eq!(auths(&seen), vec![("/healthz".into(), None)]);
}

#[test]
fn a_refusal_says_what_to_do_and_never_shows_the_token() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (addr, _) = fake_node(401);
    let none = output(&["status", "--api", &addr], h);
    assert_eq!(none.status.code(), Some(1));
    let err = text(&none.stderr);
    assert!(
        err.starts_with(&format!(
            "error: the node at http://{addr} requires a token (HTTP 401: refused with 401): pass --token or set VECINO_API_TOKEN"
        )),
        "{err}"
    );
    assert!(err.contains("api.token"), "{err}");
    for args in [&["status"][..], &["tail"], &["post", "t", "x"]] {
        let out = vecino(args, h)
            .args(["--api", &addr])
            .env("VECINO_API_TOKEN", "s3cret-token")
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(err.contains("refused the token given by --token/VECINO_API_TOKEN"), "{err}");
        assert!(!err.contains("s3cret") && !text(&out.stdout).contains("s3cret"), "{err}");
    }
    let (addr, _) = fake_node(403);
    let err = text(&output(&["post", "t", "x", "--api", &addr, "--token", "read"], h).stderr);
    assert!(err.contains("(HTTP 403: refused with 403)") && err.contains("api.token"), "{err}");
    let (addr, _) = fake_node(421);
    let err = text(&output(&["members", "--api", &addr], h).stderr);
    assert!(err.contains("misdirected (HTTP 421") && err.contains("api.addr"), "{err}");

    // Help shows that the variable exists, not its value.
    let help = vecino(&["status", "--help"], h).env("VECINO_API_TOKEN", "s3cret-token").output();
    let help = text(&help.unwrap().stdout);
    assert!(help.contains("VECINO_API_TOKEN") && !help.contains("s3cret"), "{help}");
}

#[cfg(unix)]
#[test]
fn the_demo_stops_quietly_when_nobody_reads_it() {
    let home = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    // Without the stop it would run its peers for the whole --duration, unseen.
    let out =
        vecino(&["demo", "--peers", "2", "--post-every", "0", "--duration", "600s"], home.path())
            .env("TMPDIR", home.path())
            .stdout(writer)
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let left: Vec<_> =
        std::fs::read_dir(home.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().starts_with("vecino-demo-")), "{left:?}");
}
