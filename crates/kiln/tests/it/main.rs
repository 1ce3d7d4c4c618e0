//! kiln's integration suite: one test binary, driving the real `kiln`
//! executable and, for interop, the real tools (skopeo, umoci, runc,
//! pyspdxtools, cyclonedx-python-lib). `.ci/run` installs those tools and
//! sets KILN_REQUIRE_INTEROP=1 so that a missing tool fails instead of
//! skipping.

mod attest;
mod audit;
mod build;
mod cli;
mod distribute;
mod evidence;
mod export;
mod fim;
mod fleet;
mod habits;
mod hostile;
mod interop;
mod scan;
mod sign;
mod support;
mod verify_key;
