//! Helpers shared by loadgen's integration tests. Each test crate uses some of them, hence the
//! `dead_code` allowances.

use std::process::{ExitCode, Output, Stdio};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_lambda::config::Credentials;
use clap::Parser;
use lambda_invoke::{LambdaTarget, Target};
use loadgen::simulate::{FunctionConfig, SimConfig, SimHandle, Simulator};

/// A Lambda Invoke API target at the simulator, SigV4-signed with test credentials (the simulator
/// does not check signatures; `cli.rs` checks that they are sent).
#[allow(dead_code)]
pub(crate) async fn lambda(sim: &SimHandle, function: &str) -> Target {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;
    Target::Lambda(LambdaTarget::new(&sdk, function, Some(&sim.url()), None))
}

/// A simulator with `config` on a free port of 127.0.0.1.
#[allow(dead_code)]
pub(crate) async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A simulator on a free port whose functions answer after `latency` (e.g. `"2ms"`).
#[allow(dead_code)]
pub(crate) async fn simulator(latency: &str) -> SimHandle {
    start(SimConfig {
        default: FunctionConfig {
            latency: latency.parse().unwrap(),
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    })
    .await
}

/// `loadgen ARGS` in process, as `main` runs it.
#[allow(dead_code)]
pub(crate) async fn in_process(args: &[&str]) -> anyhow::Result<ExitCode> {
    let argv = std::iter::once("loadgen").chain(args.iter().copied());
    loadgen::run(loadgen::Cli::try_parse_from(argv)?).await
}

/// An exit code as text, to compare in an `assert_eq!` that shows both (`ExitCode` has no `Eq`).
#[allow(dead_code)]
pub(crate) fn exit_code(code: ExitCode) -> String {
    format!("{code:?}")
}

/// The loadgen binary: no instance metadata, no worker index from the environment, no stdin,
/// its output piped, killed with the test.
#[allow(dead_code)]
pub(crate) fn binary(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("JOB_COMPLETION_INDEX")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// [`binary`] with test credentials and region and no profile or endpoint from the environment:
/// a run goes only where its flags say.
#[allow(dead_code)]
pub(crate) fn command(args: &[&str]) -> tokio::process::Command {
    let mut command = binary(args);
    command
        .env("AWS_ACCESS_KEY_ID", "AKIDLOADGEN")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_LAMBDA");
    command
}

/// The stdout and stderr of a finished process, after asserting it exited with `code` (both
/// shown if not).
#[allow(dead_code)]
#[track_caller]
pub(crate) fn exited(output: &Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stdout}\n{stderr}");
    (stdout, stderr)
}
