use super::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A server that runs `serve` for each connection, on its own thread.
fn server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let l = TcpListener::bind(loopback()).expect("bind");
    let addr = l.local_addr().expect("addr");
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(s));
        }
    });
    addr
}

/// Answers each connection with `id` and closes.
fn id_server(id: &'static str) -> SocketAddr {
    server(move |mut s| {
        let _ = s.write_all(id.as_bytes());
    })
}

/// Echoes until EOF, then half-closes.
fn echo_server() -> SocketAddr {
    server(|s| {
        let mut r = s.try_clone().expect("clone");
        let mut w = s;
        let _ = io::copy(&mut r, &mut w);
        let _ = w.shutdown(Shutdown::Write);
    })
}

/// A port nothing listens on.
/// A backend whose every dial is refused, like a crashed instance. (A
/// closed ephemeral port is not enough: with tests running in parallel,
/// another listener can take it.)
struct Refused;

impl Dial for Refused {
    fn dial(&self) -> io::Result<TcpStream> {
        Err(io::Error::from(io::ErrorKind::ConnectionRefused))
    }
}

fn dead(id: &str, group: &str, weight: u32) -> Backend {
    Backend {
        id: id.into(),
        group: group.into(),
        weight,
        dial: Arc::new(Refused),
    }
}

fn backend(id: &str, group: &str, weight: u32, addr: SocketAddr) -> Backend {
    Backend {
        id: id.into(),
        group: group.into(),
        weight,
        dial: Arc::new(TcpDial::new(addr)),
    }
}

fn fetch(proxy: SocketAddr) -> io::Result<String> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn count(proxy: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let id = fetch(proxy).expect("fetch");
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn weights_are_honoured_over_1000_connections() {
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![
        backend("a", "r1", 3, id_server("a")),
        backend("b", "r1", 1, id_server("b")),
        backend("c", "r1", 0, id_server("c")),
    ]);
    let seen = count(p.local_addr(), 1000);
    let a = seen.get("a").copied().unwrap_or(0);
    let b = seen.get("b").copied().unwrap_or(0);
    assert!(a.abs_diff(750) <= 50, "{seen:?}");
    assert!(b.abs_diff(250) <= 50, "{seen:?}");
    assert_eq!(seen.get("c"), None, "weight 0 is out of rotation: {seen:?}");
    assert_eq!(a + b, 1000);
    let st = p.stats();
    assert_eq!(st.accepted, 1000);
    assert_eq!(st.rejected, 0);
    let by_id: HashMap<_, _> = st.backends.iter().map(|b| (b.id.as_str(), b)).collect();
    assert_eq!(by_id["a"].total as usize, a);
    assert!(!by_id["c"].in_rotation);
    wait_until("connections to finish", || {
        p.in_flight("a") + p.in_flight("b") == 0
    });
}

#[test]
fn canary_step_weights_split_connections() {
    let p = Proxy::start(loopback()).unwrap();
    let w = weights_for_step(10, 2, 3);
    p.set_backends(vec![
        backend("new-1", "r2", w.canary, id_server("new")),
        backend("new-2", "r2", w.canary, id_server("new")),
        backend("old-1", "r1", w.stable, id_server("old")),
        backend("old-2", "r1", w.stable, id_server("old")),
        backend("old-3", "r1", w.stable, id_server("old")),
    ]);
    let seen = count(p.local_addr(), 1000);
    let new = seen.get("new").copied().unwrap_or(0);
    assert!(new.abs_diff(100) <= 50, "{seen:?} with {w:?}");
}

#[test]
fn step_weights() {
    let cases = [
        ((10, 2, 3), (1, 6)),
        ((50, 3, 3), (1, 1)),
        ((0, 3, 3), (0, 1)),
        ((100, 3, 3), (1, 0)),
        ((200, 3, 3), (1, 0)),
        ((25, 0, 3), (0, 1)),
        ((25, 3, 0), (1, 0)),
        ((25, 0, 0), (0, 0)),
        ((1, 64, 64), (1, 99)),
    ];
    for ((p, c, s), (wc, ws)) in cases {
        let w = weights_for_step(p, c, s);
        assert_eq!((w.canary, w.stable), (wc, ws), "{p}% {c} canary {s} stable");
    }
    // The canary share is exact whenever both groups are non-empty.
    for p in 1..100u8 {
        for c in 1..=8usize {
            for s in 1..=8usize {
                let w = weights_for_step(p, c, s);
                let canary = u64::from(w.canary) * c as u64;
                let total = canary + u64::from(w.stable) * s as u64;
                assert_eq!(canary * 100, u64::from(p) * total, "{p} {c} {s} {w:?}");
            }
        }
    }
}

#[test]
fn rotation_change_does_not_cut_an_open_connection() {
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![backend("a", "r1", 1, echo_server())]);
    let mut long = TcpStream::connect(p.local_addr()).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 5];
    long.write_all(b"hello").unwrap();
    long.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(p.in_flight("a"), 1);

    // Switch every new connection to release r2.
    p.set_backends(vec![backend("b", "r2", 1, id_server("b"))]);
    assert_eq!(fetch(p.local_addr()).unwrap(), "b");
    for round in 0..20 {
        let msg = format!("still here {round}");
        long.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        long.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.as_bytes());
    }
    assert_eq!(p.in_flight("a"), 1);
    assert!(!p.wait_drained("a", Duration::from_millis(30)));
    let st = p.stats();
    let a = st
        .backends
        .iter()
        .find(|b| b.id == "a")
        .expect("a is still counted");
    assert_eq!((a.active, a.in_rotation, a.weight), (1, false, 0));

    long.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    long.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(p.wait_drained("a", Duration::from_secs(5)));
    // Once drained and out of rotation it is forgotten at the next change.
    p.set_backends(vec![backend("b", "r2", 1, id_server("b"))]);
    assert!(p.stats().backends.iter().all(|b| b.id != "a"));
}

#[test]
fn a_dead_backend_costs_no_client_connection() {
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![
        dead("dead", "r1", 1),
        backend("live", "r1", 1, id_server("live")),
        dead("dead2", "r1", 1),
    ]);
    let mut errors = 0;
    for _ in 0..300 {
        match fetch(p.local_addr()) {
            Ok(s) if s == "live" => {}
            _ => errors += 1,
        }
    }
    assert_eq!(errors, 0);
    let st = p.stats();
    let by_id: HashMap<_, _> = st.backends.iter().map(|b| (b.id.as_str(), b)).collect();
    assert_eq!(by_id["live"].total, 300);
    assert_eq!(by_id["dead"].total, 0);
    assert!(by_id["dead"].failed_dials > 0, "{st:?}");
    assert_eq!(by_id["dead"].active, 0);
    assert_eq!(st.rejected, 0);
}

#[test]
fn no_backend_closes_the_client() {
    let p = Proxy::start(loopback()).unwrap();
    assert_eq!(fetch(p.local_addr()).unwrap(), "");
    p.set_backends(vec![dead("dead", "r1", 1)]);
    assert_eq!(fetch(p.local_addr()).unwrap(), "");
    wait_until("rejections to be counted", || p.stats().rejected == 2);
}

#[test]
fn drain_waits_for_in_flight_connections() {
    let slow = server(|mut s| {
        let mut req = [0u8; 4];
        let _ = s.read_exact(&mut req);
        thread::sleep(Duration::from_millis(300));
        let _ = s.write_all(b"done");
    });
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![backend("slow", "r1", 1, slow)]);
    let addr = p.local_addr();
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"ping").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    wait_until("the connection to be in flight", || {
        p.in_flight("slow") == 1
    });
    p.set_backends(Vec::new());
    let t = Instant::now();
    assert!(!p.wait_drained("slow", Duration::from_millis(20)));
    assert!(p.wait_drained("slow", Duration::from_secs(5)));
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(client.join().unwrap(), "done");
    assert_eq!(p.in_flight("slow"), 0);
    assert!(p.wait_drained("never-seen", Duration::ZERO));
}

#[test]
fn half_close_lets_the_client_read_the_response() {
    let counter = server(|mut s| {
        let mut body = Vec::new();
        let _ = s.read_to_end(&mut body);
        let _ = s.write_all(format!("got {} bytes", body.len()).as_bytes());
    });
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![backend("c", "r1", 1, counter)]);
    let mut s = TcpStream::connect(p.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&[7u8; 100_000]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert_eq!(out, "got 100000 bytes");
}

#[test]
fn large_transfers_arrive_intact_both_ways() {
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![backend("e", "r1", 1, echo_server())]);
    let data: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let s = TcpStream::connect(p.local_addr()).unwrap();
    let mut w = s.try_clone().unwrap();
    let send = data.clone();
    let writer = thread::spawn(move || {
        w.write_all(&send).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(data.len());
    (&s).read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
}

#[test]
fn read_write_fallback_copies_and_stops_at_eof() {
    let sink = server(|mut s| {
        let mut body = Vec::new();
        let _ = s.read_to_end(&mut body);
        let _ = s.write_all(&body);
    });
    let src_l = TcpListener::bind(loopback()).unwrap();
    let mut client = TcpStream::connect(src_l.local_addr().unwrap()).unwrap();
    let (src, _) = src_l.accept().unwrap();
    let dst = TcpStream::connect(sink).unwrap();
    client.write_all(b"fallback").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    rw_copy(&src, &dst, None).unwrap();
    dst.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    (&dst).read_to_string(&mut out).unwrap();
    assert_eq!(out, "fallback");
}

#[test]
fn stop_frees_the_port() {
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![backend("a", "r1", 1, id_server("a"))]);
    let addr = p.local_addr();
    assert_eq!(fetch(addr).unwrap(), "a");
    p.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after stop"
    );
    let again = TcpListener::bind(addr).expect("the port is free after stop");
    drop(again);
    p.stop(); // idempotent
    // A new proxy can take the same address.
    let p2 = Proxy::start(addr).unwrap();
    p2.set_backends(vec![backend("b", "r1", 1, id_server("b"))]);
    assert_eq!(fetch(addr).unwrap(), "b");
    drop(p2);
    assert!(TcpListener::bind(addr).is_ok());
}

#[test]
fn stop_keeps_open_connections() {
    let p = Proxy::start(loopback()).unwrap();
    p.set_backends(vec![backend("e", "r1", 1, echo_server())]);
    let mut s = TcpStream::connect(p.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    p.stop();
    s.write_all(b"y").unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"y");
    drop(s);
    assert!(p.wait_drained("e", Duration::from_secs(5)));
}

#[test]
fn switching_releases_under_load_drops_nothing() {
    let p = Proxy::start(loopback()).unwrap();
    let blue = vec![
        backend("blue-1", "blue", 1, id_server("blue")),
        backend("blue-2", "blue", 1, id_server("blue")),
    ];
    let green = vec![
        backend("green-1", "green", 1, id_server("green")),
        backend("green-2", "green", 1, id_server("green")),
    ];
    p.set_backends(blue.clone());
    let addr = p.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut errors = 0;
                for _ in 0..150 {
                    match fetch(addr) {
                        Ok(s) if s == "blue" || s == "green" => {}
                        _ => errors += 1,
                    }
                }
                errors
            })
        })
        .collect();
    for i in 0..40 {
        p.set_backends(if i % 2 == 0 {
            green.clone()
        } else {
            blue.clone()
        });
        thread::sleep(Duration::from_millis(2));
    }
    let errors: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(errors, 0);
    assert_eq!(p.stats().rejected, 0);
}

/// Answers every request on a keep-alive connection with `status` (Content-Length body).
fn http_server(status: u16) -> SocketAddr {
    server(move |s| {
        let mut r = io::BufReader::new(s.try_clone().expect("clone"));
        let mut w = s;
        loop {
            let mut line = String::new();
            // Read one request head.
            loop {
                line.clear();
                match io::BufRead::read_line(&mut r, &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let body = "hello";
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if w.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    })
}

#[test]
fn http_responses_are_counted_per_release() {
    let ok = http_server(200);
    let bad = http_server(503);
    let p = Proxy::start(loopback()).expect("start");
    p.set_http(true);
    p.set_backends(vec![
        backend("a", "r1", 1, ok),
        backend("b", "r2", 1, bad),
        dead("c", "r2", 1),
    ]);
    for _ in 0..6 {
        let mut s = TcpStream::connect(p.local_addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Three keep-alive requests per connection.
        let mut buf = [0u8; 256];
        for _ in 0..3 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            let mut got = 0;
            while got < 5 || !buf[..got].ends_with(b"hello") {
                let n = s.read(&mut buf[got..]).expect("read");
                assert!(n > 0, "closed early");
                got += n;
            }
        }
    }
    let stats = p.release_stats();
    let r1 = stats.iter().find(|r| r.release == "r1").expect("r1");
    let r2 = stats.iter().find(|r| r.release == "r2").expect("r2");
    assert_eq!(r1.connections + r2.connections, 6);
    assert_eq!(r1.requests, r1.connections * 3);
    assert_eq!(r1.responses.s2xx, r1.requests);
    assert_eq!(r2.responses.s5xx, r2.connections * 3);
    assert!(r2.connect_failures >= 1);
    assert_eq!(r1.latency.count, r1.requests);
    assert_eq!(p.stats().releases, stats);
}

#[test]
fn proxy_protocol_v2_header_reaches_the_backend() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let tx = Mutex::new(tx);
    let addr = server(move |mut s| {
        let mut head = [0u8; 28];
        if s.read_exact(&mut head).is_ok() {
            let _ = lock(&tx).send(head.to_vec());
            let _ = s.write_all(b"ok");
        }
    });
    let p = Proxy::start(loopback()).expect("start");
    p.set_proxy_protocol(true);
    p.set_backends(vec![backend("a", "r1", 1, addr)]);
    let mut c = TcpStream::connect(p.local_addr()).expect("connect");
    let me = c.local_addr().expect("addr");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = [0u8; 2];
    c.read_exact(&mut out).expect("answer");
    let head = rx.recv_timeout(Duration::from_secs(5)).expect("header");
    assert_eq!(head, proxyv2::proxy_header(me, p.local_addr()));
}
