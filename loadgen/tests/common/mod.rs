//! Helpers shared by loadgen's integration tests. Each test crate uses some of them, hence the
//! `dead_code` allowances.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_lambda::config::Credentials;
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

/// A simulator on a free port whose functions answer after `latency` (e.g. `"2ms"`).
#[allow(dead_code)]
pub(crate) async fn simulator(latency: &str) -> SimHandle {
    let config = SimConfig {
        default: FunctionConfig {
            latency: latency.parse().unwrap(),
            ..FunctionConfig::default()
        },
        ..SimConfig::default()
    };
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}
