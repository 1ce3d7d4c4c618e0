//! Debian version order: property tests, and agreement with the real
//! `dpkg --compare-versions` on thousands of generated pairs.
//!
//! The dpkg test is `#[ignore]`d (it needs dpkg); `scripts/test.sh` runs it,
//! and a missing dpkg fails it.

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use kiln_debversion::DebVersion;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// `[epoch:]upstream[-revision]` with the characters that matter for order.
fn version() -> impl Strategy<Value = String> {
    let epoch = prop_oneof![
        3 => Just(String::new()),
        1 => (0u32..4).prop_map(|e| format!("{e}:")),
        1 => Just("10:".to_string()),
    ];
    let first = prop_oneof![
        8 => "[0-9]{1,3}",
        1 => Just("0".to_string()),
        1 => Just("00".to_string()),
    ];
    let tail = proptest::collection::vec(
        prop_oneof![
            "[0-9]{1,3}",
            "[a-c]{1,2}",
            Just("~".to_string()),
            Just("~~".to_string()),
            Just(".".to_string()),
            Just("+".to_string()),
            "[A-Z]",
            Just("0".to_string()),
        ],
        0..6,
    );
    let upstream_hyphen = prop_oneof![4 => Just(""), 1 => Just("-1")];
    let revision = prop_oneof![
        3 => Just(String::new()),
        3 => "-[0-9]{1,2}",
        2 => "-[0-9]{1,2}(\\+deb1[12]u[0-9]{1,2}|~bpo1[12]\\+1|\\.[0-9]|~|\\+b[0-9]|[a-c]|~rc[0-9])",
        1 => "-0",
    ];
    (epoch, first, tail, upstream_hyphen, revision).prop_map(|(e, f, t, uh, r)| {
        let mut s = e;
        s.push_str(&f);
        s.push_str(&t.concat());
        // A revision-less version may not contain a hyphen in the upstream.
        if !r.is_empty() {
            s.push_str(uh);
        }
        s.push_str(&r);
        s
    })
}

/// Pairs: mostly independent, some derived from each other (near-equal).
fn pair() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        1 => (version(), version()),
        2 => (version(), "(~|~~|a|\\+|\\.|0|\\.0|1|-1|~1|)").prop_map(|(a, suf)| {
            let b = format!("{a}{suf}");
            (a, b)
        }),
        1 => version().prop_map(|a| {
            // Same version with extra leading zeros in numbers.
            let b = a.replace('1', "01");
            (a, b)
        }),
    ]
}

fn parses(s: &str) -> bool {
    DebVersion::parse(s).is_ok()
}

fn dpkg_available() -> bool {
    Command::new("dpkg")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Ask dpkg for the order of each pair, one shell per half of the batch.
fn dpkg_order(pairs: &[(String, String)]) -> Vec<Ordering> {
    let script = r#"while read a b; do
  if dpkg --compare-versions "$a" lt "$b" 2>/dev/null; then echo L
  elif dpkg --compare-versions "$a" eq "$b" 2>/dev/null; then echo E
  else echo G; fi
done"#;
    let half = pairs.len().div_ceil(2).max(1);
    let outs: Vec<Vec<Ordering>> = std::thread::scope(|s| {
        let hs: Vec<_> = pairs
            .chunks(half)
            .map(|chunk| {
                s.spawn(move || {
                    let mut child = Command::new("sh")
                        .arg("-c")
                        .arg(script)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .expect("spawn sh");
                    let mut input = String::new();
                    for (a, b) in chunk {
                        input.push_str(&format!("{a} {b}\n"));
                    }
                    let mut stdin = child.stdin.take().expect("stdin");
                    let writer = std::thread::spawn(move || {
                        stdin.write_all(input.as_bytes()).expect("write pairs");
                    });
                    let out = child.wait_with_output().expect("sh output");
                    writer.join().expect("writer");
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .map(|l| match l {
                            "L" => Ordering::Less,
                            "E" => Ordering::Equal,
                            _ => Ordering::Greater,
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    });
    outs.concat()
}

#[test]
#[ignore = "needs dpkg"]
fn agrees_with_dpkg_compare_versions() {
    assert!(dpkg_available(), "dpkg is not installed");
    let mut runner = TestRunner::new(Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    let strategy = pair();
    let mut pairs: Vec<(String, String)> = vec![
        ("1.0~~".into(), "1.0~~a".into()),
        ("1.0~~a".into(), "1.0~".into()),
        ("1.0~".into(), "1.0".into()),
        ("1.0".into(), "1.0a".into()),
        ("1:0.1".into(), "9.9".into()),
        ("1.0".into(), "1.0-0".into()),
        ("1.01".into(), "1.1".into()),
        ("2.36-9+deb12u3".into(), "2.36-9+deb12u10".into()),
        ("1.0-1~bpo12+1".into(), "1.0-1".into()),
        ("1.0+dfsg-1".into(), "1.0-1".into()),
        ("0:1.0".into(), "1.0".into()),
        ("1.0-1-1".into(), "1.0-1".into()),
    ];
    while pairs.len() < 3000 {
        let (a, b) = strategy.new_tree(&mut runner).expect("generate").current();
        if parses(&a) && parses(&b) {
            pairs.push((a, b));
        }
    }
    let started = std::time::Instant::now();
    let want = dpkg_order(&pairs);
    assert_eq!(want.len(), pairs.len(), "dpkg answered every pair");
    let mut mismatches = Vec::new();
    for ((a, b), w) in pairs.iter().zip(&want) {
        let got = DebVersion::parse(a)
            .expect("a")
            .cmp(&DebVersion::parse(b).expect("b"));
        if got != *w {
            mismatches.push(format!("{a} vs {b}: kiln {got:?}, dpkg {w:?}"));
        }
    }
    let (lt, eq, gt) = want.iter().fold((0, 0, 0), |(l, e, g), o| match o {
        Ordering::Less => (l + 1, e, g),
        Ordering::Equal => (l, e + 1, g),
        Ordering::Greater => (l, e, g + 1),
    });
    eprintln!(
        "{} pairs checked against dpkg in {:?}: {lt} lt, {eq} eq, {gt} gt",
        pairs.len(),
        started.elapsed()
    );
    assert!(lt > 100 && eq > 20 && gt > 100, "a useful mix of outcomes");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn antisymmetric((a, b) in pair()) {
        if let (Ok(x), Ok(y)) = (DebVersion::parse(&a), DebVersion::parse(&b)) {
            prop_assert_eq!(x.cmp(&y), y.cmp(&x).reverse());
            prop_assert_eq!(x.cmp(&x), Ordering::Equal);
        }
    }

    #[test]
    fn transitive(a in version(), b in version(), c in version()) {
        if let (Ok(x), Ok(y), Ok(z)) =
            (DebVersion::parse(&a), DebVersion::parse(&b), DebVersion::parse(&c))
        {
            let mut v = [x, y, z];
            v.sort();
            prop_assert!(v[0] <= v[1] && v[1] <= v[2] && v[0] <= v[2]);
            if v[0] == v[1] && v[1] == v[2] {
                prop_assert!(v[0] == v[2]);
            }
        }
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = DebVersion::parse(&s);
    }

    #[test]
    fn tilde_sorts_before_end(a in version()) {
        if let (Ok(x), Ok(y)) = (DebVersion::parse(&a), DebVersion::parse(&format!("{a}~"))) {
            prop_assert!(y < x);
        }
    }
}
