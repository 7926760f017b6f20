//! The `poller` binary as a process, for tests of its lifecycle: several mapping files, the HTTP
//! endpoint on a known port, signals, stderr, and the exit status with a deadline.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{poller_binary, unique};

/// A `poller run` process: mapping files and state in a fresh directory, metrics and probes on a
/// free port of 127.0.0.1, stderr collected (and echoed, for failing tests).
pub struct Poller {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Poller {
    /// Start `poller run` with `mappings` (JSON texts), invoking through the Lambda API at `lambda_url`,
    /// with `extra` arguments. `RUST_LOG=info`, so the log says when shutdown starts.
    pub fn start(mappings: &[String], lambda_url: &str, extra: &[&str]) -> Poller {
        Self::start_in(std::env::temp_dir().join(unique("poller-life")), mappings, lambda_url, extra)
    }

    /// Like [`Poller::start`] in `dir`: a second start in the same directory resumes from its state.
    pub fn start_in(dir: PathBuf, mappings: &[String], lambda_url: &str, extra: &[&str]) -> Poller {
        Self::start_under(&[], dir, mappings, lambda_url, extra)
    }

    /// Like [`Poller::start_in`], run by `wrapper` (a command and its arguments, such as GNU
    /// `timeout`): `child` is then the wrapper.
    pub fn start_under(wrapper: &[&str], dir: PathBuf, mappings: &[String], lambda_url: &str, extra: &[&str]) -> Poller {
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let addr = free_addr();
        let mut command = match wrapper {
            [] => Command::new(poller_binary()),
            [program, args @ ..] => {
                let mut command = Command::new(program);
                command.args(args).arg(poller_binary());
                command
            }
        };
        command.arg("run");
        for (i, mapping) in mappings.iter().enumerate() {
            let path = dir.join(format!("mapping-{i}.json"));
            std::fs::write(&path, mapping).expect("mapping file");
            command.arg("--mapping").arg(path);
        }
        let mut child = command
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--lambda-endpoint-url", lambda_url])
            .args(["--metrics-addr", &addr.to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("poller starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stderr.take().expect("stderr"));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                eprintln!("[poller {}] {line}", addr.port());
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Poller { child, addr, dir, stderr }
    }

    /// What the poller wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Send `signal` (`TERM`, `INT`, …) to the poller.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// `GET path` on the poller's endpoint: status and body, `None` while it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        get(self.addr, path).await
    }

    /// `/readyz`: status and JSON body, `None` while it does not answer.
    pub async fn readyz(&self) -> Option<(u16, serde_json::Value)> {
        let (status, body) = self.get("/readyz").await?;
        Some((status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("/readyz body {body:?}: {e}"))))
    }

    /// Wait for the exit, at most `timeout` (then kill it and panic); returns the status, the report
    /// on stdout, and stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                self.child.kill().ok();
                self.child.wait().ok();
                panic!("the poller did not exit within {timeout:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).ok();
        }
        // The reader thread sees EOF once the process is gone; give it the last lines.
        let stderr_done = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&self.stderr) > 1 && Instant::now() < stderr_done {
            std::thread::sleep(Duration::from_millis(20));
        }
        (status, stdout, self.stderr())
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // A failed test must not leave a poller behind.
        if let Ok(None) = self.child.try_wait() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// `kill -SIGNAL pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// A free port on 127.0.0.1: bound, then released for the poller to bind a moment later.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address")
}

/// A minimal HTTP/1.1 GET, one request per connection: status and body; `None` if nothing answers.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.ok().flatten()
}
