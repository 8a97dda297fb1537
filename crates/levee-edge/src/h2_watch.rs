//! What an HTTP/2 client is doing, read from frame headers alone: whether a
//! request head is in progress (a HEADERS frame whose END_HEADERS has not
//! come yet) and whether a frame served a stream or only the connection
//! (PING, SETTINGS, connection-level WINDOW_UPDATE). The connection guard
//! feeds it every byte it reads, so that `header_timeout` and `idle_timeout`
//! mean on HTTP/2 what they mean on HTTP/1.1.
//!
//! Pure: no I/O and no clock, in constant memory (one 9-byte frame header).
//! It never decodes a payload — hyper's h2 does, and refuses what is
//! malformed — and it gives up on a connection that does not open with the
//! HTTP/2 preface (HTTP/1.1 is hyper's to time).

/// What every HTTP/2 connection opens with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// This many bytes of the preface have matched.
    Preface(usize),
    /// Not HTTP/2: nothing more to watch.
    Other,
    /// Between frames, or inside one (`skip` payload bytes left).
    Frames,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct H2Watch {
    phase: Phase,
    header: [u8; FRAME_HEADER],
    have: usize,
    skip: usize,
    head_open: bool,
    /// The frame being skipped carries END_HEADERS: the head is done when
    /// its payload is all here.
    ending: bool,
}

/// What one chunk of bytes showed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// A frame on a stream began (a request, its body, a reset): more than
    /// keeping the connection alive.
    pub stream_frame: bool,
    /// A request head was completed (END_HEADERS).
    pub head_done: bool,
}

impl Default for H2Watch {
    fn default() -> Self {
        Self {
            phase: Phase::Preface(0),
            header: [0; FRAME_HEADER],
            have: 0,
            skip: 0,
            head_open: false,
            ending: false,
        }
    }
}

impl H2Watch {
    /// The connection opened with the HTTP/2 preface.
    pub fn is_h2(&self) -> bool {
        self.phase == Phase::Frames
    }

    /// Not (or not yet known to be) HTTP/2 once the preface was refused.
    pub fn is_other(&self) -> bool {
        self.phase == Phase::Other
    }

    /// A HEADERS frame came and its END_HEADERS has not.
    pub fn head_open(&self) -> bool {
        self.head_open
    }

    /// Feeds the next bytes the client sent.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Seen {
        let mut seen = Seen::default();
        while !bytes.is_empty() {
            match self.phase {
                Phase::Other => break,
                Phase::Preface(n) => {
                    let want = &PREFACE[n..];
                    let take = want.len().min(bytes.len());
                    if bytes[..take] != want[..take] {
                        self.phase = Phase::Other;
                        break;
                    }
                    bytes = &bytes[take..];
                    self.phase = match n + take {
                        done if done == PREFACE.len() => Phase::Frames,
                        partial => Phase::Preface(partial),
                    };
                }
                Phase::Frames if self.skip > 0 => {
                    let take = self.skip.min(bytes.len());
                    self.skip -= take;
                    bytes = &bytes[take..];
                    self.payload_read(&mut seen);
                }
                Phase::Frames => {
                    let take = (FRAME_HEADER - self.have).min(bytes.len());
                    self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                    self.have += take;
                    bytes = &bytes[take..];
                    if self.have == FRAME_HEADER {
                        self.have = 0;
                        self.frame(&mut seen);
                    }
                }
            }
        }
        seen
    }

    fn frame(&mut self, seen: &mut Seen) {
        let h = &self.header;
        self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        seen.stream_frame |= stream != 0;
        if kind == HEADERS || kind == CONTINUATION {
            self.head_open = true;
            self.ending = flags & END_HEADERS != 0;
        }
        self.payload_read(seen);
    }

    fn payload_read(&mut self, seen: &mut Seen) {
        if self.skip == 0 && self.ending {
            self.ending = false;
            self.head_open = false;
            seen.head_done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            flags,
        ];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0xAB, payload));
        f
    }

    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;

    #[test]
    fn a_head_split_across_continuations_is_open_until_end_headers() {
        let mut w = H2Watch::default();
        assert_eq!(w.feed(PREFACE), Seen::default());
        assert!(w.is_h2());
        let seen = w.feed(&frame(SETTINGS, 0, 0, 6));
        assert!(!seen.stream_frame, "SETTINGS is the connection's");
        let seen = w.feed(&frame(HEADERS, 0, 1, 20));
        assert!(seen.stream_frame && !seen.head_done && w.head_open());
        w.feed(&frame(CONTINUATION, 0, 1, 20));
        assert!(w.head_open());
        let last = frame(CONTINUATION, END_HEADERS, 1, 5);
        let seen = w.feed(&last[..12]);
        assert!(
            !seen.head_done && w.head_open(),
            "its payload is not all here"
        );
        let seen = w.feed(&last[12..]);
        assert!(seen.head_done && !w.head_open());
        let seen = w.feed(&frame(HEADERS, END_HEADERS, 3, 0));
        assert!(
            seen.head_done && !w.head_open(),
            "an empty block ends at once"
        );
    }

    #[test]
    fn bytes_may_arrive_one_at_a_time() {
        let mut w = H2Watch::default();
        let mut all = PREFACE.to_vec();
        all.extend(frame(PING, 0, 0, 8));
        all.extend(frame(HEADERS, END_HEADERS | 0x1, 3, 300));
        let mut seen = Seen::default();
        for b in &all {
            let s = w.feed(std::slice::from_ref(b));
            seen.stream_frame |= s.stream_frame;
            seen.head_done |= s.head_done;
        }
        assert!(seen.head_done && seen.stream_frame && !w.head_open());
    }

    #[test]
    fn pings_alone_serve_no_stream() {
        let mut w = H2Watch::default();
        w.feed(PREFACE);
        for _ in 0..100 {
            assert_eq!(w.feed(&frame(PING, 0, 0, 8)), Seen::default());
        }
    }

    #[test]
    fn anything_but_the_preface_is_left_alone() {
        let mut w = H2Watch::default();
        w.feed(b"GET / HTTP/1.1\r\n");
        assert!(w.is_other() && !w.is_h2());
        assert_eq!(w.feed(&frame(HEADERS, 0, 1, 0)), Seen::default());
        assert!(!w.head_open());
        let mut w = H2Watch::default();
        w.feed(b"PRI * HTTP/1.1");
        assert!(w.is_other(), "a near miss is not HTTP/2");
    }
}
