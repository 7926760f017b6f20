//! `report.html`: one self-contained page with the summary, latency over time, throughput over
//! time and the percentile distribution, drawn as inline SVG by `plotters` (its SVG backend needs
//! no system fonts: the browser renders the text).

use std::fmt::Write as _;

use plotters::prelude::*;

use super::Report;
use super::junit::escape;
use crate::model::Outcome;

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
         pre{{background:#f6f6f6;padding:1em;overflow:auto}}.legend span{{margin-right:1.5em;white-space:nowrap}}\
         .legend i{{display:inline-block;width:1.6em;height:.25em;margin-right:.4em;vertical-align:middle}}</style>\n</head>\n<body>\n<h1>loadgen: {title}</h1>\n"
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
    if let Some(f) = &r.function {
        let per_million = f
            .cost
            .per_million_invocations
            .map_or_else(|| "–".to_owned(), |c| format!("${c:.4}"));
        let summary = |s: &Option<super::LatencySummary>| {
            s.as_ref().map_or_else(
                || "–".to_owned(),
                |s| format!("{:.2} / {:.2} / {:.2}", s.p50, s.p99, s.max),
            )
        };
        w(format!(
            "<table>\n<tr><th>function (REPORT lines)</th><th></th></tr>\n\
             <tr><td>invocations</td><td>{}</td></tr>\n\
             <tr><td>billed duration</td><td>{} ms</td></tr>\n\
             <tr><td>billed GB-seconds</td><td>{:.6}</td></tr>\n\
             <tr><td>max memory used / memory size</td><td>{} / {} MB ({:.1} %)</td></tr>\n\
             <tr><td>duration p50 / p99 / max</td><td>{} ms</td></tr>\n\
             <tr><td>service overhead p50 / p99 / max</td><td>{} ms</td></tr>\n\
             <tr><td>prices ({})</td><td>${} per GB-s, ${} per million requests</td></tr>\n\
             <tr><td>estimated cost of the run</td><td>${:.6}</td></tr>\n\
             <tr><td>per million invocations</td><td>{per_million}</td></tr>\n</table>\n",
            f.invocations,
            f.billed_duration_ms,
            f.billed_gb_seconds,
            f.max_memory_used_mb,
            f.memory_size_mb,
            f.memory_used_ratio * 100.0,
            summary(&f.duration_ms),
            summary(&f.overhead_ms),
            f.prices.architecture,
            f.prices.gb_second,
            f.prices.per_million_requests,
            f.cost.total,
        ));
    }
    if let Some(e) = &r.end_to_end {
        let summary = |s: &Option<super::LatencySummary>| {
            s.as_ref().map_or_else(
                || "<td>–</td>".repeat(5),
                |s| format!("<td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>", s.min, s.p50, s.p90, s.p99, s.max),
            )
        };
        let conditions: Vec<String> = e.conditions.iter().map(|(c, n)| format!("{} {n}", escape(c))).collect();
        w(format!(
            "<table>\n<tr><th>Event invocations ({})</th><th>min</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>\n\
             <tr><td>enqueue (send → 202), ms</td>{}</tr>\n\
             <tr><td>end to end (send → destination record), ms</td>{}</tr>\n</table>\n\
             <p>{} accepted · {} completed · {} not completed · by condition: {} · duplicates {} · other messages {}</p>\n",
            escape(&e.queue_url),
            summary(&e.enqueue_ms),
            summary(&e.end_to_end_ms),
            e.accepted,
            e.completed,
            e.not_completed,
            if conditions.is_empty() { "–".to_owned() } else { conditions.join(", ") },
            e.duplicates,
            e.foreign,
        ));
    }
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
pub(super) struct Series {
    pub(super) label: String,
    pub(super) points: Vec<(f64, f64)>,
}

/// Tick values for a log axis from `min` to `max`: powers of ten when the range spans enough of
/// them, else 1-2-5 steps, else every digit, else (a range within one digit, say 18 to 26 ms)
/// evenly spaced round values. Plotters' own log axis ticks only powers of ten, which leaves a
/// narrow range (the usual case for a steady latency) without a single label.
fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    const ENOUGH: usize = 4;
    if !(min > 0.0 && max > min) {
        return vec![min];
    }
    let decades = min.log10().floor() as i32..=max.log10().ceil() as i32;
    for mantissas in [
        &[1.0][..],
        &[1.0, 2.0, 5.0],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ] {
        let ticks: Vec<f64> = decades
            .clone()
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|t| (min..=max).contains(t))
            .collect();
        if ticks.len() >= ENOUGH {
            return ticks;
        }
    }
    // The largest 1, 2 or 5 step that still gives four ticks inside the range.
    let rough = (max - min) / ENOUGH as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [5.0, 2.0, 1.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s <= rough)
        .unwrap_or(magnitude);
    let first = (min / step).ceil() as i64;
    let last = (max / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick label without float noise or trailing zeros: `0.2`, `20`, `1500`.
fn tick_label(value: &f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// Draws `series` as lines; `log_y` for latencies, whose spikes would flatten everything else.
/// The legend is HTML under the chart, so it never hides data.
pub(super) fn line_chart(
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
                    .axis_desc_style(("sans-serif", 14))
                    .y_label_formatter(&tick_label);
                if let Some(f) = x_labels {
                    mesh.x_label_formatter(f);
                }
                mesh.draw()?;
                for (i, s) in series.iter().enumerate() {
                    let color = COLORS[i % COLORS.len()];
                    let points = s.points.iter().copied().filter(|p| !log_y || p.1 > 0.0);
                    chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
                }
            }};
        }
        if log_y && y_min.is_finite() {
            let (low, high) = (y_min * 0.9, y_max);
            let ticks = log_ticks(low, high);
            draw!(
                builder
                    .build_cartesian_2d(x_range, (low..high).log_scale().with_key_points(ticks))?
            );
        } else {
            draw!(builder.build_cartesian_2d(x_range, 0f64..y_max)?);
        }
        root.present()?;
        Ok(())
    })();
    let legend: String = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let RGBColor(r, g, b) = COLORS[i % COLORS.len()];
            format!(
                "<span><i style=\"background:rgb({r},{g},{b})\"></i>{}</span>",
                escape(&s.label)
            )
        })
        .collect();
    match drawn {
        Ok(()) => format!("{svg}\n<p class=\"legend\">{legend}</p>\n"),
        Err(e) => format!(
            "<p>Chart could not be drawn: {}</p>\n",
            escape(&e.to_string())
        ),
    }
}

fn latency_over_time(r: &Report) -> String {
    type Pick = fn(&crate::model::IntervalRow) -> Option<f64>;
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
    let nines = |list: &[super::PercentilePoint]| {
        list.iter()
            .filter(|p| p.percentile < 100.0)
            .map(|p| (-(1.0 - p.percentile / 100.0).log10(), p.latency_ms))
            .collect()
    };
    let mut series = vec![Series {
        label: "all outcomes".to_owned(),
        points: nines(&r.percentiles),
    }];
    // The service overhead beside it: how much of the latency is not the function's.
    if let Some(f) = r
        .function
        .as_ref()
        .filter(|f| !f.overhead_percentiles.is_empty())
    {
        series.push(Series {
            label: "service overhead (service time − Duration − Init Duration)".to_owned(),
            points: nines(&f.overhead_percentiles),
        });
    }
    // Event invocations: the 202 and the function's completion.
    if let Some(e) = &r.end_to_end {
        let points = |pick: fn(&super::EndToEndPoint) -> Option<f64>| -> Vec<super::PercentilePoint> {
            e.percentiles
                .iter()
                .filter_map(|p| pick(p).map(|latency_ms| super::PercentilePoint { percentile: p.percentile, latency_ms }))
                .collect()
        };
        for (label, list) in [
            ("Event enqueue (send → 202)", points(|p| p.enqueue_ms)),
            ("Event end to end (send → destination record)", points(|p| p.end_to_end_ms)),
        ] {
            if !list.is_empty() {
                series.push(Series { label: label.to_owned(), points: nines(&list) });
            }
        }
    }
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
    use crate::model::{Recorder, Sample};

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
                    report: None,
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
        // Legends are HTML below each chart, outside the plotted data.
        assert_eq!(html.matches("<p class=\"legend\">").count(), 3);
        assert!(html.contains("></i>p99.9</span>") || html.contains("></i>p99</span>"));
    }

    #[test]
    fn log_axis_ticks_on_wide_and_narrow_ranges() {
        assert_eq!(
            log_ticks(0.5, 20_000.0),
            [1.0, 10.0, 100.0, 1000.0, 10_000.0]
        );
        assert_eq!(log_ticks(3.0, 90.0), [5.0, 10.0, 20.0, 50.0]);
        assert_eq!(
            log_ticks(15.0, 95.0),
            [20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
        );
        // Within one or two digits: evenly spaced round values, at least four of them.
        let narrow = log_ticks(18.2, 26.4);
        assert_eq!(narrow, [20.0, 22.0, 24.0, 26.0]);
        assert_eq!(log_ticks(21.6, 48.0), [25.0, 30.0, 35.0, 40.0, 45.0]);
        let tiny = log_ticks(0.41, 0.47);
        assert!(
            tiny.len() >= 3 && tiny.iter().all(|t| (0.41..=0.47).contains(t)),
            "{tiny:?}"
        );
        assert_eq!(tick_label(&0.2), "0.2");
        assert_eq!(tick_label(&(0.1 + 0.2)), "0.3");
        assert_eq!(tick_label(&1500.0), "1500");
    }

    /// A steady latency spans less than one digit; the latency chart must still label its axis.
    #[test]
    fn a_narrow_latency_range_gets_labelled_ticks() {
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        for second in 0..3u64 {
            for ms in 20..=24 {
                recorder.record(&Sample {
                    outcome: Outcome::Success,
                    detail: None,
                    latency: Duration::from_millis(ms),
                    service_time: Duration::from_millis(ms),
                    send_lag: Duration::ZERO,
                    report: None,
                });
            }
            recorder.rotate(Duration::from_secs(second + 1));
        }
        let report = Report::new(
            RunInfo::default(),
            &recorder.finish(Duration::from_secs(3)),
            &[],
        );
        let chart = latency_over_time(&report);
        let labels: Vec<&str> = chart.lines().filter(|l| l.parse::<f64>().is_ok()).collect();
        // y ticks such as 20, 22, 24 (and x ticks in seconds).
        assert!(
            labels
                .iter()
                .filter(|l| l.parse::<f64>().unwrap() >= 18.0)
                .count()
                >= 3,
            "{chart}"
        );
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

    #[test]
    fn report_lines_give_a_function_table_and_an_overhead_curve() {
        let mut recorder = Recorder::new(Duration::from_millis(10), true);
        for ms in 1..=100u64 {
            recorder.record(&Sample {
                report: Some(crate::model::ReportLine {
                    duration: Duration::from_millis(ms),
                    billed_duration: Duration::from_millis(ms),
                    memory_size_mb: 256,
                    max_memory_used_mb: 64,
                    init_duration: None,
                }),
                ..Sample::timed(Outcome::Success, ms + 3)
            });
        }
        recorder.rotate(Duration::from_secs(1));
        let html = render(&Report::new(
            RunInfo::default(),
            &recorder.finish(Duration::from_secs(1)),
            &[],
        ));
        assert!(
            html.contains("<tr><td>billed duration</td><td>5050 ms</td></tr>"),
            "{html}"
        );
        assert!(html.contains("64 / 256 MB (25.0 %)"), "{html}");
        assert!(
            html.contains("service overhead p50 / p99 / max</td><td>3.00 / 3.00 / 3.00 ms"),
            "{html}"
        );
        assert!(
            html.contains("></i>service overhead (service time"),
            "{html}"
        );
    }
}
