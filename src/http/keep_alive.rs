//! Connection timeouts hyper does not tell apart: an idle keep-alive connection lives
//! `KEYWARD_IDLE_TIMEOUT`, while a request head, once its first byte arrived, must be complete
//! within `KEYWARD_HEADER_TIMEOUT` (slowloris).
//!
//! hyper's own header-read timer starts as soon as a connection waits for its next request, so it
//! doubles as an idle timeout: a proxy's pooled connection idle longer than the header timeout was
//! closed, and a request the proxy sent on it as it closed came back as a 502. Written here
//! because no crate of the stack offers the two apart: the IO wrapper sees the bytes, the service
//! wrapper sees each head completed and each response finished, and a watchdog decides.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The first bytes of an HTTP/2 connection (RFC 9113 §3.4): its frames are not request heads.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";
/// "No head started", in [`Shared::head_started`].
const NONE: u64 = u64::MAX;

/// What one connection's IO, service and watchdog share.
#[derive(Debug)]
struct Shared {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or response finished.
    last_activity: AtomicU64,
    /// Milliseconds since `start` of the first byte of a request head not yet complete.
    head_started: AtomicU64,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// Whether anything was read yet, and whether it was HTTP/2.
    seen_first_bytes: AtomicBool,
    is_h2: AtomicBool,
    /// Wakes the watchdog when a head starts or a request begins or ends: its deadline moved.
    changed: tokio::sync::Notify,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }
}

/// One connection's timeouts: wrap its IO with [`Watch::io`] and its service's calls with
/// [`Watch::request`], and close it when [`Watch::expired`] resolves.
#[derive(Clone, Debug)]
pub struct Watch {
    shared: Arc<Shared>,
    idle: Duration,
    header: Duration,
}

impl Watch {
    /// A new connection, idle as of now.
    #[must_use]
    pub fn new(idle: Duration, header: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                start: Instant::now(),
                last_activity: AtomicU64::new(0),
                head_started: AtomicU64::new(NONE),
                in_flight: AtomicUsize::new(0),
                seen_first_bytes: AtomicBool::new(false),
                is_h2: AtomicBool::new(false),
                changed: tokio::sync::Notify::new(),
            }),
            idle,
            header,
        }
    }

    /// The connection's IO, noting every byte read.
    pub fn io<T>(&self, io: T) -> WatchedIo<T> {
        WatchedIo {
            io,
            shared: Arc::clone(&self.shared),
        }
    }

    /// A request's head is complete and it is being answered, until the guard is dropped.
    #[must_use]
    pub fn request(&self) -> InFlight {
        let s = &self.shared;
        s.head_started.store(NONE, Ordering::Relaxed);
        s.in_flight.fetch_add(1, Ordering::Relaxed);
        s.changed.notify_one();
        InFlight {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Resolves when the connection must close: idle too long, or a head started too long ago.
    pub async fn expired(&self) {
        let s = &self.shared;
        let (idle, header) = (millis(self.idle), millis(self.header));
        loop {
            let now = s.now_ms();
            let started = s.head_started.load(Ordering::Relaxed);
            let busy = s.in_flight.load(Ordering::Relaxed) > 0;
            let next = if started != NONE && !s.is_h2.load(Ordering::Relaxed) {
                // A head in progress: it has until `started + header`.
                let deadline = started.saturating_add(header);
                if now >= deadline {
                    return;
                }
                deadline
            } else if busy {
                // Answering: nothing to time here (the request timeout bounds the handler).
                now.saturating_add(idle.min(header).max(1))
            } else {
                let deadline = s.last_activity.load(Ordering::Relaxed).saturating_add(idle);
                if now >= deadline {
                    return;
                }
                deadline
            };
            let wait = Duration::from_millis(next.saturating_sub(now).max(1));
            // A permit stored by a change since the last look wakes this at once.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = s.changed.notified() => {}
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// A request being answered; dropped when its response future ends.
#[derive(Debug)]
pub struct InFlight {
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.shared;
        s.last_activity.store(s.now_ms(), Ordering::Relaxed);
        s.in_flight.fetch_sub(1, Ordering::Relaxed);
        s.changed.notify_one();
    }
}

/// The connection's IO, telling the watch when bytes arrive.
#[derive(Debug)]
pub struct WatchedIo<T> {
    io: T,
    shared: Arc<Shared>,
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let fresh = &buf.filled()[before..];
        if !fresh.is_empty() {
            let s = &self.shared;
            if !s.seen_first_bytes.swap(true, Ordering::Relaxed) {
                let h2 = fresh.starts_with(&H2_PREFACE[..fresh.len().min(H2_PREFACE.len())]);
                s.is_h2.store(h2, Ordering::Relaxed);
            }
            let now = s.now_ms();
            s.last_activity.store(now, Ordering::Relaxed);
            // Bytes while nothing is being answered begin the next request's head.
            if s.in_flight.load(Ordering::Relaxed) == 0
                && s.head_started
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                s.changed.notify_one();
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_lasts_the_idle_timeout_not_the_header_timeout() {
        let watch = Watch::new(Duration::from_secs(75), Duration::from_secs(10));
        let expired = tokio::time::timeout(Duration::from_secs(74), watch.expired()).await;
        assert!(expired.is_err(), "still open after 74 s idle");
        tokio::time::timeout(Duration::from_secs(2), watch.expired())
            .await
            .expect("closed at 75 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_must_finish_within_the_header_timeout() {
        let watch = Watch::new(Duration::from_secs(75), Duration::from_secs(10));
        let (client, server) = tokio::io::duplex(64);
        let mut io = watch.io(server);
        let mut client = client;
        // The watchdog is already waiting for the idle deadline when the head begins.
        let expired = watch.clone();
        let expired = tokio::spawn(async move { expired.expired().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        tokio::io::AsyncReadExt::read(&mut io, &mut buf)
            .await
            .expect("read");
        tokio::time::timeout(Duration::from_secs(11), expired)
            .await
            .expect("closed 10 s after the head began, not at the idle deadline")
            .expect("the watchdog ran");
        // Once the head is complete, the request is answered whatever it takes.
        let guard = watch.request();
        let answering = tokio::time::timeout(Duration::from_secs(300), watch.expired()).await;
        assert!(answering.is_err(), "never closed while answering");
        drop(guard);
    }
}
