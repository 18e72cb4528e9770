//! Hand-written SVG line charts, shared by the simulator's timelines (`sim --svg`) and the
//! real-process testnet's HTML report: one line per series, shaded intervals (faults), a legend
//! in the right margin.

use std::fmt::Write as _;

const W: f64 = 900.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 140.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 4] = ["#1b7837", "#c51b7d", "#2166ac", "#e08214"];

/// A line chart of `(name, points)` series; `shade` are x intervals drawn behind (faults);
/// `y_max` fixes the top of the y axis (else 5 % above the largest value).
pub(crate) fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    shade: &[(f64, f64)],
    y_max: Option<f64>,
) -> String {
    let points = series.iter().flat_map(|(_, v)| v.iter());
    let x_max = points.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let y_max = y_max.unwrap_or_else(|| points.map(|p| p.1).fold(0.0, f64::max) * 1.05).max(1e-9);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |v: f64| LEFT + v.min(x_max) / x_max * pw;
    let y = |v: f64| TOP + ph - v.min(y_max) / y_max * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="18" font-size="14">{}</text>"#, escape(title));
    for &(a, b) in shade {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#f4cccc" opacity="0.5"/>"##,
            x(a),
            (x(b) - x(a)).max(0.5)
        );
    }
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
        let xv = x_max * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(xv),
            TOP + ph + 18.0,
            short(xv)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 4.0,
        escape(x_label),
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (i, (name, v)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        for (k, &(a, b)) in v.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if k == 0 { "M" } else { " L" }, x(a), y(b));
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
    if !shade.is_empty() {
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

/// A tick label: `1.2M`, `3.4k`, `56`, `0.78`.
pub(crate) fn short(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Text for SVG and HTML.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
