//! Function log capture: an instance's stdout and stderr, line by line, into
//! the server's log with the function name and the request id in flight (as
//! CloudWatch Logs would show them). Lines are bounded; a function that prints
//! without newlines cannot make the server buffer without limit, and one that
//! prints flat out cannot make the server spend its CPU logging: past
//! [`MAX_BYTES_PER_SEC`] lines are dropped and counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use levee_common::sync::lock;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest line kept; the rest of a longer line is dropped and the kept part
/// is marked `[truncated]`.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Most log bytes per second kept from one stream of one instance.
pub const MAX_BYTES_PER_SEC: usize = 1024 * 1024;

/// Reads `stream` to its end, logging each line.
pub(crate) async fn pump(
    mut stream: impl AsyncRead + Unpin,
    function: Arc<str>,
    stream_name: &'static str,
    request_id: Arc<Mutex<Option<Arc<str>>>>,
) {
    let mut splitter = LineSplitter::default();
    let mut budget = Budget::new(Instant::now());
    let mut chunk = vec![0u8; 8192];
    let note = |n: u64| {
        let text = format!("[levee dropped {n} log lines: over {MAX_BYTES_PER_SEC} bytes/s]");
        emit(&function, stream_name, &request_id, text.as_bytes(), false);
    };
    let mut out = |line: &[u8], truncated: bool| {
        let (keep, dropped) = budget.take(line.len(), Instant::now());
        if let Some(n) = dropped {
            note(n);
        }
        if keep {
            emit(&function, stream_name, &request_id, line, truncated);
        }
    };
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        splitter.push(&chunk[..n], &mut out);
    }
    splitter.finish(&mut out);
    if budget.dropped > 0 {
        note(budget.dropped);
    }
}

/// A fixed one-second window of log bytes.
#[derive(Debug)]
struct Budget {
    window_start: Instant,
    used: usize,
    dropped: u64,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Budget {
            window_start: now,
            used: 0,
            dropped: 0,
        }
    }

    /// Whether a line of `len` bytes is kept; and, when a new window opens
    /// after drops, how many lines the last one dropped (to say so once).
    fn take(&mut self, len: usize, now: Instant) -> (bool, Option<u64>) {
        let mut report = None;
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.used = 0;
            report = (self.dropped > 0).then_some(self.dropped);
            self.dropped = 0;
        }
        if self.used.saturating_add(len) > MAX_BYTES_PER_SEC {
            self.dropped += 1;
            return (false, report);
        }
        self.used += len;
        (true, report)
    }
}

fn emit(
    function: &str,
    stream: &str,
    request_id: &Mutex<Option<Arc<str>>>,
    line: &[u8],
    truncated: bool,
) {
    let id = lock(request_id).clone();
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    tracing::info!(
        target: "levee::function",
        function,
        request_id = id.as_deref().unwrap_or("-"),
        stream,
        "{text}{}",
        if truncated { " [truncated]" } else { "" }
    );
}

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`].
#[derive(Debug, Default)]
struct LineSplitter {
    buf: Vec<u8>,
    /// Inside an over-long line whose head was already emitted.
    skipping: bool,
}

impl LineSplitter {
    fn push(&mut self, mut data: &[u8], mut out: impl FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (part, rest) = match newline {
                Some(i) => (&data[..i], &data[i + 1..]),
                None => (data, &[][..]),
            };
            if !self.skipping {
                let room = MAX_LINE_BYTES - self.buf.len();
                self.buf.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    out(&self.buf, true);
                    self.buf.clear();
                    self.skipping = true;
                }
            }
            if newline.is_some() {
                if !self.skipping {
                    out(&self.buf, false);
                }
                self.buf.clear();
                self.skipping = false;
            }
            data = rest;
        }
    }

    fn finish(self, mut out: impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() && !self.skipping {
            out(&self.buf, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut s = LineSplitter::default();
        let mut lines = Vec::new();
        for c in chunks {
            s.push(c, |l, t| {
                lines.push((String::from_utf8_lossy(l).into_owned(), t))
            });
        }
        s.finish(|l, t| lines.push((String::from_utf8_lossy(l).into_owned(), t)));
        lines
    }

    #[test]
    fn lines_split_across_chunks() {
        let lines = split(&[b"hel", b"lo\nwor", b"ld\n", b"tail"]);
        assert_eq!(
            lines,
            vec![
                ("hello".into(), false),
                ("world".into(), false),
                ("tail".into(), false)
            ]
        );
    }

    #[test]
    fn a_flood_of_lines_is_cut_to_the_budget_and_counted() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        let line = 1000;
        let kept = (0..5000).filter(|_| b.take(line, t0).0).count();
        assert_eq!(kept, MAX_BYTES_PER_SEC / line);
        let (keep, report) = b.take(line, t0 + Duration::from_millis(1500));
        assert!(keep, "a new second has room");
        assert_eq!(
            report,
            Some(5000 - kept as u64),
            "the drops are reported once"
        );
        assert_eq!(b.take(line, t0 + Duration::from_millis(1600)).1, None);
    }

    #[test]
    fn long_lines_are_truncated_not_buffered() {
        let big = vec![b'x'; MAX_LINE_BYTES * 3];
        let lines = split(&[&big, &big, b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0.len(), MAX_LINE_BYTES);
        assert!(lines[0].1, "marked truncated");
        assert_eq!(lines[1], ("next".into(), false));
    }
}
