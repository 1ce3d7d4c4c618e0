//! `kiln rollout pause|resume|abort SERVICE` (manual control of a release in progress) and
//! the arguments of `kiln rollback` (`--now`).

use anyhow::Result;
use kiln_fleet::api::{self, Request, RolloutAction};

use super::{Ctx, print_json};

#[derive(clap::Subcommand)]
pub enum RolloutCmd {
    /// Hold the rollout at its current step (weights unchanged) until resumed or aborted.
    Pause(Target),
    /// Continue a paused rollout (after a pause for too little traffic the step counts as passed).
    Resume(Target),
    /// Abort the rollout: all traffic back to the stable release, the new instances go.
    Abort(Target),
}

#[derive(clap::Args)]
pub struct Target {
    service: String,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    pub service: String,
    /// Return without waiting for the change to converge.
    #[arg(long)]
    pub no_wait: bool,
    /// Switch all traffic at once to the previous verified release (no canary steps, no
    /// analysis window).
    #[arg(long)]
    pub now: bool,
}

impl RolloutCmd {
    /// The command's name and the audit action a failure is recorded as.
    pub fn audit_names(&self) -> (&'static str, Option<&'static str>) {
        match self {
            RolloutCmd::Pause(_) => ("kiln rollout pause", Some("release.pause")),
            RolloutCmd::Resume(_) => ("kiln rollout resume", Some("release.resume")),
            RolloutCmd::Abort(_) => ("kiln rollout abort", Some("release.abort")),
        }
    }
}

pub fn run(ctx: &Ctx, c: RolloutCmd) -> Result<()> {
    let (action, t) = match c {
        RolloutCmd::Pause(t) => (RolloutAction::Pause, t),
        RolloutCmd::Resume(t) => (RolloutAction::Resume, t),
        RolloutCmd::Abort(t) => (RolloutAction::Abort, t),
    };
    let res = api::request(
        &ctx.state_dir,
        &Request::Rollout {
            service: t.service.clone(),
            action,
            reason: ctx.reason.clone(),
        },
    )?;
    if ctx.json {
        return print_json(&res);
    }
    let release = res["release"].as_str().unwrap_or("?");
    match action {
        RolloutAction::Pause => println!("paused the rollout of {release} ({})", t.service),
        RolloutAction::Resume => println!("resumed the rollout of {release} ({})", t.service),
        RolloutAction::Abort => println!(
            "aborting the rollout of {release} ({}): traffic returns to the stable release",
            t.service
        ),
    }
    Ok(())
}
