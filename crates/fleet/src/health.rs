//! Whether a service is healthy, as `kiln status` reports it: the state of
//! each service (`healthy`, `degraded`, `failed`), decided from a few facts
//! of the daemon's status, and the exit code of the whole answer.
//!
//! Exit codes of `kiln status`: 0 every service converged with as many
//! healthy instances as replicas; 3 a service is degraded (fewer healthy
//! than replicas, a rollout in progress or paused, waiting for secrets,
//! crash-loop backoff, being destroyed); 4 the latest release of a service
//! aborted, failed or was refused (4 wins over 3); 1 (the command's ordinary
//! failure) when the daemon cannot be reached.

use serde::{Deserialize, Serialize};

/// `kiln status`: a service is degraded.
pub const EXIT_DEGRADED: i32 = 3;
/// `kiln status`: the latest release of a service aborted or failed.
pub const EXIT_FAILED: i32 = 4;

/// A service's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceHealth {
    Healthy,
    Degraded,
    Failed,
}

/// What the state of a service is decided from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Desired replicas; `None` while the service is being destroyed.
    pub replicas: Option<u32>,
    /// Healthy instances of the active release in rotation.
    pub healthy: usize,
    /// Nothing left to do: no rollout, no pending release, none retiring.
    pub converged: bool,
    /// The latest release aborted, failed or was refused (not retried
    /// until a new apply).
    pub failed: bool,
    /// A rollout is in progress.
    pub rolling_out: bool,
    /// The rollout in progress is paused (waiting for `kiln rollout resume|abort`).
    pub paused: bool,
    /// Secrets the daemon does not hold (it restarted; waiting for an apply).
    pub secrets_missing: usize,
    /// New instances are held back (crash-loop backoff).
    pub backoff: bool,
}

/// The state of one service, with why when it is not healthy.
pub fn judge(f: &Facts) -> (ServiceHealth, Vec<String>) {
    let mut why = Vec::new();
    if f.failed && !f.rolling_out {
        why.push("the latest release aborted or failed".to_string());
        return (ServiceHealth::Failed, why);
    }
    match f.replicas {
        None => why.push("being destroyed".to_string()),
        Some(n) if f.healthy < n as usize => {
            why.push(format!("{} of {n} healthy", f.healthy));
        }
        Some(_) => {}
    }
    if f.paused {
        why.push("rollout paused".to_string());
    } else if f.rolling_out {
        why.push("rollout in progress".to_string());
    }
    if f.secrets_missing > 0 {
        why.push(format!("waiting for {} secret(s)", f.secrets_missing));
    }
    if f.backoff {
        why.push("crash-loop backoff".to_string());
    }
    if why.is_empty() && !f.converged {
        why.push("not converged".to_string());
    }
    if why.is_empty() {
        (ServiceHealth::Healthy, why)
    } else {
        (ServiceHealth::Degraded, why)
    }
}

/// The exit code of a status answer over these services' states: 0, or
/// [`EXIT_DEGRADED`], or [`EXIT_FAILED`] (which wins).
pub fn exit_code(states: impl IntoIterator<Item = ServiceHealth>) -> i32 {
    states.into_iter().fold(0, |code, s| match s {
        ServiceHealth::Healthy => code,
        ServiceHealth::Degraded => code.max(EXIT_DEGRADED),
        ServiceHealth::Failed => EXIT_FAILED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(healthy: usize) -> Facts {
        Facts {
            replicas: Some(2),
            healthy,
            converged: healthy == 2,
            ..Facts::default()
        }
    }

    #[test]
    fn converged_with_all_replicas_healthy_is_healthy() {
        assert_eq!(judge(&serving(2)), (ServiceHealth::Healthy, vec![]));
        assert_eq!(exit_code([]), 0);
        assert_eq!(exit_code([ServiceHealth::Healthy; 3]), 0);
    }

    #[test]
    fn degraded_covers_missing_replicas_rollouts_secrets_and_backoff() {
        let (s, why) = judge(&serving(0));
        assert_eq!(s, ServiceHealth::Degraded);
        assert_eq!(why, ["0 of 2 healthy"]);
        let cases = [
            Facts {
                rolling_out: true,
                converged: false,
                ..serving(2)
            },
            Facts {
                rolling_out: true,
                paused: true,
                converged: false,
                ..serving(2)
            },
            Facts {
                secrets_missing: 1,
                ..serving(2)
            },
            Facts {
                backoff: true,
                ..serving(2)
            },
            Facts {
                replicas: None,
                ..serving(2)
            },
            Facts {
                converged: false,
                ..serving(2)
            },
        ];
        for f in cases {
            let (s, why) = judge(&f);
            assert_eq!(s, ServiceHealth::Degraded, "{f:?}");
            assert!(!why.is_empty());
        }
        let (_, why) = judge(&Facts {
            rolling_out: true,
            paused: true,
            ..serving(1)
        });
        assert_eq!(why, ["1 of 2 healthy", "rollout paused"]);
    }

    #[test]
    fn an_aborted_latest_release_fails_and_wins_over_degraded() {
        // Aborted canary: the old release still serves all replicas.
        let aborted = Facts {
            failed: true,
            ..serving(2)
        };
        assert_eq!(judge(&aborted).0, ServiceHealth::Failed);
        // A new apply started another rollout: no longer failed.
        let retried = Facts {
            rolling_out: true,
            ..aborted.clone()
        };
        assert_eq!(judge(&retried).0, ServiceHealth::Degraded);
        use ServiceHealth::*;
        assert_eq!(exit_code([Healthy, Degraded]), EXIT_DEGRADED);
        assert_eq!(exit_code([Degraded, Failed, Degraded]), EXIT_FAILED);
        assert_eq!(exit_code([Failed, Healthy]), EXIT_FAILED);
    }
}
