//! The simulator's timelines as SVG line charts: deliveries per second and traffic sent
//! (kbit/s), one line per disseminator, fault intervals shaded.

use vecino_gossip::sim::{Report, Scenario};

use crate::svg::line_chart;

/// `(file suffix, svg text)` for each chart.
pub(crate) fn charts(sc: &Scenario, reports: &[Report]) -> Vec<(&'static str, String)> {
    let delivery: Vec<(String, Vec<f64>)> = reports
        .iter()
        .map(|r| {
            let b = r.timeline.bucket_s;
            (
                r.disseminator.clone(),
                r.timeline.delivered.iter().map(|&d| f64::from(d) / b).collect(),
            )
        })
        .collect();
    let traffic: Vec<(String, Vec<f64>)> = reports
        .iter()
        .map(|r| {
            let b = r.timeline.bucket_s;
            let t = &r.timeline;
            let v = t
                .post_bytes
                .iter()
                .zip(&t.other_bytes)
                .map(|(p, o)| (p + o) as f64 * 8.0 / b / 1e3)
                .collect();
            (r.disseminator.clone(), v)
        })
        .collect();
    let Some(first) = reports.first() else {
        return Vec::new();
    };
    let bucket = first.timeline.bucket_s;
    let faults = &first.timeline.faults;
    let title = |what: &str| format!("{} · {} peers · {what}", sc.name, sc.peers);
    vec![
        (
            "delivery",
            chart(&title("deliveries per second"), "deliveries/s", bucket, faults, &delivery),
        ),
        ("traffic", chart(&title("traffic sent, all peers"), "kbit/s", bucket, faults, &traffic)),
    ]
}

/// Bucketed values as points at the bucket centres.
fn chart(
    title: &str,
    unit: &str,
    bucket_s: f64,
    faults: &[(f64, f64)],
    series: &[(String, Vec<f64>)],
) -> String {
    let points: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, v)| {
            let pts = v.iter().enumerate().map(|(k, &val)| ((k as f64 + 0.5) * bucket_s, val));
            (name.as_str(), pts.collect())
        })
        .collect();
    line_chart(title, "time (s)", unit, &points, faults, None)
}
