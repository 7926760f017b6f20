//! Helpers shared by loadgen's integration tests.

use aws_config::{BehaviorVersion, Region};
use aws_sdk_lambda::config::Credentials;
use lambda_invoke::{LambdaTarget, Target};
use loadgen::simulate::SimHandle;

/// A Lambda Invoke API target at the simulator, SigV4-signed with test credentials (the simulator
/// does not check signatures; `cli.rs` checks that they are sent).
pub(crate) async fn lambda(sim: &SimHandle, function: &str) -> Target {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .load()
        .await;
    Target::Lambda(LambdaTarget::new(&sdk, function, Some(&sim.url()), None))
}
