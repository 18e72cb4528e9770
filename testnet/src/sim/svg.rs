//! Hand-written SVG line charts of a run's timelines: deliveries per second and traffic sent
//! (kbit/s), one line per disseminator, fault intervals shaded.

use std::fmt::Write as _;

use vecino_gossip::sim::{Report, Scenario};

const W: f64 = 900.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 140.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 4] = ["#1b7837", "#c51b7d", "#2166ac", "#e08214"];

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

fn chart(
    title: &str,
    unit: &str,
    bucket_s: f64,
    faults: &[(f64, f64)],
    series: &[(String, Vec<f64>)],
) -> String {
    let len = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(1);
    let t_max = len as f64 * bucket_s;
    let y_max =
        series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max).max(1e-9) * 1.05;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + t / t_max * pw;
    let y = |v: f64| TOP + ph - v / y_max * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#, escape(title));
    // Fault intervals.
    for &(a, b) in faults {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#f4cccc" opacity="0.5"/>"##,
            x(a),
            (x(b) - x(a)).max(0.5)
        );
    }
    // Axes and ticks.
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" stroke="black" fill="none"/>"#,
        TOP + ph,
        LEFT + pw
    );
    for k in 0..=4 {
        let v = y_max * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            short(v)
        );
        let t = t_max * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0} s</text>"#,
            x(t),
            TOP + ph + 18.0,
            t
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(unit)
    );
    for (i, (name, v)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        for (k, val) in v.iter().enumerate() {
            let t = (k as f64 + 0.5) * bucket_s;
            let _ = write!(d, "{}{:.1},{:.1}", if k == 0 { "M" } else { " L" }, x(t), y(*val));
        }
        let _ = writeln!(
            s,
            r#"<path d="{d}" stroke="{colour}" stroke-width="1.5" fill="none" opacity="0.85"/>"#
        );
        let ly = TOP + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{ly:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + pw + 12.0,
            LEFT + pw + 32.0,
            LEFT + pw + 38.0,
            ly + 4.0,
            escape(name)
        );
    }
    if !faults.is_empty() {
        let ly = TOP + 16.0 + 18.0 * series.len() as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="20" height="10" fill="#f4cccc"/><text x="{:.1}" y="{:.1}">fault</text>"##,
            LEFT + pw + 12.0,
            ly - 5.0,
            LEFT + pw + 38.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
