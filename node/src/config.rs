//! `vecino run`'s settings: one TOML file, every key also a flag and an environment variable.
//!
//! Precedence, highest first: command-line flag, `VECINO_<KEY>` environment variable, the file
//! given with `--config`, the built-in default. The file's keys are the flags' names with `_`
//! for `-` (`suspect_timeout_secs` ↔ `--suspect-timeout-secs` ↔ `VECINO_SUSPECT_TIMEOUT_SECS`);
//! an unknown key is an error, so a typo never silently leaves a default in force.
//!
//! [`Settings`] is what was given (every field optional); [`Config`] is the resolved result the
//! node runs with, validated, printed by `vecino run --check-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::keyfile;

/// Default API address (loopback: open without a token unless one is set; see `api::access`).
pub const DEFAULT_API: &str = "127.0.0.1:7300";
/// Default libp2p port, for both QUIC (UDP) and TCP.
pub const DEFAULT_P2P_PORT: u16 = 7301;
/// File in the data directory where a running node writes its API address.
pub const API_ADDR_FILE: &str = "api.addr";
/// The store's file name in the data directory.
pub const STORE_FILE: &str = "vecino.redb";

/// Declares the settings once: the struct (clap flags + env vars + TOML keys) and the merge.
macro_rules! settings {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty, )*) => {
        /// Settings as given on the command line, in the environment or in the config file;
        /// `None` where not given.
        #[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(
                $(#[$meta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        impl Settings {
            /// `self` where given, else `lower`.
            pub fn or(self, lower: Settings) -> Settings {
                Settings { $( $name: self.$name.or(lower.$name), )* }
            }
        }
    };
}

settings! {
    /// Data directory: key, store, API address file [default: $XDG_DATA_HOME/vecino]
    #[arg(long, env = "VECINO_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// The peer's key file [default: <data-dir>/identity.pem; created if missing]
    #[arg(long, env = "VECINO_KEY", value_name = "PATH")]
    key: PathBuf,
    /// Human name advertised to other peers [default: the host name]
    #[arg(long, env = "VECINO_NAME")]
    name: String,
    /// libp2p listen addresses, comma-separated [default: QUIC and TCP on 0.0.0.0:7301]
    #[arg(long, env = "VECINO_LISTEN", value_delimiter = ',', value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Addresses to advertise instead of the bound listen addresses, comma-separated
    #[arg(long, env = "VECINO_ADVERTISE", value_delimiter = ',', value_name = "MULTIADDR")]
    advertise: Vec<String>,
    /// Static peers to join, comma-separated (`/ip4/…/udp/7301/quic-v1[/p2p/<peer id>]`)
    #[arg(long, env = "VECINO_BOOTSTRAP", value_delimiter = ',', value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Discover peers on the local network with mDNS [default: true]
    #[arg(long, env = "VECINO_MDNS", value_name = "BOOL")]
    mdns: bool,
    /// HTTP API address; port 0 picks a free one [default: 127.0.0.1:7300]
    #[arg(long, env = "VECINO_API", value_name = "ADDR")]
    api: SocketAddr,
    /// API token with full access (posts, postcards, shim and every read); when given, every
    /// request but /healthz needs it, loopback too [default: none on loopback, else
    /// <data-dir>/api.token, created on first start]
    #[arg(long, env = "VECINO_API_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    api_token: String,
    /// API token with read access only (GET, the event stream, the radar, metrics)
    /// [default: none on loopback, else <data-dir>/api-read.token, created on first start]
    #[arg(long, env = "VECINO_API_READ_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    api_read_token: String,
    /// Host names the API is served under besides its address and localhost (a reverse
    /// proxy's name), comma-separated, `name` or `name:port`; other Host headers get 421
    #[arg(long, env = "VECINO_API_NAMES", value_delimiter = ',', value_name = "HOST[:PORT]")]
    api_names: Vec<String>,
    /// Event-stream (/v1/events) subscribers at most; more get 503 [default: 64]
    #[arg(long, env = "VECINO_API_MAX_SUBSCRIBERS", value_name = "N")]
    api_max_subscribers: u64,
    /// API connections open at most; past it the oldest idle one is closed [default: 256]
    #[arg(long, env = "VECINO_API_MAX_CONNECTIONS", value_name = "N")]
    api_max_connections: u64,
    /// A request's headers must arrive within this many seconds of its first byte (or of the
    /// connection's start) [default: 10]
    #[arg(long, env = "VECINO_API_HEADER_TIMEOUT_SECS", value_name = "SECS")]
    api_header_timeout_secs: u64,
    /// Close an API connection idle this long between requests, or whose reader takes no
    /// bytes for this long [default: 60]
    #[arg(long, env = "VECINO_API_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    api_idle_timeout_secs: u64,
    /// Log filter (tracing EnvFilter syntax) [default: info]
    #[arg(long, env = "VECINO_LOG", value_name = "FILTER")]
    log: String,
    /// Log format: plain or json [default: plain]
    #[arg(long, env = "VECINO_LOG_FORMAT", value_name = "FORMAT")]
    log_format: LogFormat,
    /// Link emulation file (test only): per-peer delay, rate and loss, cut/restore via the API
    #[arg(long, env = "VECINO_EMULATE_LINKS", value_name = "FILE")]
    emulate_links: PathBuf,
    /// Close a transport connection idle this long [default: 120]
    #[arg(long, env = "VECINO_IDLE_TIMEOUT_SECS", value_name = "SECS")]
    idle_timeout_secs: u64,
    /// Longest wait between reconnection attempts (exponential backoff) [default: 30]
    #[arg(long, env = "VECINO_REDIAL_MAX_SECS", value_name = "SECS")]
    redial_max_secs: u64,
    /// Rate of every link in kbit/s, for the engine's pacing; 0 = unpaced [default: 0]
    #[arg(long, env = "VECINO_LINK_RATE_KBPS", value_name = "KBPS")]
    link_rate_kbps: u64,
    /// Back-pressure: hand the transport at most this many bytes not yet written, keeping the
    /// rest in the engine's priority queues (for a shared radio or a slow uplink whose rate is
    /// not known); 0 = off [default: 0]
    #[arg(long, env = "VECINO_HOST_QUEUE_BYTES", value_name = "BYTES")]
    host_queue_bytes: u64,
    /// Engine tick: resolution of every protocol timer [default: 100]
    #[arg(long, env = "VECINO_TICK_MS", value_name = "MS")]
    tick_ms: u64,
    /// Heartbeat of the links held to fast failure detection: ping a neighbour when nothing
    /// was heard from it this long (twice as often while its link is silent) [default: 1000]
    #[arg(long, env = "VECINO_HEARTBEAT_MS", value_name = "MS")]
    heartbeat_ms: u64,
    /// Links held to fast failure detection (suspected after suspect-after-ms of silence):
    /// the farthest, those the neighbours hold fast, the nearest; plus every link carrying
    /// traffic. The others beat every slow-heartbeat-ms [default: 3]
    #[arg(long, env = "VECINO_FAST_LINKS", value_name = "N")]
    fast_links: usize,
    /// Heartbeat of the other links; they are suspected after suspect-after-ms scaled by
    /// slow-heartbeat-ms / heartbeat-ms. At most heartbeat-ms holds every link fast
    /// [default: 5000]
    #[arg(long, env = "VECINO_SLOW_HEARTBEAT_MS", value_name = "MS")]
    slow_heartbeat_ms: u64,
    /// A silent link becomes suspected after max(this, 3 × RTT) [default: 2500]
    #[arg(long, env = "VECINO_SUSPECT_AFTER_MS", value_name = "MS")]
    suspect_after_ms: u64,
    /// A suspected link becomes disconnected after this long: the longest fade weathered
    /// [default: 60]
    #[arg(long, env = "VECINO_SUSPECT_TIMEOUT_SECS", value_name = "SECS")]
    suspect_timeout_secs: u64,
    /// Anti-entropy digest exchange period per neighbour [default: 10]
    #[arg(long, env = "VECINO_SYNC_INTERVAL_SECS", value_name = "SECS")]
    sync_interval_secs: u64,
    /// Neighbours kept in the broadcast overlay [default: 10]
    #[arg(long, env = "VECINO_ACTIVE_VIEW", value_name = "N")]
    active_view: usize,
    /// Of those, random long links [default: 2]
    #[arg(long, env = "VECINO_RANDOM_LINKS", value_name = "N")]
    random_links: usize,
    /// Most neighbour links at once [default: 48]
    #[arg(long, env = "VECINO_MAX_LINKS", value_name = "N")]
    max_links: usize,
    /// Bytes buffered per link while it is suspected, in MiB [default: 8]
    #[arg(long, env = "VECINO_MAX_LINK_BUFFER_MIB", value_name = "MIB")]
    max_link_buffer_mib: usize,
    /// Publish a newspaper at least this often [default: 600]
    #[arg(long, env = "VECINO_NEWSPAPER_MAX_INTERVAL_SECS", value_name = "SECS")]
    newspaper_max_interval_secs: u64,
    /// Publish opinions about the neighbours (online, restarts, start, uptime, RTT), which the
    /// others weigh into each peer's status; false: publish none (the others' are still
    /// weighed, and `/v1/opinions` still answers) [default: true]
    #[arg(long, env = "VECINO_OPINIONS", value_name = "BOOL")]
    opinions: bool,
    /// Publish an opinion at least this often (sooner when a neighbour turns up or down, or
    /// the set of neighbours changed) [default: 900]
    #[arg(long, env = "VECINO_OPINION_MAX_INTERVAL_SECS", value_name = "SECS")]
    opinion_max_interval_secs: u64,
    /// Publish a newspaper early when the coordinate moved more than this [default: 5]
    #[arg(long, env = "VECINO_NEWSPAPER_MOVE_MS", value_name = "MS")]
    newspaper_move_ms: f64,
    /// Fisheye membership: past this many members, keep peer by peer only the nearest (by
    /// coordinate), the neighbours and the landmarks; 0 = full membership. For fleets of
    /// many hundreds of peers and more [default: 0]
    #[arg(long, env = "VECINO_FISHEYE_MEMBERS", value_name = "N")]
    fisheye_members: usize,
    /// Fisheye from the start instead of after holding fisheye-members members: the size
    /// hint of a fleet known to be larger, so that joining it is not a flood [default: false]
    #[arg(long, env = "VECINO_FISHEYE_FROM_START", value_name = "BOOL")]
    fisheye_from_start: bool,
    /// Announce each post on at most this many of the links it is not pushed on (chosen at
    /// random), and on those owed it (tree edges not pushed on, links pruned lately); 0 = on
    /// all of them. On a small shared radio announcements cost airtime: 1 there (simulated
    /// 2 × 5 vehicles: 297 of 300 heal backlogs drained within bound, 282 with 0; not with 35
    /// a radio, where it drained slower) [default: 0]
    #[arg(long, env = "VECINO_IHAVE_FANOUT", value_name = "N")]
    ihave_fanout: usize,
    /// Posts kept for `GET /v1/posts` (the newest; older ones are forgotten) [default: 100000]
    #[arg(long, env = "VECINO_POSTS_KEPT", value_name = "N")]
    posts_kept: u64,
    /// Postcards received and sent kept for `GET /v1/postcards` (the newest) [default: 10000]
    #[arg(long, env = "VECINO_POSTCARDS_KEPT", value_name = "N")]
    postcards_kept: u64,
    /// Default lifetime of a postcard sent from here, seconds [default: 600]
    #[arg(long, env = "VECINO_POSTCARD_LIFETIME_SECS", value_name = "SECS")]
    postcard_lifetime_secs: u64,
    /// One author's share of the posts held (in memory and in the store), MiB: past it, its
    /// oldest posts are forgotten, so one peer posting without pause only churns its own
    /// [default: 4]
    #[arg(long, env = "VECINO_POSTS_SHARE_MIB", value_name = "MIB")]
    posts_share_mib: u64,
    /// All posts held, MiB (the event log, and the API's table of delivered posts each):
    /// past it, the oldest posts of whoever holds most are forgotten [default: 64]
    #[arg(long, env = "VECINO_POSTS_TOTAL_MIB", value_name = "MIB")]
    posts_total_mib: u64,
    /// Posts older than this are forgotten, hours [default: 168]
    #[arg(long, env = "VECINO_POSTS_RETENTION_HOURS", value_name = "HOURS")]
    posts_retention_hours: u64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys or wrong types.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said (with the line).
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid setting `{key}`: {message}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The resolved settings a node runs with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// Advertised name.
    pub name: String,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Advertised addresses (empty: the bound listen addresses).
    pub advertise: Vec<Multiaddr>,
    /// Static peers.
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS on.
    pub mdns: bool,
    /// API address.
    pub api: SocketAddr,
    /// API token with full access (`None`: from the data directory's file, or open on
    /// loopback; see [`crate::api::access`]).
    pub api_token: Option<crate::api::Secret>,
    /// API token with read access only.
    pub api_read_token: Option<crate::api::Secret>,
    /// Extra names the API is served under (`Host` header check).
    pub api_names: Vec<String>,
    /// Event-stream subscribers at most.
    pub api_max_subscribers: usize,
    /// API connections at most.
    pub api_max_connections: usize,
    /// Time to receive a request's headers.
    pub api_header_timeout: Duration,
    /// Idle time before an API connection is closed.
    pub api_idle_timeout: Duration,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Link emulation file.
    pub emulate_links: Option<PathBuf>,
    /// Transport idle timeout.
    pub idle_timeout: Duration,
    /// Longest backoff between redials of the bootstrap peers (while the node has no
    /// connection); the engine redials its links with its own backoff.
    pub redial_max: Duration,
    /// Link rate for pacing, bits per second.
    pub link_rate_bps: Option<u64>,
    /// Posts kept for the API.
    pub posts_kept: u64,
    /// Postcard records kept for the API.
    pub postcards_kept: u64,
    /// The engine's settings.
    #[serde(skip)]
    pub gossip: vecino_gossip::Config,
}

impl Config {
    /// Reads `file` (if any), lays `given` (flags and environment) over it, fills in defaults
    /// and validates.
    pub fn load(file: Option<&Path>, given: Settings) -> Result<Self, ConfigError> {
        let from_file = match file {
            Some(path) => parse_file(path)?,
            None => Settings::default(),
        };
        Self::resolve(given.or(from_file))
    }

    /// Fills in defaults and validates.
    pub fn resolve(s: Settings) -> Result<Self, ConfigError> {
        let data_dir = match s.data_dir {
            Some(d) => d,
            None => keyfile::default_data_dir().ok_or(ConfigError::Invalid {
                key: "data_dir",
                message: "no home directory to put it in; set --data-dir or VECINO_DATA_DIR".into(),
            })?,
        };
        let key = s.key.unwrap_or_else(|| data_dir.join(keyfile::KEY_FILE_NAME));
        let name = s.name.unwrap_or_else(host_name);
        if name.len() > vecino_proto::limits::MAX_TEXT_BYTES {
            return Err(invalid("name", "longer than 128 bytes"));
        }
        let listen = match s.listen {
            Some(l) => addrs("listen", &l)?,
            None => vec![
                format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1").parse().expect("valid"),
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}").parse().expect("valid"),
            ],
        };
        if listen.is_empty() {
            return Err(invalid("listen", "at least one listen address is needed"));
        }
        let advertise = addrs("advertise", &s.advertise.unwrap_or_default())?;
        if advertise.len() > vecino_proto::limits::MAX_ADDRS {
            return Err(invalid("advertise", "at most 16 addresses"));
        }
        let bootstrap = addrs("bootstrap", &s.bootstrap.unwrap_or_default())?;
        let api = s.api.unwrap_or_else(|| DEFAULT_API.parse().expect("valid"));
        let api_token = s.api_token.map(|t| secret("api_token", &t)).transpose()?;
        let api_read_token = s.api_read_token.map(|t| secret("api_read_token", &t)).transpose()?;
        if api_token.is_some() && api_token == api_read_token {
            return Err(invalid("api_read_token", "must differ from api_token"));
        }
        let api_names = s.api_names.unwrap_or_default();
        let api_names: Vec<String> = api_names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| {
                crate::api::access::HostName::parse(n)
                    .map(|_| n.to_ascii_lowercase())
                    .ok_or_else(|| invalid("api_names", &format!("`{n}` is not a host[:port]")))
            })
            .collect::<Result<_, _>>()?;
        // A bound: the list is compared against every request's Host.
        if api_names.len() > 32 {
            return Err(invalid("api_names", "at most 32 names"));
        }
        let api_max_subscribers = count("api_max_subscribers", s.api_max_subscribers, 64)?;
        let api_max_connections = count("api_max_connections", s.api_max_connections, 256)?;
        if api_max_connections <= api_max_subscribers {
            return Err(invalid(
                "api_max_connections",
                "must exceed api_max_subscribers (event streams hold a connection each)",
            ));
        }
        let api_header_timeout = Duration::from_secs(positive(
            "api_header_timeout_secs",
            s.api_header_timeout_secs.unwrap_or(10),
        )?);
        let api_idle_timeout = Duration::from_secs(positive(
            "api_idle_timeout_secs",
            s.api_idle_timeout_secs.unwrap_or(60),
        )?);
        let log = s.log.unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| invalid("log", &format!("bad filter: {e}")))?;

        let mut gossip = vecino_gossip::Config::default();
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        if let Some(v) = s.tick_ms {
            gossip.tick = ms(positive("tick_ms", v)?);
        }
        if let Some(v) = s.heartbeat_ms {
            gossip.heartbeat = ms(positive("heartbeat_ms", v)?);
        }
        if let Some(v) = s.fast_links {
            gossip.fast_links = v;
        }
        if let Some(v) = s.slow_heartbeat_ms {
            gossip.slow_heartbeat = ms(positive("slow_heartbeat_ms", v)?);
        }
        if let Some(v) = s.suspect_after_ms {
            gossip.suspect_after = ms(positive("suspect_after_ms", v)?);
        }
        if let Some(v) = s.suspect_timeout_secs {
            gossip.suspect_timeout = secs(positive("suspect_timeout_secs", v)?);
        }
        if let Some(v) = s.sync_interval_secs {
            gossip.sync_interval = secs(positive("sync_interval_secs", v)?);
        }
        if let Some(v) = s.active_view {
            gossip.active_view = v;
        }
        if let Some(v) = s.random_links {
            gossip.random_links = v;
        }
        if gossip.random_links > gossip.active_view {
            return Err(invalid("random_links", "cannot exceed active_view"));
        }
        if let Some(v) = s.max_links {
            gossip.max_links = usize::try_from(positive("max_links", v as u64)?).unwrap_or(v);
        }
        if let Some(v) = s.max_link_buffer_mib {
            gossip.max_link_buffer_bytes = v.saturating_mul(1 << 20);
        }
        if let Some(v) = s.newspaper_max_interval_secs {
            gossip.newspaper_max_interval = secs(positive("newspaper_max_interval_secs", v)?);
        }
        if let Some(v) = s.opinions {
            gossip.opinions = v;
        }
        if let Some(v) = s.opinion_max_interval_secs {
            gossip.opinion_max_interval = secs(positive("opinion_max_interval_secs", v)?);
        }
        if let Some(v) = s.newspaper_move_ms {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid("newspaper_move_ms", "must be a finite number ≥ 0"));
            }
            gossip.newspaper_move_ms = v;
        }
        if let Some(v) = s.fisheye_members {
            gossip.fisheye_members = v;
        }
        gossip.fisheye_from_start = s.fisheye_from_start.unwrap_or(false);
        if let Some(v) = s.postcard_lifetime_secs {
            let v = positive("postcard_lifetime_secs", v)?;
            if v > gossip.max_postcard_lifetime.as_secs() {
                return Err(invalid(
                    "postcard_lifetime_secs",
                    "longer than a postcard may live (86400)",
                ));
            }
            gossip.postcard_lifetime = secs(v);
        }
        if let Some(v) = s.ihave_fanout {
            gossip.ihave_fanout = v;
        }
        let mib = |key, v: u64| -> Result<usize, ConfigError> {
            let v = positive(key, v)?;
            usize::try_from(v.saturating_mul(1 << 20)).map_err(|_| invalid(key, "too large"))
        };
        if let Some(v) = s.posts_share_mib {
            gossip.max_log_bytes_per_author = mib("posts_share_mib", v)?;
        }
        if let Some(v) = s.posts_total_mib {
            gossip.max_log_bytes = mib("posts_total_mib", v)?;
        }
        if gossip.max_log_bytes_per_author > gossip.max_log_bytes {
            return Err(invalid("posts_share_mib", "larger than posts_total_mib"));
        }
        if let Some(v) = s.posts_retention_hours {
            gossip.log_retention = secs(positive("posts_retention_hours", v)?.saturating_mul(3600));
        }
        if gossip.fisheye_from_start && gossip.fisheye_members == 0 {
            return Err(invalid("fisheye_from_start", "needs fisheye_members > 0"));
        }
        if gossip.suspect_after >= gossip.suspect_timeout {
            return Err(invalid("suspect_after_ms", "must be shorter than suspect_timeout_secs"));
        }
        gossip.name = name.clone();
        gossip.host_queue_bytes = match s.host_queue_bytes.unwrap_or(0) {
            0 => None,
            b => Some(usize::try_from(b).unwrap_or(usize::MAX)),
        };
        let link_rate_bps = match s.link_rate_kbps.unwrap_or(0) {
            0 => None,
            k => Some(k.saturating_mul(1000)),
        };
        let idle = s.idle_timeout_secs.unwrap_or(120);
        // A fade shorter than suspect_timeout must leave the transport up: the link is then
        // suspected (buffering), not torn down.
        let idle_timeout = secs(positive("idle_timeout_secs", idle)?);
        Ok(Config {
            data_dir,
            key,
            name,
            listen,
            advertise,
            bootstrap,
            mdns: s.mdns.unwrap_or(true),
            api,
            api_token,
            api_read_token,
            api_names,
            api_max_subscribers,
            api_max_connections,
            api_header_timeout,
            api_idle_timeout,
            log,
            log_format: s.log_format.unwrap_or_default(),
            emulate_links: s.emulate_links,
            idle_timeout,
            redial_max: secs(positive("redial_max_secs", s.redial_max_secs.unwrap_or(30))?),
            link_rate_bps,
            posts_kept: positive("posts_kept", s.posts_kept.unwrap_or(100_000))?,
            postcards_kept: positive("postcards_kept", s.postcards_kept.unwrap_or(10_000))?,
            gossip,
        })
    }

    /// The store's path.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join(STORE_FILE)
    }

    /// The resolved settings as a config file (what `--check-config` prints).
    pub fn to_toml(&self) -> String {
        let g = &self.gossip;
        let s = Settings {
            data_dir: Some(self.data_dir.clone()),
            key: Some(self.key.clone()),
            name: Some(self.name.clone()),
            listen: Some(self.listen.iter().map(ToString::to_string).collect()),
            advertise: Some(self.advertise.iter().map(ToString::to_string).collect()),
            bootstrap: Some(self.bootstrap.iter().map(ToString::to_string).collect()),
            mdns: Some(self.mdns),
            api: Some(self.api),
            // Secrets are not printed: a printed config is pasted into issues and chats.
            api_token: None,
            api_read_token: None,
            api_names: Some(self.api_names.clone()),
            api_max_subscribers: Some(self.api_max_subscribers as u64),
            api_max_connections: Some(self.api_max_connections as u64),
            api_header_timeout_secs: Some(self.api_header_timeout.as_secs()),
            api_idle_timeout_secs: Some(self.api_idle_timeout.as_secs()),
            log: Some(self.log.clone()),
            log_format: Some(self.log_format),
            emulate_links: self.emulate_links.clone(),
            idle_timeout_secs: Some(self.idle_timeout.as_secs()),
            redial_max_secs: Some(self.redial_max.as_secs()),
            link_rate_kbps: Some(self.link_rate_bps.map_or(0, |b| b / 1000)),
            host_queue_bytes: Some(g.host_queue_bytes.map_or(0, |b| b as u64)),
            tick_ms: Some(millis(g.tick)),
            heartbeat_ms: Some(millis(g.heartbeat)),
            fast_links: Some(g.fast_links),
            slow_heartbeat_ms: Some(millis(g.slow_heartbeat)),
            suspect_after_ms: Some(millis(g.suspect_after)),
            suspect_timeout_secs: Some(g.suspect_timeout.as_secs()),
            sync_interval_secs: Some(g.sync_interval.as_secs()),
            active_view: Some(g.active_view),
            random_links: Some(g.random_links),
            max_links: Some(g.max_links),
            max_link_buffer_mib: Some(g.max_link_buffer_bytes >> 20),
            newspaper_max_interval_secs: Some(g.newspaper_max_interval.as_secs()),
            opinions: Some(g.opinions),
            opinion_max_interval_secs: Some(g.opinion_max_interval.as_secs()),
            newspaper_move_ms: Some(g.newspaper_move_ms),
            fisheye_members: Some(g.fisheye_members),
            fisheye_from_start: Some(g.fisheye_from_start),
            ihave_fanout: Some(g.ihave_fanout),
            posts_kept: Some(self.posts_kept),
            postcards_kept: Some(self.postcards_kept),
            postcard_lifetime_secs: Some(g.postcard_lifetime.as_secs()),
            posts_share_mib: Some((g.max_log_bytes_per_author >> 20) as u64),
            posts_total_mib: Some((g.max_log_bytes >> 20) as u64),
            posts_retention_hours: Some(g.log_retention.as_secs() / 3600),
        };
        toml::to_string(&s).unwrap_or_else(|e| format!("# cannot print the config: {e}\n"))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Parses a config file (unknown keys are errors).
pub fn parse_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text)
        .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })
}

fn invalid(key: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

fn positive(key: &'static str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 { Err(invalid(key, "must be greater than 0")) } else { Ok(v) }
}

/// An API token as given (see [`crate::api::Secret::parse`]).
fn secret(key: &'static str, t: &str) -> Result<crate::api::Secret, ConfigError> {
    crate::api::Secret::parse(t).map_err(|m| invalid(key, m))
}

/// A positive count, `default` when not given.
fn count(key: &'static str, v: Option<u64>, default: u64) -> Result<usize, ConfigError> {
    let v = positive(key, v.unwrap_or(default))?;
    // A bound on what the caps may be set to: each unit holds memory or a file descriptor.
    if v > 65_536 {
        return Err(invalid(key, "at most 65536"));
    }
    Ok(usize::try_from(v).unwrap_or(65_536))
}

fn addrs(key: &'static str, given: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    given
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<Multiaddr>()
                .map_err(|e| invalid(key, &format!("`{a}` is not a multiaddr: {e}")))
        })
        .collect()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().chars().take(64).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings { data_dir: Some("/tmp/vecino-test".into()), ..Settings::default() }
    }

    #[test]
    fn defaults_resolve_and_round_trip_through_toml() {
        let c = Config::resolve(base()).unwrap();
        assert_eq!(c.api.to_string(), DEFAULT_API);
        assert_eq!(c.listen.len(), 2);
        assert!(c.mdns);
        assert!(c.gossip.opinions, "opinions are published by default");
        assert_eq!(c.gossip.opinion_max_interval, Duration::from_secs(900));
        assert_eq!(c.key, PathBuf::from("/tmp/vecino-test/identity.pem"));
        let printed = c.to_toml();
        let again: Settings = toml::from_str(&printed).unwrap();
        assert_eq!(Config::resolve(again).unwrap(), c);
    }

    #[test]
    fn flags_win_over_the_file_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vecino.toml");
        std::fs::write(&file, "data_dir = \"/x\"\nsuspect_timeout_secs = 30\nmdns = false\n")
            .unwrap();
        let given = Settings {
            suspect_timeout_secs: Some(90),
            opinions: Some(false),
            opinion_max_interval_secs: Some(60),
            ..Settings::default()
        };
        let c = Config::load(Some(&file), given).unwrap();
        assert_eq!(c.gossip.suspect_timeout, Duration::from_secs(90));
        assert!(!c.gossip.opinions);
        assert_eq!(c.gossip.opinion_max_interval, Duration::from_secs(60));
        assert!(c.to_toml().contains("opinions = false\n"), "{}", c.to_toml());
        assert!(!c.mdns);
        assert_eq!(c.data_dir, PathBuf::from("/x"));

        std::fs::write(&file, "suspect_timeout = 30\n").unwrap();
        let e = Config::load(Some(&file), Settings::default()).unwrap_err().to_string();
        assert!(e.contains("unknown field `suspect_timeout`"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = Settings { listen: Some(vec!["nope".into()]), ..base() };
        let e = Config::resolve(bad).unwrap_err().to_string();
        assert!(e.contains("`listen`") && e.contains("nope"), "{e}");
        let bad = Settings { tick_ms: Some(0), ..base() };
        assert!(Config::resolve(bad).unwrap_err().to_string().contains("tick_ms"));
        let view = vecino_gossip::Config::default().active_view;
        let bad = Settings { random_links: Some(view + 1), ..base() };
        assert!(Config::resolve(bad).is_err());
        let bad = Settings { opinion_max_interval_secs: Some(0), ..base() };
        let e = Config::resolve(bad).unwrap_err().to_string();
        assert!(e.contains("`opinion_max_interval_secs`"), "{e}");
        let bad = Settings { fisheye_from_start: Some(true), ..base() };
        let e = Config::resolve(bad).unwrap_err().to_string();
        assert!(e.contains("`fisheye_from_start`") && e.contains("fisheye_members"), "{e}");
        let good =
            Settings { fisheye_from_start: Some(true), fisheye_members: Some(128), ..base() };
        let c = Config::resolve(good).unwrap();
        assert!(c.gossip.fisheye_from_start && c.gossip.fisheye_members == 128);
    }

    #[test]
    fn api_settings_are_checked_and_tokens_never_printed() {
        let c = Config::resolve(base()).unwrap();
        assert_eq!((c.api_max_subscribers, c.api_max_connections), (64, 256));
        assert_eq!(c.api_header_timeout, Duration::from_secs(10));
        assert_eq!(c.api_idle_timeout, Duration::from_secs(60));
        assert!(c.api_token.is_none() && c.api_names.is_empty());

        let token = "0123456789abcdef0123";
        let given = Settings {
            api_token: Some(token.into()),
            api_names: Some(vec!["Vecino.Example".into(), " radar.lan:8443 ".into()]),
            ..base()
        };
        let c = Config::resolve(given).unwrap();
        assert_eq!(c.api_token.as_ref().map(crate::api::Secret::expose), Some(token));
        assert_eq!(c.api_names, ["vecino.example", "radar.lan:8443"]);
        assert!(!c.to_toml().contains(token), "--check-config does not print tokens");
        assert!(!format!("{c:?}").contains(token));

        let bad = |s: Settings, key: &str| {
            let e = Config::resolve(s).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        bad(Settings { api_token: Some("short".into()), ..base() }, "`api_token`");
        bad(Settings { api_read_token: Some("with space 0123456789".into()), ..base() }, "read");
        let same = Settings {
            api_token: Some(token.into()),
            api_read_token: Some(token.into()),
            ..base()
        };
        bad(same, "`api_read_token`");
        bad(Settings { api_names: Some(vec!["a/b".into()]), ..base() }, "`api_names`");
        bad(Settings { api_names: Some(vec!["x:99999".into()]), ..base() }, "`api_names`");
        bad(Settings { api_max_subscribers: Some(0), ..base() }, "`api_max_subscribers`");
        let over = Settings { api_max_subscribers: Some(300), ..base() };
        bad(over, "`api_max_connections`");
        bad(Settings { api_header_timeout_secs: Some(0), ..base() }, "api_header_timeout_secs");
    }
}
