//! `report.html`: one self-contained page with the summary, latency over time, throughput over
//! time and the percentile distribution, drawn as inline SVG by `plotters` (its SVG backend needs
//! no system fonts: the browser renders the text).

use std::fmt::Write as _;

use plotters::prelude::*;

use super::Report;
use super::junit::escape;
use crate::run::Outcome;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 360;
/// One colour per series, chosen for contrast on white.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub(super) fn render(r: &Report) -> String {
    let mut out = String::new();
    let title = escape(&r.name);
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>loadgen: {title}</title>\n\
         <style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}.fail{{color:#b00}}.pass{{color:#070}}\
         pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style>\n</head>\n<body>\n<h1>loadgen: {title}</h1>\n"
    )
    .expect("writing to a String cannot fail");
    section(&mut out, r);
    out.push_str("<h2>Latency over time</h2>\n");
    out.push_str(&latency_over_time(r));
    out.push_str("<h2>Throughput over time</h2>\n");
    out.push_str(&throughput_over_time(r));
    out.push_str("<h2>Latency percentiles</h2>\n");
    out.push_str(&percentile_plot(r));
    write!(
        out,
        "<h2>Summary</h2>\n<pre>{}</pre>\n</body>\n</html>\n",
        escape(&r.summary())
    )
    .expect("writing to a String cannot fail");
    out
}

/// Key figures, outcome counts and thresholds as tables.
fn section(out: &mut String, r: &Report) {
    let mut w = |s: String| out.push_str(&s);
    w(format!(
        "<p>{} · {} · started {} · {:.1} s · {} requests ({:.1}/s){}</p>\n",
        escape(r.target.as_deref().unwrap_or("merged logs")),
        escape(
            &r.model
                .as_ref()
                .map(|m| format!("{m} model"))
                .unwrap_or_default()
        ),
        escape(r.started_at.as_deref().unwrap_or("?")),
        r.duration_s,
        r.requests,
        r.throughput_rps,
        if r.interrupted { " · interrupted" } else { "" },
    ));
    w(
        "<table>\n<tr><th>outcome</th><th>count</th><th>rate</th><th>details</th></tr>\n"
            .to_owned(),
    );
    for (outcome, o) in &r.outcomes {
        let details: Vec<String> = o
            .details
            .iter()
            .map(|(d, n)| format!("{} {n}", escape(d)))
            .collect();
        w(format!(
            "<tr><td>{outcome}</td><td>{}</td><td>{:.2} %</td><td>{}</td></tr>\n",
            o.count,
            o.rate * 100.0,
            details.join("<br>")
        ));
    }
    w("</table>\n".to_owned());
    if !r.thresholds.is_empty() {
        w("<table>\n<tr><th>threshold</th><th>measured</th><th>result</th></tr>\n".to_owned());
        for t in &r.thresholds {
            let (class, verdict) = if t.passed {
                ("pass", "passed")
            } else {
                ("fail", "BREACHED")
            };
            w(format!(
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{verdict}</td></tr>\n",
                escape(&t.expression),
                escape(&t.value_text())
            ));
        }
        w("</table>\n".to_owned());
    }
}

/// A named line for a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// Draws `series` as lines; `log_y` for latencies, whose spikes would flatten everything else.
fn line_chart(
    series: &[Series],
    x_desc: &str,
    y_desc: &str,
    log_y: bool,
    x_labels: Option<&dyn Fn(&f64) -> String>,
) -> String {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    if points().next().is_none() {
        return "<p>No data.</p>\n".to_owned();
    }
    let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(1e-3);
    let y_max = points().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let y_min = points()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(f64::INFINITY, f64::min);
    let mut svg = String::new();
    let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        let x_range = 0f64..x_max;
        macro_rules! draw {
            ($chart:expr) => {{
                let mut chart = $chart;
                let mut mesh = chart.configure_mesh();
                mesh.x_desc(x_desc)
                    .y_desc(y_desc)
                    .label_style(("sans-serif", 13))
                    .axis_desc_style(("sans-serif", 14));
                if let Some(f) = x_labels {
                    mesh.x_label_formatter(f);
                }
                mesh.draw()?;
                for (i, s) in series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    let points = s.points.iter().copied().filter(|p| !log_y || p.1 > 0.0);
                    chart
                        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                        .label(s.label.clone())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::UpperLeft)
                    .label_font(("sans-serif", 13))
                    .draw()?;
            }};
        }
        if log_y && y_min.is_finite() {
            draw!(builder.build_cartesian_2d(x_range, ((y_min * 0.8)..y_max).log_scale())?);
        } else {
            draw!(builder.build_cartesian_2d(x_range, 0f64..y_max)?);
        }
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => svg + "\n",
        Err(e) => format!(
            "<p>Chart could not be drawn: {}</p>\n",
            escape(&e.to_string())
        ),
    }
}

fn latency_over_time(r: &Report) -> String {
    type Pick = fn(&crate::run::IntervalRow) -> Option<f64>;
    let picks: [(&str, Pick); 4] = [
        ("p50", |i| i.p50_ms),
        ("p90", |i| i.p90_ms),
        ("p99", |i| i.p99_ms),
        ("max", |i| i.max_ms),
    ];
    let series: Vec<Series> = picks
        .iter()
        .map(|(label, pick)| Series {
            label: (*label).to_owned(),
            points: r
                .intervals
                .iter()
                .filter_map(|i| pick(i).map(|v| (i.start_s + i.duration_s, v)))
                .collect(),
        })
        .collect();
    line_chart(
        &series,
        "elapsed (s)",
        "latency (ms, log scale)",
        true,
        None,
    )
}

fn throughput_over_time(r: &Report) -> String {
    let series: Vec<Series> = Outcome::ALL
        .iter()
        .filter(|o| r.outcomes.get(o).is_some_and(|c| c.count > 0))
        .map(|o| Series {
            label: format!("{o} /s"),
            points: r
                .intervals
                .iter()
                .filter(|i| i.duration_s > 0.0)
                .map(|i| {
                    (
                        i.start_s + i.duration_s,
                        i.outcomes.get(o).copied().unwrap_or(0) as f64 / i.duration_s,
                    )
                })
                .collect(),
        })
        .collect();
    line_chart(
        &series,
        "elapsed (s)",
        "completions per second",
        false,
        None,
    )
}

/// Percentiles on a "number of nines" axis (90 % → 1, 99 % → 2, 99.9 % → 3), as HdrHistogram
/// plots them, so the tail gets as much room as the median.
fn percentile_plot(r: &Report) -> String {
    let points = r
        .percentiles
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| (-(1.0 - p.percentile / 100.0).log10(), p.latency_ms))
        .collect();
    let series = [Series {
        label: "all outcomes".to_owned(),
        points,
    }];
    // Labels at whole nines only: 90 %, 99 %, 99.9 %.
    let label = |nines: &f64| {
        if (nines - nines.round()).abs() > 1e-9 {
            return String::new();
        }
        let percentile = 100.0 * (1.0 - 10f64.powf(-nines));
        let text = format!("{percentile:.4}");
        format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
    };
    line_chart(
        &series,
        "percentile",
        "latency (ms, log scale)",
        true,
        Some(&label),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::RunInfo;
    use super::*;
    use crate::run::{Recorder, Sample};

    #[test]
    fn page_has_three_charts_and_the_summary() {
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        for second in 0..3u64 {
            for ms in 1..=50 {
                recorder.record(&Sample {
                    outcome: if ms == 50 {
                        Outcome::Throttle
                    } else {
                        Outcome::Success
                    },
                    detail: None,
                    latency: Duration::from_millis(ms * (second + 1)),
                    service_time: Duration::from_millis(ms),
                    send_lag: Duration::ZERO,
                    init_duration: None,
                });
            }
            recorder.rotate(Duration::from_secs(second + 1));
        }
        let info = RunInfo {
            name: "<demo>".into(),
            ..RunInfo::default()
        };
        let html = render(&Report::new(
            info,
            &recorder.finish(Duration::from_secs(3)),
            &[],
        ));
        assert!(html.contains("<title>loadgen: &lt;demo&gt;</title>"));
        assert_eq!(html.matches("<svg").count(), 3, "{html}");
        assert!(html.contains("p99") && html.contains("throttle /s"));
        // Percentile axis labels in percent.
        assert!(
            html.contains("\n99%\n") && html.contains("\n99.9%\n"),
            "{html}"
        );
        assert!(html.contains("<pre>loadgen · &lt;demo&gt;"));
        assert!(!html.contains("could not be drawn"));
    }

    #[test]
    fn empty_report_has_no_charts() {
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        recorder.rotate(Duration::from_secs(1));
        let html = render(&Report::new(
            RunInfo::default(),
            &recorder.finish(Duration::from_secs(1)),
            &[],
        ));
        assert_eq!(html.matches("<p>No data.</p>").count(), 3);
    }
}
