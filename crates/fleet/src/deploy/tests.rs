use super::Strategy;
use super::*;
use proptest::prelude::{prop, prop_assert, prop_assert_eq, proptest};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("trust.toml"), "").expect("write policy");
        Fixture { dir }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().join("deploy.toml")
    }
    fn parse(&self, text: &str) -> Result<Deployment, DeployError> {
        Deployment::parse(&self.path(), text)
    }
    fn err(&self, text: &str) -> DeployError {
        match self.parse(text) {
            Ok(d) => panic!("expected an error, parsed {d:?}\n{text}"),
            Err(e) => e,
        }
    }
}

fn web(extra: &str) -> String {
    format!(
        "[service.web]\nimage = \"hello@{D1}\"\nlisten = \"127.0.0.1:18080\"\nport = 8080\npolicy = \"trust.toml\"\n{extra}"
    )
}

#[test]
fn parses_the_issue_example() {
    let f = Fixture::new();
    let text = format!(
        r#"# the fleet
[service.web]
image = "hello@{D1}"
replicas = 3
listen = "127.0.0.1:18080"
port = 8080
strategy = "canary"
canary = [10, 50, 100]
step_pause = "5s"
max_lifetime = "24h"
health = {{ http_get = "/", interval = "1s", timeout = "500ms" }}
policy = "trust.toml"
tmpfs_mb = 32
env = {{ MODE = "prod", _X1 = "" }}
reason = "CHG-42"

[service.api-2]
image = "{D2}"
listen = "127.0.0.1:18081"
port = 9000
policy = "./trust.toml"
health = {{ tcp = true, healthy_after = 2, unhealthy_after = 5 }}
"#
    );
    let d = f.parse(&text).expect("parses");
    let w = &d.services["web"];
    assert_eq!(w.image.name.as_deref(), Some("hello"));
    assert_eq!(w.image.digest, D1);
    assert_eq!(w.image.to_string(), format!("hello@{D1}"));
    assert_eq!(w.replicas, 3);
    assert_eq!(w.listen, "127.0.0.1:18080".parse().unwrap());
    assert_eq!(w.port, 8080);
    assert_eq!(
        w.strategy,
        Strategy::Canary {
            steps: vec![10, 50, 100]
        }
    );
    assert_eq!(w.step_pause, Duration::from_secs(5));
    assert_eq!(w.max_lifetime, Some(Duration::from_secs(86_400)));
    assert_eq!(
        w.health,
        Health {
            check: HealthCheck::HttpGet { path: "/".into() },
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_after: 1,
            unhealthy_after: 3,
        }
    );
    let policy = std::fs::canonicalize(f.dir.path())
        .unwrap()
        .join("trust.toml");
    assert_eq!(w.policy, policy);
    assert!(w.policy.is_absolute());
    assert_eq!(w.tmpfs_mb, Some(32));
    assert_eq!(w.env["MODE"], "prod");
    assert_eq!(w.reason.as_deref(), Some("CHG-42"));

    let a = &d.services["api-2"];
    assert_eq!(a.image.name, None);
    assert_eq!(a.replicas, 1);
    assert_eq!(a.strategy, Strategy::BlueGreen);
    assert_eq!(a.health.check, HealthCheck::Tcp);
    assert_eq!((a.health.healthy_after, a.health.unhealthy_after), (2, 5));
    assert!(a.policy.is_file());

    // Stored by the daemon: a JSON round trip keeps everything.
    let json = serde_json::to_string(&d).unwrap();
    let back: Deployment = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    assert!(json.contains("\"step_pause\":\"5s\""), "{json}");
}

#[test]
fn a_tag_is_refused_with_the_exact_message() {
    let f = Fixture::new();
    let text = web("").replace(&format!("hello@{D1}"), "hello:latest");
    let e = f.err(&text);
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:9: service.web.image: image \"hello:latest\" is a tag, not a digest: tags can move, so they are refused; pin the image by digest: `name@sha256:<hex>`, with the `sha256:<hex>` that `kiln build` prints as its last line (or `kiln images` lists)\n    | image = \"hello:latest\"\n    |         ^",
            f.path().display()
        )
    );
    assert_eq!((e.line, e.column), (2, 9));
}

#[test]
fn image_references() {
    for ok in [
        format!("hello@{D1}"),
        D1.to_string(),
        format!("localhost:5000/team/hello@{D1}"),
        format!("registry.example/hello@{D1}"),
    ] {
        let r: ImageRef = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(r.to_string(), ok);
        assert_eq!(r.hex(), &D1[7..]);
    }
    for bad in [
        "hello".to_string(),
        "hello:latest".to_string(),
        format!("localhost:5000/hello:1@{D1}"),
        format!("hello@{}", D1.to_uppercase()),
        format!("@{D1}"),
        "sha256:".to_string(),
    ] {
        assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
    }
}

#[test]
fn unknown_key_has_position_and_caret() {
    let f = Fixture::new();
    let e = f.err(&web("replica = 3\n"));
    assert_eq!((e.line, e.column), (6, 1), "{e}");
    assert!(e.message.contains("unknown field `replica`"), "{e}");
    assert!(e.snippet.ends_with("\n    | replica = 3\n    | ^"), "{e}");
}

#[test]
fn each_error_names_its_place() {
    let f = Fixture::new();
    let cases: Vec<(String, usize, usize, &str)> = vec![
        // (text, line, column, message fragment)
        (
            web("replicas = 0\n"),
            6,
            12,
            "service.web.replicas: 0 is out of range (1..=64)",
        ),
        (
            web("replicas = 65\n"),
            6,
            12,
            "service.web.replicas: 65 is out of range (1..=64)",
        ),
        (
            web("replicas = \"3\"\n"),
            6,
            12,
            "invalid type: string \"3\", expected i64",
        ),
        (
            web("tmpfs_mb = 0\n"),
            6,
            12,
            "service.web.tmpfs_mb: 0 is out of range",
        ),
        (
            web("").replace("127.0.0.1:18080", "localhost:80"),
            3,
            10,
            "service.web.listen: \"localhost:80\" is not an IP:port address",
        ),
        (
            web("").replace("127.0.0.1:18080", "127.0.0.1:0"),
            3,
            10,
            "service.web.listen: port 0 is not allowed",
        ),
        (
            web("").replace("port = 8080", "port = 0"),
            4,
            8,
            "service.web.port: 0 is out of range (1..=65535)",
        ),
        (
            web("").replace("port = 8080", "port = 65536"),
            4,
            8,
            "service.web.port: 65536 is out of range",
        ),
        (
            web("strategy = \"rolling\"\n"),
            6,
            12,
            "service.web.strategy: \"rolling\" is not a strategy (expected \"blue-green\" or \"canary\")",
        ),
        (
            web("strategy = \"canary\"\n"),
            6,
            12,
            "strategy = \"canary\" needs canary = [..] steps",
        ),
        (
            web("canary = [50, 100]\n"),
            6,
            10,
            "service.web.canary: canary steps need strategy = \"canary\"",
        ),
        (
            web("strategy = \"canary\"\ncanary = [50, 50, 100]\n"),
            7,
            15,
            "service.web.canary: steps must increase (50 follows 50)",
        ),
        (
            web("strategy = \"canary\"\ncanary = [10, 50]\n"),
            7,
            10,
            "service.web.canary: the last step must be 100",
        ),
        (
            web("strategy = \"canary\"\ncanary = [0, 100]\n"),
            7,
            11,
            "service.web.canary: 0 is not a percent (1..=100)",
        ),
        (
            web("strategy = \"canary\"\ncanary = [10, 101]\n"),
            7,
            15,
            "service.web.canary: 101 is not a percent",
        ),
        (
            web("step_pause = \"5\"\n"),
            6,
            14,
            "service.web.step_pause: \"5\" is not a duration",
        ),
        (
            web("max_lifetime = \"1w\"\n"),
            6,
            16,
            "service.web.max_lifetime: \"1w\" is not a duration",
        ),
        (
            web("max_lifetime = \"10ms\"\n"),
            6,
            16,
            "service.web.max_lifetime: must be at least 1s",
        ),
        (
            web("health = { http_get = \"health\" }\n"),
            6,
            23,
            "service.web.health.http_get: \"health\" must be an absolute request path",
        ),
        (
            web("health = { interval = \"1s\" }\n"),
            6,
            10,
            "service.web.health: needs http_get = \"/path\" or tcp = true",
        ),
        (
            web("health = { tcp = true, http_get = \"/\" }\n"),
            6,
            18,
            "service.web.health: give either http_get or tcp, not both",
        ),
        (
            web("health = { tcp = false }\n"),
            6,
            18,
            "service.web.health.tcp: must be true",
        ),
        (
            web("health = { tcp = true, interval = \"1s\", timeout = \"2s\" }\n"),
            6,
            51,
            "service.web.health.timeout: 2s is longer than the interval (1s)",
        ),
        (
            web("health = { tcp = true, unhealthy_after = 0 }\n"),
            6,
            42,
            "service.web.health.unhealthy_after: 0 is out of range (1..=100)",
        ),
        (
            web("health = { tcp = true, retries = 3 }\n"),
            6,
            24,
            "unknown field `retries`",
        ),
        (
            web("env = { \"A=B\" = \"x\" }\n"),
            6,
            9,
            "service.web.env: \"A=B\" is not a variable name",
        ),
        (
            web("env = { A = 1 }\n"),
            6,
            13,
            "invalid type: integer `1`, expected a string",
        ),
        (
            web("").replace("\"trust.toml\"", "\"missing.toml\""),
            5,
            10,
            "service.web.policy: the trust policy",
        ),
        (
            web("").replace("[service.web]", "[service.Web]"),
            1,
            10,
            "service name \"Web\" must be 1 to 63 characters of a-z, 0-9 and '-'",
        ),
        (
            web("").replace(D1, "sha256:abc"),
            2,
            9,
            "must be sha256: followed by 64 lowercase hex characters",
        ),
        (
            web("").replace(&format!("hello@{D1}"), &format!("hello:1.0@{D1}")),
            2,
            9,
            "names both a tag and a digest",
        ),
        (
            web("").replace(&format!("hello@{D1}"), &format!("Hello@{D1}")),
            2,
            9,
            "service.web.image: image \"Hello@",
        ),
        (
            web("").replace(&format!("hello@{D1}"), "hello@md5:00"),
            2,
            9,
            "the digest must be sha256:<64 hex characters>",
        ),
        (
            web("").replace("image = ", "# image = "),
            1,
            1,
            "missing field `image`",
        ),
        ("port = 1\n".to_string(), 1, 1, "unknown field `port`"),
        (String::new(), 1, 1, "the deploy file declares no services"),
        (
            "[service]\n".to_string(),
            1,
            1,
            "the deploy file declares no services",
        ),
        (
            "[service.web\n".to_string(),
            1,
            13,
            "unclosed table, expected `]`",
        ),
    ];
    for (text, line, col, needle) in cases {
        let e = f.err(&text);
        assert!(
            e.to_string().contains(needle),
            "want {needle:?}, got: {e}\n--\n{text}"
        );
        assert_eq!((e.line, e.column), (line, col), "{e}\n--\n{text}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:{line}:{col}: ", f.path().display())),
            "{e}"
        );
        assert!(
            text.is_empty() || e.snippet.contains("\n    | "),
            "no snippet: {e}"
        );
    }
}

#[test]
fn port_clash_between_services() {
    let f = Fixture::new();
    let text = format!(
        "{}\n[service.api]\nimage = \"{D2}\"\nlisten = \"0.0.0.0:18080\"\nport = 1\npolicy = \"trust.toml\"\n",
        web("")
    );
    let e = f.err(&text);
    // Services are validated in name order: api (line 9) first, then web clashes with it.
    assert_eq!((e.line, e.column), (3, 10), "{e}");
    assert_eq!(
        e.message,
        "service.web.listen: 127.0.0.1:18080 clashes with service.api.listen = 0.0.0.0:18080 (line 9); each service needs its own port"
    );
    // Different ports, or the same port on two specific addresses, are fine.
    let ok = text.replace("0.0.0.0:18080", "127.0.0.2:18080");
    f.parse(&ok).expect("distinct addresses");
}

#[test]
fn listen_port_in_use_is_reported() {
    let f = Fixture::new();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let text = web("").replace("127.0.0.1:18080", &addr.to_string());
    let d = f.parse(&text).expect("parse does not bind");
    let e = d.check_listen_free(|_, _| false).unwrap_err();
    assert_eq!((e.line, e.column), (3, 10), "{e}");
    assert!(
        e.message.starts_with(&format!(
            "service.web.listen: cannot listen on {addr}: the port is already in use on this host"
        )),
        "{e}"
    );
    assert!(e.snippet.ends_with("|          ^"), "{e}");
    // The daemon skips services it already serves.
    d.check_listen_free(|name, a| name == "web" && a == addr)
        .unwrap();
    drop(held);
    d.check_listen_free(|_, _| false).unwrap();
    // Without an origin (a stored deployment) the error still says what and which service.
    let held = TcpListener::bind(addr).unwrap();
    let stored: Deployment = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    let e = stored.check_listen_free(|_, _| false).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.message.contains("service.web.listen"), "{e}");
    // Per service, as the daemon calls it.
    let e = check_listen_free("web", addr).unwrap_err();
    assert_eq!(e.source.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        e.to_string().starts_with(&format!(
            "service.web.listen: cannot listen on {addr}: the port is already in use on this host (",
        )),
        "{e}"
    );
    drop(held);
    check_listen_free("web", addr).unwrap();
}

#[test]
fn load_reports_unreadable_and_non_utf8() {
    let f = Fixture::new();
    let e = Deployment::load(&f.path()).unwrap_err();
    assert!(
        e.to_string().contains(":0:0: cannot read the deploy file"),
        "{e}"
    );
    std::fs::write(f.path(), b"[service.web]\n\xff").unwrap();
    let e = Deployment::load(&f.path()).unwrap_err();
    assert!(
        e.message.contains("not UTF-8: byte 0xff at offset 14"),
        "{e}"
    );
    assert_eq!((e.line, e.column), (2, 1), "{e}");
    std::fs::write(f.path(), b"[service.web]\nimage = \"a\xffb\"\n").unwrap();
    let e = Deployment::load(&f.path()).unwrap_err();
    assert!(e.to_string().contains(":2:11: "), "{e}");
    assert!(e.to_string().contains("    |           ^"), "{e}");
    std::fs::write(f.path(), web("")).unwrap();
    Deployment::load(&f.path()).unwrap();
}

#[test]
fn durations() {
    for (s, ms, canonical) in [
        ("0s", 0, "0s"),
        ("500ms", 500, "500ms"),
        ("5s", 5_000, "5s"),
        ("15m", 900_000, "15m"),
        ("24h", 86_400_000, "1d"),
        ("7d", 604_800_000, "7d"),
        ("2000ms", 2_000, "2s"),
    ] {
        assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        assert_eq!(format_duration(Duration::from_millis(ms)), canonical);
    }
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    for bad in [
        "",
        "5",
        "s",
        "-5s",
        "5 s",
        " 5s",
        "5S",
        "1.5s",
        "5sec",
        "99999999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

fn service(image: &str) -> ServiceSpec {
    ServiceSpec {
        image: image.parse().unwrap(),
        replicas: 3,
        listen: "127.0.0.1:18080".parse().unwrap(),
        port: 8080,
        strategy: Strategy::BlueGreen,
        step_pause: Duration::from_secs(5),
        max_lifetime: None,
        health: Health::default(),
        policy: PathBuf::from("/etc/kiln/trust.toml"),
        tmpfs_mb: None,
        env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "2".into())]),
        reason: None,
        limits: Some(Limits::default()),
        secrets: BTreeMap::new(),
        egress: BTreeMap::new(),
        analysis: None,
        proxy_protocol: false,
    }
}

fn deployment(services: Vec<(&str, ServiceSpec)>) -> Deployment {
    Deployment {
        services: services
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect(),
        origin: None,
    }
}

#[test]
fn plan_lists_create_update_remove_unchanged() {
    let current = deployment(vec![
        ("web", service(&format!("hello@{D1}"))),
        ("old", service(D1)),
        ("same", service(D1)),
        ("scale", service(D1)),
    ]);
    let mut web2 = service(&format!("hello@{D2}"));
    web2.strategy = Strategy::Canary {
        steps: vec![10, 100],
    };
    web2.env.remove("A");
    web2.env.insert("B".into(), "secret".into());
    web2.env.insert("C".into(), "3".into());
    web2.health.check = HealthCheck::HttpGet { path: "/h".into() };
    web2.max_lifetime = Some(Duration::from_secs(3600));
    let mut same = service(D1);
    same.reason = Some("CHG-1".into());
    let mut scale = service(D1);
    scale.replicas = 5;
    let desired = deployment(vec![
        ("web", web2),
        ("new", service(D2)),
        ("same", same),
        ("scale", scale),
    ]);
    let p = plan(&current, &desired);
    assert_eq!(p.services["new"], ServiceAction::Create);
    assert_eq!(p.services["old"], ServiceAction::Remove);
    assert_eq!(p.services["same"], ServiceAction::Unchanged);
    assert_eq!(
        p.services["scale"],
        ServiceAction::Update(vec![Change::Replicas { from: 3, to: 5 }])
    );
    let ServiceAction::Update(changes) = &p.services["web"] else {
        panic!("{p:?}")
    };
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert!(changes[0].needs_new_release());
    let text = p.to_string();
    assert_eq!(
        text,
        format!(
            "+ new: create\n\
             - old: remove\n\
             = same: unchanged\n\
             ~ scale: update\n    replicas 3 -> 5\n\
             ~ web: update (new release)\n    image hello@{D1} -> hello@{D2}\n    strategy blue-green -> canary [10%, 100%]\n    max_lifetime none -> 1h\n    health tcp every 1s (timeout 500ms, healthy after 1, unhealthy after 3) -> http_get /h every 1s (timeout 500ms, healthy after 1, unhealthy after 3)\n    env +C -A ~B\n"
        )
    );
    assert!(!text.contains("secret"));
    assert!(!p.is_noop());
    assert!(plan(&desired, &desired).is_noop());
    let json = serde_json::to_string(&p).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
}

proptest! {
    #[test]
    fn parser_never_panics(text in ".{0,400}") {
        let f = Fixture::new();
        let _ = f.parse(&text);
    }

    #[test]
    fn parser_never_panics_on_near_valid_input(
        cut in 0usize..400,
        insert in "[\\[\\]{}=\"'\\n a-z0-9.:@,#-]{0,12}",
    ) {
        let f = Fixture::new();
        let mut text = web("strategy = \"canary\"\ncanary = [10, 100]\nhealth = { http_get = \"/\" }\nenv = { A = \"b\" }\n");
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        text.insert_str(at, &insert);
        if let Err(e) = f.parse(&text) {
            prop_assert!(e.line >= 1, "{}", e);
        }
    }

    #[test]
    fn durations_round_trip(ms in 0u64..=(u64::MAX / 86_400_000)) {
        let d = Duration::from_millis(ms);
        let s = format_duration(d);
        prop_assert_eq!(parse_duration(&s), Ok(d));
    }

    #[test]
    fn duration_strings_round_trip(n in 0u64..1_000_000, unit in prop::sample::select(vec!["ms", "s", "m", "h", "d"])) {
        let s = format!("{n}{unit}");
        let d = parse_duration(&s).unwrap();
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

#[test]
fn analysis_table_defaults_values_and_errors() {
    let f = Fixture::new();
    let d = f.parse(&web("")).expect("no table");
    assert_eq!(d.services["web"].analysis, None);
    assert!(!d.services["web"].proxy_protocol);
    let d = f
        .parse(&web("proxy_protocol = true\n[service.web.analysis]\n"))
        .expect("empty table");
    assert_eq!(
        d.services["web"].analysis,
        Some(crate::analysis::Analysis::default())
    );
    assert!(d.services["web"].proxy_protocol);
    let d = f
        .parse(&web(
            "[service.web.analysis]\nmax_error_rate = 0.05\nmin_requests = 10\nstep_timeout = \"2s\"\nhttp = false\nwindow = \"1m\"\n",
        ))
        .expect("full table");
    let a = d.services["web"].analysis.expect("analysis");
    assert_eq!(a.max_error_ppm, 50_000);
    assert_eq!(a.min_requests, 10);
    assert_eq!(a.step_timeout, Duration::from_secs(2));
    assert!(!a.http);
    assert_eq!(a.window, Duration::from_secs(60));
    for (extra, line, col, msg) in [
        (
            "max_error_rate = 1.5\n",
            7,
            18,
            "service.web.analysis.max_error_rate: 1.5 is not between 0 and 1",
        ),
        (
            "max_error_rate = \"1%\"\n",
            7,
            18,
            "service.web.analysis.max_error_rate: expected a number",
        ),
        (
            "min_requests = 0\n",
            7,
            16,
            "service.web.analysis.min_requests: 0 is out of range",
        ),
        (
            "step_timeout = \"10ms\"\n",
            7,
            16,
            "service.web.analysis.step_timeout: must be at least 100ms",
        ),
        ("windw = \"1s\"\n", 7, 1, "unknown field `windw`"),
    ] {
        let e = f.err(&web(&format!("[service.web.analysis]\n{extra}")));
        assert_eq!((e.line, e.column), (line, col), "{e}");
        assert!(e.message.contains(msg), "{e}");
    }
}
