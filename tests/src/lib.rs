//! Support for the end-to-end tests (and the quickstart): clients for the emulator that
//! `scripts/emulator.sh` starts, resource helpers, the function simulator and the poller run in-process.
//!
//! Every test creates its own uniquely named resources, so tests run in parallel against one emulator.

use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};
use tokio_util::sync::CancellationToken;

pub mod process;
pub mod proxy;
pub mod soak;

/// The emulator endpoint, from `POLLER_TEST_ENDPOINT` (set by scripts/test.sh).
pub fn endpoint() -> String {
    std::env::var("POLLER_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("POLLER_TEST_ENDPOINT is not set: run the tests with scripts/test.sh, which starts moto server")
    })
}

/// AWS configuration for the emulator: fixed region and dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "e2e"))
        .load()
        .await
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Wait until `check` returns true, polling every 100 ms; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Options for a poller run in-process against the emulator, keeping its state in `state_dir`; callers
/// say where the function is (`lambda_endpoint_url` or `http_url`) and change what their test needs.
pub fn options(state_dir: std::path::PathBuf) -> poller::Options {
    poller::Options {
        http_url: None,
        lambda_endpoint_url: None,
        endpoint_url: Some(endpoint()),
        region: Some("us-east-1".to_owned()),
        invoke_timeout: Some(Duration::from_secs(30)),
        state_dir,
        invoke_identity_arn: None,
        // Tests run many pollers at once: no fixed port.
        metrics_addr: None,
        lease_table: None,
        lease_failover: Duration::from_secs(10),
        lifecycle: Default::default(),
        assume_role: None,
        sqs_throttle: Default::default(),
    }
}

/// An SQS queue in the emulator.
#[derive(Clone, Debug)]
pub struct Queue {
    pub name: String,
    pub url: String,
    pub arn: String,
}

/// SQS helpers bound to one client.
#[derive(Clone, Debug)]
pub struct Sqs {
    pub client: aws_sdk_sqs::Client,
}

impl Sqs {
    pub async fn new() -> Sqs {
        Sqs {
            client: aws_sdk_sqs::Client::new(&sdk_config().await),
        }
    }

    /// Create a queue (`.fifo` name suffix makes a FIFO queue) with extra attributes.
    pub async fn create_queue(&self, name: &str, attributes: &[(QueueAttributeName, String)]) -> Queue {
        let mut req = self.client.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            req = req.attributes(QueueAttributeName::FifoQueue, "true");
        }
        for (k, v) in attributes {
            req = req.attributes(k.clone(), v);
        }
        let url = req.send().await.expect("CreateQueue").queue_url.expect("queue url");
        let arn = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("queue arn");
        Queue {
            name: name.to_owned(),
            url,
            arn,
        }
    }

    /// A queue whose failed messages move to a new dead-letter queue after `max_receive_count` receives.
    pub async fn create_queue_with_dlq(
        &self,
        name: &str,
        visibility_timeout_secs: u32,
        max_receive_count: u32,
    ) -> (Queue, Queue) {
        let suffix = if name.ends_with(".fifo") { ".fifo" } else { "" };
        let dlq = self
            .create_queue(&format!("{}-dlq{suffix}", name.trim_end_matches(".fifo")), &[])
            .await;
        let policy = serde_json::json!({
            "deadLetterTargetArn": dlq.arn,
            "maxReceiveCount": max_receive_count.to_string(),
        });
        let queue = self
            .create_queue(
                name,
                &[
                    (QueueAttributeName::VisibilityTimeout, visibility_timeout_secs.to_string()),
                    (QueueAttributeName::RedrivePolicy, policy.to_string()),
                ],
            )
            .await;
        (queue, dlq)
    }

    /// Send messages in batches of 10; `group` is the FIFO message group (content-based ids are derived
    /// from the position so FIFO deduplication never drops one).
    pub async fn send(&self, queue: &Queue, messages: &[(String, Option<String>)]) {
        let entries = messages.iter().enumerate().map(|(i, (body, group))| {
            let mut e = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body);
            if let Some(g) = group {
                e = e.message_group_id(g).message_deduplication_id(i.to_string());
            }
            e.build().expect("entry")
        });
        self.send_entries(queue, entries.collect()).await;
    }

    /// Send `entries` in batches of 10 (SendMessageBatch's most), in order; ids must be unique within
    /// each batch.
    pub async fn send_entries(&self, queue: &Queue, entries: Vec<SendMessageBatchRequestEntry>) {
        for chunk in entries.chunks(10) {
            let out = self
                .client
                .send_message_batch()
                .queue_url(&queue.url)
                .set_entries(Some(chunk.to_vec()))
                .send()
                .await
                .expect("SendMessageBatch");
            assert!(out.failed().is_empty(), "SendMessageBatch failures: {:?}", out.failed());
        }
    }

    /// Receive and delete everything currently visible.
    pub async fn drain(&self, queue: &Queue) -> Vec<Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(&queue.url)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .expect("ReceiveMessage");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return all;
            }
            for m in &messages {
                self.client
                    .delete_message()
                    .queue_url(&queue.url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
            all.extend(messages);
        }
    }

    /// `ApproximateNumberOfMessages` + `…NotVisible`: what the queue still holds.
    pub async fn depth(&self, queue: &Queue) -> u64 {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|k| attrs.get(k)?.parse::<u64>().ok())
        .sum()
    }
}

/// A poller running in this process.
pub struct RunningPoller {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<Vec<poller::MappingReport>, poller::Error>>,
}

impl RunningPoller {
    /// Start `mappings` (JSON texts in the CreateEventSourceMapping shape) against the emulator, invoking
    /// through the Lambda API at `lambda_endpoint`, or by HTTP POST when `http_url` is set.
    pub fn start(mappings: &[String], lambda_endpoint: &str, http_url: Option<String>) -> RunningPoller {
        Self::start_in(mappings, lambda_endpoint, http_url, std::env::temp_dir().join(unique("poller-state")))
    }

    /// Like [`RunningPoller::start`], keeping durable state (checkpoints) in `state_dir`.
    pub fn start_in(
        mappings: &[String],
        lambda_endpoint: &str,
        http_url: Option<String>,
        state_dir: std::path::PathBuf,
    ) -> RunningPoller {
        if std::env::var_os("RUST_LOG").is_some() {
            // Several tests in one binary: only the first installs the subscriber.
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init()
                .ok();
        }
        let mappings = mappings
            .iter()
            .map(|json| poller::config::load(json).unwrap_or_else(|e| panic!("mapping invalid: {e}\n{json}")))
            .collect();
        let options = poller::Options {
            http_url,
            lambda_endpoint_url: Some(lambda_endpoint.to_owned()),
            ..options(state_dir)
        };
        let cancel = CancellationToken::new();
        let task = tokio::spawn(poller::Poller::new(mappings, options).run(cancel.clone()));
        RunningPoller { cancel, task }
    }

    /// Wait for the poller to end on its own (it does when it cannot start).
    pub async fn result(self) -> Result<Vec<poller::MappingReport>, poller::Error> {
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("poller ends within 30 s")
            .expect("poller task")
    }

    /// Graceful shutdown; returns what each mapping did.
    pub async fn stop(self) -> Vec<poller::MappingReport> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("poller stops within 60 s of shutdown")
            .expect("poller task")
            .expect("poller ran")
    }
}

/// The function simulator, started in-process with per-invocation recording on.
pub async fn simulator(function: loadgen::simulate::FunctionConfig) -> loadgen::simulate::SimHandle {
    let config = loadgen::simulate::SimConfig {
        record: true,
        default: function,
        ..Default::default()
    };
    loadgen::simulate::Simulator::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("simulator starts")
}

/// The `Records` of an invocation's payload.
pub fn records(invocation: &loadgen::simulate::Invocation) -> Vec<serde_json::Value> {
    invocation.payload["Records"].as_array().cloned().unwrap_or_default()
}

/// SQS bodies the function processed successfully, in invocation completion order, with repeats.
pub fn processed_bodies(invocations: &[loadgen::simulate::Invocation]) -> Vec<String> {
    let mut bodies = Vec::new();
    for inv in invocations {
        for record in records(inv) {
            let id = record["messageId"].as_str().unwrap_or_default();
            if inv.records_ok.iter().any(|ok| ok == id) {
                bodies.push(record["body"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
    bodies
}

/// A mapping definition for `queue` → `function` with extra top-level keys (a JSON object's members,
/// without braces, may be empty).
pub fn sqs_mapping(queue: &Queue, function: &str, extra: &str) -> String {
    let sep = if extra.trim().is_empty() { "" } else { "," };
    format!(r#"{{"EventSourceArn":"{}","FunctionName":"{function}"{sep}{extra}}}"#, queue.arn)
}

/// Kinesis helpers bound to one client.
#[derive(Clone, Debug)]
pub struct Kinesis {
    pub client: aws_sdk_kinesis::Client,
}

impl Kinesis {
    pub async fn new() -> Kinesis {
        Kinesis {
            client: aws_sdk_kinesis::Client::new(&sdk_config().await),
        }
    }

    /// Create a stream with `shards` shards, wait until it is active, return its ARN.
    pub async fn create_stream(&self, name: &str, shards: i32) -> String {
        self.client
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        for _ in 0..100 {
            let summary = self
                .client
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .expect("DescribeStreamSummary")
                .stream_description_summary
                .expect("summary");
            if summary.stream_status == aws_sdk_kinesis::types::StreamStatus::Active {
                return summary.stream_arn;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("stream {name} did not become active");
    }

    /// Put records (partition key, data) one at a time, so their order in each shard is the given order.
    pub async fn put(&self, stream: &str, records: &[(String, String)]) -> Vec<String> {
        let mut sequence_numbers = Vec::new();
        for (key, data) in records {
            let out = self
                .client
                .put_record()
                .stream_name(stream)
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(data.as_bytes().to_vec()))
                .send()
                .await
                .expect("PutRecord");
            sequence_numbers.push(out.sequence_number);
        }
        sequence_numbers
    }
}

/// The decoded `data` of Kinesis records the function processed successfully, in invocation completion
/// order (sort invocations by `seq` first for a stable order), with repeats.
pub fn processed_kinesis_data(invocations: &[loadgen::simulate::Invocation]) -> Vec<String> {
    use base64::Engine as _;
    let mut out = Vec::new();
    for inv in invocations {
        for record in records(inv) {
            let seq = record["kinesis"]["sequenceNumber"].as_str().unwrap_or_default();
            if inv.records_ok.iter().any(|ok| ok == seq) {
                let data = record["kinesis"]["data"].as_str().unwrap_or_default();
                let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
                out.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    out
}

/// Decoded Kinesis `data` of every record of an invocation.
pub fn kinesis_data(invocation: &loadgen::simulate::Invocation) -> Vec<String> {
    use base64::Engine as _;
    records(invocation)
        .iter()
        .map(|r| {
            let data = r["kinesis"]["data"].as_str().unwrap_or_default();
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default())
                .into_owned()
        })
        .collect()
}

/// A stream mapping definition with extra top-level keys.
pub fn stream_mapping(arn: &str, function: &str, extra: &str) -> String {
    let sep = if extra.trim().is_empty() { "" } else { "," };
    format!(r#"{{"EventSourceArn":"{arn}","FunctionName":"{function}"{sep}{extra}}}"#)
}

/// A `poller run` process in a fresh directory: the mapping is written to `mapping.json` there and
/// durable state goes to `state/`, so a second `spawn` resumes where the first left off.
pub struct PollerProcess {
    pub dir: std::path::PathBuf,
    lambda_url: String,
}

impl PollerProcess {
    pub fn new(mapping: &str, lambda_url: &str) -> PollerProcess {
        let dir = std::env::temp_dir().join(unique("poller-process"));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        std::fs::write(dir.join("mapping.json"), mapping).expect("mapping file");
        PollerProcess {
            dir,
            lambda_url: lambda_url.to_owned(),
        }
    }

    /// Start `poller run` with stdout piped (its report) and warnings on stderr.
    pub fn spawn(&self, extra_args: &[&str]) -> std::process::Child {
        self.command(extra_args).spawn().expect("poller starts")
    }

    /// The `poller run` command [`PollerProcess::spawn`] runs, to add to (environment, stderr).
    /// Never looks for instance metadata: credentials are the emulator's dummy ones.
    pub fn command(&self, extra_args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(poller_binary());
        command
            .args(["run", "--mapping"])
            .arg(self.dir.join("mapping.json"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .args(["--lambda-endpoint-url", &self.lambda_url])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(std::process::Stdio::piped());
        command
    }
}

/// The `poller` binary built next to this test binary (`cargo test --workspace` builds it).
pub fn poller_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/poller
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("poller"))
        .expect("target directory");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p poller` (scripts/test.sh does)", path.display());
    path
}

/// Create a DynamoDB table (string hash key `pk`) with a NEW_AND_OLD_IMAGES stream; returns the stream ARN.
pub async fn create_table_with_stream(client: &aws_sdk_dynamodb::Client, table: &str) -> String {
    use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};
    create_keyed_table_with_stream(client, table, &[("pk", ScalarAttributeType::S, KeyType::Hash)]).await
}

/// Create a DynamoDB table with the key attributes `keys` (name, type, hash or range) and a
/// NEW_AND_OLD_IMAGES stream; returns the stream ARN.
pub async fn create_keyed_table_with_stream(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[(&str, aws_sdk_dynamodb::types::ScalarAttributeType, aws_sdk_dynamodb::types::KeyType)],
) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, StreamSpecification, StreamViewType,
    };
    let mut request = client.create_table().table_name(table);
    for (name, kind, key) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*name)
                    .attribute_type(kind.clone())
                    .build()
                    .expect("attribute"),
            )
            .key_schema(KeySchemaElement::builder().attribute_name(*name).key_type(key.clone()).build().expect("key"));
    }
    let out = request
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream spec"),
        )
        .send()
        .await
        .expect("CreateTable");
    out.table_description
        .and_then(|t| t.latest_stream_arn)
        .expect("stream ARN")
}

/// The `dynamodb.NewImage` (or `OldImage` for REMOVE) `pk` values and event names the function processed
/// successfully, as `EVENT:pk`.
pub fn processed_dynamodb(invocations: &[loadgen::simulate::Invocation]) -> Vec<String> {
    let mut out = Vec::new();
    for inv in invocations {
        for record in records(inv) {
            let seq = record["dynamodb"]["SequenceNumber"].as_str().unwrap_or_default();
            if inv.records_ok.iter().any(|ok| ok == seq) {
                let pk = record["dynamodb"]["Keys"]["pk"]["S"].as_str().unwrap_or_default();
                out.push(format!("{}:{pk}", record["eventName"].as_str().unwrap_or_default()));
            }
        }
    }
    out
}
