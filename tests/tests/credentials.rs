//! Credentials end to end: the `poller` binary gets its identity from the AWS default chain (here a
//! `credential_process` profile, or web identity as on EKS) or assumes `--role-arn` with STS, and uses
//! it for every call.
//!
//! moto accepts any credentials, but it keeps one backend per account and maps the credentials of an
//! assumed role to the role's account; a queue created in another account is only visible to a poller
//! that really uses the assumed role's credentials.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::{Queue, Sqs, eventually, processed_bodies, simulator, sqs_mapping, unique};
use loadgen::simulate::FunctionConfig;

/// `poller run` for one mapping, with the test's environment minus the static credentials, so the rest
/// of the default chain (profiles, roles) supplies them.
fn poller_without_static_credentials(dir: &std::path::Path, mapping: &str, lambda_url: &str, args: &[&str]) -> Command {
    std::fs::write(dir.join("mapping.json"), mapping).expect("mapping file");
    // Empty shared config files: no profile from this machine's ~/.aws.
    std::fs::write(dir.join("empty-config"), "").expect("empty config file");
    let mut cmd = Command::new(e2e::poller_binary());
    cmd.args(["run", "--mapping"])
        .arg(dir.join("mapping.json"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--lambda-endpoint-url", lambda_url, "--metrics-addr", "off"])
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", dir.join("empty-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("empty-config"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    cmd
}

/// SQS helpers acting as `role_arn` (assumed with moto's STS), so queues are created in its account.
async fn sqs_as(role_arn: &str) -> Sqs {
    let base = e2e::sdk_config().await;
    let as_role =
        aws_config::sts::AssumeRoleProvider::builder(role_arn).session_name("e2e-setup").configure(&base).build().await;
    Sqs {
        client: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&base).credentials_provider(as_role).build(),
        ),
    }
}

/// Send `n` messages, run the poller until the function has processed all of them, stop it.
async fn processes_every_message(sqs: &Sqs, queue: &Queue, poller: &mut Command, sim: &loadgen::simulate::SimHandle) {
    let bodies: Vec<(String, Option<String>)> = (0..10).map(|i| (format!("m{i}"), None)).collect();
    sqs.send(queue, &bodies).await;
    let mut child: Child = poller.spawn().expect("poller starts");
    eventually(Duration::from_secs(120), "every message processed", || {
        let done = processed_bodies(&sim.invocations()).len() >= bodies.len();
        // A poller that cannot get credentials exits: fail at once instead of at the deadline.
        let exited = child.try_wait().expect("poller status");
        assert!(exited.is_none(), "poller exited early with {exited:?}");
        async move { done }
    })
    .await;
    child.kill().expect("stop poller");
    child.wait().expect("poller exit");
    let mut processed = processed_bodies(&sim.invocations());
    processed.sort();
    let mut sent: Vec<String> = bodies.into_iter().map(|(b, _)| b).collect();
    sent.sort();
    assert_eq!(processed, sent, "each message processed exactly once");
}

/// A profile whose credentials come from `credential_process` (the way many SSO helpers and vaults
/// hand out credentials) works: the process is run, and the poller's calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credential_process_profile_supplies_credentials() {
    let dir = std::env::temp_dir().join(unique("poller-credential-process"));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let marker = dir.join("process-ran");
    let script = dir.join("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", \"SecretAccessKey\": \"process-secret\"}}'\n",
            marker.display()
        ),
    )
    .expect("credential process script");
    std::fs::write(
        dir.join("config"),
        format!("[profile from-process]\ncredential_process = /bin/sh {}\nregion = us-east-1\n", script.display()),
    )
    .expect("config file");

    let sqs = Sqs::new().await;
    let queue = sqs.create_queue(&unique("process-creds"), &[]).await;
    let sim = simulator(FunctionConfig::default()).await;
    let mut poller = poller_without_static_credentials(&dir, &sqs_mapping(&queue, "process-fn", ""), &sim.url(), &[]);
    poller.env("AWS_CONFIG_FILE", dir.join("config")).env("AWS_PROFILE", "from-process");
    processes_every_message(&sqs, &queue, &mut poller, &sim).await;
    assert!(marker.exists(), "the credential_process command was run");
}

/// `--role-arn`: the poller assumes the role with STS AssumeRole and uses the role's credentials for
/// its calls. The queue exists only in the role's account, so a poller still using the source
/// identity would find no queue and exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn role_arn_is_assumed_for_every_call() {
    let role_arn = "arn:aws:iam::111111111111:role/poller-e2e";
    let sqs = sqs_as(role_arn).await;
    let queue = sqs.create_queue(&unique("role-creds"), &[]).await;
    assert!(queue.arn.contains(":111111111111:"), "queue created in the role's account: {}", queue.arn);

    let dir = std::env::temp_dir().join(unique("poller-role-arn"));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let sim = simulator(FunctionConfig::default()).await;
    let mut poller = poller_without_static_credentials(
        &dir,
        &sqs_mapping(&queue, "role-fn", ""),
        &sim.url(),
        &["--role-arn", role_arn, "--role-session-name", "poller-e2e", "--external-id", "e2e"],
    );
    // The source identity: static keys of the default account.
    poller.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
    processes_every_message(&sqs, &queue, &mut poller, &sim).await;
}

/// Web identity, as EKS IAM roles for service accounts set it up (`AWS_ROLE_ARN` and a token file): the
/// default chain exchanges the token with STS AssumeRoleWithWebIdentity, and the poller's calls use
/// the role's credentials. The queue exists only in the role's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn web_identity_role_from_the_environment() {
    let role_arn = "arn:aws:iam::222222222222:role/poller-irsa";
    let sqs = sqs_as(role_arn).await;
    let queue = sqs.create_queue(&unique("irsa-creds"), &[]).await;

    let dir = std::env::temp_dir().join(unique("poller-web-identity"));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    // moto does not verify the token; AWS checks it against the cluster's OIDC provider.
    std::fs::write(dir.join("token"), "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl").expect("token file");
    let sim = simulator(FunctionConfig::default()).await;
    let mut poller = poller_without_static_credentials(&dir, &sqs_mapping(&queue, "irsa-fn", ""), &sim.url(), &[]);
    poller.env("AWS_ROLE_ARN", role_arn).env("AWS_WEB_IDENTITY_TOKEN_FILE", dir.join("token"));
    processes_every_message(&sqs, &queue, &mut poller, &sim).await;
}

/// `--role-session-name` and `--external-id` only mean something with `--role-arn`: alone they are refused
/// at parse time, naming the missing flag, instead of being silently ignored.
#[test]
fn role_options_without_role_arn_are_refused() {
    for flag in ["--role-session-name", "--external-id"] {
        let out = Command::new(e2e::poller_binary())
            .args(["run", "--mapping", "unused.json", flag, "value"])
            .output()
            .expect("poller runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("--role-arn"), "{flag}: the error names --role-arn: {stderr}");
    }
}
