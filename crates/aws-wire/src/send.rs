//! One connection pool; a request sent and its answer read up to a limit.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderMap};
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::{Error, error_chain};

/// A keep-alive connection pool for `http://` and `https://`, HTTP/1.1.
pub type Pool = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A new [`Pool`] (rustls with the system's root certificates).
pub fn pool() -> Result<Pool, Error> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| Error::Tls(e.to_string()))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An answer, with at most the limit's bytes of its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// What was read of the body: all of it, or nothing when it was longer than the limit.
    pub body: Bytes,
    /// How long the body was: its length, or more than the limit when it was cut (the announced
    /// `Content-Length` if any, else one past the limit).
    pub total: usize,
}

impl Answer {
    /// True when the body was longer than the limit and was not read.
    pub fn cut(&self, limit: usize) -> bool {
        self.total > limit
    }
}

/// Sends `request` through `pool` and reads at most `limit` bytes of the answer's body; a body
/// announced or found longer is not read further (the connection is then dropped, not reused).
pub async fn send(pool: &Pool, request: Request<Full<Bytes>>, limit: usize) -> Result<Answer, Error> {
    let response = pool
        .request(request)
        .await
        .map_err(|e| Error::Transport(error_chain(&e)))?;
    let (parts, body) = response.into_parts();
    let announced = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let answer = |body: Bytes, total: usize| Answer {
        status: parts.status.as_u16(),
        headers: parts.headers.clone(),
        body,
        total,
    };
    if let Some(length) = announced.filter(|&n| n > limit) {
        return Ok(answer(Bytes::new(), length));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let total = bytes.len();
            Ok(answer(bytes, total))
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(answer(Bytes::new(), limit + 1)),
        Err(e) => Err(Error::Transport(error_chain(&*e))),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on 127.0.0.1 answering every connection's first request with `response`.
    async fn server(response: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket, response));
            }
        });
        url
    }

    async fn answer(mut socket: tokio::net::TcpStream, response: &[u8]) -> std::io::Result<()> {
        // The request's head is enough; its short body is ignored.
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        socket.write_all(response).await?;
        socket.shutdown().await
    }

    fn request(url: &str) -> Request<Full<Bytes>> {
        Request::post(url).body(Full::new(Bytes::from_static(b"{}"))).unwrap()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let url = server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let answer = send(&pool().unwrap(), request(&url), 5).await.unwrap();
        assert_eq!((answer.status, answer.body.as_ref(), answer.total), (200, &b"hello"[..], 5));
        assert!(!answer.cut(5));
    }

    #[tokio::test]
    async fn a_body_announced_over_the_limit_is_not_read() {
        let url = server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nhello").await;
        let answer = send(&pool().unwrap(), request(&url), 10).await.unwrap();
        assert_eq!((answer.body.len(), answer.total), (0, 1_000_000));
        assert!(answer.cut(10));
    }

    #[tokio::test]
    async fn a_body_found_over_the_limit_is_cut() {
        let url = server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n").await;
        let answer = send(&pool().unwrap(), request(&url), 5).await.unwrap();
        assert_eq!((answer.body.len(), answer.total), (0, 6));
    }

    #[tokio::test]
    async fn no_server_is_a_transport_error_with_its_cause() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let err = send(&pool().unwrap(), request(&url), 5).await.unwrap_err();
        assert!(matches!(&err, Error::Transport(text) if text.contains("onnect")), "{err}");
    }
}
