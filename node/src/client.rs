//! The client side of the API, for `vecino members`, `rtt`, `post`, `tail`, `status`, `links`.
//!
//! A small blocking HTTP client (ureq, no TLS). The node to talk to is `--api`/`VECINO_API` if
//! given, else the address the local node wrote to `api.addr` in its data directory, else the
//! default `127.0.0.1:7300`.
//!
//! **Tokens.** A node may require `Authorization: Bearer <token>` (it does when its API is bound
//! beyond loopback, and keeps the write-scope token in `<data-dir>/api.token`). The client sends
//! `--token`/`VECINO_API_TOKEN` if given, else the data directory's `api.token` if there is one
//! and the node is that data directory's node (no `--api`, or `--api` equal to its `api.addr`,
//! or `--data-dir` given explicitly beside `--api`): a local node's token is not handed to
//! whatever other address `--api` names. The token goes on every request, the event stream
//! included, and is never printed ([`Token`]'s `Debug` hides it).
//!
//! **Text from the network.** Names, topics, texts and anything else another peer chose reach
//! the operator's terminal only through [`clean`] (human-readable output) or [`json_text`]
//! (`--json`), which make control characters and bidirectional-override characters visible
//! instead of letting the terminal act on them.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::{self, BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::config::{API_ADDR_FILE, DEFAULT_API};

/// File in the data directory where a node that requires tokens keeps the write-scope one.
pub const API_TOKEN_FILE: &str = "api.token";
/// File in the data directory where a node that requires tokens keeps the read-scope one.
pub const API_READ_TOKEN_FILE: &str = "api-read.token";

/// A bearer token for the node's API. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (surrounding whitespace trimmed); `None` if that leaves nothing.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.to_string()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl std::str::FromStr for Token {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = Token::new(s).ok_or_else(|| "the token is empty".to_string())?;
        if t.0.chars().any(|c| c.is_control() || c == ' ') {
            return Err("a token has no spaces or control characters".into());
        }
        Ok(t)
    }
}

/// Where the token a client sends came from (for the error that says what to do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `VECINO_API_TOKEN`.
    Given,
    /// The data directory's `api.token`.
    File(PathBuf),
    /// None was sent; the data directory's token file would be here (and why it was not
    /// read, when it exists but could not be).
    None {
        /// `<data-dir>/api.token`, when there is a data directory.
        file: Option<PathBuf>,
        /// Why that file was not used.
        why: Option<String>,
    },
}

/// A client of one node's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<Token>,
    token_source: TokenSource,
}

/// Finds the API address: given, else `<data_dir>/api.addr`, else the default.
pub fn api_address(given: Option<&str>, data_dir: Option<&Path>) -> String {
    if let Some(a) = given {
        return normalize(a);
    }
    addr_file_address(data_dir).unwrap_or_else(|| DEFAULT_API.to_string())
}

fn normalize(addr: &str) -> String {
    addr.trim().trim_start_matches("http://").trim_end_matches('/').to_string()
}

fn data_dir_or_default(data_dir: Option<&Path>) -> Option<PathBuf> {
    data_dir.map(Path::to_owned).or_else(crate::keyfile::default_data_dir)
}

fn addr_file_address(data_dir: Option<&Path>) -> Option<String> {
    data_dir_or_default(data_dir)
        .and_then(|d| std::fs::read_to_string(d.join(API_ADDR_FILE)).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The token to send and where it came from: `given`, else `<data_dir>/api.token` when the
/// node addressed is that data directory's node (see the module documentation).
pub fn find_token(
    given: Option<Token>,
    api: Option<&str>,
    data_dir: Option<&Path>,
) -> (Option<Token>, TokenSource) {
    if let Some(t) = given {
        return (Some(t), TokenSource::Given);
    }
    let Some(dir) = data_dir_or_default(data_dir) else {
        return (None, TokenSource::None { file: None, why: None });
    };
    let file = dir.join(API_TOKEN_FILE);
    if let Some(a) = api
        && data_dir.is_none()
        && addr_file_address(None).as_deref() != Some(normalize(a).as_str())
    {
        let why = file
            .exists()
            .then(|| format!("--api names another node than the one {} belongs to", dir.display()));
        return (None, TokenSource::None { file: Some(file), why });
    }
    match std::fs::read_to_string(&file) {
        Ok(text) => match text.parse::<Token>() {
            Ok(t) => (Some(t), TokenSource::File(file)),
            Err(why) => (None, TokenSource::None { file: Some(file), why: Some(why) }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            (None, TokenSource::None { file: Some(file), why: None })
        }
        Err(e) => (None, TokenSource::None { file: Some(file), why: Some(e.to_string()) }),
    }
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder().timeout_global(timeout).http_status_as_error(false).build().into()
}

impl Client {
    /// A client of the API at `addr` (`host:port`), sending no token.
    pub fn new(addr: &str) -> Self {
        Client {
            base: format!("http://{}", normalize(addr)),
            agent: agent(Some(Duration::from_secs(15))),
            token: None,
            token_source: TokenSource::None { file: None, why: None },
        }
    }

    /// The same client, sending `token` (from `source`) with every request.
    pub fn with_token(mut self, token: Option<Token>, source: TokenSource) -> Self {
        self.token = token;
        self.token_source = source;
        self
    }

    /// A client of the node whose data directory is `dir`, at `addr`, sending the token that
    /// node keeps there (`api.token`) if there is one: for harnesses that start nodes (tests,
    /// `vecino demo`, `vecino-testnet local`).
    pub fn for_data_dir(addr: &str, dir: &Path) -> Self {
        let file = dir.join(API_TOKEN_FILE);
        match std::fs::read_to_string(&file).ok().and_then(|t| t.parse::<Token>().ok()) {
            Some(t) => Client::new(addr).with_token(Some(t), TokenSource::File(file)),
            None => Client::new(addr)
                .with_token(None, TokenSource::None { file: Some(file), why: None }),
        }
    }

    /// The client an operator's command uses: the address from [`api_address`], the token from
    /// [`find_token`].
    pub fn for_operator(api: Option<&str>, data_dir: Option<&Path>, token: Option<Token>) -> Self {
        let (token, source) = find_token(token, api, data_dir);
        Client::new(&api_address(api, data_dir)).with_token(token, source)
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("authorization", format!("Bearer {}", t.0)),
            None => r,
        }
    }

    fn reach(&self, e: ureq::Error) -> anyhow::Error {
        anyhow::Error::new(e).context(format!(
            "cannot reach the vecino API at {} (is `vecino run` up? set --api)",
            self.base
        ))
    }

    /// The error for an answer that is not a success: says what to do about 401, 403 and 421.
    fn refusal(&self, what: &str, status: u16, body: &str) -> anyhow::Error {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.into()));
        let said =
            v.get("error").and_then(Value::as_str).map_or_else(|| cell(&v), |s| clean(s).into());
        let said = if said.is_empty() || said == "-" { String::new() } else { format!(": {said}") };
        let base = &self.base;
        let keeps = "the node keeps its token in <its data dir>/api.token";
        let msg = match (status, &self.token_source) {
            (401, TokenSource::None { file, why }) => {
                let mut m = format!(
                    "the node at {base} requires a token (HTTP 401{said}): pass --token or set \
                     VECINO_API_TOKEN ({keeps})"
                );
                if let (Some(f), Some(w)) = (file, why) {
                    m.push_str(&format!("; {} was not used: {w}", f.display()));
                }
                m
            }
            (401, TokenSource::Given) => format!(
                "the node at {base} refused the token given by --token/VECINO_API_TOKEN (HTTP \
                 401{said}): pass the one in the node's data directory, api.token ({keeps})"
            ),
            (401, TokenSource::File(f)) => format!(
                "the node at {base} refused the token read from {} (HTTP 401{said}): the file may \
                 be stale or from another node; pass --token or set VECINO_API_TOKEN",
                f.display()
            ),
            (403, _) => format!(
                "the node at {base} does not allow {what} with this token (HTTP 403{said}): it \
                 may be a read-scope token (api-read.token); pass the write-scope one from \
                 api.token with --token or VECINO_API_TOKEN"
            ),
            (421, _) => format!(
                "the node at {base} refused the request as misdirected (HTTP 421{said}): address \
                 it as it listens (--api with the address in its data dir's api.addr), and pass \
                 its token with --token or VECINO_API_TOKEN if it requires one"
            ),
            _ => format!("{what}{said} (HTTP {status})"),
        };
        anyhow::anyhow!(msg)
    }

    fn answer(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut r = r.map_err(|e| self.reach(e))?;
        let status = r.status();
        let text = r.body_mut().read_to_string().with_context(|| format!("reading {what}"))?;
        if !status.is_success() {
            return Err(self.refusal(what, status.as_u16(), &text));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.auth(self.agent.get(format!("{}{path}", self.base))).call();
        self.answer(path, r)
    }

    /// `GET path` as text.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut r = self
            .auth(self.agent.get(format!("{}{path}", self.base)))
            .call()
            .map_err(|e| self.reach(e))?;
        let status = r.status();
        let text = r.body_mut().read_to_string().with_context(|| format!("reading {path}"))?;
        if !status.is_success() {
            return Err(self.refusal(path, status.as_u16(), &text));
        }
        Ok(text)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .auth(self.agent.post(format!("{}{path}", self.base)))
            .header("content-type", "application/json")
            .send(body.to_string());
        self.answer(path, r)
    }

    /// Follows the event stream, calling `on` with each (event, data) until it returns false
    /// or the stream ends.
    pub fn follow(&self, mut on: impl FnMut(&str, &Value) -> bool) -> anyhow::Result<()> {
        let path = "/v1/events";
        let mut r = self
            .auth(agent(None).get(format!("{}{path}", self.base)))
            .call()
            .map_err(|e| self.reach(e))?;
        let status = r.status();
        if !status.is_success() {
            let text = r.body_mut().read_to_string().unwrap_or_default();
            return Err(self.refusal(path, status.as_u16(), &text));
        }
        let reader = io::BufReader::new(r.into_body().into_reader());
        let mut event = String::new();
        for line in reader.lines() {
            let line = line.with_context(|| format!("reading {path}"))?;
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                let v: Value = serde_json::from_str(d.trim()).unwrap_or(Value::Null);
                if !on(&event, &v) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Whether `c` must not reach a terminal as it is: a control character (C0, DEL, C1: ESC
/// starts terminal escape sequences, NUL and CR hide text), a bidirectional formatting
/// character (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069: they reorder what
/// follows, "Trojan Source"), or a line or paragraph separator (U+2028, U+2029).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Text from the network made safe for a terminal: each character [`is_unsafe_char`] says
/// must not reach it is written as a visible escape, `\n`, `\r`, `\t` for those three and
/// `\u{hex}` for the others (ESC is `\u{1b}`, RIGHT-TO-LEFT OVERRIDE `\u{202e}`); every
/// other character, letters of any script and emoji included, is kept. A backslash stays a
/// backslash: `--json` gives the exact text.
pub fn clean(s: &str) -> Cow<'_, str> {
    clean_with(s, false)
}

/// Like [`clean`], keeping line feeds (for our own multi-line messages, such as errors).
pub fn clean_lines(s: &str) -> Cow<'_, str> {
    clean_with(s, true)
}

fn clean_with(s: &str, keep_lf: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe_char(c) && !(keep_lf && c == '\n')) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' if keep_lf => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A JSON value as text for `--json` (pretty or one line), safe for a terminal and exact for a
/// parser: serde already writes C0 controls in strings as `\u00XX`; this writes the rest of
/// [`is_unsafe_char`] (DEL, C1, bidirectional and separator characters, which JSON allows raw)
/// as `\uXXXX` too, so `jq` reads the same text a peer sent and a terminal shows no override.
pub fn json_text(v: &Value, pretty: bool) -> String {
    let text = if pretty { serde_json::to_string_pretty(v) } else { serde_json::to_string(v) }
        .unwrap_or_default();
    if !text.chars().any(|c| c != '\n' && is_unsafe_char(c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && is_unsafe_char(c) {
            // Every such character is in the Basic Multilingual Plane: one \uXXXX.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Standard output was closed by its reader (`vecino status | head -1`): the command stops
/// and `vecino` exits 0 without a word.
#[derive(Debug, thiserror::Error)]
#[error("standard output is closed")]
pub struct StdoutClosed;

/// Writes to standard output (flushed, so a closed pipe shows at once). A closed pipe is
/// [`StdoutClosed`]; other write errors are errors.
pub fn print_out(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// A fixed-width text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A JSON value as a table cell, [`clean`]ed.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => clean(s).into_owned(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => clean(&other.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
        assert_eq!(cell(&serde_json::json!(1.25)), "1.2");
        assert_eq!(cell(&Value::Null), "-");
    }

    #[test]
    fn clean_makes_controls_and_overrides_visible_and_keeps_text() {
        assert_eq!(clean("hola, señor 東京 👨\u{200d}👩 ok"), "hola, señor 東京 👨\u{200d}👩 ok");
        assert!(matches!(clean("plain"), Cow::Borrowed(_)));
        assert_eq!(clean("a\u{1b}[31mred\0b"), "a\\u{1b}[31mred\\u{0}b");
        assert_eq!(clean("x\ny\r\tz\u{7f}\u{9b}"), "x\\ny\\r\\tz\\u{7f}\\u{9b}");
        assert_eq!(clean("\u{202e}txt.exe\u{2066}\u{2069}"), "\\u{202e}txt.exe\\u{2066}\\u{2069}");
        assert_eq!(clean("\u{200e}\u{200f}\u{61c}\u{2028}"), "\\u{200e}\\u{200f}\\u{61c}\\u{2028}");
        assert_eq!(clean_lines("one\ntwo\u{1b}"), "one\ntwo\\u{1b}");
        assert_eq!(cell(&Value::String("\u{1b}]0;pwned\u{7}".into())), "\\u{1b}]0;pwned\\u{7}");
        assert_eq!(cell(&serde_json::json!(["\u{202e}"])), "[\"\\u{202e}\"]");
    }

    #[test]
    fn json_text_is_exact_and_terminal_safe() {
        let text = "a\u{1b}[2J\u{0}\u{7f}\u{85}\u{202e}\u{2067}\u{2029} ñ 東 \\ \"";
        let v = serde_json::json!({"text": text, "n": [1, 2]});
        for pretty in [false, true] {
            let out = json_text(&v, pretty);
            assert!(!out.chars().any(|c| c != '\n' && is_unsafe_char(c)), "{out:?}");
            let back: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(back, v);
        }
        assert!(json_text(&v, false).contains("\\u202e"));
    }

    #[test]
    fn tokens_never_show() {
        let t: Token = " s3cret\n".parse().unwrap();
        assert_eq!(t, Token("s3cret".into()));
        let c = Client::new("127.0.0.1:1").with_token(Some(t), TokenSource::Given);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!("".parse::<Token>().is_err());
        assert!("a b".parse::<Token>().is_err());
    }

    #[test]
    fn a_harness_client_sends_the_token_its_node_keeps() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::for_data_dir("127.0.0.1:1", dir.path());
        assert_eq!(c.token, None);
        std::fs::write(dir.path().join(API_TOKEN_FILE), "t0k\n").unwrap();
        let c = Client::for_data_dir("127.0.0.1:1", dir.path());
        assert_eq!(c.token, Token::new("t0k"));
    }

    #[test]
    fn the_data_dirs_token_is_not_sent_to_another_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(API_ADDR_FILE), "127.0.0.1:7400\n").unwrap();
        std::fs::write(dir.path().join(API_TOKEN_FILE), "tok\n").unwrap();
        let d = Some(dir.path());
        let (t, src) = find_token(None, None, d);
        assert_eq!(t, Token::new("tok"));
        assert_eq!(src, TokenSource::File(dir.path().join(API_TOKEN_FILE)));
        // --data-dir given beside --api: the operator paired them.
        assert_eq!(find_token(None, Some("10.1.2.3:7300"), d).0, Token::new("tok"));
        let given = Token::new("flag");
        assert_eq!(find_token(given.clone(), None, d), (given, TokenSource::Given));
        let empty = tempfile::tempdir().unwrap();
        let (t, src) = find_token(None, None, Some(empty.path()));
        assert!(t.is_none());
        assert_eq!(
            src,
            TokenSource::None { file: Some(empty.path().join(API_TOKEN_FILE)), why: None }
        );
    }
}
