//! The self-contained HTML report: summary tables and four charts
//! (throughput and latency over time per class, status mix, invocations vs
//! requests), drawn by plotters into SVG that is inlined in the page, so the
//! report is one file with no external resources. It must never emit text it
//! did not escape or a NaN into a coordinate: plotters' SVG backend escapes
//! every text and attribute it writes, and every value is made finite before
//! it reaches a chart.

use std::error::Error;
use std::fmt::Write as _;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{ClassReport, DrillReport, SecondReport};

const W: u32 = 720;
const H: u32 = 260;
/// Room right of a line chart's plot for its legend.
const LEGEND_W: u32 = 150;
/// Height of one bar in a bar chart, gap included.
const BAR_ROW: u32 = 22;
const FONT: &str = "sans-serif";
/// Font sizes as plotters takes them; its SVG says `size / 1.24` px, so these
/// come out at about the page's 16 px headings and 11 px small print.
const TITLE_SIZE: u32 = 20;
const TEXT_SIZE: u32 = 14;
/// Dash and gap, px, of the dashed (2xx, p50) lines.
const DASH: (u32, u32) = (5, 3);
const LEGIT: RGBColor = RGBColor(0x1b, 0x7f, 0x3b);
const ATTACK: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const LEVEE: RGBColor = RGBColor(0x55, 0x55, 0x55);
const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);

type Drawn = Result<(), Box<dyn Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

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

/// The upper end of an axis that starts at 0: the largest value plus
/// `headroom` (a fraction), or 1 when there is nothing above 0, so the range
/// is never empty (an empty range would divide by zero when mapping).
fn axis_max(values: impl Iterator<Item = f64>, headroom: f64) -> f64 {
    let max = values.map(finite).fold(0.0, f64::max);
    if max > 0.0 {
        max * (1.0 + headroom)
    } else {
        1.0
    }
}

fn fmt_num(v: f64) -> String {
    let v = finite(v);
    if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Draws one chart into an inline SVG, labelled for screen readers. The
/// in-memory backend does not fail in practice; if drawing ever does, the
/// page says so instead of carrying a half-drawn chart.
fn svg(title: &str, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Drawn) -> String {
    let mut buf = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        draw(&root).and_then(|()| Ok(root.present()?))
    };
    match drawn {
        Ok(()) => format!(
            "<div class=\"chart\" role=\"img\" aria-label=\"{}\">{buf}</div>",
            esc(title)
        ),
        Err(e) => format!(
            "<p class=\"note\">Chart “{}” could not be drawn: {}</p>",
            esc(title),
            esc(&e.to_string())
        ),
    }
}

/// One line of a line chart.
#[derive(Debug)]
struct Line {
    name: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn line_chart(title: &str, y_label: &str, lines: &[Line]) -> String {
    let x_max = axis_max(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)), 0.0);
    let y_max = axis_max(
        lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
        0.05,
    );
    svg(title, (W, H), |root| {
        let (plot, key) = root.split_horizontally(W - LEGEND_W);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, TITLE_SIZE).into_font().style(FontStyle::Bold))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|v| fmt_num(*v))
            .y_label_formatter(&|v| fmt_num(*v))
            .label_style((FONT, TEXT_SIZE))
            .axis_desc_style((FONT, TEXT_SIZE))
            .x_desc("seconds")
            .y_desc(y_label)
            .draw()?;
        for l in lines {
            draw_line(&mut chart, l)?;
        }
        legend(&key, lines)
    })
}

fn draw_line(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    l: &Line,
) -> Drawn {
    let style = l.color.stroke_width(2);
    let points = l.points.iter().map(|&(x, y)| (finite(x), finite(y)));
    if l.dashed {
        chart.draw_series(DashedLineSeries::new(points, DASH.0, DASH.1, style))?;
    } else {
        chart.draw_series(LineSeries::new(points, style))?;
    }
    Ok(())
}

/// The key beside a line chart, drawn by hand: plotters clips its own series
/// labels to the plot, so they could only sit on top of the lines.
fn legend(area: &Area<'_>, lines: &[Line]) -> Drawn {
    let font = beside();
    for (i, l) in lines.iter().enumerate() {
        // Starts level with the top of the plot, below the caption.
        let y = 45 + 18 * i as i32;
        let ends = vec![(5, y), (30, y)];
        let style = l.color.stroke_width(2);
        if l.dashed {
            area.draw(&DashedPathElement::new(ends, DASH.0, DASH.1, style))?;
        } else {
            area.draw(&PathElement::new(ends, style))?;
        }
        area.draw(&Text::new(l.name.as_str(), (36, y), font.clone()))?;
    }
    Ok(())
}

/// Text that starts at its anchor and is centred on it vertically: legend
/// names and bar values, each beside what it labels.
fn beside() -> TextStyle<'static> {
    TextStyle::from((FONT, TEXT_SIZE).into_font()).pos(Pos::new(HPos::Left, VPos::Center))
}

fn series(
    name: &str,
    color: RGBColor,
    dashed: bool,
    c: &ClassReport,
    f: impl Fn(&SecondReport) -> f64,
) -> Line {
    Line {
        name: name.to_string(),
        color,
        dashed,
        points: c.series.iter().map(|s| (s.second as f64, f(s))).collect(),
    }
}

/// One bar of a bar chart.
#[derive(Debug)]
struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
}

fn bar(label: impl Into<String>, value: f64, color: RGBColor) -> Bar {
    Bar {
        label: label.into(),
        value: finite(value),
        color,
    }
}

/// Horizontal bars, first at the top, each labelled with its value. Bar `i`
/// sits on the whole number `n - 1 - i` of a y axis from -0.5 to n - 0.5:
/// asked for at most n labels there, plotters puts one on each whole number,
/// and the formatter turns it into that bar's label.
fn bar_chart(title: &str, bars: &[Bar]) -> String {
    let n = bars.len().max(1);
    let height = 70 + BAR_ROW * n as u32;
    let row = |i: usize| (n - 1 - i) as f64;
    let label = |y: &f64| {
        let i = n as f64 - 1.0 - y.round();
        if (y - y.round()).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        bars.get(i as usize)
            .map_or(String::new(), |b| b.label.clone())
    };
    // Headroom for the value written past the longest bar.
    let x_max = axis_max(bars.iter().map(|b| b.value), 0.15);
    svg(title, (W, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, TITLE_SIZE).into_font().style(FontStyle::Bold))
            .margin(10)
            .margin_right(30)
            .x_label_area_size(25)
            .y_label_area_size(190)
            .build_cartesian_2d(0.0..x_max, -0.5..n as f64 - 0.5)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .x_labels(6)
            .y_labels(n)
            .x_label_formatter(&|v| fmt_num(*v))
            .y_label_formatter(&label)
            .label_style((FONT, TEXT_SIZE))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let y = row(i);
            Rectangle::new([(0.0, y - 0.35), (b.value, y + 0.35)], b.color.filled())
        }))?;
        let value_style = beside();
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            EmptyElement::at((b.value, row(i)))
                + Text::new(fmt_num(b.value), (4, 0), value_style.clone())
        }))?;
        Ok(())
    })
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

/// One bar per class and status, legit first.
fn status_bars(r: &DrillReport) -> Vec<Bar> {
    [("legit", &r.legit, LEGIT), ("attack", &r.attack, ATTACK)]
        .into_iter()
        .flat_map(|(name, c, color)| {
            c.statuses
                .iter()
                .map(move |(k, v)| bar(format!("{name} {k}"), *v as f64, color))
        })
        .collect()
}

/// What was sent against what the target ran (when levee was read).
fn cost_bars(r: &DrillReport) -> Vec<Bar> {
    let mut bars = vec![
        bar("legit requests", r.legit.requests as f64, LEGIT),
        bar("attack requests", r.attack.requests as f64, ATTACK),
        bar("attack 2xx", r.attack.success as f64, ATTACK),
    ];
    if let Some(l) = &r.levee {
        bars.push(bar(
            "invocations caused",
            l.invocations_caused as f64,
            LEVEE,
        ));
        bars.push(bar(
            "… by the attack (≤)",
            l.invocations_caused_by_attack as f64,
            LEVEE,
        ));
    }
    bars
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
        let _ = write!(
            h,
            "<h2>Cost to the target</h2><table id=\"levee\"><tr><th>invocations caused</th><td>{}</td></tr><tr><th>by the attack (at most)</th><td>{}</td></tr><tr><th>spend caused</th><td>{}</td></tr><tr><th>instances (peak)</th><td>{}</td></tr><tr><th>levee memory (peak)</th><td>{}</td></tr></table>",
            l.invocations_caused,
            l.invocations_caused_by_attack,
            esc(&l.spend_text()),
            l.instances_peak,
            esc(&l.memory_text())
        );
        if !l.auto_events.is_empty() {
            h.push_str("<h2>Automatic mitigation</h2><table id=\"auto\"><tr><th>event</th><th>opened (s)</th><th>signature</th><th>mitigation</th><th>in force (s)</th><th>attack 2xx/s before</th><th>after</th></tr>");
            for e in &l.auto_events {
                let signature = match (&e.attribute, &e.value) {
                    (Some(a), Some(v)) => format!("{a} {v}"),
                    _ => "none".to_string(),
                };
                let (enforced, before, after) = match e.enforced_s {
                    Some(at) => {
                        let (b, a) = r.attack_success_around(at);
                        (format!("{at:+.0}"), format!("{b:.0}"), format!("{a:.0}"))
                    }
                    None => ("-".into(), "-".into(), "-".into()),
                };
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{:+.0}</td><td>{}</td><td>{}</td><td>{enforced}</td><td>{before}</td><td>{after}</td></tr>",
                    e.id,
                    e.started_s,
                    esc(&signature),
                    esc(&e.mitigation)
                );
            }
            h.push_str("</table>");
        }
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
    h.push_str(&bar_chart("Status mix", &status_bars(r)));
    h.push_str(&bar_chart("Invocations vs requests", &cost_bars(r)));
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    /// The `<svg …>…</svg>` of the chart whose title is `title`.
    fn chart<'a>(html: &'a str, title: &str) -> &'a str {
        let start = html
            .find(&format!("aria-label=\"{title}\""))
            .unwrap_or_else(|| panic!("no chart {title}"));
        let end = start + html[start..].find("</svg>").expect("closed");
        &html[start..end]
    }

    fn assert_finite(html: &str) {
        assert_eq!(html.matches("<svg ").count(), 4, "four charts");
        assert_eq!(html.matches("</svg>").count(), 4);
        assert!(!html.contains("NaN") && !html.contains("inf"), "{html}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let mut r = sample();
        r.attack.statuses.insert("<b>\"x'&".into(), 1);
        let html = render(&r);
        assert!(!html.contains("<b>"), "chart text is escaped");
        assert!(
            chart(&html, "Status mix").contains("attack &lt;b&gt;&quot;x&apos;&amp;"),
            "the status is a label of its bar"
        );
    }

    #[test]
    fn charts_keep_colours_legends_and_labels() {
        let html = render(&sample());
        let throughput = chart(&html, "Throughput (requests started per second)");
        for needle in [
            "#1B7F3B",
            "#C0392B",
            "legit 2xx",
            "attack",
            "seconds",
            "requests/s",
        ] {
            assert!(throughput.contains(needle), "throughput lacks {needle}");
        }
        assert!(chart(&html, "Latency over time").contains("attack p50"));
        let cost = chart(&html, "Invocations vs requests");
        assert!(cost.contains("#555555") && cost.contains("… by the attack (≤)"));
    }

    #[test]
    fn axes_and_labels_stay_finite() {
        assert_eq!(axis_max(std::iter::empty(), 0.5), 1.0);
        assert_eq!(axis_max([0.0, f64::NAN].into_iter(), 0.5), 1.0);
        assert_eq!(axis_max([f64::INFINITY, 2.0].into_iter(), 0.5), 3.0);
        assert_eq!(fmt_num(f64::NAN), "0");
        assert_eq!(fmt_num(2.5), "2.50");
    }

    #[test]
    fn no_nan_for_empty_or_non_finite_data() {
        let mut empty = sample();
        for c in [&mut empty.legit, &mut empty.attack] {
            c.series.clear();
            c.statuses.clear();
            c.requests = 0;
            c.success = 0;
        }
        empty.levee = None;
        assert_finite(&render(&empty));

        let mut odd = sample();
        odd.attack.series[1].p99_ms = f64::INFINITY;
        odd.attack.series[2].p50_ms = f64::NAN;
        assert_finite(&render(&odd));
    }
}
