//! JUnit XML: one test case per threshold, so CI systems show breaches as failed tests.

use std::fmt::Write as _;

use super::Report;

pub(super) fn render(r: &Report) -> String {
    let failures = r.thresholds.iter().filter(|t| !t.passed).count();
    let tests = r.thresholds.len();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let name = escape(&r.name);
    let time = r.duration_s;
    writeln!(
        out,
        "<testsuites name=\"loadgen\" tests=\"{tests}\" failures=\"{failures}\" time=\"{time:.3}\">"
    )
    .expect("writing to a String cannot fail");
    writeln!(
        out,
        "  <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">"
    )
    .expect("writing to a String cannot fail");
    for t in &r.thresholds {
        let case = format!(
            "    <testcase classname=\"loadgen.{name}\" name=\"{}\" time=\"0\"",
            escape(&t.expression)
        );
        if t.passed {
            writeln!(out, "{case}/>").expect("writing to a String cannot fail");
        } else {
            let message = escape(&format!(
                "{} breached: measured {}",
                t.expression,
                t.value_text()
            ));
            writeln!(out, "{case}>\n      <failure type=\"threshold\" message=\"{message}\"/>\n    </testcase>")
                .expect("writing to a String cannot fail");
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Escapes text for XML attributes and content.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::RunInfo;
    use super::*;
    use crate::model::{Outcome, Recorder, Sample};
    use crate::plan::Threshold;

    #[test]
    fn one_test_case_per_threshold_with_failures() {
        let mut recorder = Recorder::new(Duration::from_millis(10), false);
        recorder.record(&Sample {
            outcome: Outcome::Success,
            detail: None,
            latency: Duration::from_millis(400),
            service_time: Duration::from_millis(400),
            send_lag: Duration::ZERO,
            report: None,
        });
        recorder.rotate(Duration::from_secs(1));
        let thresholds = [
            Threshold::parse("p99 < 300ms").unwrap(),
            Threshold::parse("error_rate < 1%").unwrap(),
        ];
        let info = RunInfo {
            name: "a&b".into(),
            ..RunInfo::default()
        };
        let xml = render(&Report::new(
            info,
            &recorder.finish(Duration::from_secs(1)),
            &thresholds,
        ));
        assert!(
            xml.contains("<testsuite name=\"a&amp;b\" tests=\"2\" failures=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<testcase classname=\"loadgen.a&amp;b\" name=\"error_rate &lt; 1%\" time=\"0\"/>"
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<failure type=\"threshold\" message=\"p99 &lt; 300ms breached: measured 400."
            ),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase").count(), 2);
    }
}
