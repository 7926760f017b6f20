use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

fn credentials(token: Option<&str>) -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        token.map(str::to_owned),
        None,
        "test",
    )
}

fn signer(service: &'static str, region: &str) -> Signer {
    Signer::new(service, region, SharedCredentialsProvider::new(credentials(None)))
}

/// The `get-vanilla` case of AWS's SigV4 test suite (service `service`, region `us-east-1`,
/// 2015-08-30T12:36:00Z), whose signature AWS publishes.
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html>
#[test]
fn the_aws_test_suite_vanilla_request_signs_as_published() {
    let signer = signer("service", "us-east-1");
    let time = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    let vanilla = || {
        Request::get("https://example.amazonaws.com/")
            .header("host", "example.amazonaws.com")
            .body(())
            .unwrap()
    };
    let (mut reused, mut reference) = (vanilla(), vanilla());
    assert!(signer.sign_reusing(&mut reused, "https://example.amazonaws.com/", b"", &credentials(None), time));
    signer
        .sign_reference(&mut reference, "https://example.amazonaws.com/", b"", &credentials(None), time)
        .unwrap();
    for request in [reused, reference] {
        assert_eq!(
            request.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(request.headers()["x-amz-date"], "20150830T123600Z");
    }
}

#[test]
fn dates_are_written_as_sigv4_writes_them() {
    let text = |second| date_time(second).map(|t| String::from_utf8(t.to_vec()).unwrap());
    assert_eq!(text(0).as_deref(), Some("19700101T000000Z"));
    // A leap day, and the last second of a leap year.
    assert_eq!(text(951_825_599).as_deref(), Some("20000229T115959Z"));
    assert_eq!(text(1_735_689_599).as_deref(), Some("20241231T235959Z"));
    assert_eq!(text(253_402_300_799).as_deref(), Some("99991231T235959Z"));
    assert_eq!(text(253_402_300_800), None);
}

/// A request of a shape the reused parts do not cover is left alone by them and signed by
/// aws-sigv4: too many headers, a time before 1970, a URI without authority.
#[test]
fn other_shapes_are_signed_by_aws_sigv4() {
    let signer = signer("lambda", "us-east-1");
    let uri = "http://127.0.0.1:9001/2015-03-31/functions/f/invocations";
    let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut many = Request::post(uri).body(()).unwrap();
    for i in 0..MAX_HEADERS {
        many.headers_mut()
            .insert(HeaderName::try_from(format!("x-custom-{i}")).unwrap(), HeaderValue::from(i));
    }
    let cases = [
        (many, uri, time),
        (Request::post(uri).body(()).unwrap(), uri, UNIX_EPOCH - Duration::from_secs(1)),
        (
            Request::post("/").header("host", "127.0.0.1:9001").body(()).unwrap(),
            "/",
            time,
        ),
    ];
    for (request, uri, time) in cases {
        let mut reused = request.clone();
        assert!(!signer.sign_reusing(&mut reused, uri, b"{}", &credentials(Some("token")), time));
        assert_eq!(reused.headers(), request.headers(), "left unchanged");
        let (mut ours, mut reference) = (request.clone(), request);
        signer.sign_with(&mut ours, uri, b"{}", &credentials(Some("token")), time).unwrap();
        signer
            .sign_reference(&mut reference, uri, b"{}", &credentials(Some("token")), time)
            .unwrap();
        assert!(ours.headers().contains_key("authorization"));
        assert_eq!(ours.headers(), reference.headers());
    }
}

const SERVICES: [&str; 4] = ["lambda", "sqs", "kinesis", "service"];
const ORIGINS: [&str; 7] = [
    "http://127.0.0.1:4566",
    "https://lambda.us-east-1.amazonaws.com",
    "http://example.com:80",
    "https://example.com:443",
    "https://example.com:8443",
    "http://[::1]:9000",
    "http://localhost",
];

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[A-Za-z0-9._~:@!$&'()*+,;=-]{0,6}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        "%[0-9A-F]{2}",
    ];
    (prop::collection::vec(segment, 0..6), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut path = String::new();
        for segment in segments {
            path.push('/');
            path.push_str(&segment);
        }
        if trailing || path.is_empty() {
            path.push('/');
        }
        path
    })
}

fn query() -> impl Strategy<Value = Option<String>> {
    let part = "([A-Za-z0-9._~+*$-]|%[0-9A-F]{2}){0,5}";
    let pair = (part, prop::option::of(part)).prop_map(|(k, v)| match v {
        Some(v) => format!("{k}={v}"),
        None => k,
    });
    prop::option::of(prop::collection::vec(pair, 0..5).prop_map(|pairs| pairs.join("&")))
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        Just("host".to_owned()),
        Just("content-type".to_owned()),
        Just("content-length".to_owned()),
        Just("x-amz-target".to_owned()),
        Just("x-amz-date".to_owned()),
        Just("x-amz-security-token".to_owned()),
        Just("authorization".to_owned()),
        Just("user-agent".to_owned()),
        Just("transfer-encoding".to_owned()),
        Just("x-amzn-trace-id".to_owned()),
        "[a-z][a-z0-9-]{0,12}",
    ];
    // Visible ASCII with runs of spaces and tabs, and a byte that is not text.
    let byte = prop_oneof![8 => 0x20u8..0x7f, 2 => Just(b' '), 1 => Just(b'\t'), 1 => Just(0xe9u8)];
    prop::collection::vec((name, prop::collection::vec(byte, 0..16)), 0..10)
}

/// Seconds since the epoch: within a few seconds of a midnight (a new signing key), or anywhere
/// in a day, from 1970 to 2100.
fn second() -> impl Strategy<Value = u64> {
    prop_oneof![
        (1u64..47_000, -3i64..3).prop_map(|(day, offset)| (day * 86_400).saturating_add_signed(offset)),
        0u64..4_102_444_800,
    ]
}

fn credential_set() -> impl Strategy<Value = Credentials> {
    (
        "[A-Z0-9]{16,20}",
        "[A-Za-z0-9/+]{40}",
        prop::option::of("[A-Za-z0-9/+=]{1,120}"),
    )
        .prop_map(|(id, secret, token)| Credentials::new(id, secret, token, None, "test"))
}

/// One request to sign, and when and with which of the credentials.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    second: u64,
    credentials: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(&["GET", "POST", "PUT", "DELETE"][..]),
        prop::sample::select(&ORIGINS[..]),
        path(),
        query(),
        headers(),
        prop::collection::vec(any::<u8>(), 0..300),
        second(),
        0usize..2,
    )
        .prop_map(|(method, origin, path, query, headers, body, second, credentials)| {
            let mut uri = format!("{origin}{path}");
            if let Some(query) = query {
                uri.push('?');
                uri.push_str(&query);
            }
            Case {
                method,
                uri,
                headers,
                body,
                second,
                credentials,
            }
        })
}

impl Case {
    fn request(&self) -> Request<()> {
        let mut request = Request::builder().method(self.method).uri(&self.uri).body(()).unwrap();
        for (name, value) in &self.headers {
            request.headers_mut().append(
                HeaderName::try_from(name.as_str()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        request
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The signature made from the reused parts is aws-sigv4's, byte for byte: the same
    /// `Authorization`, `X-Amz-Date` and `X-Amz-Security-Token` (and no `X-Amz-Content-SHA256`,
    /// which neither sends), for any path, query, headers and body, with and without a session
    /// token; one signer signs several requests in turn, so that what it kept from one request
    /// (the key of another day or of other credentials, another URI) is checked against the next.
    #[test]
    fn the_signature_is_aws_sigv4s(
        service in prop::sample::select(&SERVICES[..]),
        region in prop::sample::select(&["us-east-1", "eu-west-1", "cn-north-1"][..]),
        credentials in [credential_set(), credential_set()],
        cases in prop::collection::vec(case(), 1..5),
    ) {
        let signer = Signer::new(service, region, SharedCredentialsProvider::new(credentials[0].clone()));
        for case in &cases {
            prop_assume!(case.uri.parse::<Uri>().is_ok());
            let time = UNIX_EPOCH + Duration::from_secs(case.second);
            let credentials = &credentials[case.credentials];
            let (mut ours, mut reference) = (case.request(), case.request());
            prop_assert!(signer.sign_reusing(&mut ours, &case.uri, &case.body, credentials, time));
            signer.sign_reference(&mut reference, &case.uri, &case.body, credentials, time).unwrap();
            for name in ["authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"] {
                prop_assert_eq!(ours.headers().get(name), reference.headers().get(name), "{}", name);
            }
            prop_assert_eq!(ours.headers(), reference.headers());
            prop_assert_eq!(
                ours.headers().get("x-amz-security-token").map(HeaderValue::is_sensitive),
                reference.headers().get("x-amz-security-token").map(HeaderValue::is_sensitive)
            );
        }
    }
}
