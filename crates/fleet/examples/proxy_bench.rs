//! Informational benchmark of the front proxy: requests/s and MB/s, direct to an in-process
//! HTTP/1.0 server vs through `kiln_fleet::Proxy`, with the same load generator.
//!
//! ```sh
//! cargo run --release -p kiln-fleet --example proxy_bench [-- SECONDS_PER_RUN [CLIENTS]]
//! ```

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kiln_fleet::{Backend, Proxy, TcpDial};

const SMALL_BODY: usize = 128;
const LARGE_BODY: usize = 256 * 1024 * 1024;

/// HTTP/1.0: `GET /small` answers 128 bytes, `GET /large` 256 MiB; then the connection closes.
fn http_server() -> io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            thread::spawn(move || {
                let _ = serve(s);
            });
        }
    });
    Ok(addr)
}

fn serve(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut req = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let large = req.starts_with(b"GET /large");
    let len = if large { LARGE_BODY } else { SMALL_BODY };
    let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {len}\r\n\r\n");
    if large {
        s.write_all(head.as_bytes())?;
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..LARGE_BODY / chunk.len() {
            s.write_all(&chunk)?;
        }
    } else {
        let mut resp = head.into_bytes();
        resp.resize(resp.len() + SMALL_BODY, b'x');
        s.write_all(&resp)?;
    }
    Ok(())
}

fn get(addr: SocketAddr, path: &str, buf: &mut [u8]) -> io::Result<u64> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut total = 0u64;
    loop {
        let n = s.read(buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Requests per second of `GET /small` with `clients` concurrent connections-in-a-loop.
fn requests_per_sec(addr: SocketAddr, clients: usize, secs: f64) -> (f64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, done, failed) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failed));
            thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    match get(addr, "/small", &mut buf) {
                        Ok(n) if n > SMALL_BODY as u64 => done.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

/// MB/s of `GET /large` over one connection, best of `runs`.
fn megabytes_per_sec(addr: SocketAddr, runs: usize) -> io::Result<f64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut best = 0.0f64;
    for _ in 0..runs {
        let t = Instant::now();
        let n = get(addr, "/large", &mut buf)?;
        let mbs = n as f64 / 1e6 / t.elapsed().as_secs_f64();
        best = best.max(mbs);
    }
    Ok(best)
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let clients: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);

    let backend = http_server()?;
    let proxy = Proxy::start("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    proxy.set_backends(vec![Backend {
        id: "bench-1".into(),
        group: "r1".into(),
        weight: 1,
        dial: Arc::new(TcpDial::new(backend)),
    }]);
    let front = proxy.local_addr();
    // The same with read/write instead of splice, for comparison.
    let rw = Proxy::start("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    rw.set_splice(false);
    rw.set_backends(vec![Backend {
        id: "bench-1".into(),
        group: "r1".into(),
        weight: 1,
        dial: Arc::new(TcpDial::new(backend)),
    }]);
    let front_rw = rw.local_addr();

    // Warm up both paths.
    let _ = requests_per_sec(backend, clients, 0.3);
    let _ = requests_per_sec(front, clients, 0.3);

    // The machine may be shared: alternate direct and proxied runs and report the median
    // ratio of each pair.
    let rounds = 5;
    let (mut rps_ratios, mut mbs_ratios) = (Vec::new(), Vec::new());
    let (mut failed_direct, mut failed_proxy) = (0, 0);
    println!("HTTP/1.0, {clients} clients, {secs}s per run, one connection per request");
    for round in 1..=rounds {
        let (direct_rps, fd) = requests_per_sec(backend, clients, secs);
        let (proxy_rps, fp) = requests_per_sec(front, clients, secs);
        failed_direct += fd;
        failed_proxy += fp;
        let direct_mbs = megabytes_per_sec(backend, 1)?;
        let proxy_mbs = megabytes_per_sec(front, 1)?;
        let rw_mbs = megabytes_per_sec(front_rw, 1)?;
        println!(
            "round {round}: requests/s direct {direct_rps:>7.0} proxy {proxy_rps:>7.0} ({:.2})   MB/s (256 MiB, 1 conn) direct {direct_mbs:>6.0} proxy {proxy_mbs:>6.0} ({:.2}) proxy read/write {rw_mbs:>6.0} ({:.2})",
            proxy_rps / direct_rps,
            proxy_mbs / direct_mbs,
            rw_mbs / direct_mbs
        );
        rps_ratios.push(proxy_rps / direct_rps);
        mbs_ratios.push(proxy_mbs / direct_mbs);
    }
    rps_ratios.sort_by(f64::total_cmp);
    mbs_ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio proxy/direct: requests/s {:.2}, MB/s {:.2}  (failed requests: direct {failed_direct}, proxy {failed_proxy})",
        rps_ratios[rounds / 2],
        mbs_ratios[rounds / 2]
    );
    let st = proxy.stats();
    println!(
        "proxy: {} accepted, {} rejected, backend total {}",
        st.accepted,
        st.rejected,
        st.backends.first().map_or(0, |b| b.total)
    );
    proxy.stop();
    Ok(())
}
