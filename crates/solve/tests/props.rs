//! Properties of the solver on random small universes: whatever it returns
//! passes the independent `check_closure`, holds the request and only
//! candidates, does not depend on input order, and when it reports
//! "unsatisfiable" a brute-force search over all candidate subsets agrees.

use kiln_solve::relation::{self, Relation};
use kiln_solve::{MultiArch, Package, Request, SolveError, Universe, check_closure, solve};
use proptest::prelude::*;

const NAMES: usize = 7;

fn name(i: usize) -> String {
    format!("n{i}")
}

fn target() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            (0..NAMES).prop_map(name),
            (0..3usize).prop_map(|i| format!("v{i}"))
        ],
        prop_oneof![
            4 => Just(String::new()),
            1 => (prop_oneof![Just("<<"), Just("<="), Just("="), Just(">="), Just(">>")], 1..4u8)
                .prop_map(|(op, v)| format!(" ({op} {v})")),
        ],
        prop_oneof![6 => Just(""), 1 => Just(":any")],
    )
        .prop_map(|(n, c, q)| format!("{n}{q}{c}"))
}

fn groups(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::collection::vec(target(), 1..3), 0..max).prop_map(|gs| {
        gs.iter()
            .map(|g| g.join(" | "))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn flat(max: usize, versioned_provides: bool) -> impl Strategy<Value = Vec<Relation>> {
    proptest::collection::vec(
        (
            prop_oneof![
                (0..NAMES).prop_map(name),
                (0..3usize).prop_map(|i| format!("v{i}"))
            ],
            proptest::option::of(1..4u8),
            prop_oneof![Just("<<"), Just(">="), Just("=")],
        ),
        0..max,
    )
    .prop_map(move |rs| {
        rs.into_iter()
            .map(|(n, v, op)| {
                let op = if versioned_provides { "=" } else { op };
                let s = match v {
                    Some(v) => format!("{n} ({op} {v})"),
                    None => n,
                };
                relation::parse_flat(&s).unwrap().remove(0)
            })
            .collect()
    })
}

fn package(i: usize) -> impl Strategy<Value = Package> {
    (
        1..4u8,
        prop_oneof![Just("amd64"), Just("all")],
        prop_oneof![
            Just(MultiArch::No),
            Just(MultiArch::Allowed),
            Just(MultiArch::Foreign)
        ],
        groups(3),
        groups(2),
        flat(2, true),
        flat(2, false),
        flat(2, false),
    )
        .prop_map(
            move |(v, arch, ma, dep, pre, provides, conflicts, breaks)| {
                let mut p = Package::new(&name(i), &v.to_string(), arch);
                p.multi_arch = ma;
                p.depends = relation::parse(&dep).unwrap();
                p.pre_depends = relation::parse(&pre).unwrap();
                // Provides only of virtual names (dpkg allows real ones, but keep
                // the model simple).
                p.provides = provides
                    .into_iter()
                    .filter(|r| r.name.starts_with('v'))
                    .collect();
                p.conflicts = conflicts;
                p.breaks = breaks;
                p
            },
        )
}

fn universe_packages() -> impl Strategy<Value = Vec<Package>> {
    // Every name has one or two versions.
    let per_name: Vec<_> = (0..NAMES)
        .map(|i| proptest::collection::vec(package(i), 1..3))
        .collect();
    per_name.prop_map(|v| v.into_iter().flatten().collect())
}

fn request() -> impl Strategy<Value = Request> {
    (
        proptest::collection::vec(0..NAMES, 1..3),
        proptest::option::of(0..NAMES),
    )
        .prop_map(|(inc, exc)| Request {
            include: inc.into_iter().map(name).collect(),
            exclude: exc.into_iter().map(name).collect(),
            ..Request::default()
        })
}

fn key(r: &Result<kiln_solve::Closure, SolveError>) -> Result<Vec<(String, String)>, String> {
    match r {
        Ok(c) => Ok(c
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect()),
        Err(e) => Err(e.to_string()),
    }
}

/// Is there any set of candidates that holds the request and passes
/// `check_closure`?
fn brute_force(u: &Universe, req: &Request) -> bool {
    let cands: Vec<&Package> = (0..NAMES)
        .filter_map(|i| u.candidate(&name(i)))
        .map(|id| u.package(id))
        .collect();
    (0u32..(1 << cands.len())).any(|mask| {
        let set: Vec<&Package> = cands
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, p)| *p)
            .collect();
        req.include.iter().all(|n| set.iter().any(|p| &p.name == n))
            && !set.iter().any(|p| req.exclude.contains(&p.name))
            && check_closure(&set, "amd64").is_ok()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn closures_are_consistent_and_complete(pkgs in universe_packages(), req in request()) {
        let u = Universe::new(pkgs.clone(), "amd64").unwrap();
        let got = solve(&u, &req);
        match &got {
            Ok(c) => {
                let set: Vec<&Package> = c.ids().into_iter().map(|id| u.package(id)).collect();
                if let Err(v) = check_closure(&set, "amd64") {
                    prop_assert!(false, "inconsistent closure: {v:?}");
                }
                for n in &req.include {
                    prop_assert!(c.packages.iter().any(|p| &p.name == n));
                }
                for p in &c.packages {
                    prop_assert!(!req.exclude.contains(&p.name));
                    prop_assert_eq!(u.candidate(&p.name), Some(p.id));
                }
            }
            Err(SolveError::Unsatisfiable { .. }) | Err(SolveError::IncludedAndExcluded(_)) => {
                prop_assert!(!brute_force(&u, &req), "solver said unsatisfiable, brute force found a closure");
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
        // Input order does not matter.
        let mut rev = pkgs;
        rev.reverse();
        let u2 = Universe::new(rev, "amd64").unwrap();
        prop_assert_eq!(key(&solve(&u2, &req)), key(&got));
    }
}
