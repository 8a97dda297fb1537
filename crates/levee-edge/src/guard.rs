//! The connection guard: the first and cheapest stage. It decides whether a
//! new connection may be held at all (total and per-address caps) and stops
//! connections that hold resources without moving bytes (idle keep-alive,
//! slow read), resetting them so the kernel drops what they left unsent.
//! Request-level limits (head size, head time, body rate) are set
//! on hyper and in the pipeline; this module never looks inside a request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Counts open connections, in total and per client address.
#[derive(Debug)]
pub struct ConnectionGuard {
    max_total: usize,
    max_per_ip: u32,
    total: AtomicUsize,
    /// One entry per address with an open connection, so its size is bounded
    /// by `max_total`.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `limits.max_connections` open already.
    Total,
    /// `limits.max_connections_per_ip` open from this address already.
    PerIp,
}

impl ConnectionGuard {
    /// A guard with the configured caps.
    pub fn new(max_total: u32, max_per_ip: u32) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total as usize,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Admits a connection from `ip`, or says which cap is full. The slot is
    /// held until the returned [`Admitted`] drops.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let total = self.total.fetch_add(1, Ordering::AcqRel);
        if total >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(Admitted {
            guard: Arc::clone(self),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// One admitted connection; releases its slots on drop.
#[derive(Debug)]
pub struct Admitted {
    guard: Arc<ConnectionGuard>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self.guard.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.guard.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Requests being served on one connection; while it is above zero the idle
/// timer does not close the connection (a slow function is not an idle
/// client).
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Marks a request as started until the returned token drops.
    pub fn start(&self) -> InFlightToken {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightToken(Arc::clone(&self.0))
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }
}

/// See [`InFlight::start`].
#[derive(Debug)]
pub struct InFlightToken(Arc<AtomicUsize>);

impl Drop for InFlightToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that fails with `TimedOut` when no byte is read for
/// `idle` while no request is in flight, or when a write makes no progress
/// for `send` (a client that does not read its responses).
#[derive(Debug)]
pub struct TimedStream<S> {
    inner: S,
    in_flight: InFlight,
    idle: Duration,
    send: Duration,
    read_timer: Pin<Box<Sleep>>,
    /// When bytes last arrived. The timer is re-armed from this only when it
    /// fires, so a busy connection costs a clock read per read, not a timer
    /// reset.
    last_read: Instant,
    write_timer: Pin<Box<Sleep>>,
    write_waiting: bool,
}

impl<S> TimedStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, in_flight: InFlight, idle: Duration, send: Duration) -> Self {
        Self {
            inner,
            in_flight,
            idle,
            send,
            read_timer: Box::pin(tokio::time::sleep(idle)),
            last_read: Instant::now(),
            write_timer: Box::pin(tokio::time::sleep(send)),
            write_waiting: false,
        }
    }
}

/// A socket that can be told to reset rather than close gracefully.
pub trait ResetOnClose {
    /// Makes the coming close send RST and discard unsent data.
    fn reset_on_close(&self);
}

impl ResetOnClose for tokio::net::TcpStream {
    fn reset_on_close(&self) {
        // SO_LINGER 0, as nginx's `reset_timedout_connection`: a graceful
        // close would leave the unsent response queued in the kernel for a
        // client that reads it a few bytes at a time, and that client would
        // not learn it was cut off.
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

impl ResetOnClose for tokio::io::DuplexStream {
    fn reset_on_close(&self) {}
}

fn timed_out(inner: &impl ResetOnClose, what: &str) -> io::Error {
    inner.reset_on_close();
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

impl<S: AsyncRead + ResetOnClose + Unpin> AsyncRead for TimedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.last_read = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => loop {
                if this.read_timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                let quiet_until = this.last_read + this.idle;
                if quiet_until > now {
                    // Bytes arrived since the timer was armed.
                    this.read_timer.as_mut().reset(quiet_until);
                } else if this.in_flight.busy() {
                    // A request is being served: look again one idle period later.
                    this.read_timer.as_mut().reset(now + this.idle);
                } else {
                    return Poll::Ready(Err(timed_out(&this.inner, "connection idle")));
                }
            },
        }
    }
}

impl<S: AsyncWrite + ResetOnClose + Unpin> TimedStream<S> {
    fn poll_progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                self.write_waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.write_waiting {
                    self.write_waiting = true;
                    self.write_timer.as_mut().reset(Instant::now() + self.send);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(timed_out(&self.inner, "client not reading")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + ResetOnClose + Unpin> AsyncWrite for TimedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_progress(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_progress(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_progress(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn caps_hold_and_slots_return_on_drop() {
        let g = ConnectionGuard::new(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let a1 = g.admit(a).unwrap();
        let _a2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).unwrap_err(), Refused::PerIp);
        let _b1 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).unwrap_err(), Refused::Total);
        drop(a1);
        let _b2 = g.admit(b).expect("a released slot is reusable");
        assert_eq!(g.open(), 3);
    }

    #[test]
    fn per_ip_table_forgets_closed_addresses() {
        let g = ConnectionGuard::new(10_000, 1);
        for i in 0..5000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + i));
            drop(g.admit(ip).unwrap());
        }
        assert!(g.per_ip.lock().unwrap().is_empty());
        assert_eq!(g.open(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_time_out_unless_a_request_is_in_flight() {
        let (client, server) = tokio::io::duplex(64);
        let in_flight = InFlight::default();
        let mut s = TimedStream::new(
            server,
            in_flight.clone(),
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        let token = in_flight.start();
        let mut buf = [0u8; 8];
        // Busy: 12 s without bytes is fine; the read is still pending.
        let pending = tokio::time::timeout(Duration::from_secs(12), s.read(&mut buf)).await;
        assert!(pending.is_err(), "no timeout while a request is in flight");
        drop(token);
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_keeps_sending_is_not_idle() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = TimedStream::new(
            server,
            InFlight::default(),
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
        let mut buf = [0u8; 1];
        // A byte every 3 s for 15 s: three idle periods pass, none of them quiet.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            client.write_all(b"x").await.unwrap();
            assert_eq!(s.read(&mut buf).await.unwrap(), 1);
        }
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "then quiet: closed");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_to_a_client_that_never_reads_time_out() {
        let (_client, server) = tokio::io::duplex(16);
        let mut s = TimedStream::new(
            server,
            InFlight::default(),
            Duration::from_secs(60),
            Duration::from_secs(3),
        );
        let err = s.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
