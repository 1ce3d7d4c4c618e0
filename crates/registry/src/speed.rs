//! Time limits for registry traffic and the low-speed guard on response
//! bodies (like curl's `--speed-limit`/`--speed-time`): a transfer fails when
//! fewer than [`LowSpeedLimit::bytes`] arrive in a [`LowSpeedLimit::window`].

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Connect, response and low-speed limits for talking to a registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the TCP (and TLS) connection. Default 10 s.
    pub connect: Duration,
    /// From sending the request to the end of the response headers.
    /// Default 60 s (`kiln pull/push --timeout`, `KILN_REGISTRY_TIMEOUT`).
    pub response: Duration,
    /// The minimum transfer speed of a body once it flows.
    pub low_speed: LowSpeedLimit,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(60),
            low_speed: LowSpeedLimit::default(),
        }
    }
}

impl Timeouts {
    /// The longest a single socket read may block: a stalled body is cut off
    /// after the low-speed window, but never before the response limit (the
    /// same per-read limit also covers waiting for the headers).
    pub fn per_read(&self) -> Duration {
        self.response.max(self.low_speed.window)
    }

    /// The longest a single socket write may block (a registry that stops
    /// reading an upload).
    pub fn per_write(&self) -> Duration {
        self.low_speed.window
    }
}

/// Fewer than `bytes` arriving in any `window` fails the transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowSpeedLimit {
    pub bytes: u64,
    pub window: Duration,
}

impl Default for LowSpeedLimit {
    fn default() -> LowSpeedLimit {
        LowSpeedLimit {
            bytes: 1024,
            window: Duration::from_secs(30),
        }
    }
}

/// A low-speed limit that is not `BYTES/SECONDS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not BYTES/SECONDS (e.g. 1024/30)")]
pub struct BadLowSpeedLimit(pub String);

impl LowSpeedLimit {
    /// Parse `BYTES/SECONDS` (e.g. `1024/30`), as in `KILN_REGISTRY_LOW_SPEED`.
    pub fn parse(s: &str) -> Result<LowSpeedLimit, BadLowSpeedLimit> {
        let bad = || BadLowSpeedLimit(s.into());
        let (b, w) = s.split_once('/').ok_or_else(bad)?;
        let bytes: u64 = b.trim().parse().map_err(|_| bad())?;
        let secs: f64 = w.trim().parse().map_err(|_| bad())?;
        if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            return Err(bad());
        }
        Ok(LowSpeedLimit {
            bytes,
            window: Duration::from_secs_f64(secs),
        })
    }
}

/// The too-slow verdict, carried inside the `io::Error` a guarded reader
/// returns (kind `TimedOut`).
#[derive(Debug, thiserror::Error)]
#[error(
    "too slow: {got} bytes arrived in {secs} s, the minimum is {min} bytes per {secs} s",
    secs = fmt_secs(.window)
)]
pub struct TooSlow {
    pub got: u64,
    pub min: u64,
    pub window: Duration,
}

fn fmt_secs(d: &Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s:.1}")
    }
}

/// The pure decision: fed the size of every read that returned data and the
/// time it returned, says when a window closed with too few bytes. Windows
/// are consecutive; the first starts when the guard is made.
pub struct LowSpeed<C: Fn() -> Instant> {
    limit: LowSpeedLimit,
    clock: C,
    start: Instant,
    bytes: u64,
}

impl<C: Fn() -> Instant> LowSpeed<C> {
    pub fn new(limit: LowSpeedLimit, clock: C) -> LowSpeed<C> {
        let start = clock();
        LowSpeed {
            limit,
            clock,
            start,
            bytes: 0,
        }
    }

    /// Record a read of `n` bytes (0 = end of body, never an error).
    pub fn record(&mut self, n: usize) -> Result<(), TooSlow> {
        if n == 0 {
            return Ok(());
        }
        self.bytes = self.bytes.saturating_add(n as u64);
        let now = (self.clock)();
        if now.saturating_duration_since(self.start) >= self.limit.window {
            if self.bytes < self.limit.bytes {
                return Err(TooSlow {
                    got: self.bytes,
                    min: self.limit.bytes,
                    window: self.limit.window,
                });
            }
            self.start = now;
            self.bytes = 0;
        }
        Ok(())
    }
}

/// A reader failing with [`TooSlow`] (as `io::ErrorKind::TimedOut`) when its
/// inner reader delivers too little per window.
pub struct LowSpeedReader<R, C: Fn() -> Instant> {
    inner: R,
    guard: LowSpeed<C>,
}

impl<R: Read> LowSpeedReader<R, fn() -> Instant> {
    pub fn new(inner: R, limit: LowSpeedLimit) -> Self {
        LowSpeedReader {
            inner,
            guard: LowSpeed::new(limit, Instant::now),
        }
    }
}

impl<R: Read, C: Fn() -> Instant> LowSpeedReader<R, C> {
    pub fn with_clock(inner: R, limit: LowSpeedLimit, clock: C) -> Self {
        LowSpeedReader {
            inner,
            guard: LowSpeed::new(limit, clock),
        }
    }
}

impl<R: Read, C: Fn() -> Instant> Read for LowSpeedReader<R, C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.guard
            .record(n)
            .map_err(|e| io::Error::new(io::ErrorKind::TimedOut, e))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    fn clock() -> (Rc<Cell<Instant>>, impl Fn() -> Instant) {
        let t = Rc::new(Cell::new(Instant::now()));
        let c = t.clone();
        (t, move || c.get())
    }

    fn limit() -> LowSpeedLimit {
        LowSpeedLimit {
            bytes: 1024,
            window: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_drip_fails_once_a_window_closes_short() {
        let (t, c) = clock();
        let mut g = LowSpeed::new(limit(), c);
        // One byte a second: 29 reads inside the first window are fine.
        for _ in 0..29 {
            t.set(t.get() + Duration::from_secs(1));
            g.record(1).unwrap();
        }
        t.set(t.get() + Duration::from_secs(1));
        let e = g.record(1).unwrap_err();
        assert_eq!((e.got, e.min), (30, 1024));
        assert!(e.to_string().contains("30 bytes arrived in 30 s"), "{e}");
    }

    #[test]
    fn a_steady_transfer_passes_every_window() {
        let (t, c) = clock();
        let mut g = LowSpeed::new(limit(), c);
        for _ in 0..1000 {
            t.set(t.get() + Duration::from_secs(1));
            g.record(100).unwrap(); // 3000 bytes per window
        }
        // End of body after a pause is never an error.
        t.set(t.get() + Duration::from_secs(100));
        g.record(0).unwrap();
    }

    #[test]
    fn the_reader_reports_timed_out() {
        let (t, c) = clock();
        struct Slow(Rc<Cell<Instant>>);
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0.set(self.0.get() + Duration::from_secs(10));
                buf[0] = b'x';
                Ok(1)
            }
        }
        let mut r = LowSpeedReader::with_clock(Slow(t.clone()), limit(), c);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.get_ref().unwrap().downcast_ref::<TooSlow>().is_some());
    }

    #[test]
    fn parse_limits() {
        assert_eq!(LowSpeedLimit::parse("1024/30").unwrap(), limit());
        assert_eq!(
            LowSpeedLimit::parse("10/0.5").unwrap().window,
            Duration::from_millis(500)
        );
        for bad in ["", "1024", "x/1", "1/0", "1/-1", "1/nan", "1/inf"] {
            assert!(LowSpeedLimit::parse(bad).is_err(), "{bad}");
        }
    }
}
