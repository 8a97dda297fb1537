//! The wire: one attempt is one fresh TCP connection from a chosen source
//! address, some bytes written (at once, trickled, or followed by filler),
//! and a response read (at once or slowly). Raw bytes rather than an HTTP
//! client library, because half the scenarios are requests no well-behaved
//! client will send. It owns the per-attempt bounds (deadline, bytes read,
//! read calls); it must never wait past its deadline or buffer a response.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;

use crate::stats::Outcome;

/// Most response bytes read per attempt; past it the answer counts as complete.
const MAX_READ_BYTES: usize = 8 << 20;
/// Most read calls per attempt (slow reads take many small ones).
const MAX_READ_CALLS: usize = 1 << 20;
/// Most trickle writes per attempt.
const MAX_DRIPS: usize = 100_000;
/// Receive buffer a slow reader asks for: a tiny window.
const SLOW_READ_RCVBUF: u32 = 4096;

/// Something sent a little at a time.
#[derive(Debug, Clone)]
pub struct Drip {
    /// Bytes per step (writes: these bytes; reads: this many at most).
    pub bytes: Vec<u8>,
    /// Pause between steps.
    pub gap: Duration,
}

/// What one attempt does on its connection.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// Written at once.
    pub send: Vec<u8>,
    /// Then this many filler bytes (`a`), written in 64 KiB pieces.
    pub filler: usize,
    /// Then these bytes again and again until the run ends.
    pub drip: Option<Drip>,
    /// Read the response this slowly (`bytes.len()` per step).
    pub slow_read: Option<Drip>,
}

impl Shape {
    /// A whole request written at once.
    pub fn whole(send: Vec<u8>) -> Shape {
        Shape {
            send,
            ..Shape::default()
        }
    }

    /// Slow shapes hold their connection until the run ends.
    pub fn is_slow(&self) -> bool {
        self.drip.is_some() || self.slow_read.is_some()
    }
}

/// Runs one attempt from `src` (None: the OS picks) to `to`. A normal shape
/// must be answered within `timeout`; a slow one is held until `hold_until`.
pub async fn attempt(
    src: Option<IpAddr>,
    to: SocketAddr,
    shape: &Shape,
    timeout: Duration,
    hold_until: Instant,
) -> Outcome {
    let deadline = if shape.is_slow() {
        hold_until
    } else {
        Instant::now() + timeout
    };
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    let Ok(socket) = socket else {
        return Outcome::ConnectFailed;
    };
    if let Some(src) = src.filter(|s| s.is_ipv4() == to.is_ipv4()) {
        if socket.bind(SocketAddr::new(src, 0)).is_err() {
            return Outcome::ConnectFailed;
        }
    }
    if shape.slow_read.is_some() {
        // Best effort: the kernel may round it; a failure only makes the window bigger.
        let _ = socket.set_recv_buffer_size(SLOW_READ_RCVBUF);
    }
    let stream = match tokio::time::timeout_at(deadline, socket.connect(to)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Outcome::ConnectFailed,
        Err(_) => return timed_out(shape),
    };
    let (mut rd, mut wr) = stream.into_split();
    // Write and read at once: a server may answer (413, 408, 431) before the
    // request is all sent, and that answer is what we measure.
    let read = read_response(&mut rd, shape.slow_read.as_ref(), deadline);
    let write = async {
        let _ = write_all(&mut wr, shape).await;
        // Done (or the server stopped reading): leave the outcome to the reader.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        r = tokio::time::timeout_at(deadline, read) => r.unwrap_or_else(|_| timed_out(shape)),
        _ = write => Outcome::Closed, // never: `write` does not end
    }
}

fn timed_out(shape: &Shape) -> Outcome {
    if shape.is_slow() {
        Outcome::Held
    } else {
        Outcome::Timeout
    }
}

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, shape: &Shape) -> std::io::Result<()> {
    static FILLER: [u8; 64 * 1024] = [b'a'; 64 * 1024];
    w.write_all(&shape.send).await?;
    let mut left = shape.filler;
    while left > 0 {
        let n = left.min(FILLER.len());
        w.write_all(&FILLER[..n]).await?;
        left -= n;
    }
    if let Some(drip) = &shape.drip {
        for _ in 0..MAX_DRIPS {
            tokio::time::sleep(drip.gap).await;
            w.write_all(&drip.bytes).await?;
        }
    }
    Ok(())
}

/// Parses the status code of `HTTP/1.x NNN`.
pub fn status_of(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

async fn read_response(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    slow: Option<&Drip>,
    deadline: Instant,
) -> Outcome {
    let chunk = slow.map_or(16 * 1024, |d| d.bytes.len().clamp(1, 16 * 1024));
    let mut buf = vec![0u8; chunk];
    let mut head = Vec::with_capacity(16);
    let mut total = 0usize;
    for _ in 0..MAX_READ_CALLS {
        // A reset ends the answer like a close does.
        let n: usize = r.read(&mut buf).await.unwrap_or_default();
        if n == 0 {
            // A slow reader that reaches the end of a 2xx was cut off (its
            // responses are far bigger than what it reads in a run); a
            // refusal (4xx, 5xx) is an answer, and counts as one.
            return match (status_of(&head), slow) {
                (Some(code), None) => Outcome::Status(code),
                (Some(code), Some(_)) if !(200..300).contains(&code) => Outcome::Status(code),
                _ => Outcome::Closed,
            };
        }
        if head.len() < 16 {
            let take = n.min(16 - head.len());
            head.extend_from_slice(&buf[..take]);
        }
        total += n;
        if total >= MAX_READ_BYTES {
            return status_of(&head).map_or(Outcome::Closed, Outcome::Status);
        }
        if let Some(d) = slow {
            // A reset is pending on the socket while the bytes queued before
            // it are still being read a few at a time: the server cut us off.
            if matches!(r.as_ref().take_error(), Ok(Some(_))) {
                return Outcome::Closed;
            }
            if Instant::now() + d.gap >= deadline {
                return Outcome::Held;
            }
            tokio::time::sleep(d.gap).await;
        }
    }
    status_of(&head).map_or(Outcome::Closed, Outcome::Status)
}

/// A one-off HTTP/1.1 exchange for the admin API: the status and the
/// (de-chunked) body, within `timeout`, body at most [`MAX_READ_BYTES`].
pub async fn fetch(
    to: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(to)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(request).await.map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let mut limited = (&mut s).take(MAX_READ_BYTES as u64);
        limited
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "timed out".to_string())??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the response head")?;
    let status = status_of(&raw).ok_or("not an HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// Joins the chunks of a chunked body; stops at the first malformed chunk.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Each pass consumes at least one chunk header: bounded by the input size.
    for _ in 0..data.len() {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        let start = eol + 2;
        let Some(chunk) = data.get(start..start.saturating_add(size)) else {
            break;
        };
        if size == 0 {
            break;
        }
        out.extend_from_slice(chunk);
        data = data.get(start + size + 2..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_chunks_parse_and_garbage_does_not_panic() {
        assert_eq!(status_of(b"HTTP/1.1 429 Too Many"), Some(429));
        assert_eq!(status_of(b"HTTP/1.0 200"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
        assert_eq!(status_of(b"SSH-2.0"), None);
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(dechunk(b"ff\r\nshort"), b"");
        assert_eq!(dechunk(b"zz\r\n"), b"");
    }
}
