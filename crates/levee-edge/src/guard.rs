//! The connection guard: the first and cheapest stage. It decides whether a
//! new connection may be held at all (total and per-address caps) and stops
//! connections that hold resources without moving bytes (idle keep-alive,
//! slow read), resetting them so the kernel drops what they left unsent.
//! On HTTP/2 it also times request heads, from frame headers alone (see
//! [`crate::h2_watch`]); on HTTP/1.1 hyper does. Other request-level limits
//! (head size, body rate) are set on hyper and in the pipeline; this module
//! never decodes a request.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use levee_common::sync::lock;
use levee_shield::bucket::KeyedBuckets;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::h2_watch::H2Watch;

/// Counted slots, in total and per client address: open connections for
/// the [`ConnectionGuard`], handshakes in progress for the
/// [`HandshakeGuard`].
#[derive(Debug)]
pub struct Slots {
    max_total: usize,
    max_per_ip: u32,
    total: AtomicUsize,
    /// One entry per address holding a slot, so its size is bounded by
    /// `max_total`.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

/// Which cap of a [`Slots`] is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtCap {
    /// Every slot is taken.
    Total,
    /// This address holds its share already.
    PerIp,
}

impl Slots {
    fn new(max_total: u32, max_per_ip: u32) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total as usize,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for `ip`, held until the returned [`Slot`] drops.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, AtCap> {
        let total = self.total.fetch_add(1, Ordering::AcqRel);
        if total >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(AtCap::Total);
        }
        let mut per_ip = lock(&self.per_ip);
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(AtCap::PerIp);
        }
        *n += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            ip,
        })
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// One taken slot (an admitted connection, a handshake in progress);
/// released on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = lock(&self.slots.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.slots.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts open connections, in total and per client address.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Slots>);

impl ConnectionGuard {
    /// A guard with the configured caps.
    pub fn new(max_total: u32, max_per_ip: u32) -> Self {
        Self(Slots::new(max_total, max_per_ip))
    }

    /// Admits a connection from `ip`, or says which cap
    /// (`max_connections`, `max_connections_per_ip`) is full.
    pub fn admit(&self, ip: IpAddr) -> Result<Slot, AtCap> {
        self.0.take(ip)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.0.taken()
    }
}

/// TLS handshakes in progress, in total and per client address, and the
/// rate at which each address may start them. Checked at accept, before a
/// byte is read, so a handshake flood costs the flooder its TCP handshakes
/// and Levee no certificate work.
#[derive(Debug)]
pub struct HandshakeGuard {
    slots: Arc<Slots>,
    /// Per-address token buckets, at most [`HANDSHAKE_RATE_KEYS`] addresses
    /// (the rest share a count-min sketch, which can only refuse early).
    rate: KeyedBuckets,
}

/// Addresses whose handshake rate is tracked exactly.
pub const HANDSHAKE_RATE_KEYS: usize = 65_536;

/// Why a TLS handshake was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefused {
    /// `max_handshakes` (Total) or `max_handshakes_per_ip` (PerIp) in
    /// progress already.
    Full(AtCap),
    /// This address started `handshake_rate_per_ip` in the last second.
    Rate,
}

impl HandshakeRefused {
    /// The metrics label: the key that refused.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeRefused::Full(AtCap::Total) => "max_handshakes",
            HandshakeRefused::Full(AtCap::PerIp) => "max_handshakes_per_ip",
            HandshakeRefused::Rate => "handshake_rate_per_ip",
        }
    }
}

impl HandshakeGuard {
    /// A guard with the configured caps and per-address rate.
    pub fn new(max_total: u32, max_per_ip: u32, rate_per_ip: u32) -> Self {
        Self {
            slots: Slots::new(max_total, max_per_ip),
            rate: KeyedBuckets::new(f64::from(rate_per_ip), rate_per_ip, HANDSHAKE_RATE_KEYS),
        }
    }

    /// Starts a handshake from `ip`, or says which bound refuses it; the
    /// slot is held until the returned [`Slot`] drops.
    pub fn start(&self, ip: IpAddr) -> Result<Slot, HandshakeRefused> {
        let key = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        if self.rate.try_take(&key, std::time::Instant::now()).is_err() {
            return Err(HandshakeRefused::Rate);
        }
        self.slots.take(ip).map_err(HandshakeRefused::Full)
    }

    /// Handshakes in progress now.
    pub fn in_progress(&self) -> usize {
        self.slots.taken()
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

/// The timeouts a [`TimedStream`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No request in flight and nothing arriving for a stream (on HTTP/2,
    /// PINGs and SETTINGS keep nothing alive).
    pub idle: Duration,
    /// A write that makes no progress (a client that does not read).
    pub send: Duration,
    /// On HTTP/2: the first request head from the connection's start, and
    /// each later head from its HEADERS frame, must be complete within this.
    pub head: Duration,
}

/// A stream that fails with `TimedOut` when a [`Timeouts`] bound passes.
#[derive(Debug)]
pub struct TimedStream<S> {
    inner: S,
    in_flight: InFlight,
    timeouts: Timeouts,
    read_timer: Pin<Box<Sleep>>,
    /// When bytes for a stream last arrived. The timer is re-armed from this
    /// only when it fires, so a busy connection costs a clock read per read,
    /// not a timer reset.
    last_read: Instant,
    h2: H2Watch,
    /// Since when a request head has been awaited or in progress (HTTP/2;
    /// until the preface shows HTTP/1.1, which hyper times).
    head_since: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    write_waiting: bool,
}

impl<S> TimedStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, in_flight: InFlight, timeouts: Timeouts) -> Self {
        let now = Instant::now();
        Self {
            inner,
            in_flight,
            timeouts,
            read_timer: Box::pin(tokio::time::sleep(timeouts.idle.min(timeouts.head))),
            last_read: now,
            h2: H2Watch::default(),
            head_since: Some(now),
            write_timer: Box::pin(tokio::time::sleep(timeouts.send)),
            write_waiting: false,
        }
    }

    /// Watches what arrived; `fresh` is what the last read added.
    fn arrived(&mut self, fresh: &[u8], now: Instant) {
        if self.h2.is_other() {
            self.last_read = now;
            return;
        }
        let seen = self.h2.feed(fresh);
        if !self.h2.is_h2() {
            // The preface, or the first bytes of something else.
            self.last_read = now;
            if self.h2.is_other() {
                self.head_since = None;
            }
            return;
        }
        if seen.stream_frame {
            self.last_read = now;
        }
        if seen.head_done {
            self.head_since = None;
        }
        if self.h2.head_open() && self.head_since.is_none() {
            self.head_since = Some(now);
            // The timer may be armed for the idle deadline, later than this.
            let due = (now + self.timeouts.head).min(self.read_timer.deadline());
            self.read_timer.as_mut().reset(due);
        }
    }

    /// Which bound has passed, if any; else when to look again. Checked
    /// whenever a read returns, not only when the timer fires, so a client
    /// whose bytes always arrive first is held to the same clock.
    fn check(&self, now: Instant) -> Result<Instant, &'static str> {
        let head_due = self.head_since.map(|since| since + self.timeouts.head);
        if head_due.is_some_and(|due| due <= now) {
            return Err("request head too slow");
        }
        let quiet_until = self.last_read + self.timeouts.idle;
        let next = if quiet_until > now {
            quiet_until
        } else if self.in_flight.busy() {
            // A request is being served: look again one idle period later.
            now + self.timeouts.idle
        } else {
            return Err("connection idle");
        };
        Ok(head_due.map_or(next, |due| due.min(next)))
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

impl ResetOnClose for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn reset_on_close(&self) {
        self.get_ref().0.reset_on_close();
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
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let now = Instant::now();
                this.arrived(&buf.filled()[before..], now);
                match this.check(now) {
                    Err(what) => Poll::Ready(Err(timed_out(&this.inner, what))),
                    Ok(_) => Poll::Ready(Ok(())),
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                if this.read_timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match this.check(Instant::now()) {
                    Err(what) => return Poll::Ready(Err(timed_out(&this.inner, what))),
                    Ok(next) => this.read_timer.as_mut().reset(next),
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
                    self.write_timer
                        .as_mut()
                        .reset(Instant::now() + self.timeouts.send);
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
        assert_eq!(g.admit(a).unwrap_err(), AtCap::PerIp);
        let _b1 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).unwrap_err(), AtCap::Total);
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
        assert!(lock(&g.0.per_ip).is_empty());
        assert_eq!(g.open(), 0);
    }

    #[test]
    fn handshakes_are_capped_per_address_and_rated() {
        let g = HandshakeGuard::new(3, 2, 4);
        let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        let a1 = g.start(a).unwrap();
        let _a2 = g.start(a).unwrap();
        assert_eq!(
            g.start(a).unwrap_err(),
            HandshakeRefused::Full(AtCap::PerIp)
        );
        let _b1 = g.start(b).unwrap();
        assert_eq!(
            g.start(b).unwrap_err(),
            HandshakeRefused::Full(AtCap::Total)
        );
        drop(a1);
        assert_eq!(g.in_progress(), 2);
        // `a` has started 3 (one refused by the cap still took a token) of
        // its 4 a second; the fifth is refused by rate, whatever the slots.
        drop(g.start(a).unwrap());
        assert_eq!(g.start(a).unwrap_err(), HandshakeRefused::Rate);
        assert_eq!(g.in_progress(), 2);
    }

    fn timeouts(idle: u64, send: u64, head: u64) -> Timeouts {
        Timeouts {
            idle: Duration::from_secs(idle),
            send: Duration::from_secs(send),
            head: Duration::from_secs(head),
        }
    }

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    /// An HTTP/2 frame header (RFC 9113 §4.1) and a zeroed payload.
    fn h2_frame(kind: u8, flags: u8, stream: u32, len: usize) -> Vec<u8> {
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.resize(9 + len, 0);
        f
    }

    /// Writes `bytes` to the client end and reads them on the guarded end.
    async fn pass(
        client: &mut tokio::io::DuplexStream,
        s: &mut TimedStream<tokio::io::DuplexStream>,
        bytes: &[u8],
    ) -> io::Result<()> {
        client.write_all(bytes).await.unwrap();
        let mut got = vec![0u8; bytes.len()];
        s.read_exact(&mut got).await.map(drop)
    }

    #[tokio::test(start_paused = true)]
    async fn h2_pings_alone_do_not_hold_a_connection_past_the_head_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut s = TimedStream::new(server, InFlight::default(), timeouts(60, 60, 10));
        pass(&mut client, &mut s, PREFACE).await.unwrap();
        let mut ended = None;
        for second in 0..30u64 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = pass(&mut client, &mut s, &h2_frame(0x6, 0, 0, 8)).await {
                ended = Some((second, e.kind()));
                break;
            }
        }
        let (second, kind) = ended.expect("closed while pinging");
        assert_eq!(kind, io::ErrorKind::TimedOut);
        assert!(
            (9..=11).contains(&second),
            "closed at the head timeout: {second}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_h2_head_trickled_in_continuations_times_out_from_its_headers_frame() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut s = TimedStream::new(server, InFlight::default(), timeouts(60, 60, 10));
        pass(&mut client, &mut s, PREFACE).await.unwrap();
        // A first request, whole: the connection-start clock stops.
        pass(&mut client, &mut s, &h2_frame(0x1, 0x4 | 0x1, 1, 16))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        pass(&mut client, &mut s, &h2_frame(0x1, 0, 3, 16))
            .await
            .unwrap();
        let started = Instant::now();
        let err = loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Err(e) = pass(&mut client, &mut s, &h2_frame(0x9, 0, 3, 4)).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never closed");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_h2_connection_that_only_pings_after_its_requests_is_idle() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut s = TimedStream::new(server, InFlight::default(), timeouts(20, 60, 5));
        pass(&mut client, &mut s, PREFACE).await.unwrap();
        pass(&mut client, &mut s, &h2_frame(0x1, 0x4 | 0x1, 1, 16))
            .await
            .unwrap();
        let started = Instant::now();
        let err = loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = pass(&mut client, &mut s, &h2_frame(0x6, 0, 0, 8)).await {
                break e;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "never closed");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() >= Duration::from_secs(19),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_time_out_unless_a_request_is_in_flight() {
        let (client, server) = tokio::io::duplex(64);
        let in_flight = InFlight::default();
        let mut s = TimedStream::new(server, in_flight.clone(), timeouts(5, 5, 60));
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
        let mut s = TimedStream::new(server, InFlight::default(), timeouts(5, 5, 60));
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
        let mut s = TimedStream::new(server, InFlight::default(), timeouts(60, 3, 60));
        let err = s.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
