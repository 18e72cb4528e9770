//! The report of a real-process run: figures computed from what was observed, written as
//! `report.json` and `report.html` (inline SVG: delivery over time, latency CDF, per-peer link
//! status timeline, coordinate error over time, bytes per peer), and a text summary (with the
//! per-interval table of `soak`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use vecino_coords::topology::RttMatrix;

use crate::fill::MatrixFill;

use super::{CommonArgs, Observed, Plan, delivered};
use crate::svg::{escape as esc, line_chart, short};

/// One peer's totals.
#[derive(Debug, Serialize)]
struct PerNode {
    id: String,
    name: String,
    cpu_s: f64,
    peak_rss_bytes: u64,
    bytes_sent: f64,
    bytes_received: f64,
    restarts: u32,
}

/// One row of `soak`'s table.
#[derive(Debug, Serialize)]
struct Interval {
    interval: usize,
    from_s: f64,
    to_s: f64,
    scenario: String,
    bandwidth_kbps: u64,
    posts: usize,
    delivery: Option<f64>,
    latency_p50_s: Option<f64>,
    goodput_kbps_per_peer: f64,
    non_converged_peers: usize,
}

/// `report.json`.
#[derive(Debug, Serialize)]
struct Report<'a> {
    command: &'a str,
    /// `shim` (rate, loss and cuts in each node's link shim) or `netns` (in the kernel).
    links: &'static str,
    nodes: usize,
    matrix: &'a str,
    /// Only for a matrix with missing pairs among the peers: how they were filled.
    #[serde(skip_serializing_if = "Option::is_none")]
    matrix_fill: Option<MatrixFill>,
    seed: u64,
    rate_kbps: u64,
    loss: f64,
    duration_s: f64,
    converge_initial_s: Option<f64>,
    posts_sent: usize,
    posts_failed: u64,
    deliveries: usize,
    deliveries_expected: usize,
    delivery_ratio: f64,
    settled: bool,
    latency_p50_s: Option<f64>,
    latency_p99_s: Option<f64>,
    coord_median_rel_err: Option<f64>,
    heals_s: &'a [f64],
    converge_after_heal_s: Vec<Option<f64>>,
    faults_s: &'a [(f64, f64)],
    per_node: Vec<PerNode>,
    intervals: Vec<Interval>,
    delivery_over_time: Vec<(f64, f64)>,
    coord_err_over_time: Vec<(f64, f64)>,
    samples: &'a [super::record::Sample],
    /// `--netns`: the tbf settings and every qdisc's counters at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a serde_json::Value>,
    /// `--postcards`: delivered exactly once, receipts, latencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    postcards: Option<super::cards::CardReport>,
    /// Kills of the peer holding the most postcards: (s, peer index, postcards it held).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    custodian_kills: &'a [(f64, usize, u64)],
    /// What the peers called each other (online, unreachable, offline) around every kill and
    /// cut.
    statuses: super::statuses::StatusReport,
    /// Every change of the status a peer gave another (s, observer index, subject peer id,
    /// status), in the order seen.
    status_changes: &'a [super::statuses::Change],
}

/// The nearest-rank `q`-quantile ([`crate::coords::metrics::quantile`]); `None` when `v` is empty.
fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    (!v.is_empty()).then(|| crate::coords::metrics::quantile(v, q))
}

/// Latencies (s) of every delivery to a peer other than the author, of posts `keep` selects.
fn latencies(o: &Observed, keep: impl Fn(f64) -> bool) -> Vec<f64> {
    let mut out = Vec::new();
    for (k, s) in o.sent.iter().enumerate() {
        if s.t.is_nan() || !keep(s.t) {
            continue;
        }
        let Some(row) = o.seen.get(k) else { continue };
        for (i, t) in row.iter().enumerate() {
            if i != s.author && !t.is_nan() {
                out.push((t - s.t).max(0.0));
            }
        }
    }
    out
}

/// For each heal: seconds until every post sent before it was at every peer (None: never).
fn after_heals(o: &Observed) -> Vec<Option<f64>> {
    o.heals
        .iter()
        .map(|&h| {
            let mut last = h;
            for (k, s) in o.sent.iter().enumerate() {
                if s.t.is_nan() || s.t > h {
                    continue;
                }
                for (i, t) in o.seen.get(k)?.iter().enumerate() {
                    if i == s.author {
                        continue;
                    }
                    if t.is_nan() {
                        return None;
                    }
                    last = last.max(*t);
                }
            }
            Some(last - h)
        })
        .collect()
}

/// Delivered by t / expected by t (posts sent by t), at each sample time.
fn delivery_over_time(o: &Observed) -> Vec<(f64, f64)> {
    let mut times: Vec<f64> = o.samples.iter().map(|s| s.t).collect();
    times.push(o.traffic_end);
    times.sort_by(f64::total_cmp);
    times
        .into_iter()
        .filter(|&t| t > 0.0)
        .map(|t| {
            let mut got = 0usize;
            let mut want = 0usize;
            for (k, s) in o.sent.iter().enumerate() {
                if s.t.is_nan() || s.t > t {
                    continue;
                }
                want += o.n - 1;
                if let Some(row) = o.seen.get(k) {
                    got += row
                        .iter()
                        .enumerate()
                        .filter(|(i, x)| *i != s.author && !x.is_nan() && **x <= t)
                        .count();
                }
            }
            (t, if want == 0 { 1.0 } else { got as f64 / want as f64 })
        })
        .collect()
}

fn intervals(o: &Observed, c: &CommonArgs, plan: &Plan) -> Vec<Interval> {
    let Some((len, labels)) = &plan.intervals else { return Vec::new() };
    let len = len.as_secs_f64();
    labels
        .iter()
        .enumerate()
        .map(|(k, label)| {
            let from = k as f64 * len;
            let to = ((k + 1) as f64 * len).min(o.traffic_end);
            let inside = |t: f64| t >= from && t < to;
            let posts: Vec<usize> = (0..o.sent.len())
                .filter(|&p| !o.sent[p].t.is_nan() && inside(o.sent[p].t))
                .collect();
            let (mut got, mut want, mut bytes) = (0usize, 0usize, 0usize);
            for &p in &posts {
                want += o.n - 1;
                got += o.seen[p]
                    .iter()
                    .enumerate()
                    .filter(|(i, t)| *i != o.sent[p].author && !t.is_nan())
                    .count();
            }
            for (p, s) in o.sent.iter().enumerate() {
                bytes += o.seen[p]
                    .iter()
                    .enumerate()
                    .filter(|(i, t)| *i != s.author && inside(**t))
                    .count()
                    * c.post_bytes;
            }
            // Posts due everywhere by the interval's end: sent before its last heal that is at
            // least 30 s before the end (else before its start).
            let due = o
                .heals
                .iter()
                .copied()
                .filter(|&h| h >= from && h <= to - 30.0)
                .fold(from, f64::max);
            let non_converged = (0..o.n)
                .filter(|&i| {
                    o.sent.iter().enumerate().any(|(p, s)| {
                        !s.t.is_nan()
                            && s.t < due
                            && i != s.author
                            && (o.seen[p][i].is_nan() || o.seen[p][i] > to)
                    })
                })
                .count();
            let mut lat = latencies(o, inside);
            Interval {
                interval: k + 1,
                from_s: from,
                to_s: to,
                scenario: label.clone(),
                bandwidth_kbps: plan.rate_kbps,
                posts: posts.len(),
                delivery: (want > 0).then(|| got as f64 / want as f64),
                latency_p50_s: quantile(&mut lat, 0.5),
                goodput_kbps_per_peer: bytes as f64 * 8.0
                    / 1e3
                    / (to - from).max(1e-9)
                    / o.n as f64,
                non_converged_peers: non_converged,
            }
        })
        .collect()
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// Writes report.json and report.html into `dir`; returns the text summary.
pub(super) fn write(
    dir: &Path,
    c: &CommonArgs,
    plan: &Plan,
    (matrix, m): (&str, &RttMatrix),
    o: &Observed,
) -> anyhow::Result<String> {
    let (got, want) = delivered(&o.sent, &o.seen, o.n);
    let mut lat = latencies(o, |_| true);
    let last = o.samples.last();
    let per_node: Vec<PerNode> = (0..o.n)
        .map(|i| {
            let p = last.and_then(|s| s.peers.get(i)).cloned().unwrap_or_default();
            PerNode {
                id: o.peer_ids[i].clone(),
                name: o.names[i].clone(),
                cpu_s: p.cpu_s,
                peak_rss_bytes: p.peak_rss_bytes,
                bytes_sent: p.bytes_sent,
                bytes_received: p.bytes_received,
                restarts: o.restarts[i],
            }
        })
        .collect();
    let coord_series: Vec<(f64, f64)> =
        o.samples.iter().filter_map(|s| Some((s.t, s.coord_median_rel_err?))).collect();
    let report = Report {
        command: &plan.command,
        links: if o.netns.is_some() { "netns" } else { "shim" },
        nodes: o.n,
        matrix,
        matrix_fill: MatrixFill::of(m),
        seed: c.seed,
        rate_kbps: plan.rate_kbps,
        loss: c.loss,
        duration_s: o.traffic_end,
        converge_initial_s: o.converge_s,
        posts_sent: o.sent.iter().filter(|s| !s.t.is_nan()).count(),
        posts_failed: o.failed_posts,
        deliveries: got,
        deliveries_expected: want,
        delivery_ratio: if want == 0 { 1.0 } else { got as f64 / want as f64 },
        settled: o.settled,
        latency_p50_s: quantile(&mut lat, 0.5),
        latency_p99_s: quantile(&mut lat, 0.99),
        coord_median_rel_err: last.and_then(|s| s.coord_median_rel_err),
        heals_s: &o.heals,
        converge_after_heal_s: after_heals(o),
        faults_s: &o.faults,
        per_node,
        intervals: intervals(o, c, plan),
        delivery_over_time: delivery_over_time(o),
        coord_err_over_time: coord_series,
        samples: &o.samples,
        netns: o.netns.as_ref(),
        postcards: super::cards::report(&o.cards),
        custodian_kills: &o.custodian_kills,
        statuses: super::statuses::report(
            &o.statuses,
            &o.peer_ids,
            &o.names,
            &o.outages,
            &plan.schedule,
            o.traffic_end,
        ),
        status_changes: &o.statuses.changes,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let path = dir.join("report.json");
    std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
    let summary = summary(&report);
    let path = dir.join("report.html");
    std::fs::write(&path, html(&report, o, &lat, &summary))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(summary)
}

fn summary(r: &Report<'_>) -> String {
    let mut s = String::new();
    let cpu: Vec<f64> = r.per_node.iter().map(|p| p.cpu_s).collect();
    let rss: Vec<f64> = r.per_node.iter().map(|p| p.peak_rss_bytes as f64 / 1048576.0).collect();
    let sent: Vec<f64> = r.per_node.iter().map(|p| p.bytes_sent).collect();
    let mid = |v: &[f64]| quantile(&mut v.to_vec(), 0.5).unwrap_or(0.0);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "nodes {}  traffic {:.0} s  posts {} ({} failed)",
        r.nodes, r.duration_s, r.posts_sent, r.posts_failed
    );
    let _ = writeln!(
        s,
        "delivery {:.5} ({} of {}{})  latency p50 {} s  p99 {} s",
        r.delivery_ratio,
        r.deliveries,
        r.deliveries_expected,
        if r.settled { "" } else { ", not settled" },
        fmt_opt(r.latency_p50_s, 3),
        fmt_opt(r.latency_p99_s, 3)
    );
    if let Some(p) = &r.postcards {
        s.push_str(&super::cards::summary(p));
    }
    for (t, i, held) in r.custodian_kills {
        let _ = writeln!(s, "custodian killed at {t:.1} s: peer {i}, holding {held} postcards");
    }
    let names: Vec<String> = r.per_node.iter().map(|p| p.name.clone()).collect();
    s.push_str(&super::statuses::summary(&r.statuses, &names));
    let heals: Vec<String> = r.converge_after_heal_s.iter().map(|v| fmt_opt(*v, 1)).collect();
    let _ = writeln!(
        s,
        "start-up convergence {} s  coordinate median rel. error {}  converged after heals [{}] s",
        fmt_opt(r.converge_initial_s, 1),
        fmt_opt(r.coord_median_rel_err, 3),
        heals.join(", ")
    );
    let _ = writeln!(
        s,
        "per node: CPU median {:.1} s max {:.1} s  peak RSS median {:.1} MiB max {:.1} MiB  sent median {:.0} kB max {:.0} kB",
        mid(&cpu),
        max(&cpu),
        mid(&rss),
        max(&rss),
        mid(&sent) / 1e3,
        max(&sent) / 1e3
    );
    if let Some(net) = r.netns {
        // Sum over every tbf (both ends of every peer's link).
        let (mut bytes, mut packets, mut drops, mut overlimits) = (0.0, 0.0, 0.0, 0.0);
        for p in net["peers"].as_array().into_iter().flatten() {
            for end in [&p["from_peer"], &p["to_peer"]] {
                bytes += end["bytes"].as_f64().unwrap_or(0.0);
                packets += end["packets"].as_f64().unwrap_or(0.0);
                drops += end["drops"].as_f64().unwrap_or(0.0);
                overlimits += end["overlimits"].as_f64().unwrap_or(0.0);
            }
        }
        let rate =
            net["tbf"]["rate_kbps"].as_u64().map_or("none".into(), |k| format!("{k} kbit/s"));
        let per = if net["tbf_per_pair"] == true { "pair of peers" } else { "peer" };
        let _ = writeln!(
            s,
            "netns links: tbf {rate} each way per {per}, loss {}; all tbfs: {:.0} kB in {packets:.0} packets, {drops:.0} dropped, {overlimits:.0} overlimits (tc-qdisc.txt)",
            net["loss"],
            bytes / 1e3
        );
    }
    if !r.intervals.is_empty() {
        let rows: Vec<Vec<String>> = r
            .intervals
            .iter()
            .map(|i| {
                vec![
                    format!("{} ({:.0}-{:.0} s)", i.interval, i.from_s, i.to_s),
                    i.scenario.clone(),
                    if i.bandwidth_kbps == 0 {
                        "unlimited".into()
                    } else {
                        format!("{} kbit/s", i.bandwidth_kbps)
                    },
                    fmt_opt(i.delivery, 5),
                    fmt_opt(i.latency_p50_s, 3),
                    format!("{:.2} kbit/s", i.goodput_kbps_per_peer),
                    i.non_converged_peers.to_string(),
                ]
            })
            .collect();
        s.push('\n');
        s.push_str(&vecino::client::table(
            &[
                "INTERVAL",
                "SCENARIO",
                "BANDWIDTH",
                "DELIVERY",
                "P50_S",
                "GOODPUT/PEER",
                "NON_CONVERGED",
            ],
            &rows,
        ));
    }
    s
}

// --- HTML and SVG ---

const W: f64 = 860.0;
const H: f64 = 280.0;
const L: f64 = 60.0;
const R: f64 = 20.0;
const T: f64 = 30.0;
const B: f64 = 40.0;
const COLOURS: [&str; 4] = ["#1b7837", "#2166ac", "#c51b7d", "#e08214"];

fn open(s: &mut String, title: &str, h: f64) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11"><rect width="{W}" height="{h}" fill="white"/><text x="{L}" y="18" font-size="13">{}</text>"#,
        esc(title)
    );
}

/// One row per peer, one cell per sample: share of its links connected (green) to none (red),
/// grey while the peer is down.
fn timeline(title: &str, o: &Observed) -> String {
    let row_h = if o.n > 60 {
        4.0
    } else if o.n > 20 {
        8.0
    } else {
        14.0
    };
    let h = T + B + row_h * o.n as f64;
    let mut s = String::new();
    open(&mut s, title, h);
    let t_max = o.samples.last().map_or(1.0, |x| x.t).max(1e-9);
    let pw = W - L - R;
    for (k, smp) in o.samples.iter().enumerate() {
        let t1 = o.samples.get(k + 1).map_or(smp.t, |n| n.t);
        let (x0, x1) = (L + smp.t / t_max * pw, L + t1 / t_max * pw);
        for (i, p) in smp.peers.iter().enumerate() {
            let total = p.connected + p.suspected + p.disconnected;
            let colour = if !p.up {
                "#999".to_string()
            } else if total == 0 {
                "#eee".to_string()
            } else {
                let f = p.connected as f64 / total as f64;
                let suspect = p.suspected as f64 / total as f64;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let (r, g, b) =
                    ((230.0 * (1.0 - f)) as u8, (160.0 * f + 40.0) as u8, (200.0 * suspect) as u8);
                format!("rgb({r},{g},{b})")
            };
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{row_h}" fill="{colour}"/>"#,
                T + row_h * i as f64,
                (x1 - x0).max(1.0)
            );
        }
    }
    for (i, name) in o.names.iter().enumerate().filter(|(i, _)| o.n <= 20 || i % 5 == 0) {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="8">{}</text>"#,
            L - 4.0,
            T + row_h * (i as f64 + 1.0),
            esc(name)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{L}" y="{:.1}">time (s, 0 … {t_max:.0}); green: every link connected, red: none, blue tint: suspected, grey: peer down</text>"#,
        h - 10.0
    );
    s.push_str("</svg>\n");
    s
}

fn bars(title: &str, o: &Observed, r: &Report<'_>) -> String {
    let mut s = String::new();
    open(&mut s, title, H);
    let (pw, ph) = (W - L - R, H - T - B);
    let y_max =
        r.per_node.iter().map(|p| p.bytes_sent.max(p.bytes_received)).fold(0.0, f64::max).max(1.0)
            * 1.05;
    let w = pw / o.n as f64;
    for (i, p) in r.per_node.iter().enumerate() {
        for (k, v) in [p.bytes_sent, p.bytes_received].into_iter().enumerate() {
            let bh = v / y_max * ph;
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"><title>{} {}: {:.0} kB</title></rect>"#,
                L + w * i as f64 + w * 0.45 * k as f64 + w * 0.05,
                T + ph - bh,
                w * 0.45,
                COLOURS[k + 1],
                esc(&p.name),
                if k == 0 { "sent" } else { "received" },
                v / 1e3
            );
        }
    }
    for k in 0..=4 {
        let v = y_max * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            L - 4.0,
            T + ph - v / y_max * ph + 4.0,
            short(v / 1e6)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{L}" y="{:.1}">peers p0 … p{}; blue: sent, pink: received (MB)</text>"#,
        H - 10.0,
        o.n - 1
    );
    s.push_str("</svg>\n");
    s
}

fn html(r: &Report<'_>, o: &Observed, lat: &[f64], summary: &str) -> String {
    let mut lat = lat.to_vec();
    lat.sort_by(f64::total_cmp);
    let mut cdf: Vec<(f64, f64)> = Vec::new();
    let step = (lat.len() / 400).max(1);
    for (k, v) in lat.iter().enumerate().step_by(step) {
        cdf.push((*v, (k + 1) as f64 / lat.len() as f64));
    }
    if let Some(v) = lat.last() {
        cdf.push((*v, 1.0));
    }
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>vecino testnet report</title><style>body{font-family:sans-serif;max-width:900px;margin:1em auto}pre{background:#f6f6f6;padding:.5em;overflow:auto}</style></head><body>\n",
    );
    let _ = writeln!(
        s,
        "<h1>vecino testnet: {} real peers</h1><p><code>{}</code></p><pre>{}</pre>",
        r.nodes,
        esc(r.command),
        esc(summary)
    );
    let _ = writeln!(s, "<p>Shaded: fault intervals (partitions, flaps, peers down).</p>");
    s.push_str(&line_chart(
        "delivery over time: delivered / expected, of posts sent so far",
        "time (s)",
        "ratio",
        &[("delivery", r.delivery_over_time.clone())],
        &o.faults,
        Some(1.0),
    ));
    s.push_str(&line_chart(
        "latency CDF (first delivery at each peer)",
        "latency (s)",
        "fraction",
        &[("deliveries", cdf)],
        &[],
        Some(1.0),
    ));
    s.push_str(&timeline("link status per peer over time", o));
    s.push_str(&line_chart(
        "coordinate error over time: median of per-peer median relative error",
        "time (s)",
        "relative error",
        &[("median rel. error", r.coord_err_over_time.clone())],
        &o.faults,
        None,
    ));
    s.push_str(&bars("bytes per peer over the run", o, r));
    s.push_str("</body></html>\n");
    s
}
