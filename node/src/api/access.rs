//! Who may use the API, and under which name: tokens, scopes, the `Host` check, refusals.
//!
//! - **Tokens.** Two scopes: *write* (everything) and *read* (`GET`/`HEAD` only: reads, the
//!   event stream, the radar, metrics). Bound to loopback with no token set, the API is open
//!   (as before tokens existed). Otherwise every request but `/healthz` needs a token; a scope
//!   whose token is not set (`api_token`, `api_read_token`) takes it from its file in the data
//!   directory (`api.token`, `api-read.token`: mode 0600, one line, 256 bits from the OS's
//!   randomness as hex), created on first start and kept. See [`decide`].
//! - **Presenting a token.** `Authorization: Bearer <token>`; or `?token=<token>` on the URL
//!   (for a browser page: the radar and its `EventSource` cannot set headers). A request
//!   authorised by `?token=` is answered with an HttpOnly, SameSite=Strict cookie
//!   (`vecino_token_<port>`, path `/`) so the page's later requests carry the token without
//!   it; the cookie is the third way. The `token` parameter is removed from the URL before the
//!   request reaches a route. Tokens are compared in constant time.
//! - **Host.** The `Host` header (and an absolute-form URL's authority) must name the address
//!   the client connected to, or `localhost` or a loopback address, with the API's port; or
//!   one of `api_names` (with its port when it has one). Else 421: this is what defeats DNS
//!   rebinding, where a web page's own name resolves to this host. No `Host` (HTTP/1.0) is
//!   accepted over loopback only.
//! - **Cross-origin writes.** A non-`GET` request whose `Origin` is not its `Host` is refused
//!   (403): the cookie is SameSite=Strict already, this is the second lock.
//!
//! Every refusal is a JSON body `{"error": …}` and counts in
//! `vecino_api_rejected_total{reason=…}` ([`Reason`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::conn::Conn;
use super::error;
use crate::config::Config;

/// The write token's file in the data directory.
pub const WRITE_TOKEN_FILE: &str = "api.token";
/// The read token's file in the data directory.
pub const READ_TOKEN_FILE: &str = "api-read.token";
/// The query parameter a browser page presents its token in.
pub const TOKEN_PARAM: &str = "token";
/// The cookie's name, before the port (cookies are per host, not per port: two nodes on one
/// host must not overwrite each other's).
pub const COOKIE_PREFIX: &str = "vecino_token_";
/// Seconds an event-stream client over the cap is told to wait (`Retry-After`).
pub const SUBSCRIBER_RETRY_SECS: u32 = 5;

/// A token. Its `Debug` and `Serialize` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A token as given: 16 to 256 characters of the bearer-token alphabet (RFC 6750's
    /// `b64token`: letters, digits and `-._~+/=`), so it fits a header and a URL as is.
    pub fn parse(t: &str) -> Result<Secret, &'static str> {
        let t = t.trim();
        if !(16..=256).contains(&t.len()) {
            return Err("must be 16 to 256 characters (use 32 or more random hex digits)");
        }
        if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)) {
            return Err("letters, digits and -._~+/= only");
        }
        Ok(Secret(t.to_string()))
    }

    /// 256 bits from the OS's randomness, as 64 hex digits.
    pub fn random() -> std::io::Result<Secret> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Secret(hex::encode(bytes)))
    }

    /// The token itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<secret>")
    }
}

/// Where a scope's token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The setting (`api_token`, `api_read_token`).
    Setting,
    /// Its file in the data directory, created if missing.
    File,
}

/// Whether the API needs tokens, and where they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Loopback, no token set: every request is let in.
    Open,
    /// Every request but `/healthz` needs a token.
    Tokens {
        /// The write token's source.
        write: Source,
        /// The read token's source.
        read: Source,
    },
}

/// The rule: open on a loopback address (127.0.0.0/8, ::1) when no token is set; tokens
/// otherwise, each from its setting or else its file. `0.0.0.0` and `::` are not loopback.
pub fn decide(bind: IpAddr, write_set: bool, read_set: bool) -> Decision {
    if bind.to_canonical().is_loopback() && !write_set && !read_set {
        return Decision::Open;
    }
    let source = |set: bool| if set { Source::Setting } else { Source::File };
    Decision::Tokens { write: source(write_set), read: source(read_set) }
}

/// A request's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `GET` and `HEAD` only.
    Read,
    /// Everything.
    Write,
}

/// Why a request or a connection was refused: the `reason` label of
/// `vecino_api_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No token, or a wrong one (401).
    Unauthorized,
    /// The read token on a write (403).
    Forbidden,
    /// A write from a page of another origin (403).
    CrossOrigin,
    /// A `Host` this API is not served under (421).
    Misdirected,
    /// Event-stream subscribers at the cap (503).
    TooManySubscribers,
    /// Connections at the cap and none idle to close (503, then closed).
    TooManyConnections,
    /// An idle connection closed to make room for a new one.
    Evicted,
    /// A request's headers did not arrive in time (connection closed).
    HeaderTimeout,
    /// A connection idle too long between requests (closed).
    IdleTimeout,
    /// A reader that took no bytes for the idle timeout (closed).
    WriteStalled,
    /// A request not answered in time, its body too slow (408).
    RequestTimeout,
}

impl Reason {
    /// The label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::CrossOrigin => "cross_origin",
            Reason::Misdirected => "misdirected",
            Reason::TooManySubscribers => "too_many_subscribers",
            Reason::TooManyConnections => "too_many_connections",
            Reason::Evicted => "evicted",
            Reason::HeaderTimeout => "header_timeout",
            Reason::IdleTimeout => "idle_timeout",
            Reason::WriteStalled => "write_stalled",
            Reason::RequestTimeout => "request_timeout",
        }
    }

    /// Counts one.
    pub fn count(self) {
        metrics::counter!("vecino_api_rejected_total", "reason" => self.label()).increment(1);
    }
}

/// Counts the refusal and answers it: `{"error": message}` with `code`.
pub(crate) fn refuse(reason: Reason, code: StatusCode, message: impl Into<String>) -> Response {
    reason.count();
    error(code, message)
}

#[derive(Debug)]
struct Tokens {
    write: Secret,
    read: Secret,
}

/// The API's access rules, shared by its listener and every request.
#[derive(Debug)]
pub struct Access {
    /// `None`: open.
    tokens: Option<Tokens>,
    /// The names besides the connection's own address and loopback.
    names: Vec<HostName>,
    /// The cookie's name.
    cookie: String,
    /// Event-stream subscribers at most.
    max_subscribers: usize,
    /// Event-stream subscribers now (at most `max_subscribers`).
    subscribers: AtomicUsize,
}

impl Access {
    /// Decides and loads (or creates) the tokens for an API bound on `bound`, and says in the
    /// log how the API is protected and where the token files are (never the tokens).
    pub fn setup(cfg: &Config, bound: SocketAddr) -> anyhow::Result<Access> {
        let decision = decide(bound.ip(), cfg.api_token.is_some(), cfg.api_read_token.is_some());
        let tokens = match decision {
            Decision::Open => {
                tracing::info!(api = %bound, "API open without a token (loopback, none set)");
                None
            }
            Decision::Tokens { write, read } => {
                let get = |source, given: &Option<Secret>, file| -> anyhow::Result<Secret> {
                    match (source, given) {
                        (Source::Setting, Some(t)) => Ok(t.clone()),
                        _ => {
                            let path = cfg.data_dir.join(file);
                            let (t, created) = load_or_create(&path)?;
                            if created {
                                tracing::warn!(file = %path.display(), "created an API token");
                            }
                            Ok(t)
                        }
                    }
                };
                let tokens = Tokens {
                    write: get(write, &cfg.api_token, WRITE_TOKEN_FILE)?,
                    read: get(read, &cfg.api_read_token, READ_TOKEN_FILE)?,
                };
                if tokens.write == tokens.read {
                    anyhow::bail!("the API's write and read tokens are the same");
                }
                let shown = |s: Source, file: &str| match s {
                    Source::Setting => "the setting".to_string(),
                    Source::File => cfg.data_dir.join(file).display().to_string(),
                };
                tracing::info!(
                    api = %bound,
                    write_token = %shown(write, WRITE_TOKEN_FILE),
                    read_token = %shown(read, READ_TOKEN_FILE),
                    "API requires a token (Authorization: Bearer, or ?token= for the radar)"
                );
                Some(tokens)
            }
        };
        Ok(Access::new(tokens, cfg, bound.port()))
    }

    fn new(tokens: Option<Tokens>, cfg: &Config, port: u16) -> Access {
        Access {
            tokens,
            names: cfg.api_names.iter().filter_map(|n| HostName::parse(n)).collect(),
            cookie: format!("{COOKIE_PREFIX}{port}"),
            max_subscribers: cfg.api_max_subscribers,
            subscribers: AtomicUsize::new(0),
        }
    }

    /// For tests: the rules with these tokens (`None`: open).
    pub fn with_tokens(cfg: &Config, port: u16, tokens: Option<(Secret, Secret)>) -> Access {
        Access::new(tokens.map(|(write, read)| Tokens { write, read }), cfg, port)
    }

    /// Whether every request is let in.
    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// The scope of a presented token, `None` when it is neither. Both tokens are compared,
    /// whichever matches.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let t = self.tokens.as_ref()?;
        let write = t.write.matches(presented.as_bytes());
        let read = t.read.matches(presented.as_bytes());
        match (write, read) {
            (true, _) => Some(Scope::Write),
            (false, true) => Some(Scope::Read),
            (false, false) => None,
        }
    }

    /// Whether a request with this `Host` (None: none given) arriving on a connection to
    /// `local` is for this API.
    pub fn host_allowed(&self, host: Option<&str>, local: SocketAddr) -> bool {
        host_allowed(host, local, &self.names)
    }

    /// A place among the event-stream subscribers, `None` at the cap.
    pub fn subscribe(self: &Arc<Self>) -> Option<Subscription> {
        let taken = self.subscribers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max_subscribers).then_some(n + 1)
        });
        taken.ok().map(|_| Subscription(self.clone()))
    }

    /// Event-stream subscribers now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }
}

/// A place among the event-stream subscribers, given back when dropped (with the stream).
#[derive(Debug)]
pub struct Subscription(Arc<Access>);

impl Drop for Subscription {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads the token in `path`, or creates the file (mode 0600, a new random token) when it is
/// missing. Refuses a file others can read, as the key file does. `true` when created.
pub fn load_or_create(path: &Path) -> anyhow::Result<(Secret, bool)> {
    match create(path) {
        Ok(t) => return Ok((t, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => anyhow::bail!("cannot create the API token file {}: {e}", path.display()),
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the API token file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is readable by others (mode {mode:04o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    let t = Secret::parse(text.lines().next().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("the API token in {}: {e}", path.display()))?;
    Ok((t, false))
}

fn create(path: &Path) -> std::io::Result<Secret> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let t = Secret::random()?;
    let written = file.write_all(format!("{}\n", t.0).as_bytes()).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(t)
}

/// The token files of a data directory (write, read).
pub fn token_files(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join(WRITE_TOKEN_FILE), data_dir.join(READ_TOKEN_FILE))
}

/// A `Host` header's value, or an `api_names` entry: a name or address, and maybe a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    /// Lower case; an IPv6 address without its brackets.
    pub host: String,
    /// The port, when given.
    pub port: Option<u16>,
}

impl HostName {
    /// `name`, `name:port`, `a.b.c.d[:port]`, `[v6][:port]`; `None` when malformed.
    pub fn parse(s: &str) -> Option<HostName> {
        let s = s.trim();
        // A bound: DNS names are at most 253 characters.
        if s.is_empty() || s.len() > 300 {
            return None;
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
            };
            (v6.to_string(), port)
        } else {
            let (host, port) = match s.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().ok()?)),
                None => (s, None),
            };
            let ok = !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !ok {
                return None;
            }
            (host.to_string(), port)
        };
        Some(HostName { host: host.to_ascii_lowercase(), port })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    }
}

/// The `Host` rule (see the module's documentation).
pub fn host_allowed(host: Option<&str>, local: SocketAddr, names: &[HostName]) -> bool {
    let local_ip = local.ip().to_canonical();
    let Some(host) = host else { return local_ip.is_loopback() };
    let Some(h) = HostName::parse(host) else { return false };
    let ip = h.ip();
    let this_host = ip == Some(local_ip)
        || h.host == "localhost"
        || h.host == "localhost."
        || ip.is_some_and(|ip| ip.is_loopback());
    if this_host && h.port.unwrap_or(80) == local.port() {
        return true;
    }
    names.iter().any(|n| n.host == h.host && n.port.is_none_or(|p| h.port == Some(p)))
}

/// The connection a request came on (put there by the API's listener).
pub(crate) fn conn_of(req: &Request) -> Option<Conn> {
    req.extensions().get::<ConnectInfo<Conn>>().map(|c| c.0.clone())
}

/// The `?token=` parameter of `uri`, and the URI without it (`None` when it had none).
fn take_token(uri: &Uri) -> (Option<String>, Option<Uri>) {
    let Some(query) = uri.query() else { return (None, None) };
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((TOKEN_PARAM, v)) => token = Some(percent_decode(v)),
            _ if pair == TOKEN_PARAM => token = Some(String::new()),
            _ => kept.push(pair),
        }
    }
    if token.is_none() {
        return (None, None);
    }
    let path = uri.path();
    let rebuilt =
        if kept.is_empty() { path.to_string() } else { format!("{path}?{}", kept.join("&")) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = rebuilt.parse().ok();
    (token, Uri::from_parts(parts).ok())
}

/// `%XX` decoding of a query value (`+` stays `+`: tokens have no spaces, and base64 ones
/// have `+`; anything not ASCII fails the token check anyway).
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token of an `Authorization: Bearer …` header; `Some("")` for another scheme (so a
/// wrong header is never passed over for the cookie).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?;
    let value = value.to_str().unwrap_or_default().trim();
    match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Some(t.trim().to_string()),
        _ => Some(String::new()),
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The authority (`host[:port]`) of an `Origin` header, lower case.
fn origin_authority(origin: &str) -> Option<String> {
    let rest = origin.split_once("://")?.1;
    Some(rest.trim_end_matches('/').to_ascii_lowercase())
}

fn unauthorized(message: &str, wrong: bool) -> Response {
    let mut r = refuse(Reason::Unauthorized, StatusCode::UNAUTHORIZED, message);
    let challenge = if wrong {
        "Bearer realm=\"vecino\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"vecino\""
    };
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

/// The gate every request passes: `Host`, token, scope, origin (see the module's
/// documentation).
pub(crate) async fn gate(mut req: Request, next: Next) -> Response {
    let Some(conn) = conn_of(&req) else {
        // Only the API's own listener serves this router; anything else is a bug: fail closed.
        return error(StatusCode::INTERNAL_SERVER_ERROR, "no connection information");
    };
    let access = conn.access();
    let host = match req.headers().get(header::HOST).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(h)) => Some(h.to_string()),
        Some(Err(_)) => Some(String::new()),
    };
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    let host_ok = access.host_allowed(host.as_deref(), conn.local())
        && authority.as_deref().is_none_or(|a| access.host_allowed(Some(a), conn.local()));
    if !host_ok {
        let shown: String = host.as_deref().unwrap_or("(none)").chars().take(64).collect();
        return refuse(
            Reason::Misdirected,
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this API is not served under the name {shown:?}: use its address, localhost, \
                 or a name in api_names"
            ),
        );
    }
    let (query_token, stripped) = take_token(req.uri());
    if let Some(uri) = stripped {
        *req.uri_mut() = uri;
    }
    let mut set_cookie = None;
    let scope = if access.is_open() || req.uri().path() == "/healthz" {
        Scope::Write
    } else {
        let from_header = bearer(req.headers());
        let from_query = from_header.is_none().then_some(query_token).flatten();
        let via_query = from_query.is_some();
        let presented =
            from_header.or(from_query).or_else(|| cookie(req.headers(), &access.cookie));
        let Some(presented) = presented else {
            return unauthorized(
                "a token is needed: Authorization: Bearer <token> (see api.token in the data \
                 directory), or ?token= on a browser page",
                false,
            );
        };
        let Some(scope) = access.scope_of(&presented) else {
            return unauthorized("wrong token", true);
        };
        if via_query {
            set_cookie =
                Some(format!("{}={presented}; Path=/; HttpOnly; SameSite=Strict", access.cookie));
        }
        scope
    };
    if !is_read(req.method()) {
        if scope == Scope::Read {
            return refuse(
                Reason::Forbidden,
                StatusCode::FORBIDDEN,
                "the read token may only GET: use the write token (api.token)",
            );
        }
        let origin = req.headers().get(header::ORIGIN).map(|o| o.to_str().unwrap_or_default());
        if let Some(origin) = origin {
            let same = origin_authority(origin)
                .is_some_and(|a| host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&a)));
            if !same {
                return refuse(
                    Reason::CrossOrigin,
                    StatusCode::FORBIDDEN,
                    "a write from a page of another origin",
                );
            }
        }
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    // A token in a page's URL must not leave in a Referer.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.append(header::SET_COOKIE, c);
    }
    response
}

/// The refusal of an event stream over the cap (503 with `Retry-After`).
pub(crate) fn too_many_subscribers(access: &Access) -> Response {
    let mut r = refuse(
        Reason::TooManySubscribers,
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "too many event-stream subscribers (api_max_subscribers = {})",
            access.max_subscribers
        ),
    );
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(SUBSCRIBER_RETRY_SECS));
    r
}

/// Makes every error a JSON body `{"error": …}`: the extractors' rejections (query strings,
/// bodies), 405 and anything else answered as text or with no body keep their status and
/// headers and get their text as the message (at most 4 KiB of it is read).
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_ascii_lowercase()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::json!({ "error": message }).to_string();
    Response::from_parts(parts, axum::body::Body::from(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn open_only_on_loopback_without_tokens() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(decide(lo, false, false), Decision::Open);
        assert_eq!(decide("127.3.2.1".parse().unwrap(), false, false), Decision::Open);
        assert_eq!(decide("::1".parse().unwrap(), false, false), Decision::Open);
        let files = Decision::Tokens { write: Source::File, read: Source::File };
        assert_eq!(decide("0.0.0.0".parse().unwrap(), false, false), files);
        assert_eq!(decide("::".parse().unwrap(), false, false), files);
        assert_eq!(decide("192.168.1.5".parse().unwrap(), false, false), files);
        assert_eq!(decide("::ffff:10.0.0.1".parse().unwrap(), false, false), files);
        assert_eq!(
            decide(lo, true, false),
            Decision::Tokens { write: Source::Setting, read: Source::File },
            "a token set explicitly is required on loopback too"
        );
        assert_eq!(
            decide("10.1.1.1".parse().unwrap(), true, true),
            Decision::Tokens { write: Source::Setting, read: Source::Setting }
        );
    }

    #[test]
    fn token_files_are_created_private_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WRITE_TOKEN_FILE);
        let (a, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(a.expose().len(), 64, "256 bits as hex");
        let (b, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a, b, "kept across restarts");
        let (c, _) = load_or_create(&dir.path().join(READ_TOKEN_FILE)).unwrap();
        assert_ne!(a, c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create(&path).unwrap_err().to_string();
            assert!(e.contains("readable by others"), "{e}");
        }
        assert!(!format!("{a:?}").contains(a.expose()), "Debug hides the token");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(Secret::parse("short").is_err());
        assert!(Secret::parse("has spaces in the middle!").is_err());
        assert!(Secret::parse("0123456789abcdef").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WRITE_TOKEN_FILE);
        std::fs::write(&path, "x\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(load_or_create(&path).is_err(), "a short token in the file is refused");
    }

    #[test]
    fn hosts_are_the_address_loopback_or_a_configured_name() {
        let names = vec![
            HostName::parse("vecino.example").unwrap(),
            HostName::parse("radar.lan:8443").unwrap(),
        ];
        let lo = local("127.0.0.1:7400");
        let ok = |h: Option<&str>, l: SocketAddr| host_allowed(h, l, &names);
        assert!(ok(Some("127.0.0.1:7400"), lo));
        assert!(ok(Some("localhost:7400"), lo));
        assert!(ok(Some("LOCALHOST:7400"), lo));
        assert!(ok(Some("[::1]:7400"), lo));
        assert!(!ok(Some("evil.example:7400"), lo), "DNS rebinding");
        assert!(!ok(Some("localhost:7401"), lo), "another port");
        assert!(!ok(Some("localhost"), lo), "no port is port 80");
        assert!(ok(Some("vecino.example"), lo));
        assert!(ok(Some("vecino.example:443"), lo), "a name without a port takes any");
        assert!(ok(Some("radar.lan:8443"), lo));
        assert!(!ok(Some("radar.lan"), lo), "a name with a port needs it");
        assert!(!ok(Some("radar.lan:8444"), lo));
        assert!(ok(None, lo), "HTTP/1.0 without Host, over loopback");
        assert!(!ok(Some(""), lo));
        assert!(!ok(Some("a b:7400"), lo));
        // Bound to 0.0.0.0: the address the client connected to.
        let lan = local("192.168.1.5:7400");
        assert!(ok(Some("192.168.1.5:7400"), lan));
        assert!(!ok(Some("192.168.1.6:7400"), lan));
        assert!(!ok(None, lan), "no Host only over loopback");
        assert!(ok(Some("localhost:7400"), lan));
        let v6 = local("[::ffff:192.168.1.5]:7400");
        assert!(ok(Some("192.168.1.5:7400"), v6), "IPv4-mapped");
        let v6 = local("[fd00::5]:7400");
        assert!(ok(Some("[fd00::5]:7400"), v6));
        assert!(!ok(Some("fd00::5:7400"), v6), "v6 needs brackets");
    }

    #[test]
    fn the_token_parameter_is_taken_out_of_the_url() {
        let uri: Uri = "/v1/radar?posts=5&token=abc%2Bd&postcards=1".parse().unwrap();
        let (t, rest) = take_token(&uri);
        assert_eq!(t.as_deref(), Some("abc+d"));
        assert_eq!(rest.unwrap().to_string(), "/v1/radar?posts=5&postcards=1");
        let (t, rest) = take_token(&"/?token=x".parse().unwrap());
        assert_eq!((t.as_deref(), rest.unwrap().to_string().as_str()), (Some("x"), "/"));
        assert_eq!(take_token(&"/v1/posts?since=3".parse().unwrap()), (None, None));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn bearer_cookie_and_origin_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h).as_deref(), Some(""));
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; vecino_token_7300=tok"));
        assert_eq!(cookie(&h, "vecino_token_7300").as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "vecino_token_7301"), None);
        assert_eq!(origin_authority("http://127.0.0.1:7300").as_deref(), Some("127.0.0.1:7300"));
        assert_eq!(origin_authority("null"), None);
    }
}
