//! Postcards in a real-process run (`--postcards RATE`): each from a random running peer to
//! another random peer through `POST /v1/postcards`, its delivery seen on the destination's
//! event stream (`postcard`) and its receipt on the author's (`postcard_status`, delivered),
//! then counted from every peer's stored inbox and sent box at the end: delivered exactly
//! once, and its receipt back.
//!
//! A postcard's text starts with its number in the run and its author, as a post's does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use vecino::client::Client;

use super::record::Shared;

/// One postcard of the run.
#[derive(Debug, Clone)]
pub(crate) struct Card {
    pub(crate) author: usize,
    pub(crate) dest: usize,
    /// Sent (s after the start of traffic); NaN when the author's API refused it.
    pub(crate) t: f64,
    /// First seen at its destination (s), NaN if not.
    pub(crate) delivered: f64,
    /// Its receipt first seen at its author (s), NaN if not.
    pub(crate) receipt: f64,
    /// Records of it in the destination's inbox at the end (exactly once: 1).
    pub(crate) stored: u32,
    /// Sent while a partition cut its author from its destination: that cut's heal (s).
    pub(crate) heal: Option<f64>,
}

impl Card {
    pub(crate) fn new(author: usize, dest: usize, t: f64) -> Self {
        Card { author, dest, t, delivered: f64::NAN, receipt: f64::NAN, stored: 0, heal: None }
    }
}

/// The postcard's number in the run, from its text.
fn number(record: &Value) -> Option<usize> {
    record["text"].as_str()?.split_whitespace().next()?.parse().ok()
}

/// Peer `i` shows `record` (a stored postcard, as the API and the event stream give it) at
/// `t`: a delivery if it is in its inbox, a receipt if it is in its sent box as delivered.
pub(crate) fn note(shared: &Shared, i: usize, record: &Value, t: f64) {
    let Some(k) = number(record) else { return };
    let Ok(mut cards) = shared.cards.lock() else { return };
    let Some(c) = cards.get_mut(k) else { return };
    let cell = match (record["box"].as_str(), record["status"].as_str()) {
        (Some("inbox"), _) if c.dest == i => &mut c.delivered,
        (Some("sent"), Some("delivered")) if c.author == i => &mut c.receipt,
        _ => return,
    };
    if cell.is_nan() || t < *cell {
        *cell = t;
    }
}

/// Every postcard stored at peer `i` (both boxes, from the start: a status change keeps a
/// record's cursor, so paging from a cursor would miss receipts), each passed to `each`.
/// Bounded: 100 pages of 1 000.
fn scan(c: &Client, mut each: impl FnMut(&Value)) {
    let mut cursor = 0u64;
    for _ in 0..100 {
        let Ok(page) = c.get(&format!("/v1/postcards?since={cursor}&limit=1000")) else { return };
        let cards = page["postcards"].as_array().cloned().unwrap_or_default();
        for r in &cards {
            each(r);
        }
        let next = page["next"].as_u64().unwrap_or(cursor);
        if cards.len() < 1000 || next <= cursor {
            return;
        }
        cursor = next;
    }
}

/// Catches up with peer `i`'s stored postcards (after a reconnect of its event stream).
pub(crate) fn catch_up(shared: &Shared, i: usize, c: &Client) {
    let now = shared.now();
    scan(c, |r| note(shared, i, r, now));
}

/// The authoritative count at the end: each postcard's records in its destination's inbox,
/// and every delivery and receipt the event streams missed.
pub(crate) fn count(shared: &Shared, i: usize, c: &Client) {
    let now = shared.now();
    let mut stored: BTreeMap<usize, u32> = BTreeMap::new();
    scan(c, |r| {
        note(shared, i, r, now);
        if r["box"] == "inbox"
            && let Some(k) = number(r)
        {
            *stored.entry(k).or_default() += 1;
        }
    });
    if let Ok(mut cards) = shared.cards.lock() {
        for (k, n) in stored {
            if let Some(c) = cards.get_mut(k).filter(|c| c.dest == i) {
                c.stored = n;
            }
        }
    }
}

/// The postcard figures of a run (`report.json`'s `postcards`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct CardReport {
    /// Postcards the authors' APIs took.
    pub(crate) sent: usize,
    /// Refused by the author's API (counted, not sent).
    pub(crate) failed: usize,
    /// Delivered: stored in the destination's inbox.
    pub(crate) delivered: usize,
    /// Stored more than once (exactly once: 0).
    pub(crate) duplicates: usize,
    /// Receipts back at their authors.
    pub(crate) receipts: usize,
    /// Latency to the destination's event stream (s): p50, p99, max.
    pub(crate) latency_s: Option<[f64; 3]>,
    /// Sent while a partition cut the pair, and of those: delivered after the heal (s): p50,
    /// p99, max.
    pub(crate) sent_during_cut: usize,
    pub(crate) after_heal_s: Option<[f64; 3]>,
    /// Receipts after the heal (s): p50, p99, max.
    pub(crate) receipt_after_heal_s: Option<[f64; 3]>,
    /// Postcards not delivered, by number (the first 20).
    pub(crate) missing: Vec<usize>,
    /// The five slowest deliveries: (number, author, destination, sent at s, latency s).
    pub(crate) slowest: Vec<(usize, usize, usize, f64, f64)>,
}

fn p50_99_max(mut v: Vec<f64>) -> Option<[f64; 3]> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some([at(0.5), at(0.99), v[v.len() - 1]])
}

/// The figures of `cards` (`None`: the run sent none).
pub(crate) fn report(cards: &[Card]) -> Option<CardReport> {
    if cards.is_empty() {
        return None;
    }
    let sent: Vec<&Card> = cards.iter().filter(|c| c.t.is_finite()).collect();
    let delivered = sent.iter().filter(|c| c.stored > 0).count();
    let after = |at: fn(&Card) -> f64| -> Vec<f64> {
        // (NaN.max(0.0) is 0: what never happened is left out first.)
        sent.iter()
            .filter(|c| at(c).is_finite())
            .filter_map(|c| Some((at(c) - c.heal?).max(0.0)))
            .collect()
    };
    Some(CardReport {
        sent: sent.len(),
        failed: cards.len() - sent.len(),
        delivered,
        duplicates: sent.iter().map(|c| c.stored.saturating_sub(1) as usize).sum(),
        receipts: sent.iter().filter(|c| c.receipt.is_finite()).count(),
        latency_s: p50_99_max(sent.iter().map(|c| c.delivered - c.t).collect()),
        sent_during_cut: sent.iter().filter(|c| c.heal.is_some()).count(),
        after_heal_s: p50_99_max(after(|c| c.delivered)),
        receipt_after_heal_s: p50_99_max(after(|c| c.receipt)),
        missing: cards
            .iter()
            .enumerate()
            .filter(|(_, c)| c.t.is_finite() && c.stored == 0)
            .map(|(k, _)| k)
            .take(20)
            .collect(),
        slowest: {
            let mut v: Vec<(usize, usize, usize, f64, f64)> = cards
                .iter()
                .enumerate()
                .filter(|(_, c)| (c.delivered - c.t).is_finite())
                .map(|(k, c)| (k, c.author, c.dest, c.t, c.delivered - c.t))
                .collect();
            v.sort_by(|a, b| b.4.total_cmp(&a.4));
            v.truncate(5);
            v
        },
    })
}

/// The summary's postcard lines.
pub(crate) fn summary(r: &CardReport) -> String {
    let f = |v: Option<[f64; 3]>| {
        v.map_or("-".into(), |[a, b, c]| format!("p50 {a:.2} s p99 {b:.2} s max {c:.2} s"))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "postcards {} ({} failed): delivered {} ({} more than once), receipts {}  latency {}",
        r.sent,
        r.failed,
        r.delivered,
        r.duplicates,
        r.receipts,
        f(r.latency_s)
    );
    if r.sent_during_cut > 0 {
        let _ = writeln!(
            s,
            "postcards sent across a cut {}: delivered after the heal {}; receipts {}",
            r.sent_during_cut,
            f(r.after_heal_s),
            f(r.receipt_after_heal_s)
        );
    }
    if let Some((k, a, d, t, l)) = r.slowest.first() {
        let _ = writeln!(
            s,
            "slowest postcard: #{k}, peer {a} to {d}, sent at {t:.1} s, delivered {l:.2} s later"
        );
    }
    if !r.missing.is_empty() {
        let _ = writeln!(s, "postcards not delivered (first 20): {:?}", r.missing);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deliveries and receipts are taken from the right box of the right peer, duplicates
    /// counted, refused postcards kept apart, and after-heal times measured from the heal.
    #[test]
    fn figures_follow_what_the_peers_stored() {
        let shared = Shared::new(vec![String::new(); 3], Vec::new());
        {
            let mut cards = shared.cards.lock().unwrap();
            cards.push(Card::new(0, 1, 1.0));
            cards.push(Card::new(1, 2, 2.0));
            cards.push(Card::new(2, 0, f64::NAN)); // refused by its author's API
            cards[1].heal = Some(10.0);
        }
        let rec = |k: usize, mailbox: &str, status: &str| serde_json::json!({"text": format!("{k} c x"), "box": mailbox, "status": status});
        note(&shared, 1, &rec(0, "inbox", "received"), 1.5);
        note(&shared, 2, &rec(0, "inbox", "received"), 1.2); // not its destination
        note(&shared, 0, &rec(0, "sent", "forwarded"), 1.6); // not a receipt
        note(&shared, 0, &rec(0, "sent", "delivered"), 2.0);
        note(&shared, 2, &rec(1, "inbox", "received"), 12.0);
        note(&shared, 2, &rec(1, "inbox", "received"), 11.0); // earlier wins
        {
            let mut cards = shared.cards.lock().unwrap();
            cards[0].stored = 1;
            cards[1].stored = 2;
        }
        let r = report(&shared.cards.lock().unwrap()).unwrap();
        assert_eq!((r.sent, r.failed, r.delivered, r.duplicates, r.receipts), (2, 1, 2, 1, 1));
        assert_eq!(r.sent_during_cut, 1);
        assert_eq!(r.after_heal_s, Some([1.0, 1.0, 1.0]));
        assert_eq!(r.receipt_after_heal_s, None);
        // Latencies 0.5 and 9 s (the earlier sighting): of two, the nearest rank of p50 is the second.
        assert_eq!(r.latency_s, Some([9.0, 9.0, 9.0]));
        assert!(r.missing.is_empty());
        assert_eq!(r.slowest[0], (1, 1, 2, 2.0, 9.0));
        assert!(summary(&r).contains("delivered 2 (1 more than once), receipts 1"));
    }
}
