//! The self-contained HTML report: summary tables and inline SVG charts
//! (throughput and latency over time per class, status mix, invocations vs
//! requests). Hand-written SVG: four simple charts need ~100 lines, no
//! dependency, and render byte-for-byte the same everywhere (plotters is not
//! in this workspace's lockfile or offline cache). It must never emit a
//! number it did not escape or a NaN into a coordinate.

use std::fmt::Write as _;

use crate::report::{ClassReport, DrillReport};

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
const LEGIT: &str = "#1b7f3b";
const ATTACK: &str = "#c0392b";

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// A round axis maximum ≥ `v` (1, 2, 5 × 10^k).
fn nice_max(v: f64) -> f64 {
    let v = finite(v).max(1e-9);
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * mag)
}

/// One line of a line chart.
#[derive(Debug)]
struct Line<'a> {
    name: String,
    color: &'a str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn line_chart(title: &str, y_label: &str, lines: &[Line<'_>]) -> String {
    let xmax = nice_max(
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .fold(1.0, f64::max),
    );
    let ymax = nice_max(
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |v: f64| LEFT + finite(v) / xmax * pw;
    let y = |v: f64| TOP + ph - finite(v) / ymax * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\"><text x=\"{LEFT}\" y=\"18\" font-weight=\"bold\">{t}</text>",
        t = esc(title)
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
            LEFT + pw,
            LEFT - 4.0,
            y(f * ymax) + 4.0,
            fmt_num(f * ymax),
            x(f * xmax),
            TOP + ph + 16.0,
            fmt_num(f * xmax),
            yy = y(f * ymax),
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">seconds</text><text x=\"12\" y=\"{:.1}\" font-size=\"11\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        LEFT + pw / 2.0,
        H - 6.0,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        esc(y_label)
    );
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(b)))
            .collect();
        let dash = if l.dashed {
            " stroke-dasharray=\"5 3\""
        } else {
            ""
        };
        let ly = TOP + 14.0 * i as f64;
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"{dash} points=\"{}\"/><line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            pts.join(" "),
            LEFT + pw + 10.0,
            LEFT + pw + 30.0,
            LEFT + pw + 34.0,
            ly + 4.0,
            esc(&l.name),
            c = l.color,
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars: (label, value, colour).
fn bar_chart(title: &str, bars: &[(String, f64, &str)]) -> String {
    let row = 22.0;
    let h = TOP + row * bars.len().max(1) as f64 + 10.0;
    let label_w = 200.0;
    let pw = W - label_w - 90.0;
    let max = bars
        .iter()
        .map(|b| finite(b.1))
        .fold(0.0, f64::max)
        .max(1e-9);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h:.0}\" viewBox=\"0 0 {W} {h:.0}\" role=\"img\" aria-label=\"{t}\"><text x=\"10\" y=\"18\" font-weight=\"bold\">{t}</text>",
        t = esc(title)
    );
    for (i, (label, v, color)) in bars.iter().enumerate() {
        let y = TOP + row * i as f64;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\">{}</text><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            label_w - 6.0,
            y + 14.0,
            esc(label),
            finite(*v) / max * pw,
            row - 6.0,
            label_w + finite(*v) / max * pw + 4.0,
            y + 14.0,
            fmt_num(*v),
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    let v = finite(v);
    if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn series<'a>(
    name: &str,
    color: &'a str,
    dashed: bool,
    c: &ClassReport,
    f: impl Fn(&crate::report::SecondReport) -> f64,
) -> Line<'a> {
    Line {
        name: name.to_string(),
        color,
        dashed,
        points: c.series.iter().map(|s| (s.second as f64, f(s))).collect(),
    }
}

fn class_table(name: &str, c: &ClassReport) -> String {
    let statuses: Vec<String> = c
        .statuses
        .iter()
        .map(|(k, v)| format!("{}: {v}", esc(k)))
        .collect();
    format!(
        "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{:.2}%</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
        esc(name), c.sources, c.requests, c.success, c.success_ratio * 100.0, c.skipped,
        c.latency_ms.p50, c.latency_ms.p90, c.latency_ms.p99, c.latency_ms.max, statuses.join(", ")
    )
}

/// Renders the report as one HTML page with inline SVG.
pub fn render(r: &DrillReport) -> String {
    let mut h = String::new();
    let title = format!("levee drill: {} against {}", r.scenario, r.target);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}svg{{display:block;margin:1em 0}}</style></head><body><h1>{t}</h1><p>schema_version {}, {:.1} s, attack rate {}/s from {} sources, legitimate rate {}/s from {} sources.</p>",
        r.schema_version, r.elapsed_s, r.settings.rate, r.attack.sources, r.settings.legit_rate, r.legit.sources,
        t = esc(&title)
    );
    h.push_str("<h2>Summary</h2><table id=\"summary\"><tr><th>class</th><th>sources</th><th>requests</th><th>2xx</th><th>success</th><th>skipped</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>statuses</th></tr>");
    h.push_str(&class_table("legit", &r.legit));
    h.push_str(&class_table("attack", &r.attack));
    h.push_str("</table>");
    if let Some(l) = &r.levee {
        let spend = l
            .spend_usd_caused
            .map_or("n/a (metering off)".into(), |u| format!("${u:.6}"));
        let _ = write!(
            h,
            "<h2>Cost to the target</h2><table id=\"levee\"><tr><th>invocations caused</th><td>{}</td></tr><tr><th>by the attack (at most)</th><td>{}</td></tr><tr><th>spend caused</th><td>{}</td></tr></table>",
            l.invocations_caused, l.invocations_caused_by_attack, esc(&spend)
        );
    }
    for n in &r.notes {
        let _ = write!(h, "<p class=\"note\">Note: {}</p>", esc(n));
    }
    h.push_str("<h2>Charts</h2>");
    h.push_str(&line_chart(
        "Throughput (requests started per second)",
        "requests/s",
        &[
            series("legit", LEGIT, false, &r.legit, |s| s.requests as f64),
            series("legit 2xx", LEGIT, true, &r.legit, |s| s.success as f64),
            series("attack", ATTACK, false, &r.attack, |s| s.requests as f64),
            series("attack 2xx", ATTACK, true, &r.attack, |s| s.success as f64),
        ],
    ));
    h.push_str(&line_chart(
        "Latency over time",
        "ms",
        &[
            series("legit p99", LEGIT, false, &r.legit, |s| s.p99_ms),
            series("legit p50", LEGIT, true, &r.legit, |s| s.p50_ms),
            series("attack p99", ATTACK, false, &r.attack, |s| s.p99_ms),
            series("attack p50", ATTACK, true, &r.attack, |s| s.p50_ms),
        ],
    ));
    let mut mix: Vec<(String, f64, &str)> = Vec::new();
    for (name, c, color) in [("legit", &r.legit, LEGIT), ("attack", &r.attack, ATTACK)] {
        mix.extend(
            c.statuses
                .iter()
                .map(|(k, v)| (format!("{name} {k}"), *v as f64, color)),
        );
    }
    h.push_str(&bar_chart("Status mix", &mix));
    let mut cost = vec![
        ("legit requests".to_string(), r.legit.requests as f64, LEGIT),
        (
            "attack requests".to_string(),
            r.attack.requests as f64,
            ATTACK,
        ),
        ("attack 2xx".to_string(), r.attack.success as f64, ATTACK),
    ];
    if let Some(l) = &r.levee {
        cost.push((
            "invocations caused".into(),
            l.invocations_caused as f64,
            "#555",
        ));
        cost.push((
            "… by the attack (≤)".into(),
            l.invocations_caused_by_attack as f64,
            "#555",
        ));
    }
    h.push_str(&bar_chart("Invocations vs requests", &cost));
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes_and_escaping() {
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(101.0), 200.0);
        assert_eq!(nice_max(0.0), 1e-9_f64.max(nice_max(0.0)));
        assert!(nice_max(f64::NAN).is_finite());
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
