//! SigV4 on a request built by the caller.
//!
//! aws-sigv4 builds, for every request, the canonical request as strings and a header map,
//! derives the signing key again (four HMACs) and formats the date; in loadgen's Invoke API
//! profile that was most of the client's CPU. The requests this crate signs have one URI per
//! caller and a handful of headers, so what does not change from one request to the next is kept:
//! the signing key per day and secret key (region and service are the [`Signer`]'s), the
//! canonical URI and query string per URI, the `X-Amz-Date` value per second; the canonical
//! request, the string to sign and `Authorization` are written into one reusable buffer. A request
//! of a shape this does not handle (more than [`MAX_HEADERS`] headers, a URI without authority, a
//! time outside the years 1970–9999, credentials that are not valid header text) is signed by
//! aws-sigv4, which stays the reference: a property test checks that both give the same headers,
//! byte for byte.
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html>

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_http::label::{EncodingStrategy, fmt_string as encode_path};
use aws_smithy_http::query::fmt_string as encode_query;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{Request, Uri};
use ring::{digest, hmac};

use crate::{CredentialsCache, Error};

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// Headers aws-sigv4's default settings leave out of the signature: the signature itself, and
/// headers proxies change or drop.
const UNSIGNED: [&str; 4] = ["authorization", "user-agent", "x-amzn-trace-id", "transfer-encoding"];

/// The most headers a request signed without aws-sigv4 may have (ours have at most eight).
const MAX_HEADERS: usize = 24;

/// Signs requests for one service in one region.
pub struct Signer {
    /// The signing name (`lambda`, `sqs`, `kinesis`, …).
    service: &'static str,
    region: String,
    /// The credential scope after its date: `/{region}/{service}/aws4_request`.
    scope: String,
    credentials: CredentialsCache,
    reused: Mutex<Reused>,
}

impl std::fmt::Debug for Signer {
    // Not `reused`: it holds the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("service", &self.service)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(
        service: &'static str,
        region: impl Into<String>,
        credentials: SharedCredentialsProvider,
    ) -> Signer {
        let region = region.into();
        Signer {
            service,
            scope: format!("/{region}/{service}/aws4_request"),
            region,
            credentials: CredentialsCache::new(credentials),
            reused: Mutex::default(),
        }
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The current credentials; a caller asks once at start-up so that missing credentials fail
    /// there and not on every request.
    pub async fn credentials(&self) -> Result<Arc<Credentials>, Error> {
        self.credentials.get().await
    }

    /// Adds the SigV4 headers (`Authorization`, `X-Amz-Date`, `X-Amz-Security-Token`) to `request`,
    /// signed now. `uri` is the request's URI as text (the caller keeps it, so it is not formatted
    /// per request) and `body` its body.
    pub async fn sign<B>(&self, request: &mut Request<B>, uri: &str, body: &[u8]) -> Result<(), Error> {
        let credentials = self.credentials.get().await?;
        self.sign_with(request, uri, body, &credentials, SystemTime::now())
    }

    /// [`Signer::sign`] with given credentials and time.
    pub fn sign_with<B>(
        &self,
        request: &mut Request<B>,
        uri: &str,
        body: &[u8],
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<(), Error> {
        if self.sign_reusing(request, uri, body, credentials, time) {
            return Ok(());
        }
        self.sign_reference(request, uri, body, credentials, time)
    }

    /// Signs `request` from the parts kept from earlier requests; false, with `request`
    /// unchanged, when it has a shape this does not handle.
    fn sign_reusing<B>(
        &self,
        request: &mut Request<B>,
        uri: &str,
        body: &[u8],
        credentials: &Credentials,
        time: SystemTime,
    ) -> bool {
        let Some((stamp, target, key)) = self.reused(uri, credentials, time) else {
            return false;
        };
        let date = &stamp.text[..];
        let token = key.token.as_ref();
        // The signed headers, sorted by name (a stable sort keeps the order of a name's values).
        let mut headers = [("", ""); MAX_HEADERS];
        let mut count = 0;
        let mut push = |name, value| {
            let slot = headers.get_mut(count)?;
            *slot = (name, value);
            count += 1;
            Some(())
        };
        let mut has_host = false;
        for (name, value) in request.headers() {
            let name = name.as_str();
            // Replaced by the signature's own; a value that is not text is not signed either
            // way.
            let replaced = name == "x-amz-date" || (token.is_some() && name == "x-amz-security-token");
            let Ok(value) = value.to_str() else { continue };
            if replaced || UNSIGNED.contains(&name) {
                continue;
            }
            has_host |= name == "host";
            if push(name, value).is_none() {
                return false;
            }
        }
        let stamp_text = std::str::from_utf8(date).expect("the stamp is ASCII");
        let added = [
            (!has_host).then_some(("host", target.host.as_str())),
            Some(("x-amz-date", stamp_text)),
            token.map(|t| ("x-amz-security-token", t.to_str().expect("checked when kept"))),
        ];
        for (name, value) in added.into_iter().flatten() {
            if push(name, value).is_none() {
                return false;
            }
        }
        let headers = &mut headers[..count];
        headers.sort_by(|a, b| a.0.cmp(b.0));

        let authorization = BUFFER.with_borrow_mut(|buf| {
            buf.clear();
            // The canonical request.
            buf.extend_from_slice(request.method().as_str().as_bytes());
            buf.push(b'\n');
            buf.extend_from_slice(target.canonical.as_bytes());
            for group in headers.chunk_by(|a, b| a.0 == b.0) {
                buf.extend_from_slice(group[0].0.as_bytes());
                buf.push(b':');
                for (i, (_, value)) in group.iter().enumerate() {
                    if i > 0 {
                        buf.push(b',');
                    }
                    push_trimmed(buf, value);
                }
                buf.push(b'\n');
            }
            buf.push(b'\n');
            let signed_start = buf.len();
            for (i, group) in headers.chunk_by(|a, b| a.0 == b.0).enumerate() {
                if i > 0 {
                    buf.push(b';');
                }
                buf.extend_from_slice(group[0].0.as_bytes());
            }
            let signed = signed_start..buf.len();
            buf.push(b'\n');
            buf.extend_from_slice(&hex(digest::digest(&digest::SHA256, body).as_ref()));
            let canonical_hash = hex(digest::digest(&digest::SHA256, buf).as_ref());
            // The string to sign, after the canonical request.
            let to_sign = buf.len();
            buf.extend_from_slice(b"AWS4-HMAC-SHA256\n");
            buf.extend_from_slice(date);
            buf.push(b'\n');
            buf.extend_from_slice(&date[..8]);
            buf.extend_from_slice(self.scope.as_bytes());
            buf.push(b'\n');
            buf.extend_from_slice(&canonical_hash);
            let signature = hex(hmac::sign(&key.mac, &buf[to_sign..]).as_ref());
            // `Authorization`, after the string to sign.
            let start = buf.len();
            buf.extend_from_slice(b"AWS4-HMAC-SHA256 Credential=");
            buf.extend_from_slice(credentials.access_key_id().as_bytes());
            buf.push(b'/');
            buf.extend_from_slice(&date[..8]);
            buf.extend_from_slice(self.scope.as_bytes());
            buf.extend_from_slice(b", SignedHeaders=");
            buf.extend_from_within(signed);
            buf.extend_from_slice(b", Signature=");
            buf.extend_from_slice(&signature);
            HeaderValue::from_bytes(&buf[start..]).ok()
        });
        let Some(authorization) = authorization else {
            return false;
        };
        // As aws-sigv4 adds them.
        let headers = request.headers_mut();
        headers.insert(X_AMZ_DATE, stamp.header);
        headers.insert(AUTHORIZATION, authorization);
        if let Some(token) = token {
            headers.insert(X_AMZ_SECURITY_TOKEN, token.clone());
        }
        true
    }

    /// The parts kept for a request to `uri` at `time` with `credentials`, made again where they
    /// do not match; `None` if one cannot be made.
    fn reused(&self, uri: &str, credentials: &Credentials, time: SystemTime) -> Option<(Stamp, Arc<Target>, Arc<Key>)> {
        let mut reused = self.reused.lock().unwrap_or_else(|e| e.into_inner());
        let second = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let stamp = match &reused.stamp {
            Some(stamp) if stamp.second == second => stamp.clone(),
            _ => reused.stamp.insert(Stamp::new(second)?).clone(),
        };
        let target = match &reused.target {
            Some(target) if target.uri == uri => Arc::clone(target),
            _ => Arc::clone(reused.target.insert(Arc::new(Target::new(uri)?))),
        };
        let key = match &reused.key {
            Some(key) if key.matches(&stamp, credentials) => Arc::clone(key),
            _ => Arc::clone(reused.key.insert(Arc::new(Key::new(&stamp, credentials, &self.region, self.service)?))),
        };
        Some((stamp, target, key))
    }

    /// aws-sigv4's signature with the settings the SDK uses for every service but S3.
    fn sign_reference<B>(
        &self,
        request: &mut Request<B>,
        uri: &str,
        body: &[u8],
        credentials: &Credentials,
        time: SystemTime,
    ) -> Result<(), Error> {
        let identity = credentials.clone().into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Error::Signing(e.to_string()))?
            .into();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri,
            headers,
            SignableBody::Bytes(body),
        )
        .map_err(|e| Error::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| Error::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

thread_local! {
    /// The canonical request, string to sign and `Authorization` of the request being signed on
    /// this thread: one allocation per thread, not several per request.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What one request's signature shares with the next.
#[derive(Default)]
struct Reused {
    stamp: Option<Stamp>,
    target: Option<Arc<Target>>,
    key: Option<Arc<Key>>,
}

/// The time of a signature, to the second.
#[derive(Clone)]
struct Stamp {
    /// Seconds since the Unix epoch.
    second: u64,
    /// `YYYYMMDDTHHMMSSZ`; its first eight bytes are the credential scope's date.
    text: [u8; 16],
    header: HeaderValue,
}

impl Stamp {
    /// `None` outside the years 1970–9999, which the format cannot write in four digits.
    fn new(second: u64) -> Option<Stamp> {
        let text = date_time(second)?;
        Some(Stamp {
            second,
            text,
            header: HeaderValue::from_bytes(&text).ok()?,
        })
    }
}

/// A request URI's canonical form, as aws-sigv4 writes it: the path without dot segments and
/// empty segments, percent-encoded again (`%` → `%25`); the query's parameters decoded,
/// encoded again, and sorted.
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html#create-canonical-request>
struct Target {
    uri: String,
    /// The canonical URI and the canonical query string, each followed by a newline.
    canonical: String,
    /// The `Host` signed when the request has none: the URI's host, with its port unless it is
    /// given and is the scheme's default (aws-sigv4's rule).
    host: String,
}

impl Target {
    fn new(text: &str) -> Option<Target> {
        let uri: Uri = text.parse().ok()?;
        let authority = uri.authority()?;
        let default_port = matches!(
            (uri.scheme_str(), uri.port_u16()),
            (Some("http"), Some(80)) | (Some("https"), Some(443))
        );
        let host = if default_port { uri.host()? } else { authority.as_str() };
        HeaderValue::from_str(host).ok()?;
        let mut canonical = encode_path(normalize_path(uri.path()), EncodingStrategy::Greedy);
        canonical.push('\n');
        let mut parameters: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .map(|(name, value)| (encode_query(name), encode_query(value)))
                .collect();
        parameters.sort();
        for (i, (name, value)) in parameters.iter().enumerate() {
            if i > 0 {
                canonical.push('&');
            }
            canonical.push_str(name);
            canonical.push('=');
            canonical.push_str(value);
        }
        canonical.push('\n');
        Some(Target {
            uri: text.to_owned(),
            canonical,
            host: host.to_owned(),
        })
    }
}

/// The signing key of one day for one secret key, ready to sign with (ring's HMAC key holds the
/// hash state after the key's block).
struct Key {
    date: [u8; 8],
    secret: String,
    /// The session token, as the header it is sent in.
    token: Option<HeaderValue>,
    mac: hmac::Key,
}

impl Key {
    /// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    /// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv4-create-signed-request.html#derive-signing-key>
    fn new(stamp: &Stamp, credentials: &Credentials, region: &str, service: &str) -> Option<Key> {
        let token = match credentials.session_token() {
            Some(token) => {
                let mut value = HeaderValue::from_str(token).ok()?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let secret = credentials.secret_access_key();
        let date: [u8; 8] = stamp.text[..8].try_into().expect("eight bytes");
        let mut key = hmac::Key::new(hmac::HMAC_SHA256, format!("AWS4{secret}").as_bytes());
        for part in [&date[..], region.as_bytes(), service.as_bytes(), b"aws4_request"] {
            key = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&key, part).as_ref());
        }
        Some(Key {
            date,
            secret: secret.to_owned(),
            token,
            mac: key,
        })
    }

    fn matches(&self, stamp: &Stamp, credentials: &Credentials) -> bool {
        self.date == stamp.text[..8]
            && self.secret == credentials.secret_access_key()
            && self.token.as_ref().map(HeaderValue::as_bytes) == credentials.session_token().map(str::as_bytes)
    }
}

/// `value` as aws-sigv4 signs it: without leading and trailing spaces, each run of spaces as one.
fn push_trimmed(buf: &mut Vec<u8>, value: &str) {
    for (i, word) in value.split(' ').filter(|w| !w.is_empty()).enumerate() {
        if i > 0 {
            buf.push(b' ');
        }
        buf.extend_from_slice(word.as_bytes());
    }
}

/// The path as aws-sigv4 normalises it (RFC 3986's "remove dot segments", and no empty
/// segments), with a leading `/`.
fn normalize_path(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let path = match path.starts_with('/') {
        true => Cow::Borrowed(path),
        false => Cow::Owned(format!("/{path}")),
    };
    if !(path.contains('.') || path.contains("//")) {
        return path;
    }
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let mut normalized = format!("/{}", segments.join("/"));
    let ends_in_directory = ["/", "/.", "/./", "/..", "/../"].iter().any(|end| path.ends_with(end));
    if ends_in_directory && !normalized.ends_with('/') {
        normalized.push('/');
    }
    Cow::Owned(normalized)
}

/// `second` (since the Unix epoch) as `YYYYMMDDTHHMMSSZ`, UTC; `None` after 9999.
fn date_time(second: u64) -> Option<[u8; 16]> {
    let (days, of_day) = (second / 86_400, second % 86_400);
    let (year, month, day) = civil_date(days);
    if year > 9999 {
        return None;
    }
    let mut text = *b"00000000T000000Z";
    let mut put = |at: usize, digits: usize, mut value: u64| {
        for i in (at..at + digits).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(4, 2, month);
    put(6, 2, day);
    put(9, 2, of_day / 3600);
    put(11, 2, of_day / 60 % 60);
    put(13, 2, of_day % 60);
    Some(text)
}

/// The Gregorian (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`). <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Lowercase hexadecimal of a 32-byte digest.
fn hex(bytes: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; 64];
    for (i, byte) in bytes.iter().take(32).enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

#[cfg(test)]
mod tests;
