//! What each peer believed about the others' liveness over a real-process run: every change
//! of the status a peer gives another (online, unreachable, offline), from its event stream
//! (`status`) and, after every (re)subscription, from `GET /v1/opinions`; then, per `kill -9`,
//! how long each running peer took to call the killed one offline, and per cut (a partition,
//! a flap's down), what each peer on one side called each peer on the other: unreachable (the
//! engine's word for "alive, but cut off from here") or offline, and how soon.
//!
//! Times are seconds after the start of traffic, as everywhere in the run's report; a status
//! is seen when the event reaches the follower (the engine computes statuses once a second
//! when something changed).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use vecino::client::Client;

use super::faults::Action;
use super::record::Shared;

/// Changes kept at most (a long soak of many peers makes many; the figures use the first).
const MAX_CHANGES: usize = 200_000;

/// One change: at `t`, peer `observer` started calling the peer with id `subject` `status`
/// (`none`: it holds no claim about it any more, e.g. after it restarted).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Change {
    pub(crate) t: f64,
    pub(crate) observer: usize,
    pub(crate) subject: String,
    pub(crate) status: String,
}

/// Every change seen, and the last status per (observer, subject).
#[derive(Debug, Default)]
pub(crate) struct Log {
    pub(crate) changes: Vec<Change>,
    last: BTreeMap<(usize, String), String>,
}

impl Log {
    /// Peer `observer` calls `subject` `status` at `t` (kept only when it changed).
    pub(crate) fn note(&mut self, t: f64, observer: usize, subject: &str, status: &str) {
        let key = (observer, subject.to_string());
        if self.last.get(&key).map(String::as_str) == Some(status) {
            return;
        }
        self.last.insert(key, status.to_string());
        if self.changes.len() < MAX_CHANGES {
            self.changes.push(Change {
                t,
                observer,
                subject: subject.to_string(),
                status: status.to_string(),
            });
        }
    }
}

/// A `status` event from peer `i`'s stream.
pub(crate) fn on_event(shared: &Shared, i: usize, data: &Value) {
    let (Some(subject), Some(status)) = (data["peer_id"].as_str(), data["status"].as_str()) else {
        return;
    };
    if let Ok(mut log) = shared.statuses.lock() {
        log.note(shared.now(), i, subject, status);
    }
}

/// After a (re)subscription of peer `i`'s stream: the statuses it gives now (changes missed
/// while the stream was down show late, at the time they are read).
pub(crate) fn catch_up(shared: &Shared, i: usize, c: &Client) {
    let Ok(list) = c.get("/v1/opinions") else { return };
    let now = shared.now();
    let Ok(mut log) = shared.statuses.lock() else { return };
    let mut held = Vec::new();
    for o in list.as_array().into_iter().flatten() {
        let (Some(subject), Some(status)) = (o["peer_id"].as_str(), o["status"].as_str()) else {
            continue;
        };
        log.note(now, i, subject, status);
        held.push(subject.to_string());
    }
    // Subjects it held a status about and no longer does (it restarted, or forgot them).
    let gone: Vec<String> = log
        .last
        .keys()
        .filter(|(o, s)| *o == i && !held.contains(s))
        .map(|(_, s)| s.clone())
        .collect();
    for s in gone {
        log.note(now, i, &s, "none");
    }
}

/// The status `observer` gave `subject` just before `t` (`None`: none yet).
fn status_at<'a>(changes: &'a [Change], observer: usize, subject: &str, t: f64) -> Option<&'a str> {
    changes
        .iter()
        .rfind(|c| c.observer == observer && c.subject == subject && c.t < t)
        .map(|c| c.status.as_str())
}

/// When, in `[from, to)`, `observer` first called `subject` `status`: 0 if it already did
/// before `from`.
fn first(
    changes: &[Change],
    observer: usize,
    subject: &str,
    status: &str,
    (from, to): (f64, f64),
) -> Option<f64> {
    if status_at(changes, observer, subject, from) == Some(status) {
        return Some(0.0);
    }
    changes
        .iter()
        .find(|c| {
            c.observer == observer
                && c.subject == subject
                && c.status == status
                && c.t >= from
                && c.t < to
        })
        .map(|c| c.t - from)
}

/// A `kill -9` and what the peers running meanwhile called the killed one.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KillStatus {
    pub(crate) peer: String,
    pub(crate) at_s: f64,
    /// When it was started again (the end of traffic when it was not within the run).
    pub(crate) until_s: f64,
    /// Peers running from the kill to the restart.
    pub(crate) observers: usize,
    /// Those that called it offline before it came back.
    pub(crate) offline: usize,
    /// Seconds from the kill to each of those calls, sorted.
    pub(crate) offline_s: Vec<f64>,
    /// Those that called it unreachable at some point meanwhile.
    pub(crate) unreachable: usize,
    /// Names of the observers that never called it offline.
    pub(crate) never_offline: Vec<String>,
}

/// A cut and what each side called the other.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CutStatus {
    pub(crate) at_s: f64,
    pub(crate) until_s: f64,
    pub(crate) sides: (Vec<usize>, Vec<usize>),
    /// (observer, subject) pairs across the cut, both running throughout.
    pub(crate) pairs: usize,
    /// Pairs whose observer called the subject unreachable at some point during the cut.
    pub(crate) unreachable: usize,
    /// Seconds from the cut to each first "unreachable", sorted.
    pub(crate) unreachable_s: Vec<f64>,
    /// Pairs whose observer called the subject offline at some point during the cut.
    pub(crate) offline: usize,
    /// Seconds from the cut to each first "offline", sorted.
    pub(crate) offline_s: Vec<f64>,
    /// What the observers called the subjects just before the heal, by status.
    pub(crate) at_heal: BTreeMap<String, usize>,
}

/// The statuses part of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusReport {
    /// Changes seen in all (every peer about every other).
    pub(crate) changes: usize,
    pub(crate) kills: Vec<KillStatus>,
    pub(crate) cuts: Vec<CutStatus>,
}

/// (peer, down from, up at) of every peer killed during the run.
pub(crate) type Outages = [(usize, f64, f64)];

/// The cuts of the schedule, each with its restore (the end of traffic when it had none).
fn cut_intervals(schedule: &[(f64, Action)], end: f64) -> Vec<(f64, f64, Vec<usize>, Vec<usize>)> {
    let mut open: Vec<(f64, Vec<usize>, Vec<usize>)> = Vec::new();
    let mut out = Vec::new();
    for (t, a) in schedule {
        match a {
            Action::Cut(x, y) => open.push((*t, x.clone(), y.clone())),
            Action::Restore(x, y) => {
                if let Some(k) = open.iter().position(|(_, a, b)| a == x && b == y) {
                    let (from, a, b) = open.remove(k);
                    out.push((from, *t, a, b));
                }
            }
            _ => {}
        }
    }
    out.extend(open.into_iter().map(|(from, a, b)| (from, end, a, b)));
    out.sort_by(|p, q| p.0.total_cmp(&q.0));
    out
}

/// Whether peer `i` was down at any time in `[from, to)`.
fn down_within(outages: &Outages, i: usize, from: f64, to: f64) -> bool {
    outages.iter().any(|&(p, a, b)| p == i && a < to && b > from)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The figures: per kill and per cut. `ids[i]` and `names[i]` are peer `i`'s.
pub(crate) fn report(
    log: &Log,
    ids: &[String],
    names: &[String],
    outages: &Outages,
    schedule: &[(f64, Action)],
    end: f64,
) -> StatusReport {
    let ch = &log.changes;
    let n = ids.len();
    let kills = outages
        .iter()
        .map(|&(i, from, to)| {
            let window = (from, to);
            let observers: Vec<usize> =
                (0..n).filter(|&j| j != i && !down_within(outages, j, from, to)).collect();
            let mut offline_s = Vec::new();
            let mut never = Vec::new();
            let mut unreachable = 0;
            for &j in &observers {
                match first(ch, j, &ids[i], "offline", window) {
                    Some(s) => offline_s.push(s),
                    None => never.push(names[j].clone()),
                }
                unreachable += usize::from(first(ch, j, &ids[i], "unreachable", window).is_some());
            }
            KillStatus {
                peer: names[i].clone(),
                at_s: from,
                until_s: to,
                observers: observers.len(),
                offline: offline_s.len(),
                offline_s: sorted(offline_s),
                unreachable,
                never_offline: never,
            }
        })
        .collect();
    let cuts = cut_intervals(schedule, end)
        .into_iter()
        .map(|(from, to, a, b)| {
            let window = (from, to);
            let up = |i: &usize| !down_within(outages, *i, from, to);
            let mut pairs = 0;
            let (mut unreachable_s, mut offline_s) = (Vec::new(), Vec::new());
            let mut at_heal: BTreeMap<String, usize> = BTreeMap::new();
            for (x, y) in [(&a, &b), (&b, &a)] {
                for &j in x.iter().filter(|i| up(i)) {
                    for &k in y.iter().filter(|i| up(i)) {
                        pairs += 1;
                        if let Some(s) = first(ch, j, &ids[k], "unreachable", window) {
                            unreachable_s.push(s);
                        }
                        if let Some(s) = first(ch, j, &ids[k], "offline", window) {
                            offline_s.push(s);
                        }
                        let last = status_at(ch, j, &ids[k], to).unwrap_or("none");
                        *at_heal.entry(last.to_string()).or_default() += 1;
                    }
                }
            }
            CutStatus {
                at_s: from,
                until_s: to,
                sides: (a, b),
                pairs,
                unreachable: unreachable_s.len(),
                unreachable_s: sorted(unreachable_s),
                offline: offline_s.len(),
                offline_s: sorted(offline_s),
                at_heal,
            }
        })
        .collect();
    StatusReport { changes: ch.len(), kills, cuts }
}

/// The median and the largest of sorted `v`, as text.
fn p50_max(v: &[f64]) -> String {
    match (v.get(v.len() / 2), v.last()) {
        (Some(m), Some(x)) => format!("p50 {m:.1} s, max {x:.1} s"),
        _ => "-".into(),
    }
}

/// The report's lines about statuses.
pub(crate) fn summary(r: &StatusReport, names: &[String]) -> String {
    let mut s = String::new();
    let side = |v: &[usize]| {
        v.iter().map(|&i| names.get(i).map_or("?", String::as_str)).collect::<Vec<_>>().join(",")
    };
    for k in &r.kills {
        let _ = writeln!(
            s,
            "statuses: kill -9 {} at {:.1} s (down {:.0} s): offline at {} of {} peers ({}){}{}",
            k.peer,
            k.at_s,
            k.until_s - k.at_s,
            k.offline,
            k.observers,
            p50_max(&k.offline_s),
            if k.unreachable > 0 {
                format!(", unreachable at {} first", k.unreachable)
            } else {
                String::new()
            },
            if k.never_offline.is_empty() {
                String::new()
            } else {
                format!("; never offline at {}", k.never_offline.join(","))
            }
        );
    }
    // Flaps make many cuts: the first 10 are listed, the rest summed.
    for c in r.cuts.iter().take(10) {
        let heal: Vec<String> = c.at_heal.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "statuses: cut {}|{} {:.1}-{:.1} s: {} pairs; unreachable {} ({}), offline {} ({}); at the heal: {}",
            side(&c.sides.0),
            side(&c.sides.1),
            c.at_s,
            c.until_s,
            c.pairs,
            c.unreachable,
            p50_max(&c.unreachable_s),
            c.offline,
            p50_max(&c.offline_s),
            heal.join(", ")
        );
    }
    if r.cuts.len() > 10 {
        let rest = &r.cuts[10..];
        let pairs: usize = rest.iter().map(|c| c.pairs).sum();
        let unreachable: usize = rest.iter().map(|c| c.unreachable).sum();
        let offline: usize = rest.iter().map(|c| c.offline).sum();
        let _ = writeln!(
            s,
            "statuses: {} more cuts: {pairs} pairs; unreachable {unreachable}, offline {offline}",
            rest.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_and_cuts_are_scored_from_the_changes() {
        let ids: Vec<String> = (0..4).map(|i| format!("id{i}")).collect();
        let names: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
        let mut log = Log::default();
        let all_online = |log: &mut Log, t: f64| {
            for j in 0..4 {
                for (k, id) in ids.iter().enumerate() {
                    if j != k {
                        log.note(t, j, id, "online");
                    }
                }
            }
        };
        all_online(&mut log, 1.0);
        log.note(1.5, 0, &ids[1], "online"); // no change: not kept
        assert_eq!(log.changes.len(), 12);
        // A cut {0,1} | {2,3} from 10 to 20: 0 calls 2 and 3 unreachable, 1 calls them
        // offline; 2 and 3 call 0 and 1 unreachable, then 3 calls 1 offline.
        for (t, j, k, s) in [
            (12.0, 0, 2, "unreachable"),
            (12.5, 0, 3, "unreachable"),
            (11.0, 1, 2, "offline"),
            (11.0, 1, 3, "offline"),
            (13.0, 2, 0, "unreachable"),
            (13.0, 2, 1, "unreachable"),
            (13.0, 3, 0, "unreachable"),
            (14.0, 3, 1, "unreachable"),
            (16.0, 3, 1, "offline"),
            (21.0, 0, 2, "online"),
        ] {
            log.note(t, j, &ids[k], s);
        }
        // After the heal, every one online again.
        all_online(&mut log, 22.0);
        // A kill of 3 at 30, back at 50: 0 and 1 call it offline, 2 never.
        log.note(31.0, 0, &ids[3], "offline");
        log.note(32.5, 1, &ids[3], "offline");
        let schedule = vec![
            (10.0, Action::Cut(vec![0, 1], vec![2, 3])),
            (20.0, Action::Restore(vec![0, 1], vec![2, 3])),
            (30.0, Action::Kill(3)),
            (50.0, Action::Restart(3)),
        ];
        let r = report(&log, &ids, &names, &[(3, 30.0, 50.0)], &schedule, 60.0);
        assert_eq!(r.kills.len(), 1);
        let k = &r.kills[0];
        assert_eq!((k.observers, k.offline, k.unreachable), (3, 2, 0));
        assert_eq!(k.offline_s, vec![1.0, 2.5]);
        assert_eq!(k.never_offline, vec!["p2".to_string()]);
        let c = &r.cuts[0];
        assert_eq!((c.pairs, c.unreachable, c.offline), (8, 6, 3));
        assert_eq!(c.at_heal.get("offline"), Some(&3));
        assert_eq!(c.at_heal.get("unreachable"), Some(&5));
        assert_eq!(c.unreachable_s[0], 2.0);
        let text = summary(&r, &names);
        assert!(text.contains("kill -9 p3 at 30.0 s (down 20 s): offline at 2 of 3 peers (p50 2.5 s, max 2.5 s); never offline at p2"), "{text}");
        assert!(text.contains("cut p0,p1|p2,p3 10.0-20.0 s: 8 pairs; unreachable 6"), "{text}");
        // A peer down during a cut is no pair of it.
        let r = report(&log, &ids, &names, &[(3, 5.0, 25.0)], &schedule, 60.0);
        assert_eq!(r.cuts[0].pairs, 4, "{:?}", r.cuts[0]);
    }
}
