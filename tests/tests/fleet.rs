//! Several poller processes sharing a stream through a DynamoDB lease table (KCL-style leases).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use e2e::{Kinesis, PollerProcess, eventually, processed_kinesis_data, simulator, stream_mapping, unique};
use loadgen::simulate::{FunctionConfig, Latency};

/// `leaseKey → leaseOwner` of a lease table (owner `None` when free).
async fn owners(client: &aws_sdk_dynamodb::Client, table: &str) -> BTreeMap<String, Option<String>> {
    let Ok(out) = client.scan().table_name(table).consistent_read(true).send().await else {
        return BTreeMap::new();
    };
    out.items()
        .iter()
        .filter_map(|item| {
            let key = item.get("leaseKey")?.as_s().ok()?.clone();
            let owner = item.get("leaseOwner").and_then(|o| o.as_s().ok()).cloned();
            Some((key, owner))
        })
        .collect()
}

/// The process id inside an owner id `host:pid:uuid`.
fn pid_of(owner: &str) -> u32 {
    owner.split(':').nth(1).and_then(|p| p.parse().ok()).expect("owner id host:pid:uuid")
}

/// Three pollers share a four-shard stream; one is killed with SIGKILL. Its shards are taken over by
/// the others once its leases expire, and every record is processed: half of them are written after
/// the kill, so the takeover is needed whatever the timing (a fast fleet may have finished the first
/// half before the kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_pollers_share_shards_and_survive_a_kill() {
    let kinesis = Kinesis::new().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&e2e::sdk_config().await);
    let name = unique("fleet");
    let arn = kinesis.create_stream(&name, 4).await;
    let total = 240;
    let records: Vec<(String, String)> = (0..total).map(|i| (format!("key-{i}"), format!("f{i:03}"))).collect();
    let (first_half, second_half) = records.split_at(total / 2);
    kinesis.put(&name, first_half).await;
    let sim = simulator(FunctionConfig {
        latency: Latency::Fixed(Duration::from_millis(250)),
        ..FunctionConfig::default()
    })
    .await;
    let mapping = stream_mapping(&arn, "fleet-fn", r#""StartingPosition":"TRIM_HORIZON","BatchSize":2"#);
    let uuid = poller::config::load(&mapping).expect("mapping").uuid;
    let prefix = unique("leases");
    let table = format!("{prefix}-{uuid}");
    let args = ["--lease-table", prefix.as_str(), "--lease-failover", "2s"];
    let pollers: Vec<PollerProcess> = (0..3).map(|_| PollerProcess::new(&mapping, &sim.url())).collect();
    let mut children: Vec<std::process::Child> = pollers.iter().map(|p| p.spawn(&args)).collect();

    // Wait until the four leases are held by at least two pollers.
    eventually(Duration::from_secs(60), "leases spread over two pollers or more", || async {
        let owners = owners(&dynamodb, &table).await;
        let held: HashSet<&String> = owners.values().flatten().collect();
        owners.len() == 4 && owners.values().all(Option::is_some) && held.len() >= 2
    })
    .await;
    let before = owners(&dynamodb, &table).await;
    let victim_pid = before.values().flatten().map(|o| pid_of(o)).next().expect("an owner");
    let victim_shards: Vec<String> = before
        .iter()
        .filter(|(_, o)| o.as_deref().is_some_and(|o| pid_of(o) == victim_pid))
        .map(|(k, _)| k.clone())
        .collect();
    let victim = children.iter_mut().find(|c| c.id() == victim_pid).expect("victim is one of ours");
    victim.kill().expect("SIGKILL");
    victim.wait().unwrap();
    // Keys spread over every shard, so each of the victim's shards gets records only a survivor can
    // process once it has taken the lease over.
    kinesis.put(&name, second_half).await;

    eventually(Duration::from_secs(120), "every record processed", || async {
        let seen: HashSet<String> = processed_kinesis_data(&sim.invocations()).into_iter().collect();
        seen.len() >= total
    })
    .await;
    let after = owners(&dynamodb, &table).await;
    for shard in &victim_shards {
        let owner = after[shard].as_deref().expect("taken over");
        assert_ne!(pid_of(owner), victim_pid, "{shard} was taken over: {after:?}");
    }
    let mut survivor_takes = 0;
    for child in children.into_iter().filter(|c| c.id() != victim_pid) {
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "graceful exit");
        let report = String::from_utf8_lossy(&output.stdout);
        survivor_takes += report
            .split_whitespace()
            .find_map(|field| field.strip_prefix("lease_takes="))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("report has lease_takes: {report}"));
    }
    let survivors_held_before = before.values().flatten().filter(|o| pid_of(o) != victim_pid).count();
    assert!(
        survivor_takes >= survivors_held_before + victim_shards.len(),
        "the survivors' reports count the takeovers: {survivor_takes} takes"
    );
    let released = owners(&dynamodb, &table).await;
    assert!(released.values().all(Option::is_none), "leases released on shutdown: {released:?}");
    let seen: HashSet<String> = processed_kinesis_data(&sim.invocations()).into_iter().collect();
    assert_eq!(seen.len(), total, "no record lost");
}
