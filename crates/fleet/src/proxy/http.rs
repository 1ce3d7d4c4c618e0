//! A bounded, incremental HTTP/1.x observer for one proxied connection: it looks at the
//! bytes the proxy forwards (never alters, holds back or retains them beyond
//! one response head) and counts each response's status class and latency into the
//! release's counters.
//!
//! - Responses are delimited by `Content-Length`, `Transfer-Encoding: chunked`, or no body
//!   (1xx, 204, 304, answers to `HEAD`); a body delimited by the close ends observation.
//! - Request starts are seen on the client side: the first byte sent while no request is
//!   outstanding starts the latency clock (pipelined requests get no latency).
//! - Anything unexpected (a head over [`MAX_HEAD`], a line that is not HTTP, an upgrade)
//!   turns the observer off for the rest of the connection: the connection is still
//!   counted, its later responses are not.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::stats::ReleaseCounters;

/// Largest response head kept while it is parsed.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most outstanding requests remembered.
const MAX_PENDING: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a response head into `head`.
    Head,
    /// `n` body bytes left.
    Body(u64),
    /// Reading a chunk-size line (its digits so far).
    ChunkSize(u64, bool),
    /// `n` chunk bytes left, then CRLF.
    ChunkData(u64),
    /// The CR LF after chunk data (bytes of it left).
    ChunkEnd(u8),
    /// Trailer lines after the last chunk; `true` when at a line start.
    Trailers(bool),
    /// Not observing any more.
    Off,
}

/// Observes one connection's HTTP traffic.
#[derive(Debug)]
pub(crate) struct Observer {
    state: State,
    head: Vec<u8>,
    /// Outstanding requests: when their first byte was seen, whether they are `HEAD`.
    pending: VecDeque<(Instant, bool)>,
    /// The last request's bytes are still arriving (a body, or more head).
    in_request: bool,
    counters: Arc<ReleaseCounters>,
}

impl Observer {
    pub fn new(counters: Arc<ReleaseCounters>) -> Observer {
        Observer {
            state: State::Head,
            head: Vec::new(),
            pending: VecDeque::new(),
            in_request: false,
            counters,
        }
    }

    /// Bytes the client sent (already forwarded upstream).
    pub fn client(&mut self, data: &[u8], now: Instant) {
        if self.state == State::Off || data.is_empty() {
            return;
        }
        if !self.in_request && self.pending.len() < MAX_PENDING {
            self.pending.push_back((now, data.starts_with(b"HEAD ")));
            self.in_request = true;
        }
    }

    /// Bytes the instance sent (already forwarded to the client).
    pub fn upstream(&mut self, mut data: &[u8], now: Instant) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Head => {
                    let before = self.head.len();
                    // Look for the end of the head in what we have plus the new bytes.
                    let take = data.len().min(MAX_HEAD + 4 - before.min(MAX_HEAD));
                    self.head.extend_from_slice(&data[..take]);
                    let from = before.saturating_sub(3);
                    match head_end(&self.head[from..]) {
                        Some(p) => {
                            let end = from + p;
                            let used = end - before;
                            data = &data[used..];
                            self.head.truncate(end);
                            self.on_head(now);
                            self.head.clear();
                        }
                        None if self.head.len() > MAX_HEAD => self.off(),
                        None => {
                            data = &data[take..];
                        }
                    }
                }
                State::Body(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[usize::try_from(k).unwrap_or(data.len())..];
                    self.state = if n == k {
                        State::Head
                    } else {
                        State::Body(n - k)
                    };
                }
                State::ChunkSize(size, ext) => {
                    let b = data[0];
                    data = &data[1..];
                    self.state = match b {
                        b'\n' => {
                            if size == 0 {
                                State::Trailers(true)
                            } else {
                                State::ChunkData(size)
                            }
                        }
                        _ if ext => State::ChunkSize(size, true),
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let d = u64::from(char::from(b).to_digit(16).unwrap_or(0));
                            match size.checked_mul(16).and_then(|s| s.checked_add(d)) {
                                Some(s) => State::ChunkSize(s, false),
                                None => State::Off,
                            }
                        }
                        b';' | b' ' | b'\t' | b'\r' => State::ChunkSize(size, true),
                        _ => State::Off,
                    };
                }
                State::ChunkData(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[usize::try_from(k).unwrap_or(data.len())..];
                    self.state = if n == k {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(n - k)
                    };
                }
                State::ChunkEnd(left) => {
                    let b = data[0];
                    data = &data[1..];
                    self.state = match (left, b) {
                        (2, b'\r') => State::ChunkEnd(1),
                        (_, b'\n') => State::ChunkSize(0, false),
                        _ => State::Off,
                    };
                }
                State::Trailers(at_start) => {
                    let b = data[0];
                    data = &data[1..];
                    self.state = match (at_start, b) {
                        (true, b'\n') => State::Head,
                        (true, b'\r') => State::Trailers(true),
                        (_, b'\n') => State::Trailers(true),
                        _ => State::Trailers(false),
                    };
                }
            }
        }
    }

    fn off(&mut self) {
        self.state = State::Off;
        self.head = Vec::new();
        self.pending.clear();
    }

    /// A complete response head is in `self.head`.
    fn on_head(&mut self, now: Instant) {
        let Some(code) = status_code(&self.head) else {
            self.off();
            return;
        };
        if code == 101 {
            // Upgraded: not HTTP any more.
            self.off();
            return;
        }
        if (100..200).contains(&code) {
            // Informational: the real response follows.
            self.state = State::Head;
            return;
        }
        let (started, is_head) = match self.pending.pop_front() {
            Some((t, h)) => (Some(t), h),
            None => (None, false),
        };
        self.in_request = false;
        self.counters
            .response(code, started.map(|t| now.saturating_duration_since(t)));
        let (length, chunked) = headers(&self.head);
        self.state = if is_head || code == 204 || code == 304 {
            State::Head
        } else if chunked {
            State::ChunkSize(0, false)
        } else {
            match length {
                Some(0) => State::Head,
                Some(n) => State::Body(n),
                // Delimited by the close: nothing more to see.
                None => State::Off,
            }
        };
    }
}

/// Where the head ends (just past its empty line) in `buf`: lines end in CRLF, or in a
/// bare LF as some servers send (busybox httpd passes CGI headers on that way).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, b)| {
        if *b != b'\n' {
            return None;
        }
        match buf.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// The status code of a head starting `HTTP/1.x NNN`.
fn status_code(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.")?;
    let digits = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `Content-Length` and whether `Transfer-Encoding` ends in chunked.
fn headers(head: &[u8]) -> (Option<u64>, bool) {
    let mut length = None;
    let mut chunked = false;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = std::str::from_utf8(value).unwrap_or("").trim();
        if name.eq_ignore_ascii_case(b"content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    (length, chunked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::Releases;

    fn run(req: &[&[u8]], resp: &[&[u8]]) -> crate::proxy::stats::ReleaseStats {
        let r = Releases::default();
        let mut o = Observer::new(r.get("r"));
        let now = Instant::now();
        for q in req {
            o.client(q, now);
        }
        for p in resp {
            o.upstream(p, now);
        }
        r.snapshot().remove(0)
    }

    #[test]
    fn keep_alive_content_length_and_chunked() {
        let s = run(
            &[b"GET / HTTP/1.1\r\n\r\n"],
            &[
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
                b"loHTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                b"0\r\n\r\nHTTP/1.1 204 No\r\n\r\nHTTP/1.0 302 F\r\ncontent-length: 0\r\n\r\n",
            ],
        );
        assert_eq!(s.requests, 4);
        assert_eq!(s.responses.s5xx, 1);
        assert_eq!(s.responses.s2xx, 2);
        assert_eq!(s.responses.s3xx, 1);
        assert_eq!(s.latency.count, 1);
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let resp: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let whole = run(&[], &[resp]);
        let bytes: Vec<&[u8]> = resp.chunks(1).collect();
        let split = run(&[], &bytes);
        assert_eq!(whole, split);
        assert_eq!(whole.requests, 2);
        assert_eq!(whole.responses.s5xx, 1);
    }

    #[test]
    fn head_request_has_no_body_and_garbage_turns_off() {
        let s = run(
            &[b"HEAD / HTTP/1.1\r\n\r\n"],
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 404 N\r\n\r\n"],
        );
        assert_eq!(s.requests, 2);
        let s = run(&[], &[b"SSH-2.0-x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"]);
        assert_eq!(s.requests, 0);
        let big = vec![b'a'; MAX_HEAD * 2];
        let s = run(&[], &[b"HTTP/1.1 200 OK\r\n", &big, b"\r\n\r\n"]);
        assert_eq!(s.requests, 0);
    }

    #[test]
    fn bare_lf_heads_count() {
        let s = run(
            &[],
            &[b"HTTP/1.1 500 Internal Server Error\nContent-Type: text/plain\nContent-Length: 1\n\nxHTTP/1.1 200 OK\r\n\r\n"],
        );
        assert_eq!(s.requests, 2);
        assert_eq!(s.responses.s5xx, 1);
    }

    #[test]
    fn until_close_body_stops_observing() {
        let s = run(&[], &[b"HTTP/1.0 200 OK\r\n\r\nHTTP/1.1 500 x\r\n\r\n"]);
        assert_eq!(s.requests, 1);
        assert_eq!(s.responses.s5xx, 0);
    }
}
