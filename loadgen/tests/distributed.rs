//! Distributed runs against moto's S3 (started by scripts/test.sh, which exports
//! `AWS_ENDPOINT_URL_S3` and dummy credentials): worker processes of `loadgen run --out-dir
//! s3://…` each write under their label, and `loadgen merge s3://…` gives back exactly the union
//! of their histograms.

use std::collections::BTreeMap;

use aws_sdk_s3::config::Region;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use loadgen::report::LogReader;
use serde_json::Value;

mod common;
// The binary gets the environment scripts/test.sh set (moto's endpoints, dummy credentials).
use common::{binary, exited, simulator};

/// moto's S3, as scripts/test.sh exports it.
fn s3() -> aws_sdk_s3::Client {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .expect("AWS_ENDPOINT_URL_S3 is unset: run under scripts/test.sh, which starts moto");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn new_bucket(s3: &aws_sdk_s3::Client) -> String {
    let bucket = format!("loadgen-dist-{}", uuid::Uuid::new_v4().simple());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    bucket
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let object = s3.get_object().bucket(bucket).key(key).send().await;
    let object = object.unwrap_or_else(|e| panic!("s3://{bucket}/{key}: {e:?}"));
    object.body.collect().await.unwrap().to_vec()
}

/// Per-outcome totals of an interval log, read tag by tag (each tagged histogram holds one
/// outcome's latencies for one interval).
fn totals_by_outcome(text: &[u8]) -> BTreeMap<String, Histogram<u64>> {
    let mut deserializer = Deserializer::new();
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for entry in LogReader::new(text) {
        let entry = entry.expect("a valid interval log");
        let Some(tag) = entry.tag else { continue };
        let histogram = entry.decode(&mut deserializer).unwrap();
        match totals.get_mut(tag) {
            Some(total) => total.add(&histogram).unwrap(),
            None => {
                totals.insert(tag.to_owned(), histogram);
            }
        }
    }
    totals
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_write_to_s3_and_merge_to_the_exact_union() {
    let sim = simulator("1ms").await;
    let s3 = s3();
    let bucket = new_bucket(&s3).await;
    let prefix = format!("s3://{bucket}/run-1");
    let url = format!("{}/http/dist", sim.url());
    let run = |worker: Option<&str>| {
        let mut args = vec![
            "run",
            url.as_str(),
            "--rate",
            "100",
            "--requests",
            "200",
            "--out-dir",
            prefix.as_str(),
            "--metrics-addr",
            "off",
            "--json",
        ];
        args.extend(worker.map(|w| ["--worker", w]).into_iter().flatten());
        binary(&args)
    };
    // Two labels from --worker, one from a Kubernetes Indexed Job's environment.
    let mut indexed = run(None);
    indexed.env("JOB_COMPLETION_INDEX", "2");
    let (w0, w1, w2) = tokio::join!(
        run(Some("w0")).output(),
        run(Some("w1")).output(),
        indexed.output()
    );
    let mut worker_reports = BTreeMap::new();
    for (label, output) in [("w0", w0), ("w1", w1), ("2", w2)] {
        let output = output.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "worker {label}: {stderr}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["requests"], 200, "worker {label}");
        // The report uploaded is the one printed.
        let uploaded = get(&s3, &bucket, &format!("run-1/{label}/report.json")).await;
        assert_eq!(serde_json::from_slice::<Value>(&uploaded).unwrap(), report);
        worker_reports.insert(label, report);
    }
    assert_eq!(sim.stats().functions["dist"].invocations, 600);
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("run-1/w0/")
        .send()
        .await
        .unwrap();
    let mut files: Vec<&str> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key()?.strip_prefix("run-1/w0/"))
        .collect();
    files.sort_unstable();
    assert_eq!(
        files,
        [
            ".loadgen-write-check",
            "intervals.csv",
            "junit.xml",
            "latency.hlog",
            "percentiles.csv",
            "report.html",
            "report.json"
        ]
    );

    let merged_prefix = format!("s3://{bucket}/merged-1");
    let output = binary(&["merge", &prefix, "--out-dir", &merged_prefix])
        .output()
        .await
        .unwrap();
    let (stdout, _) = exited(&output, 0);
    assert!(stdout.contains("workers: 3 (2, w0, w1)"), "{stdout}");
    assert!(
        stdout.contains(&format!("reports written to {merged_prefix}")),
        "{stdout}"
    );

    // The merged log holds, outcome by outcome, exactly the union of the workers' logs: the same
    // count at every value.
    let mut union: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for label in worker_reports.keys() {
        let log = get(&s3, &bucket, &format!("run-1/{label}/latency.hlog")).await;
        for (tag, histogram) in totals_by_outcome(&log) {
            match union.get_mut(&tag) {
                Some(total) => total.add(&histogram).unwrap(),
                None => {
                    union.insert(tag, histogram);
                }
            }
        }
    }
    let merged_log = get(&s3, &bucket, "merged-1/latency.hlog").await;
    let merged = totals_by_outcome(&merged_log);
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        union.keys().collect::<Vec<_>>()
    );
    for (tag, histogram) in &union {
        // `Histogram`'s equality compares the count at every index.
        assert_eq!(&merged[tag], histogram, "outcome {tag}");
    }

    // The merged report counts every request of every worker, names the workers' logs, and the
    // workers' rates add up to the sum it prints.
    let report: Value =
        serde_json::from_slice(&get(&s3, &bucket, "merged-1/report.json").await).unwrap();
    let worker_requests: u64 = worker_reports
        .values()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(worker_requests, 600);
    assert_eq!(report["requests"].as_u64(), Some(worker_requests));
    assert_eq!(
        union.values().map(Histogram::len).sum::<u64>(),
        worker_requests
    );
    let sources: Vec<&str> = report["merged_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["2", "w0", "w1"].map(|w| format!("{prefix}/{w}/latency.hlog"))
    );
    let sum_printed: f64 = stdout
        .split("sum of their rates ")
        .nth(1)
        .and_then(|rest| rest.split("/s").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sum of rates in {stdout}"));
    let sum_reported: f64 = worker_reports
        .values()
        .map(|r| r["throughput_rps"].as_f64().unwrap())
        .sum();
    // Each worker's rate from its log equals the one it reported up to the log's millisecond
    // time stamps and the printed decimal.
    assert!(
        (sum_printed - sum_reported).abs() <= 0.01 * sum_reported + 0.1,
        "printed {sum_printed}, workers reported {sum_reported}"
    );
    // Over the union of the workers' spans the rate can only be lower.
    assert!(report["throughput_rps"].as_f64().unwrap() <= sum_printed + 0.1);
}

#[tokio::test]
async fn a_missing_bucket_fails_before_any_request_is_sent() {
    let sim = simulator("1ms").await;
    let missing = format!("s3://loadgen-missing-{}/run", uuid::Uuid::new_v4().simple());
    let url = format!("{}/http/never", sim.url());
    let output = binary(&[
        "run",
        &url,
        "--rate",
        "100",
        "--duration",
        "30s",
        "--out-dir",
        &missing,
        "--worker",
        "w0",
        "--metrics-addr",
        "off",
    ])
    .output()
    .await
    .unwrap();
    let (_, stderr) = exited(&output, 2);
    assert!(
        stderr.contains(&format!("{missing}/w0")) && stderr.contains("no such bucket"),
        "{stderr}"
    );
    assert_eq!(
        sim.stats().functions.get("never"),
        None,
        "a request was sent"
    );

    // Merging a prefix without logs is an error too, not an empty report that passes.
    let s3 = s3();
    let bucket = new_bucket(&s3).await;
    let empty = format!("s3://{bucket}/nothing");
    let output = binary(&["merge", &empty]).output().await.unwrap();
    let (_, stderr) = exited(&output, 2);
    assert!(
        stderr.contains(&empty) && stderr.contains("no latency.hlog"),
        "{stderr}"
    );
}

/// The same layout on a local disk (a shared volume): `--worker` puts each run in `DIR/WORKER/`,
/// and `loadgen merge DIR` merges every worker below it.
#[tokio::test]
async fn workers_in_a_local_directory_merge_too() {
    let sim = simulator("1ms").await;
    let url = format!("{}/http/local", sim.url());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    for worker in ["a", "b"] {
        let output = binary(&[
            "run",
            &url,
            "--rate",
            "100",
            "--requests",
            "50",
            "--out-dir",
            out,
            "--worker",
            worker,
            "--metrics-addr",
            "off",
            "--json",
        ])
        .output()
        .await
        .unwrap();
        assert_eq!(output.status.code(), Some(0), "worker {worker}");
        assert!(dir.path().join(worker).join("latency.hlog").is_file());
    }
    let output = binary(&["merge", out, "--json"]).output().await.unwrap();
    let (stdout, _) = exited(&output, 0);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["requests"], 100);
    let sources = report["merged_from"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert!(sources[0].as_str().unwrap().ends_with("a/latency.hlog"));

    // A merged output inside the merged directory is refused: it would be one more worker.
    let inside = dir.path().join("merged");
    let output = binary(&["merge", out, "--out-dir", inside.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let (_, stderr) = exited(&output, 2);
    assert!(
        stderr.contains("--out-dir") && stderr.contains("one more worker"),
        "{stderr}"
    );
}
