//! Function log capture: an instance's stdout and stderr, line by line, into
//! the server's log with the function name and the request id in flight (as
//! CloudWatch Logs would show them). Lines are bounded; a function that prints
//! without newlines cannot make the server buffer without limit.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest line kept; the rest of a longer line is dropped and the kept part
/// is marked `[truncated]`.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Reads `stream` to its end, logging each line.
pub(crate) async fn pump(
    mut stream: impl AsyncRead + Unpin,
    function: Arc<str>,
    stream_name: &'static str,
    request_id: Arc<Mutex<Option<Arc<str>>>>,
) {
    let mut splitter = LineSplitter::default();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        splitter.push(&chunk[..n], |line, truncated| {
            emit(&function, stream_name, &request_id, line, truncated)
        });
    }
    splitter.finish(|line, truncated| emit(&function, stream_name, &request_id, line, truncated));
}

fn emit(
    function: &str,
    stream: &str,
    request_id: &Mutex<Option<Arc<str>>>,
    line: &[u8],
    truncated: bool,
) {
    let id = request_id.lock().ok().and_then(|g| g.clone());
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
    fn long_lines_are_truncated_not_buffered() {
        let big = vec![b'x'; MAX_LINE_BYTES * 3];
        let lines = split(&[&big, &big, b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0.len(), MAX_LINE_BYTES);
        assert!(lines[0].1, "marked truncated");
        assert_eq!(lines[1], ("next".into(), false));
    }
}
