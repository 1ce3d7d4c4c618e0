//! kiln's integration suite: one test binary, driving the real `kiln`
//! executable and, for interop, the real tools (skopeo, umoci, runc,
//! pyspdxtools, cyclonedx-python-lib). Tests that need root or such a tool
//! are `#[ignore = "needs ..."]`: a plain `cargo test` reports them as
//! ignored; `scripts/test.sh` installs the tools and runs them too
//! (`--include-ignored`), where a missing tool fails the test.

mod advisories;
mod attest;
mod audit;
mod build;
mod cache;
mod cli;
mod debrepo;
mod distribute;
mod evidence;
mod export;
mod fim;
mod fleet;
mod fleet_analysis;
mod fleet_dashboard;
mod fleet_egress;
mod fleet_history;
mod fleet_limits;
mod fleet_secrets;
mod habits;
mod hostile;
mod interop;
mod lock;
mod packages;
mod patch_repo;
#[path = "../../../repo/tests/support/mod.rs"]
mod repo_support;
mod scan;
mod sign;
mod support;
mod verify_key;
