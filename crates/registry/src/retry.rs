//! Trying a request again when it failed in a way that is usually transient:
//! no answer came because the name did not resolve or the connection failed,
//! or the server answered 502, 503 or 504 (a proxy or mirror busy). A stall
//! (a timeout) is not retried: its time is already spent. Shared by every
//! HTTP client of kiln (registry reads, Debian repositories, the advisory
//! feed), as apt's `Acquire::Retries` and cosign's retrying transport do.

use std::io;
use std::time::Duration;

/// The waits before the second and the third attempt.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// Whether a request error is worth another try (see the module doc).
pub fn transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::HostUnreachable
                    | io::ErrorKind::NetworkUnreachable
            )
            // The resolver's failure ("failed to lookup address
            // information") has no kind of its own.
            || io.to_string().contains("lookup address")
        }
        _ => false,
    }
}

/// Whether an HTTP status is worth another try.
pub fn transient_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Make a request with `call` (a GET or HEAD: safe to repeat) up to three
/// times, while it fails transiently or answers a transient status; the
/// last outcome is returned as it is.
pub fn call_with_retries(
    mut call: impl FnMut() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut delays = RETRY_DELAYS.iter();
    loop {
        let r = call();
        let again = match &r {
            Ok(resp) => transient_status(resp.status().as_u16()),
            Err(e) => transient(e),
        };
        match delays.next() {
            Some(d) if again => std::thread::sleep(*d),
            _ => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_transient() {
        assert!(transient(&ureq::Error::HostNotFound));
        assert!(transient(&ureq::Error::ConnectionFailed));
        assert!(transient(&ureq::Error::Io(io::Error::from(
            io::ErrorKind::ConnectionRefused
        ))));
        assert!(!transient(&ureq::Error::Timeout(
            ureq::Timeout::RecvResponse
        )));
        assert!(!transient(&ureq::Error::StatusCode(500)));
        assert!(transient_status(502) && transient_status(503) && transient_status(504));
        assert!(!transient_status(500) && !transient_status(404) && !transient_status(200));
    }

    #[test]
    fn three_attempts_at_most_and_only_when_transient() {
        let mut n = 0;
        let r = call_with_retries(|| {
            n += 1;
            Err(ureq::Error::HostNotFound)
        });
        assert!(matches!(r, Err(ureq::Error::HostNotFound)));
        assert_eq!(n, 3);
        let mut n = 0;
        let r = call_with_retries(|| {
            n += 1;
            Err(ureq::Error::Timeout(ureq::Timeout::Connect))
        });
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}
