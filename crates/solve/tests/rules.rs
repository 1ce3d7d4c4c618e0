//! One test per solver rule, on small hand-made universes written as
//! `Packages` stanzas.

use kiln_solve::{
    DepKind, Package, Reason, Request, SolveError, Universe, check_closure, packages, solve,
};

fn universe(text: &str) -> Universe {
    let mut all = Vec::new();
    // Stanzas may carry `X-Pin: N` and `X-Origin: s` to model suites.
    for stanza in text.split("\n\n") {
        let pin = stanza
            .lines()
            .find_map(|l| l.strip_prefix("X-Pin: "))
            .map_or(500, |p| p.trim().parse().unwrap());
        let origin = stanza
            .lines()
            .find_map(|l| l.strip_prefix("X-Origin: "))
            .unwrap_or("main");
        all.extend(packages::parse(stanza, pin, origin).unwrap());
    }
    Universe::new(all, "amd64").unwrap()
}

fn request(include: &[&str]) -> Request {
    Request::new(include)
}

fn solved(u: &Universe, req: &Request) -> Vec<String> {
    let c = solve(u, req).unwrap_or_else(|e| panic!("{e}"));
    let pkgs: Vec<&Package> = c.ids().into_iter().map(|id| u.package(id)).collect();
    check_closure(&pkgs, "amd64").unwrap();
    c.packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect()
}

fn names(u: &Universe, include: &[&str]) -> Vec<String> {
    solved(u, &request(include))
        .into_iter()
        .map(|s| s.split('=').next().unwrap().to_string())
        .collect()
}

fn pkg(name: &str, version: &str, fields: &str) -> String {
    let mut s = format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\n");
    for f in fields.split(';').filter(|f| !f.trim().is_empty()) {
        s.push_str(f.trim());
        s.push('\n');
    }
    s
}

fn text(stanzas: &[String]) -> String {
    stanzas.join("\n")
}

#[test]
fn first_satisfiable_alternative() {
    let u = universe(&text(&[
        pkg("a", "1", "Depends: b | c"),
        pkg("b", "1", ""),
        pkg("c", "1", ""),
        pkg("d", "1", "Depends: missing | c"),
        pkg("e", "1", "Depends: b (>= 2) | c"),
    ]));
    assert_eq!(names(&u, &["a"]), ["a", "b"]);
    assert_eq!(names(&u, &["d"]), ["c", "d"]);
    assert_eq!(names(&u, &["e"]), ["c", "e"]);
}

#[test]
fn virtual_with_several_providers() {
    let u = universe(&text(&[
        pkg("a", "1", "Depends: v"),
        pkg("p1", "1", "Provides: v"),
        pkg("p2", "1", "Provides: v; Priority: required"),
        pkg("p3", "1", "Provides: v"),
        pkg("b", "1", "Depends: w"),
        pkg("w", "1", ""),
        pkg("q", "1", "Provides: w; Essential: yes"),
    ]));
    // Required priority first among providers.
    assert_eq!(names(&u, &["a"]), ["a", "p2"]);
    // A provider already in the closure satisfies the virtual dependency.
    assert_eq!(names(&u, &["p3", "a"]), ["a", "p3"]);
    assert_eq!(names(&u, &["a", "p3"]), ["a", "p3"]);
    // The real package wins over a provider, even an essential one.
    assert_eq!(names(&u, &["b"]), ["b", "w"]);
    // Naming a virtual package with several providers is an error, as in apt.
    assert!(matches!(
        solve(&u, &request(&["v"])),
        Err(SolveError::AmbiguousVirtual { .. })
    ));
}

#[test]
fn versioned_provides() {
    let u = universe(&text(&[
        pkg("a", "1", "Depends: v (>= 2)"),
        pkg("b", "1", "Depends: v"),
        pkg("old", "1", "Provides: v (= 1)"),
        pkg("plain", "1", "Provides: v"),
        pkg("new", "1", "Provides: v (= 2.1)"),
        pkg("c", "1", "Depends: u (>= 1)"),
        pkg("unv", "1", "Provides: u"),
    ]));
    assert_eq!(names(&u, &["a"]), ["a", "new"]);
    // Unversioned dependency: any provider; by name among equals.
    assert_eq!(names(&u, &["b"]), ["b", "new"]);
    // An unversioned provide never satisfies a versioned dependency.
    let err = solve(&u, &request(&["c"])).unwrap_err().to_string();
    assert!(err.contains("c -> u (>= 1)"), "{err}");
}

#[test]
fn conflicts_force_the_second_alternative() {
    let u = universe(&text(&[
        pkg("a", "1", "Depends: b | c, x"),
        pkg("b", "1", ""),
        pkg("c", "1", ""),
        pkg("x", "1", "Conflicts: b"),
        // The conflict shows only deep down: backtrack.
        pkg("d", "1", "Depends: e | c"),
        pkg("e", "1", "Depends: f"),
        pkg("f", "1", "Conflicts: d"),
    ]));
    assert_eq!(names(&u, &["a"]), ["a", "c", "x"]);
    assert_eq!(names(&u, &["d"]), ["c", "d"]);
    // Conflicts in both directions.
    assert!(solve(&u, &request(&["x", "b"])).is_err());
    assert!(solve(&u, &request(&["b", "x"])).is_err());
}

#[test]
fn breaks_with_versions() {
    let u = universe(&text(&[
        pkg("a", "1", "Depends: lib | lib-alt, b"),
        pkg("lib", "1.5", ""),
        pkg("lib-alt", "1", ""),
        pkg("b", "1", "Breaks: lib (<< 2)"),
        pkg("c", "1", "Depends: lib2, d"),
        pkg("lib2", "3", ""),
        pkg("d", "1", "Breaks: lib2 (<< 2)"),
    ]));
    assert_eq!(names(&u, &["a"]), ["a", "b", "lib-alt"]);
    // A Breaks that does not match the version is no conflict.
    assert_eq!(names(&u, &["c"]), ["c", "d", "lib2"]);
}

#[test]
fn self_conflict_idiom() {
    let u = universe(&text(&[
        pkg("mta1", "1", "Provides: mta; Conflicts: mta; Replaces: mta"),
        pkg("mta2", "1", "Provides: mta; Conflicts: mta; Replaces: mta"),
        pkg("mailer", "1", "Depends: mta"),
    ]));
    assert_eq!(names(&u, &["mailer"]), ["mailer", "mta1"]);
    assert_eq!(names(&u, &["mta2", "mailer"]), ["mailer", "mta2"]);
    let err = solve(&u, &request(&["mta1", "mta2"])).unwrap_err();
    assert!(err.to_string().contains("conflicts with mta"), "{err}");
}

#[test]
fn pre_depends_and_reasons() {
    let u = universe(&text(&[
        pkg("a", "1", "Pre-Depends: b; Depends: c (>= 1) | d"),
        pkg("b", "1", ""),
        pkg("c", "1", ""),
    ]));
    let c = solve(&u, &request(&["a"])).unwrap();
    let reason = |n: &str| {
        c.packages
            .iter()
            .find(|p| p.name == n)
            .unwrap()
            .reason
            .clone()
    };
    assert_eq!(reason("a"), Reason::Requested);
    assert_eq!(
        reason("b"),
        Reason::Needed {
            by: "a".into(),
            kind: DepKind::PreDepends,
            relation: "b".into()
        }
    );
    assert_eq!(reason("c").to_string(), "a Depends: c (>= 1) | d");
}

#[test]
fn multi_arch_any() {
    let u = universe(&text(&[
        pkg("a", "1", "Depends: py:any"),
        pkg("py", "1", "Multi-Arch: allowed"),
        pkg("b", "1", "Depends: tool:any"),
        pkg("tool", "1", "Multi-Arch: foreign"),
        pkg("c", "1", "Depends: tool:i386 | py:amd64"),
        "Package: data\nVersion: 1\nArchitecture: all\n".to_string(),
        pkg("d", "1", "Depends: data"),
        "Package: other\nVersion: 1\nArchitecture: i386\n".to_string(),
        pkg("e", "1", "Depends: other"),
    ]));
    assert_eq!(names(&u, &["a"]), ["a", "py"]);
    // :any needs Multi-Arch: allowed (dpkg's deparchsatisfied).
    let err = solve(&u, &request(&["b"])).unwrap_err().to_string();
    assert!(err.contains("b -> tool:any"), "{err}");
    assert_eq!(names(&u, &["c"]), ["c", "py"]);
    assert_eq!(names(&u, &["d"]), ["d", "data"]);
    // Packages of foreign architectures are not in the universe.
    assert!(solve(&u, &request(&["e"])).is_err());
}

#[test]
fn exclude_names_the_chain() {
    let u = universe(&text(&[
        pkg("a", "1", "Depends: b"),
        pkg("b", "1", "Depends: c"),
        pkg("c", "1", ""),
        pkg("x", "1", "Depends: c | d"),
        pkg("d", "1", ""),
    ]));
    let mut req = request(&["a"]);
    req.exclude = vec!["c".into()];
    let err = solve(&u, &req).unwrap_err();
    assert_eq!(err.to_string(), "cannot satisfy a -> b -> c: c is excluded");
    req.include = vec!["x".into()];
    assert_eq!(solved(&u, &req), ["d=1", "x=1"]);
    req.include = vec!["c".into()];
    assert_eq!(
        solve(&u, &req).unwrap_err(),
        SolveError::IncludedAndExcluded("c".into())
    );
}

#[test]
fn pinned_version_and_suites() {
    let u = universe(
        "Package: b\nVersion: 1.0-1\nArchitecture: amd64\nX-Origin: bookworm\n\n\
         Package: b\nVersion: 1.0-1+deb12u1\nArchitecture: amd64\nX-Origin: bookworm-security\n\n\
         Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b (>= 1.0-1+deb12u1)\n\n\
         Package: c\nVersion: 1\nArchitecture: all\nX-Pin: 100\n\n\
         Package: c\nVersion: 2\nArchitecture: all\nX-Pin: 50\n",
    );
    // Newest across suites.
    assert_eq!(solved(&u, &request(&["b"])), ["b=1.0-1+deb12u1"]);
    // Higher pin priority before newer version.
    assert_eq!(solved(&u, &request(&["c"])), ["c=1"]);
    assert_eq!(solved(&u, &request(&["c=2"])), ["c=2"]);
    assert_eq!(solved(&u, &request(&["b=1.0-1"])), ["b=1.0-1"]);
    // The pin is the candidate for dependencies too.
    let err = solve(&u, &request(&["a", "b=1.0-1"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot satisfy a -> b (>= 1.0-1+deb12u1): no candidate: newest is 1.0-1"
    );
    assert!(matches!(
        solve(&u, &request(&["b=9"])),
        Err(SolveError::PinNotFound { .. })
    ));
    assert!(matches!(
        solve(&u, &request(&["b=1.0-1", "b=1.0-1+deb12u1"])),
        Err(SolveError::ConflictingPins { .. })
    ));
}

#[test]
fn unsatisfiable_chain_message() {
    let u = universe(&text(&[
        pkg(
            "python3-flask",
            "2.2.2-3",
            "Depends: python3-werkzeug (>= 2.2), python3:any",
        ),
        pkg("python3-werkzeug", "2.0.1-1", ""),
        pkg("python3", "3.11.2-1", "Multi-Arch: allowed"),
    ]));
    let err = solve(&u, &request(&["python3-flask"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot satisfy python3-flask -> python3-werkzeug (>= 2.2): no candidate: newest is 2.0.1-1"
    );
    assert!(matches!(
        solve(&u, &request(&["nothing"])),
        Err(SolveError::UnknownPackage(_))
    ));
}

#[test]
fn recommends_when_asked() {
    let u = universe(&text(&[
        pkg("a", "1", "Recommends: b, missing"),
        pkg("b", "1", "Depends: c"),
        pkg("c", "1", ""),
    ]));
    assert_eq!(names(&u, &["a"]), ["a"]);
    let mut req = request(&["a"]);
    req.recommends = true;
    assert_eq!(solved(&u, &req), ["a=1", "b=1", "c=1"]);
}

#[test]
fn virtual_include_with_one_provider() {
    let u = universe(&text(&[pkg("p", "1", "Provides: v")]));
    assert_eq!(names(&u, &["v"]), ["p"]);
}

#[test]
fn deterministic_under_shuffled_input() {
    let stanzas = vec![
        pkg("a", "1", "Depends: v, b | c"),
        pkg("p1", "1", "Provides: v"),
        pkg("p2", "1", "Provides: v"),
        pkg("b", "1", "Conflicts: p1"),
        pkg("b", "2", "Depends: c"),
        pkg("c", "1", ""),
        pkg("c", "3", ""),
    ];
    let reference = solve(&universe(&text(&stanzas)), &request(&["a"])).unwrap();
    let mut shuffled = stanzas.clone();
    for k in 0..20 {
        shuffled.rotate_left(k % 3 + 1);
        shuffled.swap(k % 7, (k * 3) % 7);
        let got = solve(&universe(&text(&shuffled)), &request(&["a"])).unwrap();
        let strip = |c: &kiln_solve::Closure| {
            c.packages
                .iter()
                .map(|p| (p.name.clone(), p.version.clone(), p.reason.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&got), strip(&reference));
    }
}

/// `a` depends on `n` two-way or-groups and then on something missing.
fn many_choices(n: usize, last: &str, extra: &[String]) -> Universe {
    let mut deps: Vec<String> = (0..n).map(|i| format!("x{i}a | x{i}b")).collect();
    deps.push(last.to_string());
    let mut stanzas = vec![pkg("a", "1", &format!("Depends: {}", deps.join(", ")))];
    for i in 0..n {
        stanzas.push(pkg(&format!("x{i}a"), "1", ""));
        stanzas.push(pkg(&format!("x{i}b"), "1", ""));
    }
    stanzas.extend_from_slice(extra);
    universe(&text(&stanzas))
}

#[test]
fn static_failures_backjump() {
    // 2^20 combinations of earlier choices cannot help a dependency that
    // nothing satisfies.
    let u = many_choices(20, "y1 | y2", &[]);
    let mut req = request(&["a"]);
    req.max_steps = 1000;
    let err = solve(&u, &req).unwrap_err();
    assert!(
        matches!(&err, SolveError::Unsatisfiable { chain, .. } if chain == &["a", "y1 | y2"]),
        "{err}"
    );
    // The relation that failed, by package name, for callers that react to it.
    assert!(
        matches!(&err, SolveError::Unsatisfiable { names, .. } if names == &["y1", "y2"]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot satisfy a -> y1 | y2: y1: no such package; y2: no such package"
    );
}

#[test]
fn search_limit() {
    // Failures caused by conflicts backtrack chronologically, so this one
    // hits the step limit.
    let u = many_choices(
        20,
        "y1 | y2",
        &[pkg("y1", "1", "Conflicts: a"), pkg("y2", "1", "Breaks: a")],
    );
    let mut req = request(&["a"]);
    req.max_steps = 1000;
    let err = solve(&u, &req).unwrap_err();
    assert!(
        matches!(err, SolveError::SearchLimit { steps: 1000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("y1 conflicts with a"), "{err}");
    // Small enough, it is searched to the end.
    let u = many_choices(
        3,
        "y1 | y2",
        &[pkg("y1", "1", "Conflicts: a"), pkg("y2", "1", "Breaks: a")],
    );
    assert!(matches!(
        solve(&u, &request(&["a"])),
        Err(SolveError::Unsatisfiable { .. })
    ));
}
