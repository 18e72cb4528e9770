//! Raw HTTP/1.1 against a real `vecino run` (any Host, any header, half-sent requests), and a
//! node started with the API flags a test needs. Every read has a timeout.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// Socket reads and writes give up after this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A `vecino run` whose API the test reaches at `api` (always a loopback address).
#[derive(Debug)]
pub struct ApiNode {
    pub child: Child,
    /// `ip:port` to connect to.
    pub api: String,
    /// The port.
    pub port: u16,
}

impl ApiNode {
    /// Starts a node with its data in `dir`, its API on `bind` (`127.0.0.1:0`, `0.0.0.0:0`),
    /// and `extra` flags.
    pub fn start(dir: &Path, bind: &str, extra: &[&str]) -> ApiNode {
        let mut child = Command::new(crate::common::vecino_bin())
            .args(["run", "--init", "--data-dir"])
            .arg(dir)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--mdns", "false", "--log", "warn"])
            .args(["--api", bind])
            .args(extra)
            .env_remove("VECINO_CONFIG")
            .env_remove("VECINO_API")
            .env_remove("VECINO_API_TOKEN")
            .env_remove("VECINO_API_READ_TOKEN")
            .env_remove("VECINO_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vecino");
        let line = crate::common::first_line(&mut child);
        let addr = line.split_whitespace().nth(3).expect("api address");
        let addr = addr.trim_start_matches("http://");
        let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        ApiNode { child, api: format!("127.0.0.1:{port}"), port }
    }

    /// A request with `Host: <api>` unless `headers` has a Host; `Connection: close`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        request(&self.api, method, path, headers, body)
    }

    /// `GET` with a bearer token (`None`: no Authorization header).
    pub fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.as_deref().map(|a| vec![("Authorization", a)]).unwrap_or_default();
        self.call("GET", path, &headers, None)
    }

    /// `POST` of a JSON body with a bearer token.
    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth.as_deref() {
            headers.push(("Authorization", a));
        }
        self.call("POST", path, &headers, Some(body))
    }

    /// A sample of `/metrics` (summed over the series whose labels contain `labels`).
    pub fn metric(&self, token: Option<&str>, name: &str, labels: &str) -> f64 {
        let r = self.get("/metrics", token);
        assert_eq!(r.status, 200, "{}", r.body);
        crate::common::metric_in(&r.body, name, labels)
    }
}

impl Drop for ApiNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics, with the body, when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.body))
    }

    /// The `error` of a JSON error body; checks the content type too.
    pub fn error(&self) -> String {
        let ct = self.header("content-type").unwrap_or_default();
        assert!(ct.starts_with("application/json"), "{} content-type {ct:?}", self.status);
        let v = self.json();
        v["error"].as_str().unwrap_or_else(|| panic!("no error string: {v}")).to_string()
    }
}

/// Connects with the I/O timeouts set.
pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// One request on a new connection, read to the end.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n");
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default().as_bytes());
    raw_request(addr, &raw)
}

/// Sends `raw` and reads the answer to the end of the connection.
pub fn raw_request(addr: &str, raw: &[u8]) -> Reply {
    let mut s = connect(addr);
    // The server may answer (413) and close before it has read a large body.
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    parse(&got)
}

/// Parses an answer (a `chunked` body is joined).
pub fn parse(got: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(got);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { unchunk(body) } else { body.to_string() };
    Reply { status: status.parse().expect("status"), headers, body }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Opens `GET path` as an event stream and reads its head; the stream stays open.
pub fn open_stream(addr: &str, path: &str, headers: &[(&str, &str)]) -> (Reply, TcpStream) {
    let mut s = connect(addr);
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
        assert!(got.len() < 16 * 1024, "head too long");
    }
    let mut reply = parse(&got);
    // A refusal has a body (Content-Length): read it.
    if let Some(n) = reply.header("content-length").and_then(|n| n.parse::<usize>().ok()) {
        let mut body = vec![0u8; n];
        if s.read_exact(&mut body).is_ok() {
            reply.body = String::from_utf8_lossy(&body).into_owned();
        }
    }
    (reply, s)
}

/// Whether the server has closed `s` (a read gives end of stream or an error), waiting at most
/// `wait` for it.
pub fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}
