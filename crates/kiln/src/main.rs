//! `kiln`: the command-line front end. Thin by design: every capability
//! lives in a library crate named after its pipeline stage.

#![warn(clippy::undocumented_unsafe_blocks)]

mod cmd;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Immutable infrastructure: reproducible images, verified deploys, drift
/// detection and audit evidence.
#[derive(Parser)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
    /// State directory (store, caches). Default: /var/lib/kiln as root,
    /// else $XDG_DATA_HOME/kiln.
    #[arg(long, global = true, env = "KILN_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Why this change is made (a change ticket, a sentence), recorded in the
    /// audit log.
    #[arg(long, global = true, env = "KILN_REASON")]
    reason: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a reproducible OCI image from a spec; prints the digest last.
    Build(cmd::build::Args),
    /// Resolve the spec's [packages] into kiln.lock (the whole closure) and print a summary.
    Lock(cmd::lock::Args),
    /// List the images in the store (--all: also signatures, referrers, untagged images).
    Images(cmd::images::Args),
    /// Show an image's config, layers, SBOM summary and annotations.
    Inspect(cmd::inspect::Args),
    /// Print an image's SBOM (SPDX 2.3 or CycloneDX 1.5) or file manifest.
    Sbom(cmd::sbom::Args),
    /// Manage signing keys.
    #[command(subcommand)]
    Key(cmd::key::KeyCmd),
    /// Push an image and the artifacts attached to it to a registry.
    Push(cmd::push::Args),
    /// Pull an image and its attached artifacts, verifying every digest.
    Pull(cmd::pull::Args),
    /// Sign an image in the store (cosign .sig manifest and Sigstore bundle referrer).
    Sign(cmd::sign::Args),
    /// Verify an image against a trust policy; exit 0 only if every rule holds.
    Verify(cmd::verify::Args),
    /// Approve an image digest: a signed in-toto approval with a reason, attached as a referrer.
    #[command(
        after_help = "--reason is required here: it is signed into the approval and recorded in the audit log."
    )]
    Approve(cmd::approve::Args),
    /// Export an image and everything attached to it (referrers, signatures) as an OCI layout.
    Export(cmd::export::Args),
    /// Import an OCI layout, oci-archive or docker-archive into the store, verifying every blob.
    Import(cmd::import::Args),
    /// Remove untagged images past --keep-untagged and blobs nothing references.
    Gc(cmd::gc::Args),
    /// The tamper-evident audit log: show, verify, checkpoints, proofs, export.
    #[command(subcommand)]
    Log(cmd::log::LogCmd),
    /// Assemble (or verify) an auditor's evidence bundle from the audit log.
    Evidence(cmd::evidence::Args),
    /// Run the fleet daemon: reconciler, supervisor of runc instances, front proxies, API.
    Serve(cmd::fleet::ServeArgs),
    /// Apply a deploy.toml: print the plan, then converge (only verified images run).
    Apply(cmd::fleet::ApplyArgs),
    /// Services, releases and instances of the running fleet; exit 0 all healthy,
    /// 1 daemon unreachable, 3 degraded, 4 the latest release of a service aborted or failed.
    Status(cmd::fleet::StatusArgs),
    /// The releases of a service: image, strategy, steps, analysis, outcome, who, why, durations.
    History(cmd::history::HistoryArgs),
    /// Roll a service back to its previous release (same verification and rollout rules).
    Rollback(cmd::rollout::RollbackArgs),
    /// Manual control of a release in progress: pause, resume, abort.
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCmd),
    /// Output of a service's instances, streamed from kiln.
    Logs(cmd::fleet::LogsArgs),
    /// An isolated debug instance of the service's image with a shell, out of rotation.
    Debug(cmd::fleet::DebugArgs),
    /// Kill random instances of a service while measuring availability through its proxy.
    Chaos(cmd::fleet::ChaosArgs),
    /// Drain and destroy a service.
    Destroy(cmd::fleet::ServiceArgs),
    /// Drift of running instances: check now, or show the history.
    #[command(subcommand)]
    Drift(cmd::drift::DriftCmd),
    /// File integrity monitoring of any host or VM tree (AIDE-compatible exit status).
    #[command(subcommand)]
    Fim(cmd::drift::FimCmd),
    /// Known vulnerabilities (OSV advisories) and baseline findings of an image; exit 1 if the gate fails.
    Scan(cmd::scan::ScanArgs),
    /// The OSV advisory feed `kiln scan` uses without --advisories: sync it, show it.
    #[command(subcommand)]
    Advisories(cmd::advisories::AdvisoriesCmd),
    /// The package cache shared by builds: show it, prune it.
    #[command(subcommand)]
    Cache(cmd::cache::CacheCmd),
    /// Patching is rebuilding: pin fixed packages (kiln.lock), rebuild, scan, sign, roll out.
    Patch(cmd::scan::PatchArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(cmd::completions::CompletionsArgs),
    /// Write man pages (kiln.1, kiln-build.1, ...) to --out, or kiln.1 to stdout.
    Man(cmd::completions::ManArgs),
}

impl Command {
    /// The subcommand as audit events name it, and the action a failure of
    /// it is recorded as (`None`: read-only, failures are not audit events).
    fn audit_names(&self) -> (&'static str, Option<&'static str>) {
        match self {
            Command::Build(_) => ("kiln build", Some("image.build")),
            Command::Lock(_) => ("kiln lock", None),
            Command::Images(_) => ("kiln images", None),
            Command::Inspect(_) => ("kiln inspect", None),
            Command::Sbom(_) => ("kiln sbom", None),
            Command::Key(_) => ("kiln key generate", Some("key.generate")),
            Command::Push(_) => ("kiln push", Some("image.push")),
            Command::Pull(_) => ("kiln pull", Some("image.pull")),
            Command::Sign(_) => ("kiln sign", Some("image.sign")),
            Command::Verify(_) => ("kiln verify", Some("image.verify")),
            Command::Approve(_) => ("kiln approve", Some("image.approve")),
            Command::Export(_) => ("kiln export", Some("image.export")),
            Command::Import(_) => ("kiln import", Some("image.import")),
            Command::Gc(_) => ("kiln gc", Some("store.gc")),
            Command::Completions(_) => ("kiln completions", None),
            Command::Man(_) => ("kiln man", None),
            Command::Log(c) => (c.command_name(), c.failure_action()),
            Command::Evidence(a) => (
                cmd::evidence::command_name(a),
                cmd::evidence::failure_action(a),
            ),
            Command::Serve(_) => ("kiln serve", None),
            Command::Apply(_) => ("kiln apply", Some("fleet.apply")),
            Command::Status(_) => ("kiln status", None),
            Command::History(_) => ("kiln history", None),
            Command::Rollback(_) => ("kiln rollback", Some("release.rollback")),
            Command::Rollout(c) => c.audit_names(),
            Command::Logs(_) => ("kiln logs", None),
            Command::Debug(_) => ("kiln debug", Some("debug.start")),
            Command::Chaos(_) => ("kiln chaos", Some("chaos.start")),
            Command::Destroy(_) => ("kiln destroy", Some("fleet.destroy")),
            Command::Drift(cmd::drift::DriftCmd::Check(_)) => ("kiln drift check", None),
            Command::Drift(cmd::drift::DriftCmd::History) => ("kiln drift history", None),
            Command::Fim(cmd::drift::FimCmd::Init(_)) => ("kiln fim init", Some("fim.init")),
            Command::Fim(cmd::drift::FimCmd::Check(_)) => ("kiln fim check", None),
            Command::Scan(_) => ("kiln scan", Some("scan")),
            Command::Advisories(c) => (c.command_name(), c.failure_action()),
            Command::Cache(c) => (c.command_name(), None),
            Command::Patch(a) => (
                cmd::scan::patch_command_name(a),
                cmd::scan::patch_failure_action(a),
            ),
        }
    }
}

fn main() -> ExitCode {
    // Behave like other Unix tools when stdout is a closed pipe
    // (`kiln log show | head`): end quietly instead of panicking.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let state_dir = cli.state_dir.clone().unwrap_or_else(default_state_dir);
    let (command, failure_action) = cli.command.audit_names();
    let ctx = cmd::Ctx::new(state_dir, cli.json, cli.reason.clone(), command.to_string());
    // A change that cannot be recorded must not happen: check the audit log
    // accepts appends before any state-changing command starts.
    if failure_action.is_some() && !matches!(cli.command, Command::Log(_)) {
        let ready = ctx.audit_log().and_then(|l| match l.log().poisoned() {
            Some(why) => Err(anyhow::anyhow!(
                "the audit log refuses appends ({why}); refusing to make changes that cannot be recorded — run `kiln log verify`"
            )),
            None => Ok(()),
        });
        if let Err(e) = ready {
            eprintln!("kiln: error: {e:#}");
            return ExitCode::from(1);
        }
    }
    let res = match cli.command {
        Command::Build(a) => cmd::build::run(&ctx, a),
        Command::Lock(a) => cmd::lock::run(&ctx, a),
        Command::Images(a) => cmd::images::run(&ctx, a),
        Command::Inspect(a) => cmd::inspect::run(&ctx, a),
        Command::Sbom(a) => cmd::sbom::run(&ctx, a),
        Command::Key(k) => cmd::key::run(&ctx, k),
        Command::Push(a) => cmd::push::run(&ctx, a),
        Command::Pull(a) => cmd::pull::run(&ctx, a),
        Command::Sign(a) => cmd::sign::run(&ctx, a),
        Command::Verify(a) => cmd::verify::run(&ctx, a),
        Command::Approve(a) => cmd::approve::run(&ctx, a),
        Command::Export(a) => cmd::export::run(&ctx, a),
        Command::Import(a) => cmd::import::run(&ctx, a),
        Command::Gc(a) => cmd::gc::run(&ctx, a),
        Command::Completions(a) => cmd::completions::completions(Cli::command(), a),
        Command::Man(a) => cmd::completions::man(Cli::command(), a),
        Command::Log(c) => cmd::log::run(&ctx, c),
        Command::Evidence(a) => cmd::evidence::run(&ctx, a),
        Command::Serve(a) => cmd::fleet::serve(&ctx, a),
        Command::Apply(a) => cmd::fleet::apply(&ctx, a),
        Command::Status(a) => cmd::fleet::status(&ctx, a),
        Command::History(a) => cmd::history::run(&ctx, a),
        Command::Rollback(a) => cmd::fleet::rollback(&ctx, a),
        Command::Rollout(c) => cmd::rollout::run(&ctx, c),
        Command::Logs(a) => cmd::fleet::logs(&ctx, a),
        Command::Debug(a) => cmd::fleet::debug(&ctx, a),
        Command::Chaos(a) => cmd::fleet::chaos(&ctx, a),
        Command::Destroy(a) => cmd::fleet::destroy(&ctx, a),
        Command::Drift(c) => cmd::drift::run(&ctx, c),
        Command::Fim(c) => cmd::drift::fim(&ctx, c),
        Command::Scan(a) => cmd::scan::scan(&ctx, a),
        Command::Advisories(c) => cmd::advisories::run(&ctx, c),
        Command::Cache(c) => cmd::cache::run(&ctx, c),
        Command::Patch(a) => cmd::scan::patch(&ctx, a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain = error_chain(&e);
            eprintln!("kiln: error: {}", chain[0]);
            for cause in &chain[1..] {
                eprintln!("  caused by: {cause}");
            }
            // A failed change is an audit event too (PCI DSS 10.2.1.x):
            // recorded with the error chain, best effort.
            if let Some(action) = failure_action.filter(|a| !ctx.failure_recorded(a)) {
                let why = chain.join(": ");
                if let Err(le) = ctx.record_failure(action, &why) {
                    eprintln!(
                        "kiln: warning: could not record the failure in the audit log: {le:#}"
                    );
                }
            }
            ExitCode::from(1)
        }
    }
}

/// The messages of an error and its causes, each said once. Library errors
/// follow one convention — a variant with a `#[source]` may also show the
/// source's text in its own message (`{path}: {source}`) — so a cause whose
/// text its parent's message already contains is not repeated.
fn error_chain(e: &anyhow::Error) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in e.chain() {
        let msg = c.to_string();
        if out.last().is_some_and(|p| p.contains(&msg)) || msg.is_empty() {
            continue;
        }
        out.push(msg);
    }
    if out.is_empty() {
        out.push(e.to_string());
    }
    out
}

fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("kiln");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/kiln"),
        None => PathBuf::from(".kiln"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error in the `{path}: {source}` + `#[source]` convention.
    #[derive(Debug)]
    struct Embeds {
        path: String,
        source: std::io::Error,
    }
    impl std::fmt::Display for Embeds {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.path, self.source)
        }
    }
    impl std::error::Error for Embeds {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Embeds {
            path: "/x/key".into(),
            source: io,
        })
        .context("reading the signing key");
        let chain = error_chain(&e);
        assert_eq!(
            chain,
            [
                "reading the signing key",
                "/x/key: No such file or directory"
            ]
        );
        // A cause that says something new is kept.
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&e), ["outer", "inner"]);
    }

    #[test]
    fn reason_help_names_approve_only_where_it_applies() {
        let cmd = Cli::command();
        let help = |c: &clap::Command| {
            c.get_arguments()
                .find(|a| a.get_id() == "reason")
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        assert!(!help(&cmd).contains("required by"), "{}", help(&cmd));
        let mut approve = cmd.find_subcommand("approve").unwrap().clone();
        let text = approve.render_long_help().to_string();
        assert!(text.contains("--reason is required here"), "{text}");
        let mut build = cmd.find_subcommand("build").unwrap().clone();
        assert!(!build.render_long_help().to_string().contains("required"));
    }
}
