//! The generator's target, built from the plan: a `lambda-invoke` [`Target`], the same client the
//! poller uses (requests built from parts prepared once, sent through hyper, the Invoke API signed
//! directly), so that outcomes are classified one way for both tools.

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region};
use lambda_invoke::{HttpTarget, LambdaTarget, Target};

use crate::Error;
use crate::plan::{TargetKind, TargetPlan};

/// Where the engine's requests go.
pub type Client = Target;

/// The target of `plan`. A Lambda target loads the AWS configuration (region: the plan's, else the
/// environment's, else `us-east-1`; the endpoint: the plan's, else where the SDK finds it) and
/// resolves credentials once, so that a run without credentials fails here instead of counting every
/// request as a transport error. Either target bounds each request with the plan's timeout.
pub async fn target_for(plan: &TargetPlan) -> Result<Target, Error> {
    let (function, endpoint_url, region) = match &plan.kind {
        TargetKind::Http { url, method, headers } => {
            let target = HttpTarget::new(url, Some(plan.timeout))
                .and_then(|t| t.with_request(method, headers))
                .map(HttpTarget::with_arrival_times)
                .map_err(|e| Error::Target(format!("target: {e}")))?;
            return Ok(Target::Http(target));
        }
        TargetKind::Lambda {
            function,
            endpoint_url,
            region,
        } => (function, endpoint_url, region),
    };
    let region = RegionProviderChain::first_try(region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static("us-east-1"));
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .load()
        .await;
    let lambda = LambdaTarget::new(&sdk, function, endpoint_url.as_deref(), Some(plan.timeout)).with_arrival_times();
    lambda.check().await.map_err(|e| Error::Target(e.to_string()))?;
    Ok(Target::Lambda(lambda))
}
