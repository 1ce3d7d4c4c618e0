//! A small, bounded HTTP/1.1 server for read-only pages: GET and HEAD only,
//! one request per connection (`Connection: close`), a request head of at
//! most 8 KiB read under a timeout, at most [`MAX_CONNECTIONS`] connections
//! at a time (more are answered 503 at once), and an optional bearer token
//! compared in constant time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `HEAD` (the body is not sent) or `GET`.
    pub head: bool,
    /// The path, without the query.
    pub path: String,
    pub query: String,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body.into())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Compare in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request head is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400.
    Malformed,
    /// 405.
    Method,
    /// 431.
    TooLarge,
}

/// Parse a request head (up to the blank line): the request and the
/// `Authorization` header's value, if any.
pub fn parse_head(head: &[u8]) -> Result<(Request, Option<String>), HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or(HeadError::Malformed)?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(HeadError::Malformed);
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(HeadError::Method),
    };
    let mut auth = None;
    for l in lines {
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or(HeadError::Malformed)?;
        if k.eq_ignore_ascii_case("authorization") {
            auth = Some(v.trim().to_string());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok((
        Request {
            head,
            path: path.to_string(),
            query: query.to_string(),
        },
        auth,
    ))
}

/// Read a request head, at most [`MAX_HEAD`] bytes.
fn read_head(s: &mut TcpStream) -> Result<Vec<u8>, (u16, &'static str)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if end > MAX_HEAD {
                return Err((431, "request head too large\n"));
            }
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err((431, "request head too large\n"));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err((400, "incomplete request\n")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err((408, "request head not received in time\n"));
            }
            Err(_) => return Err((400, "read error\n")),
        }
    }
}

fn write(s: &mut TcpStream, r: &Response, head_only: bool, auth_challenge: bool) {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    if auth_challenge {
        out.push_str("WWW-Authenticate: Bearer realm=\"kiln\"\r\n");
    }
    out.push_str("\r\n");
    let _ = s.write_all(out.as_bytes());
    if !head_only {
        let _ = s.write_all(&r.body);
    }
    let _ = s.flush();
}

/// What serves requests.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `listener` with `handler`; with a `token`, every request must
    /// carry `Authorization: Bearer <token>`.
    pub fn start(
        listener: TcpListener,
        token: Option<Vec<u8>>,
        handler: Arc<Handler>,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let token = Arc::new(token);
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(READ_TIMEOUT));
                        let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                            busy.fetch_sub(1, Ordering::AcqRel);
                            write(&mut s, &Response::text(503, "busy\n"), false, false);
                            continue;
                        }
                        let (busy, token, handler) = (busy.clone(), token.clone(), handler.clone());
                        std::thread::spawn(move || {
                            serve(&mut s, token.as_deref(), &*handler);
                            busy.fetch_sub(1, Ordering::AcqRel);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(s: &mut TcpStream, token: Option<&[u8]>, handler: &Handler) {
    let head = match read_head(s) {
        Ok(h) => h,
        Err((status, msg)) => {
            write(s, &Response::text(status, msg), false, false);
            return;
        }
    };
    let (req, auth) = match parse_head(&head) {
        Ok(r) => r,
        Err(e) => {
            let (status, msg) = match e {
                HeadError::Malformed => (400, "malformed request\n"),
                HeadError::Method => (405, "read-only: GET and HEAD only\n"),
                HeadError::TooLarge => (431, "request head too large\n"),
            };
            write(s, &Response::text(status, msg), false, false);
            return;
        }
    };
    if let Some(t) = token {
        let given = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), t) {
            write(
                s,
                &Response::text(401, "a bearer token is required\n"),
                req.head,
                true,
            );
            return;
        }
    }
    let resp = handler(&req);
    write(s, &resp, req.head, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn parses_get_and_head_and_refuses_other_methods() {
        let (r, a) =
            parse_head(b"GET /proof/3?x=1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t").unwrap();
        assert_eq!(r.path, "/proof/3");
        assert_eq!(r.query, "x=1");
        assert!(!r.head);
        assert_eq!(a.as_deref(), Some("Bearer t"));
        assert!(parse_head(b"HEAD / HTTP/1.0").unwrap().0.head);
        assert_eq!(
            parse_head(b"POST / HTTP/1.1").unwrap_err(),
            HeadError::Method
        );
        assert_eq!(
            parse_head(b"GET  HTTP/1.1").unwrap_err(),
            HeadError::Malformed
        );
        assert_eq!(
            parse_head(b"GET http://x/ HTTP/1.1").unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn serves_with_token_and_bounds_the_head() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let h: Arc<Handler> =
            Arc::new(|r: &Request| Response::text(200, format!("path {}", r.path)));
        let srv = Server::start(l, Some(b"tok".to_vec()), h).unwrap();
        let a = srv.addr();
        let ok = get(a, "GET /x HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("path /x"));
        let bad = get(a, "GET /x HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 401 "), "{bad}");
        assert!(bad.contains("WWW-Authenticate: Bearer"));
        let none = get(a, "GET /x HTTP/1.1\r\n\r\n");
        assert!(none.starts_with("HTTP/1.1 401 "));
        let post = get(a, "POST /x HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let big = format!(
            "GET /x HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD + 10)
        );
        let r = get(a, &big);
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        let head = get(a, "HEAD /x HTTP/1.1\r\nAuthorization: Bearer tok\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
    }
}
