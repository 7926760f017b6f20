//! Where a run's files go (`--out-dir`) and where `loadgen merge` reads logs from: a local
//! directory or an S3 prefix (`s3://bucket/prefix`).
//!
//! A run always writes into a local directory. For S3 that is a temporary directory: the `.hlog`
//! is streamed there during the run, and every file is uploaded under the prefix when the run
//! ends. Writing to the bucket is tried before the run starts ([`Output::open`]), so a missing
//! bucket or permission fails a 30-minute run in its first second, not at its end.
//!
//! Workers of a distributed run each write under their own label, `PREFIX/WORKER/`, and `loadgen
//! merge PREFIX` reads every `PREFIX/WORKER/latency.hlog` back ([`read_logs`]).

use std::fmt;
use std::path::{Path, PathBuf};

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_types::service_config::ServiceConfigKey;

use crate::Error;
use crate::report::HLOG_FILE;

/// The environment variable Kubernetes sets to a pod's index in an Indexed Job
/// (<https://kubernetes.io/docs/concepts/workloads/controllers/job/#completion-mode>); the default
/// worker label.
pub const JOB_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Object written to a worker's prefix before a run, to check the bucket takes writes.
const WRITE_CHECK: &str = ".loadgen-write-check";

/// A local directory or an S3 prefix: `--out-dir`, and the inputs of `loadgen merge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Url),
}

impl Location {
    /// `s3://bucket/prefix` is S3; any other `SCHEME://` is an error (a typo must not become a
    /// local directory named `gs:`); the rest is a local path.
    pub fn parse(text: &str) -> Result<Location, String> {
        if let Some(rest) = text.strip_prefix("s3://") {
            S3Url::new(rest).map(Location::S3)
        } else if let Some((scheme, _)) = text.split_once("://") {
            Err(format!(
                "`{text}`: `{scheme}://` is not supported; give a local directory or s3://BUCKET/PREFIX"
            ))
        } else {
            Ok(Location::Local(PathBuf::from(text)))
        }
    }

    /// The location of worker `label` inside this one.
    pub fn join(&self, label: &str) -> Location {
        match self {
            Location::Local(dir) => Location::Local(dir.join(label)),
            Location::S3(url) => Location::S3(url.join(label)),
        }
    }

    /// `self` is `other` or lies inside it.
    pub fn is_within(&self, other: &Location) -> bool {
        match (self, other) {
            (Location::Local(a), Location::Local(b)) => {
                let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
                absolute(a).starts_with(absolute(b))
            }
            (Location::S3(a), Location::S3(b)) => {
                a.bucket == b.bucket
                    && (b.prefix.is_empty()
                        || a.prefix == b.prefix
                        || a.prefix.starts_with(&format!("{}/", b.prefix)))
            }
            _ => false,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(dir) => write!(f, "{}", dir.display()),
            Location::S3(url) => write!(f, "{url}"),
        }
    }
}

/// `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; empty for the whole bucket.
    pub prefix: String,
}

impl S3Url {
    /// `rest`: what follows `s3://`.
    fn new(rest: &str) -> Result<S3Url, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "`s3://{rest}`: no bucket name (s3://BUCKET/PREFIX)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(format!(
                "`s3://{rest}`: empty, `.` or `..` segment in the prefix"
            ));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    pub fn join(&self, name: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            prefix: self.key(name),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Checks a worker label (`--worker`, `JOB_COMPLETION_INDEX`, the host name): it becomes one
/// directory or key segment, so it is letters, digits, `.`, `_` and `-`, at most 63 of them.
pub fn check_label(label: &str) -> Result<String, String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if label.is_empty()
        || label.len() > 63
        || label == "."
        || label == ".."
        || !label.chars().all(fits)
    {
        return Err(format!(
            "`{label}` is not a worker label: 1 to 63 letters, digits, `.`, `_` or `-`"
        ));
    }
    Ok(label.to_owned())
}

/// Where a run's files go, under the worker label: `given` (`--worker` or `JOB_COMPLETION_INDEX`)
/// or, for S3, the host name. A local directory gets a worker sub-directory only when a label is
/// given, so that a run on one machine writes where it always did; an S3 prefix always gets one,
/// so that workers sharing a prefix never overwrite each other.
pub fn run_location(out: &Location, given: Option<&str>) -> Result<Location, Error> {
    let label = match (out, given) {
        (_, Some(label)) => label.to_owned(),
        (Location::Local(_), None) => return Ok(out.clone()),
        (Location::S3(_), None) => {
            let host = gethostname::gethostname();
            check_label(&host.to_string_lossy()).map_err(|e| {
                Error::config("--worker", format!("no label given and the host name {e}"))
            })?
        }
    };
    Ok(out.join(&label))
}

/// A run's (or a merge's) output location, open for writing.
#[derive(Debug)]
pub struct Output {
    location: Location,
    /// Where the files are written: the directory itself, or a staging directory for S3.
    dir: PathBuf,
    upload: Option<Upload>,
}

#[derive(Debug)]
struct Upload {
    client: aws_sdk_s3::Client,
    url: S3Url,
    /// Deleted when the output is dropped.
    _staging: tempfile::TempDir,
}

impl Output {
    /// Creates the directory, or checks that the S3 prefix takes writes (by writing a small
    /// object into it) and creates a local staging directory.
    pub async fn open(location: &Location) -> Result<Output, Error> {
        match location {
            Location::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::Write {
                    path: dir.clone(),
                    error: e.to_string(),
                })?;
                Ok(Output {
                    location: location.clone(),
                    dir: dir.clone(),
                    upload: None,
                })
            }
            Location::S3(url) => {
                let client = client().await;
                client
                    .put_object()
                    .bucket(&url.bucket)
                    .key(url.key(WRITE_CHECK))
                    .body(ByteStream::from_static(
                        b"loadgen writes this object to check that it may write here before a run\n",
                    ))
                    .send()
                    .await
                    .map_err(|e| s3_error(url, e))?;
                let staging = tempfile::Builder::new()
                    .prefix("loadgen-out-")
                    .tempdir()
                    .map_err(|e| Error::Write {
                        path: std::env::temp_dir(),
                        error: format!("cannot create a staging directory for {url}: {e}"),
                    })?;
                Ok(Output {
                    location: location.clone(),
                    dir: staging.path().to_owned(),
                    upload: Some(Upload {
                        client,
                        url: url.clone(),
                        _staging: staging,
                    }),
                })
            }
        }
    }

    /// The local directory to write the files into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Uploads the files written into [`dir`](Self::dir) to S3 (nothing to do for a local
    /// directory).
    pub async fn finish(self) -> Result<(), Error> {
        let Some(upload) = self.upload else {
            return Ok(());
        };
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::Write {
            path: self.dir.clone(),
            error: e.to_string(),
        })?;
        for entry in entries {
            let path = entry
                .map_err(|e| Error::Write {
                    path: self.dir.clone(),
                    error: e.to_string(),
                })?
                .path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let body = ByteStream::from_path(&path)
                .await
                .map_err(|e| Error::Write {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
            upload
                .client
                .put_object()
                .bucket(&upload.url.bucket)
                .key(upload.url.key(&name))
                .content_type(content_type(&name))
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error(&upload.url.join(&name), e))?;
        }
        Ok(())
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        Some("csv") => "text/csv",
        Some("xml") => "application/xml",
        _ => "text/plain; charset=utf-8",
    }
}

/// One interval log read back for `loadgen merge`.
#[derive(Debug)]
pub struct Log {
    /// The worker that wrote it: its directory (or key segment) under the prefix.
    pub label: String,
    /// Its path or `s3://` URL, for messages and the report.
    pub source: PathBuf,
    pub text: Vec<u8>,
}

/// The logs an input of `loadgen merge` names. A file is one log. A directory or an S3 prefix
/// holds one run's `latency.hlog`, or workers' `WORKER/latency.hlog` (what `--out-dir` with
/// `--worker` writes), or both; finding none is an error, as a merge of nothing would pass.
pub async fn read_logs(input: &Location) -> Result<Vec<Log>, Error> {
    let logs = match input {
        Location::Local(path) if path.is_dir() => read_dir_logs(path)?,
        Location::Local(path) => vec![Log {
            label: label_of_file(path),
            source: path.clone(),
            text: read_file(path)?,
        }],
        Location::S3(url) => read_s3_logs(url).await?,
    };
    if logs.is_empty() {
        return Err(Error::ReadLog {
            path: PathBuf::from(input.to_string()),
            message: format!("no {HLOG_FILE} in it, nor in a WORKER/ below it"),
        });
    }
    Ok(logs)
}

/// A file's label: its directory's name for `DIR/latency.hlog`, else its own name.
fn label_of_file(path: &Path) -> String {
    let named = |p: Option<&std::ffi::OsStr>| p.map(|n| n.to_string_lossy().into_owned());
    if path.file_name().is_some_and(|n| n == HLOG_FILE) {
        let dir = path
            .parent()
            .and_then(|p| named(std::path::absolute(p).ok()?.file_name()));
        if let Some(dir) = dir {
            return dir;
        }
    }
    named(path.file_name()).unwrap_or_else(|| path.display().to_string())
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::ReadLog {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn read_dir_logs(dir: &Path) -> Result<Vec<Log>, Error> {
    let unreadable = |e: std::io::Error| Error::ReadLog {
        path: dir.to_owned(),
        message: e.to_string(),
    };
    let mut paths = vec![dir.join(HLOG_FILE)];
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if entry.file_type().map_err(unreadable)?.is_dir() {
            paths.push(entry.path().join(HLOG_FILE));
        }
    }
    paths.retain(|p| p.is_file());
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            Ok(Log {
                label: label_of_file(&path),
                text: read_file(&path)?,
                source: path,
            })
        })
        .collect()
}

/// The worker a listed key belongs to, when it is a log `loadgen merge` reads: `PREFIX/latency.hlog`
/// (labelled by the prefix's last segment, or the bucket) or `PREFIX/WORKER/latency.hlog`.
/// Deeper keys (a merge written inside the prefix, other runs) are not this prefix's workers.
fn worker_of(url: &S3Url, key: &str) -> Option<String> {
    let rest = if url.prefix.is_empty() {
        key
    } else {
        key.strip_prefix(&url.prefix)?.strip_prefix('/')?
    };
    if rest == HLOG_FILE {
        let own = url.prefix.rsplit('/').next().filter(|s| !s.is_empty());
        return Some(own.unwrap_or(&url.bucket).to_owned());
    }
    let (worker, file) = rest.split_once('/')?;
    (file == HLOG_FILE && !worker.is_empty()).then(|| worker.to_owned())
}

async fn read_s3_logs(url: &S3Url) -> Result<Vec<Log>, Error> {
    let client = client().await;
    let list_prefix = if url.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", url.prefix)
    };
    let mut pages = client
        .list_objects_v2()
        .bucket(&url.bucket)
        .prefix(list_prefix)
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| s3_read_error(url, e))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if let Some(label) = worker_of(url, key) {
                found.push((label, key.to_owned()));
            }
        }
    }
    found.sort();
    let mut logs = Vec::with_capacity(found.len());
    for (label, key) in found {
        let source = S3Url {
            bucket: url.bucket.clone(),
            prefix: key.clone(),
        };
        let object = client
            .get_object()
            .bucket(&url.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| s3_read_error(&source, e))?;
        let text = object.body.collect().await.map_err(|e| Error::ReadLog {
            path: PathBuf::from(source.to_string()),
            message: e.to_string(),
        })?;
        logs.push(Log {
            label,
            source: PathBuf::from(source.to_string()),
            text: text.to_vec(),
        });
    }
    Ok(logs)
}

/// An S3 client from the default chain (region default `us-east-1`). With an endpoint URL
/// (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, or `endpoint_url` in the profile), addressing is
/// path-style (`http://host/bucket/key`): an S3-compatible server or emulator (MinIO, moto)
/// rarely answers on per-bucket host names.
async fn client() -> aws_sdk_s3::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let endpoint_key = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field is set");
    let endpoint = sdk.endpoint_url().is_some()
        || sdk
            .service_config()
            .and_then(|c| c.load_config(endpoint_key))
            .is_some();
    let mut config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(endpoint);
    if sdk.region().is_none() {
        config = config.region(Region::from_static("us-east-1"));
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// What went wrong, in S3's words where it gave some.
fn describe<E, R>(url: &S3Url, error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match error.code() {
        Some("NoSuchBucket") => format!("no such bucket `{}`", url.bucket),
        Some("AccessDenied") => format!(
            "access denied{}",
            error
                .message()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        Some(code) => format!("{code}: {}", error.message().unwrap_or("(no message)")),
        None => lambda_invoke::error_chain(error),
    }
}

fn s3_error<E, R>(url: &S3Url, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    Error::Write {
        path: PathBuf::from(url.to_string()),
        error: describe(url, &error),
    }
}

fn s3_read_error<E, R>(url: &S3Url, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    Error::ReadLog {
        path: PathBuf::from(url.to_string()),
        message: describe(url, &error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> Location {
        Location::S3(S3Url {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    #[test]
    fn s3_urls_and_local_paths() {
        assert_eq!(Location::parse("s3://b/run/1").unwrap(), s3("b", "run/1"));
        assert_eq!(Location::parse("s3://b/run/1/").unwrap(), s3("b", "run/1"));
        assert_eq!(Location::parse("s3://b").unwrap(), s3("b", ""));
        assert_eq!(Location::parse("s3://b/").unwrap(), s3("b", ""));
        assert_eq!(
            Location::parse("out/run").unwrap(),
            Location::Local(PathBuf::from("out/run"))
        );
        for (bad, says) in [
            ("s3://", "no bucket name"),
            ("s3:///prefix", "no bucket name"),
            ("s3://b/a//c", "empty, `.` or `..` segment"),
            ("s3://b/a/../c", "empty, `.` or `..` segment"),
            ("gs://b/p", "`gs://` is not supported"),
        ] {
            let error = Location::parse(bad).unwrap_err();
            assert!(
                error.contains(bad) && error.contains(says),
                "{bad}: {error}"
            );
        }
        let url = Location::parse("s3://b/run/1").unwrap();
        assert_eq!(url.to_string(), "s3://b/run/1");
        assert_eq!(url.join("w0").to_string(), "s3://b/run/1/w0");
        assert_eq!(s3("b", "").join("w0").to_string(), "s3://b/w0");
    }

    #[test]
    fn worker_labels() {
        for good in ["0", "17", "host-a.example.com", "pod_3"] {
            assert_eq!(check_label(good).unwrap(), good);
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(64)] {
            let error = check_label(bad).unwrap_err();
            assert!(error.contains("is not a worker label"), "{bad}: {error}");
        }
        let bucket = s3("b", "run");
        let dir = Location::Local(PathBuf::from("out"));
        // A label given goes below either kind of location.
        assert_eq!(run_location(&bucket, Some("3")).unwrap(), s3("b", "run/3"));
        assert_eq!(
            run_location(&dir, Some("3")).unwrap(),
            Location::Local(PathBuf::from("out/3"))
        );
        // Without one, a local directory is used as is; S3 gets the host name.
        assert_eq!(run_location(&dir, None).unwrap(), dir);
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        assert_eq!(
            run_location(&bucket, None).unwrap(),
            s3("b", &format!("run/{host}"))
        );
    }

    #[test]
    fn which_keys_are_worker_logs() {
        let url = S3Url::new("b/run").unwrap();
        assert_eq!(worker_of(&url, "run/0/latency.hlog").as_deref(), Some("0"));
        assert_eq!(worker_of(&url, "run/latency.hlog").as_deref(), Some("run"));
        for other in [
            "run/0/report.json",
            "run/0/.loadgen-write-check",
            "run/merged/x/latency.hlog",
            "runs/0/latency.hlog",
            "other/0/latency.hlog",
            "run//latency.hlog",
        ] {
            assert_eq!(worker_of(&url, other), None, "{other}");
        }
        let whole = S3Url::new("b").unwrap();
        assert_eq!(worker_of(&whole, "w1/latency.hlog").as_deref(), Some("w1"));
        assert_eq!(worker_of(&whole, "latency.hlog").as_deref(), Some("b"));
    }

    #[test]
    fn an_output_inside_an_input_is_seen() {
        assert!(s3("b", "run/merged").is_within(&s3("b", "run")));
        assert!(s3("b", "run").is_within(&s3("b", "run")));
        assert!(s3("b", "x").is_within(&s3("b", "")));
        assert!(!s3("b", "runs").is_within(&s3("b", "run")));
        assert!(!s3("c", "run/m").is_within(&s3("b", "run")));
        let local = |p: &str| Location::Local(PathBuf::from(p));
        assert!(local("out/merged").is_within(&local("out")));
        assert!(!local("outer").is_within(&local("out")));
        assert!(!local("out").is_within(&s3("b", "")));
    }

    #[test]
    fn local_directories_hold_a_run_or_workers() {
        let dir = tempfile::tempdir().unwrap();
        for worker in ["b", "a"] {
            std::fs::create_dir(dir.path().join(worker)).unwrap();
            std::fs::write(dir.path().join(worker).join(HLOG_FILE), worker).unwrap();
        }
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let input = Location::Local(dir.path().to_owned());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let logs = runtime.block_on(read_logs(&input)).unwrap();
        let seen: Vec<(&str, &[u8])> = logs
            .iter()
            .map(|l| (l.label.as_str(), l.text.as_slice()))
            .collect();
        assert_eq!(seen, [("a", &b"a"[..]), ("b", &b"b"[..])]);
        // One file: labelled by its directory.
        let file = Location::Local(dir.path().join("a").join(HLOG_FILE));
        assert_eq!(runtime.block_on(read_logs(&file)).unwrap()[0].label, "a");
        let empty = Location::Local(dir.path().join("empty"));
        let error = runtime.block_on(read_logs(&empty)).unwrap_err().to_string();
        assert!(
            error.contains("empty") && error.contains("no latency.hlog"),
            "{error}"
        );
    }
}
