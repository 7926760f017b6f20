//! A TCP connection that knows when its bytes arrived: the kernel's receive time stamp of what
//! each read returned (`SO_TIMESTAMPNS`, Linux), rather than the time the reading task got to it.
//!
//! A load generator that reads many answers arriving together (a closed model's burst: every
//! request sent together is answered together) reads the last of them only after it has handled
//! the others, and that wait is the generator's, not the service's. The kernel stamps each segment
//! as it is received, the time a packet capture shows; reading it with the data takes the
//! generator's own delay out of the measured latency.
//! <https://www.kernel.org/doc/html/latest/networking/timestamping.html>

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::send::ArrivalTime;

/// Size of the buffer `recvmsg` reads into, then copied into the caller's as far as filled:
/// `recvmsg` wants initialised memory, and zeroing the caller's buffer on every read cost more
/// than copying the bytes an answer has. One per thread, not per connection, so that thousands
/// of connections do not hold one each.
const SCRATCH: usize = 64 << 10;

thread_local! {
    static SCRATCH_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
}

/// A [`TcpStream`] whose reads keep the kernel's receive time stamp of the bytes they returned,
/// when asked for; otherwise its reads are the stream's own.
#[derive(Debug)]
pub(crate) struct RxStamped {
    tcp: TcpStream,
    /// Whether stamps were asked for and the kernel stamps this socket's segments (it may refuse).
    enabled: bool,
    /// The receive time of the bytes the last read returned.
    last: Option<Instant>,
}

impl RxStamped {
    pub(crate) fn new(tcp: TcpStream, stamped: bool) -> RxStamped {
        let enabled = stamped && setsockopt(&tcp, sockopt::ReceiveTimestampns, &true).is_ok();
        RxStamped { tcp, enabled, last: None }
    }
}

impl ArrivalTime for RxStamped {
    fn take_arrival(&mut self) -> Option<Instant> {
        self.last.take()
    }
}

/// A wall-clock time stamp as an [`Instant`], by its distance from now on both clocks.
fn instant_of(stamp: TimeSpec) -> Instant {
    let at = UNIX_EPOCH + Duration::new(stamp.tv_sec().max(0) as u64, stamp.tv_nsec().clamp(0, 999_999_999) as u32);
    let (now, wall) = (Instant::now(), SystemTime::now());
    wall.duration_since(at).ok().and_then(|ago| now.checked_sub(ago)).unwrap_or(now)
}

/// One `recvmsg` into `buf`: the bytes read and their receive time stamp, if the kernel gave one.
fn receive(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<TimeSpec>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut control = nix::cmsg_space!(TimeSpec);
    let message = recvmsg::<()>(tcp.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::empty())?;
    let stamp = message.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(at) => Some(at),
        _ => None,
    });
    Ok((message.bytes, stamp))
}

impl AsyncRead for RxStamped {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.enabled {
            return Pin::new(&mut this.tcp).poll_read(cx, buf);
        }
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            let room = buf.remaining().min(SCRATCH);
            let read = SCRATCH_BUFFER.with_borrow_mut(|scratch| {
                let mut received = None;
                let cleared = this.tcp.try_io(Interest::READABLE, || {
                    let (n, stamp) = receive(&this.tcp, &mut scratch[..room])?;
                    received = Some((n, stamp));
                    // A read that did not fill the buffer emptied the socket's queue: the stream
                    // is not readable until the next segment, so say "would block" and the
                    // readiness is cleared now, instead of by one more `recvmsg` that finds the
                    // queue empty (one system call per answer). This is what tokio's own
                    // `TcpStream::poll_read` does; a close stays readable, tokio keeps it.
                    if n > 0 && n < room { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
                });
                match (received, cleared) {
                    (Some((n, stamp)), _) => {
                        buf.put_slice(&scratch[..n]);
                        Ok((n, stamp))
                    }
                    (None, Err(e)) => Err(e),
                    (None, Ok(())) => unreachable!("try_io ran the read"),
                }
            });
            match read {
                Ok((n, stamp)) => {
                    if n > 0 {
                        this.last = stamp.map(instant_of);
                    }
                    return Poll::Ready(Ok(()));
                }
                // Not readable after all: poll_read_ready waits again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for RxStamped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A loopback connection: its client end reads with stamps, and the server end.
    async fn stamped_connection() -> (RxStamped, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = RxStamped::new(TcpStream::connect(listener.local_addr().unwrap()).await.unwrap(), true);
        assert!(client.enabled, "the kernel stamps loopback segments");
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// The bytes a read returns are stamped when they arrived, not when they were read: here the
    /// answer is in the socket's queue (loopback delivers it within the write) well before the
    /// read, and its stamp lies between the write and the read.
    #[tokio::test]
    async fn a_read_gives_the_time_its_bytes_arrived() {
        let (mut client, mut server) = stamped_connection().await;
        // The kernel turns receive stamping on lazily when the first socket of the system asks
        // for it (a deferred switch): until then segments arrive unstamped, and a read keeps its
        // own time. Wait, with a deadline, until a probe byte comes back stamped.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut probe = [0u8; 1];
        loop {
            server.write_all(b".").await.unwrap();
            assert_eq!(client.read(&mut probe).await.unwrap(), 1);
            if client.take_arrival().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "the kernel never stamped a segment");
            tokio::task::yield_now().await;
        }
        let writing = Instant::now();
        server.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        // Another request's work on the generator: the read comes later than the bytes.
        std::thread::sleep(Duration::from_millis(20));
        let reading = Instant::now();
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let arrived = client.take_arrival().expect("a stamp for the bytes read");
        assert!(arrived >= writing - Duration::from_millis(1), "arrived {:?} before the write", writing - arrived);
        assert!(arrived < reading, "arrived {:?} after the read began", arrived - reading);
        // Given once: a later read without bytes has none.
        assert_eq!(client.take_arrival(), None);
        drop(server);
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        assert_eq!(client.take_arrival(), None);
    }

    /// A read that empties the socket's queue leaves the stream not readable, as tokio's own reads
    /// do: otherwise every answer costs one more `recvmsg` that finds nothing. The next segment
    /// still wakes the reader.
    #[tokio::test]
    async fn a_read_that_empties_the_socket_clears_its_readiness() {
        let (mut client, mut server) = stamped_connection().await;
        // Loopback queues the bytes within the write, so the read below takes all of them.
        server.write_all(b"first").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(client.read(&mut buf).await.unwrap(), 5);
        let readable = std::future::poll_fn(|cx| Poll::Ready(client.tcp.poll_read_ready(cx).is_ready())).await;
        assert!(!readable, "a read shorter than its buffer emptied the queue, yet the stream stays readable");
        server.write_all(b"second").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(30), client.read(&mut buf))
            .await
            .expect("the next segment wakes the reader")
            .unwrap();
        assert_eq!(&buf[..n], b"second");
    }
}
