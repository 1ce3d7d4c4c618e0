use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use super::forward::Egress;
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
    let eg = Egress::start(r.clone(), TcpListener::bind, Duration::from_secs(2)).unwrap();
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
