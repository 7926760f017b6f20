//! Test support (feature `test-support`): a capture server and the check that a direct request's
//! signature is the SDK's.
//!
//! The crates that send requests through this one (the Invoke API, the lean SQS client,
//! GetRecords) each prove their requests are the SDK's: the SDK and the direct path send to a
//! server on 127.0.0.1 that keeps what it gets, and the SDK's captured headers are signed again
//! with our [`Signer`]. The SDK signs telemetry headers of its own (`amz-sdk-invocation-id`,
//! `amz-sdk-request`, `x-amz-user-agent`) and adds `amz-sdk-*` after signing, so the signature is
//! compared over the SDK's exact headers, not over ours.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::BodyExt;

use crate::Signer;

/// One request as the capture server got it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The requests a capture server got, in order.
pub type Requests = Arc<Mutex<Vec<Captured>>>;

/// A server on 127.0.0.1 that keeps every request it gets and answers each with `status`,
/// `headers` and `body`. Returns its URL (`http://127.0.0.1:port`) and the requests.
pub async fn capture_server(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
) -> (String, Requests) {
    let requests: Requests = Arc::default();
    let keep = Arc::clone(&requests);
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let keep = Arc::clone(&keep);
        async move {
            let (parts, received) = request.into_parts();
            let received = received.collect().await.unwrap().to_bytes();
            keep.lock().unwrap().push(Captured {
                uri: parts.uri,
                headers: parts.headers,
                body: received,
            });
            let mut response = http::Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(*name, *value);
            }
            response.body(axum::body::Body::from(body)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, requests)
}

/// Session credentials for signing tests (AWS's documentation example keys).
pub fn credentials() -> Credentials {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session/token+=".to_owned()),
        None,
        "test",
    )
}

/// The header names a signed request's `Authorization` lists in `SignedHeaders`.
pub fn signed_headers(headers: &HeaderMap) -> Vec<&str> {
    let authorization = headers["authorization"].to_str().unwrap();
    authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .split(';')
        .collect()
}

/// The time of an `X-Amz-Date` header (`20231114T221320Z`): when the request was signed.
pub fn amz_date(headers: &HeaderMap) -> SystemTime {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let text = headers["x-amz-date"].to_str().unwrap();
    time::PrimitiveDateTime::parse(text, format)
        .unwrap()
        .assume_utc()
        .into()
}

/// A POST with the headers of the signed `headers` that its `SignedHeaders` names, less the
/// ones signing adds and less `leave_out`, signed by `signer` at `time`: the signing headers our
/// signer gives for the same request.
pub fn resign(
    signer: &Signer,
    uri: &str,
    headers: &HeaderMap,
    body: &[u8],
    leave_out: &[&str],
    credentials: &Credentials,
    time: SystemTime,
) -> HeaderMap {
    let signed = signed_headers(headers);
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    for (name, value) in headers {
        let added_by_signing = matches!(
            name.as_str(),
            "authorization" | "x-amz-date" | "x-amz-security-token"
        );
        if signed.contains(&name.as_str()) && !added_by_signing && !leave_out.contains(&name.as_str()) {
            request.headers_mut().insert(name, value.clone());
        }
    }
    signer
        .sign_with(&mut request, uri, body, credentials, time)
        .unwrap();
    request.into_parts().0.headers
}

/// Asserts that over the SDK's exact request our signer gives the SDK's `Authorization`,
/// `X-Amz-Date` and `X-Amz-Security-Token` byte for byte, signing at the SDK's signing time.
#[track_caller]
pub fn assert_signature_is_sdks(signer: &Signer, uri: &str, sdk: &Captured, credentials: &Credentials) {
    let time = amz_date(&sdk.headers);
    let ours = resign(signer, uri, &sdk.headers, &sdk.body, &[], credentials, time);
    for name in ["authorization", "x-amz-date", "x-amz-security-token"] {
        assert_eq!(ours.get(name), sdk.headers.get(name), "{name} of {uri}");
    }
}

/// The headers the SDK signed less its user agent, which the direct path does not send: the ones
/// the direct path's own request must sign.
pub fn signed_headers_without_user_agent(headers: &HeaderMap) -> Vec<&str> {
    signed_headers(headers)
        .into_iter()
        .filter(|h| *h != "x-amz-user-agent")
        .collect()
}

