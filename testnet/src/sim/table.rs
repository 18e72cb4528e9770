//! The side-by-side text report: one column per disseminator.

use std::fmt::Write as _;

use vecino_gossip::sim::{Latency, Report, Scenario};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// "n values: min / median / max, k missing" for per-fault series.
fn series(v: &[Option<f64>]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let mut got: Vec<f64> = v.iter().flatten().copied().collect();
    let missing = v.len() - got.len();
    if got.is_empty() {
        return format!("none of {}", v.len());
    }
    got.sort_by(f64::total_cmp);
    let mid = got[got.len() / 2];
    let mut s = format!("{:.2}/{:.2}/{:.2}", got[0], mid, got[got.len() - 1]);
    if missing > 0 {
        let _ = write!(s, " ({missing} of {} never)", v.len());
    }
    s
}

/// The keys any of `reports` has in the map `keys` reads, each once, in order.
fn keys_of<'a, I: Iterator<Item = &'a String>>(
    reports: &'a [Report],
    keys: impl Fn(&'a Report) -> I,
) -> std::collections::BTreeSet<&'a String> {
    reports.iter().flat_map(keys).collect()
}

fn bytes(b: f64) -> String {
    if b >= 10e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 10e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

/// "matrix: N of M pairs missing, filled by …" for a scenario on a matrix with missing pairs.
pub(crate) fn matrix_fill_line(sc: &Scenario) -> Option<String> {
    let Latency::Matrix(m) = &sc.latency else { return None };
    let f = m.fill()?;
    Some(format!("matrix: {}; stretch never counts them", f.describe(m.pairs())))
}

/// p50 / p90 / p99 of a postcard stretch.
fn p3(v: Option<[f64; 3]>) -> String {
    v.map_or("-".into(), |[a, b, c]| format!("{a:.2} / {b:.2} / {c:.2}"))
}

/// p50 / p90 / p99 / max of a postcard duration.
fn p4(v: Option<[f64; 4]>) -> String {
    v.map_or("-".into(), |[a, b, c, d]| format!("{a:.2} / {b:.2} / {c:.2} / {d:.2}"))
}

/// A postcard figure of a report, "-" without postcards.
fn pc(r: &Report, f: impl Fn(&vecino_gossip::sim::PostcardReport) -> String) -> String {
    r.postcards.as_ref().map_or("-".into(), f)
}

/// Adds one row to the table: its label and how each report's cell reads.
type AddRow<'a> = dyn FnMut(&str, &dyn Fn(&Report) -> String) + 'a;

/// The postcard rows (scenarios with `[postcards]`).
fn postcard_rows(row: &mut AddRow<'_>) {
    row("postcards sent / delivered (ratio)", &|r| {
        pc(r, |p| format!("{} / {} ({:.4})", p.sent, p.delivered, p.delivery_ratio))
    });
    row("postcards: duplicates / FIFO violations / expired", &|r| {
        pc(r, |p| format!("{} / {} / {}", p.duplicate_deliveries, p.fifo_violations, p.expired))
    });
    row("postcards without detours", &|r| pc(r, |p| format!("{:.4}", p.without_detours)));
    row("postcard hops mean / p50 / p99", &|r| {
        pc(r, |p| format!("{:.2} / {} / {}", p.hops_mean, opt(p.hops_p50, 0), opt(p.hops_p99, 0)))
    });
    row("postcard stretch p50/p90/p99", &|r| pc(r, |p| p3(p.stretch)));
    row("  far pairs (RTT >= 20 ms)", &|r| pc(r, |p| p3(p.stretch_far)));
    row("  oracle, far pairs", &|r| pc(r, |p| p3(p.oracle_stretch_far)));
    row("  slowest far: latency / direct / oracle ms, hops", &|r| {
        pc(r, |p| {
            p.slowest_far.first().map_or("-".into(), |s| {
                let oracle = s.oracle_ms.map_or("-".into(), |o| format!("{o:.0}"));
                format!("{:.0} / {:.0} / {oracle}, {}", s.latency_ms, s.direct_ms, s.hops)
            })
        })
    });
    row("postcard latency p50 / p99 (s)", &|r| {
        pc(r, |p| format!("{} / {}", opt(p.latency_p50_s, 3), opt(p.latency_p99_s, 3)))
    });
    row("postcard transmissions per hop", &|r| {
        pc(r, |p| format!("{:.3}", p.transmissions_per_hop))
    });
    row("postcard transmissions per delivered", &|r| {
        pc(r, |p| format!("{:.2}", p.postcard_frames as f64 / p.delivered.max(1) as f64))
    });
    row("postcards sent during a cut", &|r| pc(r, |p| p.sent_during_cut.to_string()));
    row("  delivered after heal p50/p90/p99/max (s)", &|r| pc(r, |p| p4(p.after_heal_s)));
    row("  receipt after heal p50/p90/p99/max (s)", &|r| pc(r, |p| p4(p.receipt_after_heal_s)));
    row("receipts (ratio), receipt stretch p50", &|r| {
        pc(r, |p| format!("{:.4}, {}", p.receipt_ratio, opt(p.receipt_stretch_p50, 2)))
    });
    row("postcard / receipt bytes", &|r| {
        pc(r, |p| format!("{} / {}", bytes(p.postcard_bytes as f64), bytes(p.receipt_bytes as f64)))
    });
}

/// The crash-detection rows (scenarios that crash peers).
fn crash_rows(row: &mut AddRow<'_>) {
    let cd = |r: &Report, f: &dyn Fn(&vecino_gossip::sim::liveness::CrashDetection) -> String| {
        r.crash_detection.as_ref().map_or("-".into(), f)
    };
    row("crash known by (who, what)", &|r| cd(r, &|c| c.scope.clone()));
    row("  by all of them p50/max (s)", &|r| {
        cd(r, &|c| {
            let never = c.known_by_all_s.iter().filter(|x| x.is_none()).count();
            let mut s =
                format!("{} / {}", opt(c.known_by_all_p50_s, 2), opt(c.known_by_all_max_s, 2));
            if never > 0 {
                let _ = write!(s, " ({never} of {} never)", c.crashes);
            }
            s
        })
    });
    row("  each of them p50 (s), knew within 5 s", &|r| {
        cd(r, &|c| {
            let pct = 100.0 * c.within_5s as f64 / c.observers.max(1) as f64;
            format!("{}, {} of {} ({pct:.0} %)", opt(c.observer_p50_s, 2), c.within_5s, c.observers)
        })
    });
}

/// The opinion rows (scenarios with `[opinions]`): vecino's consensus beside the `median`
/// and `nara` baselines over the same claims.
fn opinion_rows(row: &mut AddRow<'_>) {
    let op = |r: &Report, f: &dyn Fn(&vecino_gossip::sim::opinions::OpinionReport) -> String| {
        r.opinions.as_ref().map_or("-".into(), f)
    };
    row("opinion samples (observers)", &|r| op(r, &|o| format!("{} ({})", o.samples, o.observers)));
    let pct = |x: f64| format!("{:.3} %", 100.0 * x);
    for method in ["vecino", "median", "nara"] {
        let m =
            move |r: &Report,
                  f: &dyn Fn(&vecino_gossip::sim::opinions::MethodFigures) -> String| {
                op(r, &|o| o.methods.get(method).map_or("-".into(), f))
            };
        row(&format!("{method}: live called offline, status right"), &|r| {
            m(r, &|x| {
                format!(
                    "{} ({} of {}), {}",
                    pct(x.false_offline_share),
                    x.false_offline,
                    x.alive_samples,
                    pct(x.status_right_share)
                )
            })
        });
        row(&format!("{method}: start err p50/max (s), restarts exact"), &|r| {
            m(r, &|x| {
                format!(
                    "{} / {}, {}",
                    opt(x.start_err_s_p50, 2),
                    opt(x.start_err_s_max, 2),
                    x.restarts_exact_share.map_or("-".into(), pct)
                )
            })
        });
        row(&format!("{method}: uptime rel err p50/max"), &|r| {
            m(r, &|x| {
                format!(
                    "{} / {}",
                    x.uptime_rel_err_p50.map_or("-".into(), pct),
                    x.uptime_rel_err_max.map_or("-".into(), pct)
                )
            })
        });
    }
    row("crash called offline by 99 % (s)", &|r| {
        op(r, &|o| {
            let v: Vec<String> = o.crash_offline_s.iter().map(|x| opt(*x, 2)).collect();
            if v.is_empty() { "-".into() } else { v.join(" ") }
        })
    });
    row("every status right after heal min/med/max", &|r| op(r, &|o| series(&o.heal_agree_s)));
    row("clout held by liars, mean / end", &|r| {
        op(r, &|o| {
            format!(
                "{} / {}",
                o.liar_clout_share.map_or("-".into(), pct),
                o.liar_clout_share_end.map_or("-".into(), pct)
            )
        })
    });
}

/// The barrio rows (scenarios with `[barrios]`): how many, their size and spread, churn in
/// the steady state, agreement, coherence alarms.
fn barrio_rows(row: &mut AddRow<'_>) {
    type B = vecino_gossip::sim::barrios::BarrioReport;
    let b = |r: &Report, f: &dyn Fn(&B) -> String| r.barrios.as_ref().map_or("-".into(), f);
    let pct = |x: Option<f64>| x.map_or("-".into(), |x| format!("{:.3} %", 100.0 * x));
    row("barrios (peers placed of live)", &|r| {
        b(r, &|x| format!("{} ({} of {})", x.barrios, x.peers_placed, x.peers))
    });
    row("barrio members p50/max, singletons", &|r| {
        b(r, &|x| {
            let single = format!("{:.1} %", 100.0 * x.singleton_share);
            format!("{:.0} / {}, {single}", x.members_p50, x.members_max)
        })
    });
    row("member-head RTT p50/p99/max (ms)", &|r| {
        b(r, &|x| {
            let (p50, p99) = (opt(x.head_rtt_ms_p50, 1), opt(x.head_rtt_ms_p99, 1));
            format!("{p50} / {p99} / {}", opt(x.head_rtt_ms_max, 1))
        })
    });
    row("barrio changes steady / peer-h (max peer)", &|r| {
        b(r, &|x| {
            let mean = opt(x.changes_per_peer_hour, 3);
            format!(
                "{} in {:.1} peer-h: {mean} ({})",
                x.steady_changes,
                x.steady_peer_hours,
                opt(x.changes_per_peer_hour_max, 1)
            )
        })
    });
    row("barrio agreement, disagreement age p99/max (s)", &|r| {
        b(r, &|x| {
            let ages =
                format!("{} / {}", opt(x.disagree_age_s_p99, 1), opt(x.disagree_age_s_max, 1));
            format!("{} of {} pairs, {ages}", pct(x.agree_share), x.pairs)
        })
    });
    row("coherence alarms raised / false (per barrio-day)", &|r| {
        b(r, &|x| {
            let rate = opt(x.false_alarms_per_barrio_day, 2);
            format!("{} / {} ({rate})", x.alarms_raised, x.false_alarms)
        })
    });
    row("degraded barrio: members, 99 % alarmed (s), max share, cleared (s)", &|r| {
        b(r, &|x| match x.degraded_members {
            None => "-".into(),
            Some(n) => format!(
                "{n}, {}, {}, {}",
                opt(x.alarm_99_s, 1),
                pct(x.alarm_share_max),
                opt(x.clear_s, 1)
            ),
        })
    });
    row("per-peer threshold (2 x own RTT): raised / false (per barrio-day)", &|r| {
        b(r, &|x| {
            let t = &x.threshold;
            let rate = opt(t.false_alarms_per_barrio_day, 2);
            format!("{} / {} ({rate})", t.raised, t.false_alarms)
        })
    });
    row("per-peer threshold, degraded: 99 % alarmed (s), max share, cleared (s)", &|r| {
        b(r, &|x| match x.degraded_members {
            None => "-".into(),
            Some(_) => {
                let t = &x.threshold;
                format!(
                    "{}, {}, {}",
                    opt(t.alarm_99_s, 1),
                    pct(t.alarm_share_max),
                    opt(t.clear_s, 1)
                )
            }
        })
    });
}

/// Renders the table.
pub(crate) fn render(sc: &Scenario, seed: u64, reports: &[Report]) -> String {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Report) -> String| {
        rows.push((label.to_string(), reports.iter().map(f).collect()));
    };
    row("posts published", &|r| format!("{} ({} skipped)", r.posts_published, r.posts_skipped));
    row("delivery ratio", &|r| format!("{:.5}", r.delivery_ratio));
    row("posts delivered to all", &|r| r.posts_fully_delivered.to_string());
    row("latency p50 / p99 (s)", &|r| {
        format!("{} / {}", opt(r.latency_p50_s, 3), opt(r.latency_p99_s, 3))
    });
    row("latency max (s)", &|r| opt(r.latency_max_s, 3));
    row("latency p50, no fault (s)", &|r| opt(r.latency_up_p50_s, 3));
    row("stretch p50 / p99 / p99 far (RTT >= 20 ms)", &|r| {
        format!(
            "{} / {} / {}",
            opt(r.stretch_p50, 2),
            opt(r.stretch_p99, 2),
            opt(r.stretch_p99_far, 2)
        )
    });
    if reports.iter().any(|r| r.overlay.is_some()) {
        row("overlay path stretch p50/p99", &|r| {
            r.overlay.as_ref().map_or("-".into(), |o| {
                format!("{:.2} / {:.2}", o.path_stretch_p50, o.path_stretch_p99)
            })
        });
        row("posts over overlay paths p50/p99, hops taken/shortest", &|r| {
            r.overlay.as_ref().map_or("-".into(), |o| {
                format!(
                    "{:.2} / {:.2}, {:.2}/{:.2}",
                    o.posts_over_paths_p50,
                    o.posts_over_paths_p99,
                    o.post_hops_mean,
                    o.post_path_hops_mean
                )
            })
        });
        row("overlay degree, hops, link RTT", &|r| {
            r.overlay.as_ref().map_or("-".into(), |o| {
                format!(
                    "{:.2}, {:.2}, {:.1} ms",
                    o.degree_mean, o.path_hops_mean, o.link_rtt_ms_mean
                )
            })
        });
    }
    if reports.iter().any(|r| r.postcards.is_some()) {
        postcard_rows(&mut row);
    }
    row("copies per delivery", &|r| format!("{:.3}", r.copies_per_delivery));
    row("last-delivery hop mean/max", &|r| {
        format!("{:.2} / {}", r.last_delivery_hop_mean, r.last_delivery_hop_max)
    });
    row("envelope (B)", &|r| format!("{:.0}", r.envelope_bytes_mean));
    row("sent per node per post", &|r| bytes(r.bytes_sent_per_node_per_post));
    row("sent per radio per post", &|r| r.bytes_sent_per_radio_per_post.map_or("-".into(), bytes));
    row("author egress per post", &|r| bytes(r.author_egress_bytes_per_post));
    row("sent: post / membership", &|r| {
        format!("{} / {}", bytes(r.bytes_sent.post as f64), bytes(r.bytes_sent.membership as f64))
    });
    row("sent: control / postcard", &|r| {
        format!("{} / {}", bytes(r.bytes_sent.control as f64), bytes(r.bytes_sent.postcard as f64))
    });
    let kinds = keys_of(reports, |r| r.bytes_by_kind.keys());
    let total: Vec<f64> = reports.iter().map(|r| r.bytes_sent.total().max(1) as f64).collect();
    for kind in kinds {
        let label = format!("  sent: {kind}");
        let share = |r: &Report, t: f64| {
            let b = r.bytes_by_kind.get(kind).copied().unwrap_or(0) as f64;
            let n = r.frames_by_kind.get(kind).copied().unwrap_or(0);
            let mean = if n > 0 { format!(", {:.0} B/frame", b / n as f64) } else { String::new() };
            format!("{} ({:.1} %{mean})", bytes(b), 100.0 * b / t)
        };
        rows.push((label, reports.iter().zip(&total).map(|(r, t)| share(r, *t)).collect()));
    }
    let streams = keys_of(reports, |r| r.membership_bytes_by_stream.keys());
    for stream in streams {
        let label = format!("  membership events: {stream}");
        let share = |r: &Report| {
            let b = r.membership_bytes_by_stream.get(stream).copied().unwrap_or(0) as f64;
            let all = r.membership_bytes_by_stream.values().sum::<u64>().max(1) as f64;
            format!("{} ({:.1} %)", bytes(b), 100.0 * b / all)
        };
        rows.push((label, reports.iter().map(share).collect()));
    }
    let kinds = keys_of(reports, |r| r.author_egress_by_kind.keys());
    for kind in kinds {
        let label = format!("  author egress: {kind}");
        let v = |r: &Report| bytes(r.author_egress_by_kind.get(kind).copied().unwrap_or(0.0));
        rows.push((label, reports.iter().map(v).collect()));
    }
    let names = keys_of(reports, |r| r.counters.keys());
    for name in names {
        let label = format!("  engine: {name}");
        let v = |r: &Report| r.counters.get(name).map_or("-".into(), u64::to_string);
        rows.push((label, reports.iter().map(v).collect()));
    }
    let mut row = |label: &str, f: &dyn Fn(&Report) -> String| {
        rows.push((label.to_string(), reports.iter().map(f).collect()));
    };
    row("membership+control rx/peer", &|r| {
        format!("{:.2} kbit/s", r.membership_rx_bps_per_peer / 1e3)
    });
    row("  of which post announcements", &|r| {
        format!("{:.2} kbit/s", r.post_announcements_rx_bps_per_peer / 1e3)
    });
    row("  rx/peer on the wire (est.: + headers below frames)", &|r| {
        format!("{:.2} kbit/s", r.membership_wire_rx_bps_per_peer / 1e3)
    });
    if let Some(s) = reports.iter().find_map(|r| r.steady_membership.as_ref()) {
        let label = format!("  sent/peer {:.0}-{:.0} s (steady), on the wire", s.from_s, s.to_s);
        row(&label, &|r| {
            r.steady_membership.as_ref().map_or("-".into(), |s| {
                let (a, b) = (s.sent_bps_per_peer / 1e3, s.wire_bps_per_peer / 1e3);
                format!("{a:.2}, {b:.2} kbit/s")
            })
        });
    }
    if sc.flat_flood.is_some() {
        row("flat flood rx/peer (computed)", &|r| {
            opt(r.flat_flood_rx_bps_per_peer_computed.map(|b| b / 1e3), 1) + " kbit/s"
        });
    }
    row("FIFO violations", &|r| r.fifo_violations.to_string());
    row("duplicate deliveries", &|r| r.duplicate_deliveries.to_string());
    row("all know all (s)", &|r| opt(r.members_known_s, 2));
    row("membership converged (s)", &|r| opt(r.membership_converged_s, 2));
    row("equal digests, posts incl. (s)", &|r| opt(r.converge_from_start_s, 2));
    row("equal digests after quiet (s)", &|r| opt(r.converge_quiet_s, 2));
    if !sc.faults.is_empty() {
        row("converge after heal min/med/max", &|r| series(&r.converge_after_heal_s));
        row("backlog drained min/med/max", &|r| {
            let v: Vec<Option<f64>> = r.backlog.iter().map(|b| b.drained_s).collect();
            series(&v)
        });
        row("backlog drain within bound", &|r| {
            let ok = r
                .backlog
                .iter()
                .filter(|b| b.posts > 0)
                .filter(|b| matches!((b.drained_s, b.bound_s), (Some(d), Some(x)) if d <= x))
                .count();
            let of = r.backlog.iter().filter(|b| b.posts > 0).count();
            format!("{ok} of {of}")
        });
        row("suspect delay min/med/max", &|r| series(&r.suspect_delay_s));
        row("reconnect delay min/med/max", &|r| series(&r.reconnect_delay_s));
        if reports.iter().any(|r| r.crash_detection.is_some()) {
            crash_rows(&mut row);
        }
    }
    if reports.iter().any(|r| r.opinions.is_some()) {
        opinion_rows(&mut row);
    }
    if reports.iter().any(|r| r.barrios.is_some()) {
        barrio_rows(&mut row);
    }
    row("links: conn/susp/disc", &|r| {
        let t = r.link_transitions;
        format!("{}/{}/{}", t.connected, t.suspected, t.disconnected)
    });
    row("drops: queue/lost/cut/dead/nolink", &|r| {
        let d = r.drops;
        format!("{}/{}/{}/{}/{}", d.queue, d.lost, d.partitioned, d.dead, d.no_link)
    });
    row("max queue", &|r| bytes(r.max_queue_bytes as f64));
    row("events", &|r| r.events.to_string());
    row("wall (s)", &|r| opt(r.wall_s, 1));
    row("peak RSS", &|r| r.peak_rss_bytes.map_or("-".into(), |b| format!("{} MiB", b >> 20)));

    let label_w = rows.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    let col_w: Vec<usize> = (0..reports.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .chain([reports[i].disseminator.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {} · seed {seed} · {} peers · {:.0} s simulated ({:.0} s traffic + {:.0} s drain)",
        sc.name,
        sc.peers,
        (sc.duration + sc.drain).as_secs_f64(),
        sc.duration.as_secs_f64(),
        sc.drain.as_secs_f64()
    );
    if let Some(line) = matrix_fill_line(sc) {
        let _ = writeln!(out, "{line}");
    }
    let _ = write!(out, "{:label_w$}", "");
    for (r, w) in reports.iter().zip(&col_w) {
        let _ = write!(out, "  {:>w$}", r.disseminator);
    }
    out.push('\n');
    for (label, values) in &rows {
        let _ = write!(out, "{label:label_w$}");
        for (v, w) in values.iter().zip(&col_w) {
            let _ = write!(out, "  {v:>w$}");
        }
        out.push('\n');
    }
    out
}
