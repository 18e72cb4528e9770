//! vecino: the daemon and CLI that run one peer per host.
//!
//! `vecino run` drives the sans-IO engine (`vecino-gossip`) over libp2p (QUIC, TCP + noise +
//! yamux, identify, mDNS), keeps its state in redb, and answers its operator over HTTP on
//! loopback. The other subcommands are clients of that API, in the manner of `serf members`
//! and `consul rtt`.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | settings: TOML file + flags + `VECINO_*` env, unknown keys are errors |
//! | [`keyfile`], [`peer`] | the key file and the libp2p `PeerId` of the same key |
//! | [`store`] | redb: events, delivered posts, peer book; schema version; `Persist` |
//! | [`transport`] | the libp2p swarm, the thin Behaviour, length-prefixed frame streams |
//! | [`shim`] | test-only link emulation (delay, rate, loss, cuts) inside the transport |
//! | [`node`] | the actor loop around the engine (group commit before acknowledgement) |
//! | [`api`], [`client`] | the HTTP API (axum, SSE, `/metrics`) and its CLI client |
//! | [`radar`] | the radar page (embedded `radar-ui/www/`) and its snapshot route |
//! | [`telemetry`] | tracing and Prometheus metrics |
//! | `wire` | counters of bytes on the wire, by transport, under noise and in QUIC's streams |
//! | [`cluster`], [`demo`] | real peers on this machine: `vecino demo` and the testnet's `local` |
#![deny(missing_docs)]

pub mod api;
pub mod client;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod keyfile;
pub mod node;
pub mod peer;
pub mod radar;
pub mod shim;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod transport;
mod wire;
