use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use super::forward::{Caps, Egress, Slots};
use super::*;

#[test]
fn host_port_syntax() {
    let hp = parse_host_port("DB.Internal:5432").unwrap();
    assert_eq!(hp.host, Host::Name("db.internal".into()));
    assert_eq!(hp.port, 5432);
    assert_eq!(
        parse_host_port("127.0.0.1:15432").unwrap().host,
        Host::Ip("127.0.0.1".parse().unwrap())
    );
    assert_eq!(parse_host_port("[::1]:80").unwrap().to_string(), "[::1]:80");
    assert_eq!(parse_host_port("a-b.c1:65535").unwrap().port, 65535);
    for (bad, want) in [
        ("db.internal", AddrError::Shape("db.internal".into())),
        ("::1:80", AddrError::Shape("::1:80".into())),
        ("[::1]80", AddrError::Shape("[::1]80".into())),
        ("db:0", AddrError::Port("db:0".into())),
        ("db:65536", AddrError::Port("db:65536".into())),
        ("db:+80", AddrError::Port("db:+80".into())),
        ("db:", AddrError::Port("db:".into())),
        (":80", AddrError::Host(":80".into())),
        ("-db:80", AddrError::Host("-db:80".into())),
        ("db-:80", AddrError::Host("db-:80".into())),
        ("d_b:80", AddrError::Host("d_b:80".into())),
        ("a..b:80", AddrError::Host("a..b:80".into())),
        ("256.1.1.1:80", AddrError::Host("256.1.1.1:80".into())),
        ("[nope]:80", AddrError::Host("[nope]:80".into())),
    ] {
        assert_eq!(parse_host_port(bad), Err(want), "{bad}");
    }
    assert!(!valid_hostname(&"a".repeat(64)));
    assert!(valid_hostname(&"a".repeat(63)));
    assert!(!valid_hostname(&vec!["abcdefgh"; 30].join(".")));
}

#[test]
fn declared_reads_both_forms() {
    let b = json!({"egress": ["b:2", {"to": "a:1", "reason": "r"}, "b:2"]});
    assert_eq!(declared(Some(&b)), vec!["a:1", "b:2"]);
    // Host names are case-insensitive; the deploy file maps the lowercase form.
    let b = json!({"egress": ["DB.Internal:5432", {"to": "Cache.internal:6379"}]});
    let d = declared(Some(&b));
    assert_eq!(d, vec!["cache.internal:6379", "db.internal:5432"]);
    check_mapping(
        "web",
        &map(&[
            ("db.internal:5432", "127.0.0.1:15432"),
            ("cache.internal:6379", "127.0.0.1:16379"),
        ]),
        &d,
        &[],
    )
    .unwrap();
    assert!(declared(Some(&json!({"egress": []}))).is_empty());
    assert!(declared(None).is_empty());
}

fn map(pairs: &[(&str, &str)]) -> EgressMap {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn mapping_must_match_the_declaration() {
    let decl = vec!["cache.internal:6379".to_string(), "db.internal:5432".into()];
    let ok = map(&[
        ("db.internal:5432", "127.0.0.1:15432"),
        ("cache.internal:6379", "127.0.0.1:16379"),
    ]);
    check_mapping("web", &ok, &decl, &[]).unwrap();

    let mut extra = ok.clone();
    extra.insert("other:1".into(), "127.0.0.1:1".into());
    let e = check_mapping("web", &extra, &decl, &[]).unwrap_err();
    assert_eq!(e.at(), At::Key("other:1".into()));
    assert!(e.to_string().contains("\"other:1\" is not declared"), "{e}");

    let missing = map(&[("db.internal:5432", "127.0.0.1:15432")]);
    let e = check_mapping("web", &missing, &decl, &[]).unwrap_err();
    assert_eq!(
        e,
        MappingError::Unmapped {
            service: "web".into(),
            to: "cache.internal:6379".into()
        }
    );
    let e = check_mapping("web", &map(&[]), &[], &[]);
    assert!(e.is_ok());
    let e = check_mapping("web", &ok, &[], &[]).unwrap_err();
    assert!(e.to_string().contains("declares no egress"), "{e}");

    let e = check_mapping(
        "web",
        &map(&[("10.0.0.1:5", "h:5")]),
        &["10.0.0.1:5".into()],
        &[],
    )
    .unwrap_err();
    assert!(matches!(e, MappingError::BadDeclared { .. }), "{e}");
}

#[test]
fn mapping_to_the_proxy_is_refused() {
    let decl = vec!["db.internal:5432".to_string()];
    let listen: SocketAddr = "127.0.0.1:18080".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:18081".parse().unwrap();
    for dest in [
        "127.0.0.1:18080",
        "localhost:18080",
        "0.0.0.0:18080",
        "127.0.0.1:18081",
        // The same addresses written as IPv4-mapped IPv6.
        "[::ffff:127.0.0.1]:18080",
        "[::ffff:7f00:1]:18080",
        "[::ffff:0.0.0.0]:18080",
    ] {
        let e = check_mapping(
            "web",
            &map(&[("db.internal:5432", dest)]),
            &decl,
            &[listen, any],
        )
        .unwrap_err();
        assert_eq!(e.at(), At::Value("db.internal:5432".into()), "{dest}");
    }
    // Another port, or another host's address on a wildcard listener's port, is fine.
    for dest in ["127.0.0.1:18082", "192.0.2.1:18081", "127.0.0.2:18080"] {
        check_mapping(
            "web",
            &map(&[("db.internal:5432", dest)]),
            &decl,
            &[listen, any],
        )
        .unwrap();
    }
}

#[test]
fn addresses_are_per_name_sorted_and_stable() {
    let m = map(&[
        ("db.internal:5432", "127.0.0.1:15432"),
        ("cache.internal:6379", "127.0.0.1:16379"),
        ("db.internal:5433", "127.0.0.1:15433"),
    ]);
    let r = routes(&m).unwrap();
    let got: Vec<(&str, String)> = r
        .iter()
        .map(|r| (r.to.as_str(), r.via.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("cache.internal:6379", "127.0.1.1:6379".to_string()),
            ("db.internal:5432", "127.0.1.2:5432".to_string()),
            ("db.internal:5433", "127.0.1.2:5433".to_string()),
        ]
    );
    assert_eq!(routes(&m).unwrap(), r);
    assert_eq!(loopback_for(0), Some(Ipv4Addr::new(127, 0, 1, 1)));
    assert_eq!(loopback_for(253), Some(Ipv4Addr::new(127, 0, 1, 254)));
    assert_eq!(loopback_for(254), Some(Ipv4Addr::new(127, 0, 2, 1)));
    assert!(matches!(
        routes(&map(&[("10.1.1.1:80", "x:80")])),
        Err(RouteError::NotAName(_))
    ));
}

#[test]
fn hosts_file_text() {
    let m = map(&[
        ("db.internal:5432", "127.0.0.1:15432"),
        ("db.internal:5433", "127.0.0.1:15433"),
        ("cache.internal:6379", "cache.example:6379"),
    ]);
    let text = hosts_file(&routes(&m).unwrap());
    assert_eq!(
        text,
        "# written by kiln serve: the instance's declared egress (read-only)\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         127.0.1.1\tcache.internal\n\
         127.0.1.2\tdb.internal\n"
    );
    assert!(
        !text.contains("15432"),
        "destinations are not the instance's business"
    );
}

fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    a
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "condition not reached");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free port on `ip` (a loopback address of the host's own namespace in these tests).
fn free_on(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn forwards_and_counts() {
    let echo = echo_server();
    // A closed port: bind, note, close.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (p1, p2) = (free_on("127.0.1.1"), free_on("127.0.1.2"));
    let m = map(&[
        (&format!("echo.internal:{p1}"), &echo.to_string()),
        (&format!("gone.internal:{p2}"), &closed.to_string()),
    ]);
    let r = routes(&m).unwrap();
    let eg = Egress::start(r.clone(), TcpListener::bind, caps(Duration::from_secs(2))).unwrap();
    assert_eq!(eg.audit_delta(), None, "nothing happened yet");

    let mut s = TcpStream::connect(SocketAddr::V4(r[0].via)).unwrap();
    s.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    drop(s);

    let mut g = TcpStream::connect(SocketAddr::V4(r[1].via)).unwrap();
    let mut none = Vec::new();
    let _ = g.read_to_end(&mut none);
    assert!(none.is_empty());

    wait_until(|| {
        let st = eg.stats();
        st[0].active == 0 && st[0].bytes_in == 5 && st[1].refused == 1
    });
    let st = eg.stats();
    assert_eq!((st[0].opened, st[0].refused, st[0].bytes_out), (1, 0, 5));
    assert_eq!(st[0].via, r[0].via.to_string());
    assert_eq!((st[1].opened, st[1].refused), (0, 1));
    let why = st[1].last_error.clone().unwrap();
    assert!(why.contains("refused"), "{why}");

    let d = eg.audit_delta().expect("changed");
    assert_eq!(d, st);
    assert_eq!(eg.audit_delta(), None, "unchanged since the last event");

    eg.close();
    wait_until(|| TcpStream::connect(SocketAddr::V4(r[0].via)).is_err());
}

/// Caps that do not depend on this process's file limit: 64 per instance, 256 in all.
fn caps(connect_timeout: Duration) -> Caps {
    Caps {
        connect_timeout,
        per_instance: 64,
        global: Slots::new(256),
        ..Caps::default()
    }
}

/// A server that accepts and holds every connection without a word (an idle destination).
fn silent_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink);
            });
        }
    });
    a
}

/// Whether a connection to `via` is forwarded to an echo server (says back what it gets).
fn echoes(via: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(via) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 2];
    s.write_all(b"ok").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"ok"
}

#[test]
fn one_instance_cannot_take_every_connection() {
    let silent = silent_server();
    let echo = echo_server();
    let (p1, p2) = {
        let l1 = TcpListener::bind("127.0.1.1:0").unwrap();
        let l2 = TcpListener::bind("127.0.1.1:0").unwrap();
        (
            l1.local_addr().unwrap().port(),
            l2.local_addr().unwrap().port(),
        )
    };
    let hostile = routes(&map(&[(&format!("db.internal:{p1}"), &silent.to_string())])).unwrap();
    let other = routes(&map(&[(&format!("db.internal:{p2}"), &echo.to_string())])).unwrap();
    let global = Slots::new(6);
    let with = |per_instance| Caps {
        connect_timeout: Duration::from_secs(2),
        per_instance,
        global: global.clone(),
        ..Caps::default()
    };
    let a = Egress::start(hostile.clone(), TcpListener::bind, with(4)).unwrap();
    let b = Egress::start(other.clone(), TcpListener::bind, with(4)).unwrap();
    // Instance A opens many idle connections: four are forwarded, the rest refused.
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(SocketAddr::V4(hostile[0].via)).unwrap())
        .collect();
    wait_until(|| {
        let st = &a.stats()[0];
        st.opened == 4 && st.refused == 16
    });
    let why = a.stats()[0].last_error.clone().unwrap();
    assert!(
        why.contains("cap of 4 egress connections per instance"),
        "{why}"
    );
    assert_eq!(global.used(), 4);
    // Instance B still gets through, up to what is left of the global cap.
    assert!(echoes(SocketAddr::V4(other[0].via)));
    wait_until(|| global.used() == 4);
    let b_held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(SocketAddr::V4(other[0].via)).unwrap())
        .collect();
    wait_until(|| global.used() == 6);
    assert!(!echoes(SocketAddr::V4(other[0].via)));
    wait_until(|| b.stats()[0].refused == 1);
    let why = b.stats()[0].last_error.clone().unwrap();
    assert!(why.contains("cap of 6 egress connections in all"), "{why}");
    // A's connections end: their slots come back, B is served again.
    drop(held);
    wait_until(|| global.used() == 2);
    assert!(echoes(SocketAddr::V4(other[0].via)));
    drop(b_held);
    wait_until(|| global.used() == 0);
}

#[test]
fn a_name_resolving_to_kiln_s_own_proxy_is_refused_at_connection() {
    let proxy = crate::proxy::Proxy::start("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = proxy.local_addr().port();
    let p = free_on("127.0.1.1");
    // What apply could not see: a name (localhost: 127.0.0.1 and ::1) that resolves to the
    // proxy only when the connection is made, and a v4-mapped spelling of its address.
    for dest in [
        format!("localhost:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::ffff:7f00:1]:{port}"),
    ] {
        let r = routes(&map(&[(&format!("db.internal:{p}"), &dest)])).unwrap();
        let eg = Egress::start(r.clone(), TcpListener::bind, caps(Duration::from_secs(2))).unwrap();
        let mut s = TcpStream::connect(SocketAddr::V4(r[0].via)).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        wait_until(|| eg.stats()[0].refused == 1);
        let st = &eg.stats()[0];
        assert_eq!(st.opened, 0, "{dest}");
        let why = st.last_error.clone().unwrap();
        assert!(why.contains("kiln's own front proxy"), "{dest}: {why}");
        eg.close();
        wait_until(|| TcpStream::connect(SocketAddr::V4(r[0].via)).is_err());
    }
    assert_eq!(proxy.stats().accepted, 0);
    // Once the proxy is gone, the same name is an ordinary destination again.
    proxy.stop();
    assert!(!super::kiln_listens().contains(&proxy.local_addr()));
}

#[test]
fn a_lookup_that_never_answers_is_refused_within_the_bound() {
    let p = free_on("127.0.1.1");
    let r = routes(&map(&[(&format!("db.internal:{p}"), "slow.example:5432")])).unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let global = Slots::new(8);
    let eg = Egress::start(
        r.clone(),
        TcpListener::bind,
        Caps {
            connect_timeout: Duration::from_millis(200),
            per_instance: 8,
            global: global.clone(),
            resolve: std::sync::Arc::new(move |_: &str| {
                let _ = kiln_oci::sync::lock(&wait).recv();
                Err(std::io::Error::other("released"))
            }),
        },
    )
    .unwrap();
    let mut s = TcpStream::connect(SocketAddr::V4(r[0].via)).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    wait_until(|| eg.stats()[0].refused == 1);
    let why = eg.stats()[0].last_error.clone().unwrap();
    assert!(
        why.contains("resolving slow.example:5432: no answer"),
        "{why}"
    );
    // The hung lookup still holds the connection's slot until it ends.
    assert_eq!(global.used(), 1);
    release.send(()).unwrap();
    wait_until(|| global.used() == 0);
}

fn parse_deploy(extra: &str) -> Result<crate::deploy::Deployment, crate::deploy::DeployError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trust.toml"), "").unwrap();
    let text = format!(
        "[service.web]\nimage = \"sha256:{}\"\nlisten = \"127.0.0.1:18080\"\nport = 8080\npolicy = \"trust.toml\"\n{extra}",
        "a".repeat(64)
    );
    crate::deploy::Deployment::parse(&dir.path().join("deploy.toml"), &text)
}

#[test]
fn the_table_parses_strictly() {
    let d = parse_deploy(
        "\n[service.web.egress]\n\"db.internal:5432\" = \"127.0.0.1:15432\"\n\"cache.internal:6379\" = \"cache.example:6379\"\n",
    )
    .unwrap();
    assert_eq!(
        d.services["web"].egress,
        map(&[
            ("db.internal:5432", "127.0.0.1:15432"),
            ("cache.internal:6379", "cache.example:6379"),
        ])
    );
    for (extra, line, col, want) in [
        (
            "\"db.internal:5432\" = \"127.0.0.1\"\n",
            8,
            22,
            "is not host:port",
        ),
        (
            "\"db.internal:5432\" = \"127.0.0.1:0\"\n",
            8,
            22,
            "port must be",
        ),
        (
            "\"db.internal:5432\" = \"bad_host:1\"\n",
            8,
            22,
            "the host must be",
        ),
        (
            "\"db.internal\" = \"127.0.0.1:1\"\n",
            8,
            1,
            "is not host:port",
        ),
        (
            "\"10.0.0.1:5432\" = \"127.0.0.1:1\"\n",
            8,
            1,
            "not an IP address",
        ),
        (
            "\"DB.internal:5432\" = \"127.0.0.1:1\"\n",
            8,
            1,
            "write \"DB.internal:5432\" as",
        ),
        ("\"db.internal:5432\" = 5432\n", 8, 22, "invalid type"),
    ] {
        let e = parse_deploy(&format!("\n[service.web.egress]\n{extra}")).unwrap_err();
        assert_eq!((e.line, e.column), (line, col), "{extra}: {e}");
        assert!(e.to_string().contains(want), "{extra}: {e}");
    }
}

#[test]
fn apply_errors_are_located() {
    let decl =
        json!({"egress": [{"to": "db.internal:5432", "reason": "orders"}, "cache.internal:6379"]});
    let listen: SocketAddr = "127.0.0.1:18080".parse().unwrap();
    let full = "\n[service.web.egress]\n\"db.internal:5432\" = \"127.0.0.1:15432\"\n\"cache.internal:6379\" = \"127.0.0.1:16379\"\n";
    parse_deploy(full)
        .unwrap()
        .check_egress("web", Some(&decl), &[listen])
        .unwrap();
    // A destination the image does not declare: at its key.
    let d = parse_deploy(&format!("{full}\"other.internal:1\" = \"127.0.0.1:1\"\n")).unwrap();
    let e = d.check_egress("web", Some(&decl), &[listen]).unwrap_err();
    assert_eq!((e.line, e.column), (10, 1), "{e}");
    assert!(
        e.message.contains("\"other.internal:1\" is not declared"),
        "{e}"
    );
    // A declared one without mapping: at the table, or at the image without one.
    let d = parse_deploy("\n[service.web.egress]\n\"db.internal:5432\" = \"127.0.0.1:15432\"\n")
        .unwrap();
    let e = d.check_egress("web", Some(&decl), &[listen]).unwrap_err();
    assert_eq!(e.line, 7, "{e}");
    assert!(e.message.contains("does not map it"), "{e}");
    let e = parse_deploy("")
        .unwrap()
        .check_egress("web", Some(&decl), &[listen])
        .unwrap_err();
    assert_eq!((e.line, e.column), (2, 9), "{e}");
    // Back at the proxy: at the value.
    let d = parse_deploy(&full.replace("127.0.0.1:16379", "127.0.0.1:18080")).unwrap();
    let e = d.check_egress("web", Some(&decl), &[listen]).unwrap_err();
    assert_eq!((e.line, e.column), (9, 25), "{e}");
    assert!(e.message.contains("front proxy"), "{e}");
    // No egress declared, none mapped: fine.
    parse_deploy("")
        .unwrap()
        .check_egress("web", None, &[listen])
        .unwrap();
}

#[test]
fn a_mapping_change_is_an_ordinary_release() {
    let a = parse_deploy("\n[service.web.egress]\n\"db.internal:5432\" = \"127.0.0.1:15432\"\n")
        .unwrap();
    let b = parse_deploy("\n[service.web.egress]\n\"db.internal:5432\" = \"db.example:5432\"\n")
        .unwrap();
    let p = crate::deploy::plan(&a, &b);
    let text = p.to_string();
    assert!(
        text.contains("egress ~db.internal:5432 = db.example:5432"),
        "{text}"
    );
    let crate::deploy::ServiceAction::Update(changes) = &p.services["web"] else {
        panic!("{p:?}");
    };
    // (The policy path differs too: each parse has its own directory.)
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, crate::deploy::Change::Egress { .. }) && c.needs_new_release())
    );
}
