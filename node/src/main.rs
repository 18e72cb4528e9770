//! `vecino`: run a vecino peer, and talk to it.
//!
//! `vecino run` starts the peer (see `vecino run --help` for every setting; each is also a
//! `VECINO_*` environment variable and a key of the `--config` TOML file). `members`,
//! `opinions`, `barrios`, `rtt`, `post`, `tail`, `status`, `health` and `links` are clients of the running
//! peer's local API; `init`, `keygen` and `id` manage the peer's identity.
//!
//! Output rules, for every command: text that came from the network is printed through
//! [`client::clean`] (human-readable) or [`client::json_text`] (`--json`), so control and
//! bidirectional-override characters show as escapes; a closed standard output (`vecino status |
//! head -1`) ends the command quietly with exit status 0; an error is one line, `error: ` and its
//! causes, each said once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use vecino::client::{self, Client, StdoutClosed, Token, cell, clean, table};
use vecino::config::{API_ADDR_FILE, Config, Settings};
use vecino::node::Node;
use vecino::{api, keyfile, peer, telemetry};
use vecino_proto::Identity;

/// `print!` to standard output, returning early with [`StdoutClosed`] when the reader is gone.
macro_rules! out {
    ($($t:tt)*) => { client::print_out(format_args!($($t)*))? };
}

/// `println!` to standard output, returning early with [`StdoutClosed`] when the reader is gone.
macro_rules! outln {
    () => { client::print_out(format_args!("\n"))? };
    ($($t:tt)*) => { client::print_out(format_args!("{}\n", format_args!($($t)*)))? };
}

/// vecino: a peer-to-peer overlay node (one per host).
#[derive(Debug, Parser)]
#[command(name = "vecino", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The node's API address [default: from <data-dir>/api.addr, else 127.0.0.1:7300]
    #[arg(long, env = "VECINO_API", value_name = "ADDR", global = true)]
    api: Option<String>,
    /// The node's data directory, to find its API address and token
    #[arg(long, env = "VECINO_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// API token, sent as `Authorization: Bearer` [default: <data-dir>/api.token if there is
    /// one and --api is that node's; else none]
    #[arg(
        long,
        env = "VECINO_API_TOKEN",
        value_name = "TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<Token>,
    /// Print JSON
    #[arg(long, global = true)]
    json: bool,
}

impl ClientArgs {
    fn client(&self) -> Client {
        Client::for_operator(self.api.as_deref(), self.data_dir.as_deref(), self.token.clone())
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the peer (until SIGTERM or Ctrl-C, which say chau to the neighbours and flush).
    ///
    /// A data directory given with --data-dir, VECINO_DATA_DIR or the config file must exist
    /// (a typo must not make a new peer): `vecino init` or `--init` creates a new identity. The
    /// default one ($XDG_DATA_HOME/vecino) is created on first run, and an existing empty
    /// directory gets a new key.
    Run {
        /// Config file (TOML); flags and VECINO_* variables override it
        #[arg(long, short, env = "VECINO_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Check the settings, print them resolved, and exit
        #[arg(long)]
        check_config: bool,
        /// Create the data directory (0700) and a new identity if they are missing, as `vecino
        /// init` does; an existing identity is used as it is
        #[arg(long)]
        init: bool,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Create a new peer: the data directory (mode 0700) and its key; print the peer id and the
    /// paths. Refuses if the key already exists.
    Init {
        /// Config file (TOML) whose data_dir and key to use; flags and VECINO_* override it
        #[arg(long, short, env = "VECINO_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Data directory [default: $XDG_DATA_HOME/vecino]
        #[arg(long, env = "VECINO_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The key file [default: <data-dir>/identity.pem]
        #[arg(long, env = "VECINO_KEY", value_name = "PATH")]
        key: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the peers this node knows (like `serf members`).
    Members {
        #[command(flatten)]
        c: ClientArgs,
    },
    /// What this node believes about each peer's liveness (online, unreachable, offline), and
    /// why: the clout-weighted word of the observers.
    ///
    /// Without PEER, one line per peer this node holds claims about: its status, the clout
    /// saying online and offline, the consensus restarts, start and uptime, and how many
    /// observers spoke. With PEER, that peer's consensus and every observer's claim with its
    /// clout here (tenure × agreement × proximity; this node's own word weighs as much as the most
    /// trusted other observer's). A claim "offline" made before the peer's
    /// own last word does not count ("offline, older").
    Opinions {
        /// Only this peer: peer id, key or member name
        peer: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Barrios: this node's, and every barrio it holds a member's slot of.
    ///
    /// Without ID, one line per barrio: id, name, member count, head, and the members' mean
    /// health (median RTT, share of links down, share of frames retransmitted); `*` marks this
    /// node's. With ID (16 hex digits, as listed), that barrio with its centroid and members.
    Barrios {
        /// Only this barrio: its id, 16 hex digits
        id: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Estimated round-trip time between two peers, or from this one (like `consul rtt`).
    Rtt {
        /// A peer: peer id, key or name
        a: String,
        /// Another peer [default: this node]
        b: Option<String>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Broadcast a post to every peer.
    Post {
        /// Topic (1 to 128 bytes)
        topic: String,
        /// Text (up to 48 KiB)
        text: String,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Send a postcard: a message to one peer, sealed to it, routed by proximity and kept in
    /// custody hop by hop until it arrives (across partitions) or its lifetime passes.
    Postcard {
        /// The destination: peer id, key or member name
        peer: String,
        /// Text (up to 48 KiB)
        text: String,
        /// How long it may travel, seconds (at most 86400) [default: the node's, 600]
        #[arg(long, value_name = "SECS")]
        lifetime: Option<u64>,
        /// Wait up to this many seconds for its receipt, and say how it went
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// List the postcards received here and sent from here, with their status.
    Postcards {
        /// Only those sent from here
        #[arg(long, conflicts_with = "inbox")]
        sent: bool,
        /// Only those received here
        #[arg(long)]
        inbox: bool,
        /// Show the newest this many
        #[arg(long, short, default_value_t = 20)]
        n: usize,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Print posts as they arrive (optionally of one topic), after the ones already here.
    Tail {
        /// Only this topic
        topic: Option<String>,
        /// Show this many stored posts first
        #[arg(long, short, default_value_t = 10)]
        n: usize,
        #[command(flatten)]
        c: ClientArgs,
    },
    /// This node's status.
    Status {
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Exit 0 if the node answers `GET /healthz` (a container health check: the image has no
    /// shell and no HTTP client), else print why and exit 1.
    Health {
        #[command(flatten)]
        c: ClientArgs,
    },
    /// This node's neighbour links: connected, suspected or disconnected.
    Links {
        #[command(flatten)]
        c: ClientArgs,
    },
    /// Create a new peer key (PKCS#8 PEM, mode 0600); never overwrites an existing one.
    Keygen {
        /// Where to write the key [default: $XDG_DATA_HOME/vecino/identity.pem]
        #[arg(long, short, env = "VECINO_KEY", value_name = "PATH")]
        out: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a small real network on this machine (peers through the link shim) and print
    /// the radar URL; runs until Ctrl-C.
    Demo(vecino::demo::DemoArgs),
    /// Show the peer id and public key of a key file.
    Id {
        /// The key file [default: $XDG_DATA_HOME/vecino/identity.pem]
        #[arg(long, short, env = "VECINO_KEY", value_name = "PATH")]
        key: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn key_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    given.or_else(keyfile::default_key_path).context(
        "cannot tell where the key lives: no home directory; pass --key/--out or set VECINO_KEY",
    )
}

fn show(identity: &Identity, path: &Path, json: bool, created: bool) -> anyhow::Result<()> {
    let peer_id = peer::peer_id(identity);
    if json {
        let v = json!({
            "peer_id": peer_id.to_base58(),
            "public_key": identity.public().to_string(),
            "key_type": "ed25519",
            "key_file": path.display().to_string(),
        });
        outln!("{}", client::json_text(&v, false));
        return Ok(());
    }
    let path = path.display().to_string();
    if created {
        outln!("created {}", clean(&path));
    }
    outln!("peer id:    {peer_id}");
    outln!("public key: {} (ed25519)", identity.public());
    outln!("key file:   {}", clean(&path));
    Ok(())
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    outln!("{}", client::json_text(v, true));
    Ok(())
}

/// A peer id, shortened to its tail (and [`clean`]ed: it came from the API).
fn short(pid: &str) -> String {
    let pid = clean(pid);
    match pid.char_indices().rev().nth(11) {
        Some((i, _)) if pid.chars().count() > 16 => format!("…{}", &pid[i..]),
        _ => pid.into_owned(),
    }
}

/// Why `vecino run` or `vecino init` will not use or make a data directory or key.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    /// An explicitly given data directory is missing (a typo must not make a new peer).
    #[error(
        "no data directory at {0}; `vecino init --data-dir {0}` creates a new identity there, or `vecino run --init`"
    )]
    NoDataDir(PathBuf),
    /// The key's directory is missing.
    #[error(
        "no directory {dir} for the key file {key}; `vecino init --key {key}` creates a new identity there, or `vecino run --init`"
    )]
    NoKeyDir { dir: PathBuf, key: PathBuf },
    /// The data directory holds a store (a peer's history) but the key is missing: most
    /// likely a typo in `--key`; a new identity would take over another's history.
    #[error(
        "no key file at {key}, but {store} holds a peer's history; point --key at that peer's key, or `vecino run --init` to start a new identity on it"
    )]
    NoKeyForStore { key: PathBuf, store: PathBuf },
    /// The data directory is a file.
    #[error("data directory {0} is not a directory")]
    NotADir(PathBuf),
    /// `vecino init` found a key.
    #[error(
        "{key} already holds peer {peer}: `vecino init` only makes new identities (`vecino run` runs this one; move the key away first for a new one)"
    )]
    Exists { key: PathBuf, peer: String },
    /// The key path exists but is no key (`vecino init`).
    #[error("{0} exists and is not a key file; `vecino init` will not replace it")]
    NotAKey(PathBuf),
    /// Creating or looking at the data directory failed.
    #[error("data directory {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// Checks (and with `create`, makes) the data directory and the key's directory: an explicitly
/// given data directory must exist unless `init`; the default one is created on first run.
fn prepare_dirs(cfg: &Config, init: bool, create: bool) -> Result<(), SetupError> {
    let is_default = keyfile::default_data_dir().as_deref() == Some(cfg.data_dir.as_path());
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| SetupError::Io { path, error }
    };
    match std::fs::metadata(&cfg.data_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(SetupError::NotADir(cfg.data_dir.clone())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !init && !is_default {
                return Err(SetupError::NoDataDir(cfg.data_dir.clone()));
            }
            if create {
                create_private_dir(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
            }
        }
        Err(e) => return Err(io(&cfg.data_dir)(e)),
    }
    if !init && std::fs::symlink_metadata(&cfg.key).is_err() {
        let store = cfg.data_dir.join(vecino::config::STORE_FILE);
        if store.exists() {
            return Err(SetupError::NoKeyForStore { key: cfg.key.clone(), store });
        }
        let dir = cfg.key.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = dir
            && dir != cfg.data_dir
            && !dir.is_dir()
        {
            return Err(SetupError::NoKeyDir { dir: dir.to_owned(), key: cfg.key.clone() });
        }
    }
    Ok(())
}

/// `vecino init`: a new data directory and key; refuses an existing key.
fn init(
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
    key: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let cfg = Config::load(config, Settings { data_dir, key, ..Settings::default() })?;
    match keyfile::load(&cfg.key) {
        Err(keyfile::KeyFileError::NotFound(_)) => {}
        Ok(id) => {
            let peer = peer::peer_id(&id).to_string();
            return Err(SetupError::Exists { key: cfg.key.clone(), peer }.into());
        }
        Err(_) if cfg.key.exists() => return Err(SetupError::NotAKey(cfg.key.clone()).into()),
        Err(e) => return Err(e.into()),
    }
    prepare_dirs(&cfg, true, true)?;
    let identity = keyfile::create(&cfg.key)?;
    let peer_id = peer::peer_id(&identity);
    if json {
        let v = json!({
            "peer_id": peer_id.to_base58(),
            "public_key": identity.public().to_string(),
            "key_type": "ed25519",
            "key_file": cfg.key.display().to_string(),
            "data_dir": cfg.data_dir.display().to_string(),
        });
        outln!("{}", client::json_text(&v, false));
        return Ok(());
    }
    outln!("created a new peer");
    outln!("peer id:    {peer_id}");
    outln!("public key: {} (ed25519)", identity.public());
    outln!("key file:   {}", clean(&cfg.key.display().to_string()));
    outln!("data dir:   {}", clean(&cfg.data_dir.display().to_string()));
    Ok(())
}

/// Raises the soft open-file limit to the hard one (as Go's runtime and most servers do: a
/// shell's default of 1024, or a `ulimit -n 256`, would otherwise let a burst of connections
/// starve the API's accept), and warns, with the numbers, when even the hard limit is below
/// what this configuration may hold open.
fn raise_open_file_limit(cfg: &Config) {
    // Transport connections (connection_limits: established, and pending each way), API
    // connections, and a margin for the store, listeners, DNS and logs.
    use vecino::transport::{MAX_PENDING_CONNECTIONS, max_established};
    let pending = 2 * MAX_PENDING_CONNECTIONS as usize;
    let want = max_established(cfg.gossip.max_links) + pending + cfg.api_max_connections + 64;
    let want = want as u64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < want => tracing::warn!(
            limit,
            want,
            "the open-file limit is below what this node may hold open; a flood of connections \
             can starve its API (raise it: `ulimit -n`, or LimitNOFILE= under systemd)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}

fn run_node(
    config: Option<&Path>,
    check: bool,
    init: bool,
    settings: Settings,
) -> anyhow::Result<()> {
    let cfg = Config::load(config, settings)?;
    if check {
        prepare_dirs(&cfg, init, false)?;
        if cfg.key.exists() {
            let id = keyfile::load(&cfg.key)?;
            if let Some(f) = &cfg.emulate_links {
                vecino::shim::Shim::load(f, &peer::peer_id(&id))?;
            }
        }
        out!("{}", cfg.to_toml());
        {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "config ok");
        }
        return Ok(());
    }
    prepare_dirs(&cfg, init, true)?;
    telemetry::init_logs(&cfg.log, cfg.log_format);
    raise_open_file_limit(&cfg);
    let metrics = telemetry::init_metrics()?;
    let (identity, created) = keyfile::load_or_create(&cfg.key)?;
    if created {
        tracing::info!(key = %cfg.key.display(), "created a new peer key");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let data_dir = cfg.data_dir.clone();
    let result = runtime.block_on(async move {
        let (node, shared, listener) = Node::start(cfg, identity, metrics).await?;
        let api_addr = listener.local_addr()?;
        let addr_file = data_dir.join(API_ADDR_FILE);
        let tmp = data_dir.join(format!("{API_ADDR_FILE}.tmp"));
        // A client on this host reaches an API bound to every address (0.0.0.0, ::) over
        // loopback, under a name the Host check accepts.
        let reach = match api_addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
                std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, api_addr.port()))
            }
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, api_addr.port()))
            }
            _ => api_addr,
        };
        std::fs::write(&tmp, format!("{reach}\n"))
            .and_then(|()| std::fs::rename(&tmp, &addr_file))
            .with_context(|| format!("cannot write {}", addr_file.display()))?;
        tracing::info!(peer = %node.peer_id(), api = %format!("http://{api_addr}"), "vecino is up");
        // Nobody reading the node's standard output is no reason to stop it.
        if client::print_out(format_args!("vecino {} api http://{api_addr}\n", node.peer_id()))
            .is_err()
        {
            tracing::debug!("standard output is closed");
        }
        if let Err(e) = vecino::systemd::notify("READY=1") {
            tracing::warn!("cannot tell systemd we are ready: {e}");
        }
        let server = axum::serve(listener, api::router(shared));
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!("API server failed: {e}");
            }
        });
        let result = node.run(shutdown_signal()).await;
        let _ = std::fs::remove_file(&addr_file);
        result
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
    let _ = vecino::systemd::notify("STOPPING=1");
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn members(c: &ClientArgs) -> anyhow::Result<()> {
    let v = c.client().get("/v1/members")?;
    if c.json {
        print_json(&v)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let link =
                if m["self"] == Value::Bool(true) { "self".into() } else { cell(&m["link"]) };
            vec![
                cell(&m["name"]),
                short(m["peer_id"].as_str().unwrap_or("")),
                m["addrs"].get(0).map(cell).unwrap_or_else(|| "-".into()),
                cell(&m["status"]),
                cell(&m["liveness"]),
                link,
                cell(&m["rtt_ms"]),
                cell(&m["estimated_rtt_ms"]),
                fixed(&m["clout"]["value"], 3),
            ]
        })
        .collect();
    let header =
        ["NAME", "PEER", "ADDRESS", "STATUS", "LIVENESS", "LINK", "RTT_MS", "EST_MS", "CLOUT"];
    out!("{}", table(&header, &rows));
    Ok(())
}

fn barrios(c: &ClientArgs, id: Option<&str>) -> anyhow::Result<()> {
    let client = c.client();
    let label = |b: &Value| format!("{} {}", cell(&b["emoji"]), cell(&b["name"]));
    let Some(id) = id else {
        let v = client.get("/v1/barrios")?;
        if c.json {
            print_json(&v)?;
            return Ok(());
        }
        let own = &v["barrio"];
        match own["id"].as_str() {
            Some(_) => outln!(
                "this node: {} {} ({} changes)",
                cell(&own["id"]),
                label(own),
                cell(&own["changes"])
            ),
            None => outln!("this node: no barrio yet (its coordinate has not settled)"),
        }
        let rows: Vec<Vec<String>> = v["barrios"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let h = &b["health"];
                vec![
                    if b["own"] == Value::Bool(true) { "*".into() } else { String::new() },
                    cell(&b["id"]),
                    label(b),
                    cell(&b["count"]),
                    b["head"].as_str().map_or_else(|| "-".into(), short),
                    fixed(&h["rtt_ms"], 1),
                    fixed(&h["links_down_share"], 2),
                    fixed(&h["retransmit_share"], 3),
                ]
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        outln!();
        let header = ["", "ID", "NAME", "MEMBERS", "HEAD", "RTT_MS", "DOWN", "RETRANSMIT"];
        out!("{}", table(&header, &rows));
        return Ok(());
    };
    let b = client.get(&format!("/v1/barrios?id={}", urlencode(id)))?;
    if c.json {
        print_json(&b)?;
        return Ok(());
    }
    let own = if b["own"] == Value::Bool(true) { " (this node's)" } else { "" };
    outln!("barrio:   {} {}{own}", cell(&b["id"]), label(&b));
    outln!("head:     {}", cell(&b["head"]));
    let centroid: Vec<String> =
        b["centroid_ms"].as_array().into_iter().flatten().map(|x| fixed(x, 2)).collect();
    outln!("centroid: [{}] ms, height {} ms", centroid.join(", "), fixed(&b["height_ms"], 2));
    let health: Vec<String> = b["health"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{} {}", clean(k), fixed(v, 3)))
        .collect();
    outln!("health:   {}", if health.is_empty() { "-".into() } else { health.join(", ") });
    // Members by name where this node knows one.
    let names: std::collections::HashMap<String, String> = client
        .get("/v1/members")
        .ok()
        .and_then(|m| m.as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["peer_id"].as_str()?.to_string(), m["name"].as_str()?.to_string())))
        .collect();
    let rows: Vec<Vec<String>> = b["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let pid = m.as_str().unwrap_or("");
            let name = names.get(pid).map_or_else(|| "-".into(), |n| clean(n).into_owned());
            let head = if b["head"].as_str() == Some(pid) { "head" } else { "" };
            vec![name, clean(pid).into_owned(), head.into()]
        })
        .collect();
    if !rows.is_empty() {
        outln!();
        out!("{}", table(&["MEMBER", "PEER", ""], &rows));
    }
    Ok(())
}

/// A number with `digits` decimals, `-` when it is none.
fn fixed(v: &Value, digits: usize) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// Milliseconds since the epoch as a UTC time, `2025-12-07 11:59:03`; `-` when none.
fn utc(v: &Value) -> String {
    let Some(ms) = v.as_u64().filter(|ms| *ms > 0) else { return "-".into() };
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted).
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Seconds as `45s`, `12m05s`, `3h05m`, `2d04h`; `-` when none.
fn span(v: &Value) -> String {
    let Some(s) = v.as_u64() else { return "-".into() };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// Milliseconds since the epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A peer's name, else its shortened peer id.
fn who(name: &Value, peer_id: &Value) -> String {
    match name.as_str().filter(|n| !n.is_empty()) {
        Some(n) => clean(n).into_owned(),
        None => short(peer_id.as_str().unwrap_or("")),
    }
}

fn opinions(c: &ClientArgs, peer: Option<&str>) -> anyhow::Result<()> {
    let client = c.client();
    let Some(peer) = peer else {
        let v = client.get("/v1/opinions")?;
        if c.json {
            print_json(&v)?;
            return Ok(());
        }
        let mut list: Vec<&Value> = v.as_array().into_iter().flatten().collect();
        let key = |o: &Value| {
            (
                o["name"].as_str().unwrap_or("").to_string(),
                o["peer_id"].as_str().unwrap_or("").to_string(),
            )
        };
        list.sort_by_cached_key(|o| key(o));
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|o| {
                vec![
                    cell(&o["name"]),
                    short(o["peer_id"].as_str().unwrap_or("")),
                    cell(&o["status"]),
                    fixed(&o["weight_online"], 3),
                    fixed(&o["weight_offline"], 3),
                    cell(&o["restarts"]),
                    utc(&o["started_ms"]),
                    span(&o["uptime_s"]),
                    cell(&o["observers"]),
                ]
            })
            .collect();
        let header = [
            "NAME",
            "PEER",
            "STATUS",
            "W_ONLINE",
            "W_OFFLINE",
            "RESTARTS",
            "STARTED_UTC",
            "UPTIME",
            "OBSERVERS",
        ];
        out!("{}", table(&header, &rows));
        return Ok(());
    };
    let o = client.get(&format!("/v1/opinions?peer={}", urlencode(peer)))?;
    if c.json {
        print_json(&o)?;
        return Ok(());
    }
    outln!("peer:     {} {}", cell(&o["name"]), cell(&o["peer_id"]));
    let left = if o["left"] == Value::Bool(true) { ", said chau" } else { "" };
    match o["status"].as_str() {
        Some(_) => outln!(
            "status:   {} (clout saying online {}, offline {}{left})",
            cell(&o["status"]),
            fixed(&o["weight_online"], 3),
            fixed(&o["weight_offline"], 3)
        ),
        None => outln!("status:   unknown: no observer has made a claim about it yet{left}"),
    }
    outln!(
        "consensus: {} restarts, started {} UTC, up {}, rtt {} ms",
        cell(&o["restarts"]),
        utc(&o["started_ms"]),
        span(&o["uptime_s"]),
        fixed(&o["rtt_ms"], 1)
    );
    let now = now_ms();
    let rows: Vec<Vec<String>> = o["claims"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let ob = &c["observer"];
            let name = if ob["self"] == Value::Bool(true) {
                format!("{} (this node)", who(&ob["name"], &ob["peer_id"]))
            } else {
                who(&ob["name"], &ob["peer_id"])
            };
            let says = match (c["online"].as_bool(), c["stands"].as_bool()) {
                (Some(true), _) => "online",
                (_, Some(true)) => "offline",
                _ => "offline, older",
            };
            let age = c["at_ms"].as_u64().map(|at| json!(now.saturating_sub(at) / 1000));
            let cl = &c["clout"];
            // This node's own word weighs as much as the most trusted other observer's: its
            // parts are not the ones that made the value.
            let own = ob["self"] == Value::Bool(true);
            let part = |v: &Value, digits| if own { "-".into() } else { fixed(v, digits) };
            vec![
                name,
                short(ob["peer_id"].as_str().unwrap_or("")),
                says.into(),
                cell(&c["restarts"]),
                // A start that denies the peer's own signed one is left out of the consensus.
                if c["denies_start"] == Value::Bool(true) {
                    format!("{} (denied)", utc(&c["started_ms"]))
                } else {
                    utc(&c["started_ms"])
                },
                span(&c["uptime_s"]),
                fixed(&c["rtt_ms"], 1),
                age.map_or_else(|| "-".into(), |a| format!("{} ago", span(&a))),
                fixed(&cl["value"], 3),
                part(&cl["tenure"], 2),
                part(&cl["agreement"], 2),
                part(&cl["proximity"], 1),
            ]
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    outln!();
    let header = [
        "OBSERVER",
        "PEER",
        "SAYS",
        "RESTARTS",
        "STARTED_UTC",
        "UPTIME",
        "RTT_MS",
        "SAID",
        "CLOUT",
        "TENURE",
        "AGREEMENT",
        "PROXIMITY",
    ];
    out!("{}", table(&header, &rows));
    Ok(())
}

fn links(c: &ClientArgs) -> anyhow::Result<()> {
    let v = c.client().get("/v1/links")?;
    if c.json {
        print_json(&v)?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                cell(&l["name"]),
                short(l["peer_id"].as_str().unwrap_or("")),
                cell(&l["status"]),
                format!("{:.0}s", l["since_s"].as_f64().unwrap_or(0.0)),
                cell(&l["rtt_ms"]),
                if l["eager"] == Value::Bool(true) { "eager".into() } else { "lazy".into() },
                cell(&l["queued_bytes"]),
            ]
        })
        .collect();
    out!("{}", table(&["NAME", "PEER", "STATUS", "SINCE", "RTT_MS", "TREE", "QUEUED_B"], &rows));
    Ok(())
}

fn status(c: &ClientArgs) -> anyhow::Result<()> {
    let v = c.client().get("/v1/status")?;
    if c.json {
        print_json(&v)?;
        return Ok(());
    }
    outln!("peer id:   {}", cell(&v["peer_id"]));
    outln!("name:      {}", cell(&v["name"]));
    outln!("version:   {}   uptime {}s", cell(&v["version"]), cell(&v["uptime_s"]));
    outln!("api:       http://{}", cell(&v["api"]));
    for a in v["dial"].as_array().into_iter().flatten() {
        outln!("dial:      {}", cell(a));
    }
    outln!(
        "members:   {} alive, {} left",
        cell(&v["members"]["alive"]),
        cell(&v["members"]["left"])
    );
    let l = &v["links"];
    outln!(
        "links:     {} connected, {} suspected, {} disconnected",
        cell(&l["connected"]),
        cell(&l["suspected"]),
        cell(&l["disconnected"])
    );
    outln!("coord err: {}", cell(&v["coordinate"]["error"]));
    Ok(())
}

fn postcard(
    c: &ClientArgs,
    peer: &str,
    text: &str,
    lifetime: Option<u64>,
    wait: Option<u64>,
) -> anyhow::Result<()> {
    let client = c.client();
    let mut body = json!({"to": peer, "text": text});
    if let Some(l) = lifetime {
        body["lifetime_s"] = json!(l);
    }
    let v = client.post("/v1/postcards", &body)?;
    let id = v["id"].as_str().unwrap_or_default().to_string();
    let shown_id = clean(&id).into_owned();
    let Some(wait) = wait else {
        if c.json {
            print_json(&v)?;
        } else {
            outln!(
                "postcard {shown_id} to {}: {}",
                short(&cell(&v["peer_id"])),
                cell(&v["status"])
            );
        }
        return Ok(());
    };
    // Follow its record until it is delivered or expires, or the wait is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(wait);
    let cursor = v["cursor"].as_u64().unwrap_or(1);
    let mut last = v;
    while std::time::Instant::now() < deadline {
        let page = client.get(&format!("/v1/postcards?box=sent&since={}&limit=1", cursor - 1))?;
        if let Some(r) =
            page["postcards"].as_array().and_then(|a| a.first()).filter(|r| r["id"] == id.as_str())
        {
            last = r.clone();
            if matches!(r["status"].as_str(), Some("delivered" | "expired")) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if c.json {
        print_json(&last)?;
        return Ok(());
    }
    let status = cell(&last["status"]);
    let path: Vec<String> = last["path"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| short(p.as_str().unwrap_or("")))
        .collect();
    match status.as_str() {
        "delivered" => outln!("postcard {shown_id} delivered via {}", path.join(" > ")),
        other => outln!("postcard {shown_id}: {other} (no receipt within {wait} s)"),
    }
    Ok(())
}

fn postcards(c: &ClientArgs, mailbox: Option<&str>, n: usize) -> anyhow::Result<()> {
    let client = c.client();
    let q = mailbox.map(|b| format!("&box={b}")).unwrap_or_default();
    let mut since = 0u64;
    let mut all: Vec<Value> = Vec::new();
    loop {
        let page = client.get(&format!("/v1/postcards?since={since}&limit=10000{q}"))?;
        let cards = page["postcards"].as_array().cloned().unwrap_or_default();
        since = page["next"].as_u64().unwrap_or(since);
        let done = cards.len() < 10_000;
        all.extend(cards);
        if all.len() > n {
            all.drain(..all.len() - n);
        }
        if done {
            break;
        }
    }
    if c.json {
        print_json(&Value::Array(all))?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|p| {
            let hops = p["path"].as_array().map_or(0, |a| a.len().saturating_sub(1));
            vec![
                cell(&p["box"]),
                short(p["peer_id"].as_str().unwrap_or("")),
                cell(&p["status"]),
                if hops == 0 { "-".into() } else { hops.to_string() },
                cell(&p["text"]),
            ]
        })
        .collect();
    out!("{}", table(&["BOX", "PEER", "STATUS", "HOPS", "TEXT"], &rows));
    Ok(())
}

fn tail(c: &ClientArgs, topic: Option<&str>, n: usize) -> anyhow::Result<()> {
    let client = c.client();
    let print = |p: &Value| -> anyhow::Result<()> {
        if c.json {
            outln!("{}", client::json_text(p, false));
        } else {
            outln!(
                "[{}] {}: {}",
                cell(&p["topic"]),
                short(p["peer_id"].as_str().unwrap_or("")),
                cell(&p["text"])
            );
        }
        Ok(())
    };
    // The newest n stored posts first, then the live stream.
    let q = topic.map(|t| format!("&topic={}", urlencode(t))).unwrap_or_default();
    let mut since = 0u64;
    let mut stored = Vec::new();
    loop {
        let page = client.get(&format!("/v1/posts?since={since}&limit=10000{q}"))?;
        let posts = page["posts"].as_array().cloned().unwrap_or_default();
        since = page["next"].as_u64().unwrap_or(since);
        let done = posts.len() < 10_000;
        stored.extend(posts);
        if stored.len() > n {
            stored.drain(..stored.len() - n);
        }
        if done {
            break;
        }
    }
    for p in &stored {
        print(p)?;
    }
    let mut failed = None;
    client.follow(|event, data| {
        if event == "post"
            && topic.is_none_or(|t| data["topic"].as_str() == Some(t))
            && data["cursor"].as_u64().unwrap_or(0) > since
            && let Err(e) = print(data)
        {
            failed = Some(e);
            return false;
        }
        true
    })?;
    failed.map_or(Ok(()), Err)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, check_config, init, settings } => {
            run_node(config.as_deref(), check_config, init, *settings)?;
        }
        Command::Init { config, data_dir, key, json } => {
            init(config.as_deref(), data_dir, key, json)?
        }
        Command::Members { c } => members(&c)?,
        Command::Opinions { peer, c } => opinions(&c, peer.as_deref())?,
        Command::Barrios { id, c } => barrios(&c, id.as_deref())?,
        Command::Links { c } => links(&c)?,
        Command::Status { c } => status(&c)?,
        Command::Health { c } => {
            let v = c.client().get("/healthz")?;
            outln!("{}", cell(&v).trim());
        }
        Command::Rtt { a, b, c } => {
            let mut path = format!("/v1/rtt?a={}", urlencode(&a));
            if let Some(b) = &b {
                path.push_str(&format!("&b={}", urlencode(b)));
            }
            let v = c.client().get(&path)?;
            if c.json {
                print_json(&v)?;
            } else {
                let est = v["estimated_ms"].as_f64().unwrap_or(f64::NAN);
                out!(
                    "estimated {} <-> {} rtt: {est:.3} ms",
                    short(&cell(&v["a"])),
                    short(&cell(&v["b"]))
                );
                match v["measured_ms"].as_f64() {
                    Some(m) => outln!(" (measured {m:.3} ms)"),
                    None => outln!(),
                }
            }
        }
        Command::Post { topic, text, c } => {
            let v = c.client().post("/v1/posts", &json!({"topic": topic, "text": text}))?;
            if c.json {
                print_json(&v)?;
            } else {
                outln!("posted {} seq {}", cell(&v["id"]), cell(&v["seq"]));
            }
        }
        Command::Postcard { peer, text, lifetime, wait, c } => {
            postcard(&c, &peer, &text, lifetime, wait)?;
        }
        Command::Postcards { sent, inbox, n, c } => {
            let mailbox = if sent {
                Some("sent")
            } else if inbox {
                Some("inbox")
            } else {
                None
            };
            postcards(&c, mailbox, n)?;
        }
        Command::Tail { topic, n, c } => tail(&c, topic.as_deref(), n)?,
        Command::Keygen { out, json } => {
            let path = key_path(out)?;
            let identity = keyfile::create(&path)?;
            show(&identity, &path, json, true)?;
        }
        Command::Demo(args) => vecino::demo::run(&args)?,
        Command::Id { key, json } => {
            let path = key_path(key)?;
            let identity = keyfile::load(&path)?;
            show(&identity, &path, json, false)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): it had what it wanted.
        Err(e) if e.downcast_ref::<StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated, each said once (many errors repeat their cause's
/// text in their own, which `{:#}` would then print twice), made safe for a terminal.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if said.is_empty() || text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    client::clean_lines(&text).into_owned()
}
