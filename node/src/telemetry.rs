//! Logs (tracing) and metrics (the `metrics` facade, exported as Prometheus text on `/metrics`).
//!
//! Every series is described here at start-up; names follow `vecino_<area>_<what>_<unit>`,
//! counters end in `_total`. The engine's own counters are copied into the facade when
//! `/metrics` is scraped (and once a second), so a scrape is exact.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the log subscriber (stderr).
pub fn init_logs(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The series of `/metrics`, documented: (name, kind, help).
pub const SERIES: &[(&str, &str, &str)] = &[
    ("vecino_gossip_frames_received_total", "counter", "frames handed to the engine"),
    ("vecino_gossip_rejected_total", "counter", "frames and events the engine rejected, by reason"),
    ("vecino_gossip_events_new_total", "counter", "new events accepted (own included)"),
    ("vecino_gossip_events_duplicate_total", "counter", "events received again"),
    ("vecino_gossip_posts_delivered_total", "counter", "posts delivered to the application"),
    ("vecino_gossip_grafts_total", "counter", "Plumtree grafts sent"),
    ("vecino_gossip_prunes_total", "counter", "Plumtree prunes sent"),
    ("vecino_gossip_retransmits_total", "counter", "frames retransmitted"),
    ("vecino_gossip_version_vectors_total", "counter", "anti-entropy version vectors sent"),
    ("vecino_gossip_equivocations_total", "counter", "equivocations seen"),
    (
        "vecino_gossip_frames_queued_total",
        "counter",
        "frames the engine queued for sending, by kind (first sends only)",
    ),
    (
        "vecino_gossip_frame_bytes_queued_total",
        "counter",
        "bytes of the frames the engine queued for sending, by kind",
    ),
    ("vecino_postcards_sent_total", "counter", "postcards sent from here"),
    ("vecino_postcards_received_total", "counter", "postcards delivered here (once each)"),
    (
        "vecino_postcards_status_total",
        "counter",
        "postcards sent from here that moved on, by status (forwarded, delivered, expired)",
    ),
    (
        "vecino_gossip_postcard_hops_total",
        "counter",
        "postcards and receipts handed to a next hop (every attempt), by how it was chosen (link_state, greedy)",
    ),
    (
        "vecino_gossip_postcard_duplicates_total",
        "counter",
        "postcards and receipts that came again",
    ),
    ("vecino_gossip_receipts_total", "counter", "receipts of postcards sent from here"),
    (
        "vecino_gossip_postcards_refused_downstream_total",
        "counter",
        "postcards a next hop refused (custody full), routed another way",
    ),
    ("vecino_postcards_custody", "gauge", "postcards and receipts in custody here"),
    ("vecino_members", "gauge", "peers known, by state (alive, left)"),
    ("vecino_links", "gauge", "neighbour links, by status (connected, suspected, disconnected)"),
    (
        "vecino_peers",
        "gauge",
        "peers this one holds claims about, by the status it gives them (online, unreachable, offline)",
    ),
    (
        "vecino_peer_status_changes_total",
        "counter",
        "changes of the status this peer gives a peer, by the new status (online, unreachable, offline)",
    ),
    ("vecino_coordinate_error", "gauge", "this peer's Vivaldi error estimate"),
    ("vecino_rtt_seconds", "histogram", "measured round-trip times to neighbours"),
    ("vecino_transport_connections", "gauge", "peers with an open transport connection"),
    ("vecino_transport_frames_sent_total", "counter", "frames written to peers"),
    (
        "vecino_transport_bytes_sent_total",
        "counter",
        "bytes written to peers (with length prefixes)",
    ),
    (
        "vecino_transport_wire_bytes_sent_total",
        "counter",
        "bytes sent on the wire, by transport: tcp at the socket plus modelled TCP/IP headers; quic the bytes of its streams only, a lower bound (no QUIC framing, acks, keep-alives or UDP/IP headers)",
    ),
    (
        "vecino_transport_wire_bytes_received_total",
        "counter",
        "bytes received on the wire, by transport, counted as vecino_transport_wire_bytes_sent_total",
    ),
    ("vecino_transport_frames_received_total", "counter", "frames read from peers"),
    ("vecino_transport_bytes_received_total", "counter", "bytes read from peers"),
    (
        "vecino_transport_rejected_total",
        "counter",
        "streams and frames refused by the transport, by reason",
    ),
    (
        "vecino_transport_streams_replaced_total",
        "counter",
        "inbound streams closed because the same peer opened a newer one past the per-peer bound",
    ),
    ("vecino_transport_dropped_total", "counter", "frames not sent, by reason"),
    (
        "vecino_transport_unsent_bytes",
        "gauge",
        "bytes of frames handed to the writers and not yet written (or dropped)",
    ),
    (
        "vecino_transport_unsent_bytes_peak",
        "gauge",
        "the most bytes the writers held at once since the start (bounded by --host-queue-bytes)",
    ),
    ("vecino_transport_dials_total", "counter", "outbound dials started"),
    (
        "vecino_api_rejected_total",
        "counter",
        "API requests and connections refused, by reason (unauthorized, forbidden, misdirected, too_many_subscribers, too_many_connections, …)",
    ),
    (
        "vecino_transport_dials_refused_total",
        "counter",
        "dials not made: past the dial budget for peers other than the bootstrap ones",
    ),
    (
        "vecino_transport_addrs_announced_total",
        "counter",
        "addresses peers announced to this node (identify), before the plausibility check",
    ),
    (
        "vecino_transport_addrs_refused_total",
        "counter",
        "announced addresses not dialled, by reason (implausible: not where the peer connects from; scope: loopback or private where this node is not)",
    ),
    (
        "vecino_transport_bootstrap_unreachable_total",
        "counter",
        "dials to a bootstrap peer that failed",
    ),
    (
        "vecino_gossip_posts_forgotten_total",
        "counter",
        "posts forgotten to keep the store's budgets, by why (author_share, total, age, count, gap_given_up)",
    ),
    ("vecino_store_commits_total", "counter", "durable store transactions"),
    (
        "vecino_store_commit_failures_total",
        "counter",
        "store transactions that failed (a full disk): the node then refuses writes and tries again",
    ),
    (
        "vecino_store_writable",
        "gauge",
        "1 while the store can be written, 0 while writes are refused",
    ),
    (
        "vecino_store_writes_refused_total",
        "counter",
        "API writes refused while the store could not be written",
    ),
    (
        "vecino_store_commit_seconds",
        "histogram",
        "time to commit a store transaction (fsync included)",
    ),
    ("vecino_store_events", "gauge", "events held in the store"),
    ("vecino_store_file_bytes", "gauge", "size of the store file"),
    (
        "vecino_store_allocated_bytes",
        "gauge",
        "bytes of the store file's pages in use (the rest is free space redb reuses)",
    ),
    (
        "vecino_store_compactions_total",
        "counter",
        "compactions of the store file (done when at least half of it, and 8 MiB, is free)",
    ),
    ("vecino_uptime_seconds", "gauge", "seconds since the node started"),
    (
        "vecino_barrio_members",
        "gauge",
        "members of this peer's barrio (itself included; 0 until it has one)",
    ),
    ("vecino_barrios_known", "gauge", "barrios this peer holds a member's slot of"),
    ("vecino_barrio_changes_total", "counter", "times this peer's barrio changed after the first"),
    (
        "vecino_coherence_alarms_total",
        "counter",
        "barrio coherence alarms, by state (raised, cleared)",
    ),
];

/// Installs the Prometheus recorder and describes every series.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    for &(name, kind, help) in SERIES {
        match kind {
            "counter" => describe_counter!(name, help),
            "gauge" => describe_gauge!(name, help),
            _ if name.ends_with("_seconds") => describe_histogram!(name, Unit::Seconds, help),
            _ => describe_histogram!(name, help),
        }
    }
    // Every series exists from the start (at zero), so dashboards and alerts see it before the
    // first event; labelled ones for every label value the node itself produces.
    for &(name, kind, _) in SERIES {
        match kind {
            "counter" if !LABELLED.contains(&name) => metrics::counter!(name).increment(0),
            "gauge" if !LABELLED.contains(&name) => metrics::gauge!(name).set(0.0),
            _ => {}
        }
    }
    for reason in TRANSPORT_REJECTED {
        metrics::counter!("vecino_transport_rejected_total", "reason" => *reason).increment(0);
    }
    for reason in TRANSPORT_DROPPED {
        metrics::counter!("vecino_transport_dropped_total", "reason" => *reason).increment(0);
    }
    metrics::counter!("vecino_gossip_rejected_total", "reason" => "bad_signature").increment(0);
    for why in ["author_share", "total", "age", "gap_given_up"] {
        metrics::counter!("vecino_gossip_posts_forgotten_total", "reason" => why).increment(0);
    }
    for why in ["implausible", "scope"] {
        metrics::counter!("vecino_transport_addrs_refused_total", "reason" => why).increment(0);
    }
    metrics::counter!("vecino_api_rejected_total", "reason" => "unauthorized").increment(0);
    for status in PEER_STATUSES {
        metrics::gauge!("vecino_peers", "status" => *status).set(0.0);
        metrics::counter!("vecino_peer_status_changes_total", "status" => *status).increment(0);
    }
    for state in ["raised", "cleared"] {
        metrics::counter!("vecino_coherence_alarms_total", "state" => state).increment(0);
    }
    for transport in WIRE_TRANSPORTS {
        metrics::counter!("vecino_transport_wire_bytes_sent_total", "transport" => *transport)
            .increment(0);
        metrics::counter!("vecino_transport_wire_bytes_received_total", "transport" => *transport)
            .increment(0);
    }
    Ok(handle)
}

/// Series with labels (initialised per label value, not bare).
const LABELLED: &[&str] = &[
    "vecino_api_rejected_total",
    "vecino_transport_addrs_refused_total",
    "vecino_gossip_rejected_total",
    "vecino_gossip_posts_forgotten_total",
    "vecino_members",
    "vecino_links",
    "vecino_peers",
    "vecino_peer_status_changes_total",
    "vecino_transport_rejected_total",
    "vecino_transport_dropped_total",
    "vecino_transport_wire_bytes_sent_total",
    "vecino_transport_wire_bytes_received_total",
    "vecino_coherence_alarms_total",
];
/// Statuses of `vecino_peers` and `vecino_peer_status_changes_total`
/// ([`vecino_gossip::PeerStatus::as_str`]).
pub const PEER_STATUSES: &[&str] = &["online", "unreachable", "offline"];
/// Transports of `vecino_transport_wire_bytes_{sent,received}_total` (what each counts:
/// `node/src/wire.rs`).
pub const WIRE_TRANSPORTS: &[&str] = &["tcp", "quic"];
/// Reasons of `vecino_transport_rejected_total`.
pub const TRANSPORT_REJECTED: &[&str] =
    &["oversized", "unknown_key_type", "connection_limit", "misbehaving"];
/// Reasons of `vecino_transport_dropped_total`.
pub const TRANSPORT_DROPPED: &[&str] = &[
    "not_connected",
    "queue_full",
    "no_stream",
    "stream_failed",
    "shim_cut",
    "shim_loss",
    "shim_queue",
];

/// Copies the engine's counters into the facade.
pub fn record_engine(s: &vecino_gossip::EngineStats) {
    use metrics::counter;
    counter!("vecino_gossip_frames_received_total").absolute(s.frames_in);
    counter!("vecino_gossip_events_new_total").absolute(s.events_new);
    counter!("vecino_gossip_events_duplicate_total").absolute(s.events_duplicate);
    counter!("vecino_gossip_posts_delivered_total").absolute(s.posts_delivered);
    counter!("vecino_gossip_grafts_total").absolute(s.grafts);
    counter!("vecino_gossip_prunes_total").absolute(s.prunes);
    counter!("vecino_gossip_retransmits_total").absolute(s.retransmits);
    counter!("vecino_gossip_version_vectors_total").absolute(s.version_vectors);
    counter!("vecino_gossip_equivocations_total").absolute(s.equivocations);
    let link_state = s.postcard_sends.saturating_sub(s.postcard_greedy_hops);
    counter!("vecino_gossip_postcard_hops_total", "by" => "link_state").absolute(link_state);
    counter!("vecino_gossip_postcard_hops_total", "by" => "greedy")
        .absolute(s.postcard_greedy_hops);
    counter!("vecino_gossip_postcard_duplicates_total").absolute(s.postcard_duplicates);
    counter!("vecino_gossip_receipts_total").absolute(s.receipts);
    counter!("vecino_gossip_postcards_refused_downstream_total")
        .absolute(s.postcards_refused_downstream);
    for (reason, n) in &s.rejected {
        counter!("vecino_gossip_rejected_total", "reason" => *reason).absolute(*n);
    }
    for (why, n) in &s.log_forgotten {
        counter!("vecino_gossip_posts_forgotten_total", "reason" => *why).absolute(*n);
    }
    for (kind, (frames, bytes)) in &s.queued {
        counter!("vecino_gossip_frames_queued_total", "kind" => *kind).absolute(*frames);
        counter!("vecino_gossip_frame_bytes_queued_total", "kind" => *kind).absolute(*bytes);
    }
}
