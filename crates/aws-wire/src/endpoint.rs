//! Where a service's endpoint is configured.

/// The endpoint URL configured for the service with SDK id `service_id` (`"Lambda"`, `"SQS"`,
/// `"Kinesis"`), looked up where the SDK looks: `AWS_ENDPOINT_URL_<SERVICE>`, the profile's
/// `services` section, then the global `AWS_ENDPOINT_URL` / `endpoint_url` of `sdk`. `None` when
/// nothing is configured and the service's default endpoint applies.
/// <https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html>
pub fn configured_endpoint(sdk: &aws_config::SdkConfig, service_id: &str) -> Option<String> {
    let service = || {
        let key = aws_types::service_config::ServiceConfigKey::builder()
            .service_id(service_id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .ok()?;
        sdk.service_config()?.load_config(key)
    };
    service().or_else(|| sdk.endpoint_url().map(str::to_owned))
}
