//! Plans: what changes between the running deployment and a new `deploy.toml`,
//! service by service and setting by setting, printed before convergence.

use super::*;

/// One changed setting of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "field")]
pub enum Change {
    Image {
        from: ImageRef,
        to: ImageRef,
    },
    Replicas {
        from: u32,
        to: u32,
    },
    Listen {
        from: SocketAddr,
        to: SocketAddr,
    },
    Port {
        from: u16,
        to: u16,
    },
    Strategy {
        from: Strategy,
        to: Strategy,
    },
    StepPause {
        from: String,
        to: String,
    },
    MaxLifetime {
        from: Option<String>,
        to: Option<String>,
    },
    Health {
        from: Health,
        to: Health,
    },
    Policy {
        from: PathBuf,
        to: PathBuf,
    },
    TmpfsMb {
        from: Option<u32>,
        to: Option<u32>,
    },
    /// Memory, pids and CPU of each instance (`None`: stored before kiln had limits, so its
    /// instances have none).
    Limits {
        from: Option<Limits>,
        to: Option<Limits>,
    },
    /// Variable names only: values may be secrets.
    Env {
        added: Vec<String>,
        removed: Vec<String>,
        changed: Vec<String>,
    },
    /// Secret names only; `changed`: a new value (its HMAC) or `env` flag.
    Secrets {
        added: Vec<String>,
        removed: Vec<String>,
        changed: Vec<String>,
    },
    /// `[service.X.egress]` entries as `to = dest`.
    Egress {
        added: Vec<String>,
        removed: Vec<String>,
        changed: Vec<String>,
    },
}

impl Change {
    /// Whether the change needs new instances (a new release): instances are immutable, so
    /// anything baked into them (image, port, environment, tmpfs size, limits) means replacing
    /// them.
    /// The rest (replicas, listen, strategy, timings, health, policy) applies to the running
    /// release.
    pub fn needs_new_release(&self) -> bool {
        matches!(
            self,
            Change::Image { .. }
                | Change::Port { .. }
                | Change::Env { .. }
                | Change::TmpfsMb { .. }
                | Change::Limits { .. }
                | Change::Secrets { .. }
                | Change::Egress { .. }
        )
    }
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "none".into(), ToString::to_string)
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Image { from, to } => write!(f, "image {from} -> {to}"),
            Change::Replicas { from, to } => write!(f, "replicas {from} -> {to}"),
            Change::Listen { from, to } => write!(f, "listen {from} -> {to}"),
            Change::Port { from, to } => write!(f, "port {from} -> {to}"),
            Change::Strategy { from, to } => write!(f, "strategy {from} -> {to}"),
            Change::StepPause { from, to } => write!(f, "step_pause {from} -> {to}"),
            Change::MaxLifetime { from, to } => {
                write!(f, "max_lifetime {} -> {}", opt(from), opt(to))
            }
            Change::Health { from, to } => write!(f, "health {from} -> {to}"),
            Change::Policy { from, to } => {
                write!(f, "policy {} -> {}", from.display(), to.display())
            }
            Change::TmpfsMb { from, to } => write!(f, "tmpfs_mb {} -> {}", opt(from), opt(to)),
            Change::Limits { from, to } => write!(f, "limits {} -> {}", opt(from), opt(to)),
            Change::Env {
                added,
                removed,
                changed,
            } => write!(f, "env {}", names_diff(added, removed, changed)),
            Change::Secrets {
                added,
                removed,
                changed,
            } => write!(f, "secrets {}", names_diff(added, removed, changed)),
            Change::Egress {
                added,
                removed,
                changed,
            } => write!(f, "egress {}", names_diff(added, removed, changed)),
        }
    }
}

/// `+added -removed ~changed`.
fn names_diff(added: &[String], removed: &[String], changed: &[String]) -> String {
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("+{}", added.join(" +")));
    }
    if !removed.is_empty() {
        parts.push(format!("-{}", removed.join(" -")));
    }
    if !changed.is_empty() {
        parts.push(format!("~{}", changed.join(" ~")));
    }
    parts.join(" ")
}

/// What converging does to one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "changes")]
pub enum ServiceAction {
    Create,
    Update(Vec<Change>),
    Remove,
    Unchanged,
}

/// Per service (sorted by name): what converging from the current to the desired state does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub services: BTreeMap<String, ServiceAction>,
}

impl Plan {
    /// True if converging changes nothing.
    pub fn is_noop(&self) -> bool {
        self.services
            .values()
            .all(|a| matches!(a, ServiceAction::Unchanged))
    }
}

impl fmt::Display for Plan {
    /// One line per service: `+ name: create ...`, `~ name: update ...`, `- name: remove`,
    /// `= name: unchanged`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, action) in &self.services {
            match action {
                ServiceAction::Create => writeln!(f, "+ {name}: create")?,
                ServiceAction::Remove => writeln!(f, "- {name}: remove")?,
                ServiceAction::Unchanged => writeln!(f, "= {name}: unchanged")?,
                ServiceAction::Update(changes) => {
                    let release = if changes.iter().any(Change::needs_new_release) {
                        " (new release)"
                    } else {
                        ""
                    };
                    writeln!(f, "~ {name}: update{release}")?;
                    for c in changes {
                        writeln!(f, "    {c}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The keys only `b` has, only `a` has, and both have with values that `differ`, each shown
/// by `show` (with `b`'s value where both have it).
fn keyed_diff<V>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    differ: impl Fn(&V, &V) -> bool,
    show: impl Fn(&String, &V) -> String,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let only = |x: &BTreeMap<String, V>, y: &BTreeMap<String, V>| {
        x.iter()
            .filter(|(k, _)| !y.contains_key(*k))
            .map(|(k, v)| show(k, v))
            .collect()
    };
    let changed = b
        .iter()
        .filter(|(k, v)| a.get(*k).is_some_and(|w| differ(w, v)))
        .map(|(k, v)| show(k, v))
        .collect();
    (only(b, a), only(a, b), changed)
}

fn diff(a: &ServiceSpec, b: &ServiceSpec) -> Vec<Change> {
    let mut out = Vec::new();
    if a.image != b.image {
        out.push(Change::Image {
            from: a.image.clone(),
            to: b.image.clone(),
        });
    }
    if a.replicas != b.replicas {
        out.push(Change::Replicas {
            from: a.replicas,
            to: b.replicas,
        });
    }
    if a.listen != b.listen {
        out.push(Change::Listen {
            from: a.listen,
            to: b.listen,
        });
    }
    if a.port != b.port {
        out.push(Change::Port {
            from: a.port,
            to: b.port,
        });
    }
    if a.strategy != b.strategy {
        out.push(Change::Strategy {
            from: a.strategy.clone(),
            to: b.strategy.clone(),
        });
    }
    if a.step_pause != b.step_pause {
        out.push(Change::StepPause {
            from: format_duration(a.step_pause),
            to: format_duration(b.step_pause),
        });
    }
    if a.max_lifetime != b.max_lifetime {
        out.push(Change::MaxLifetime {
            from: a.max_lifetime.map(format_duration),
            to: b.max_lifetime.map(format_duration),
        });
    }
    if a.health != b.health {
        out.push(Change::Health {
            from: a.health.clone(),
            to: b.health.clone(),
        });
    }
    if a.policy != b.policy {
        out.push(Change::Policy {
            from: a.policy.clone(),
            to: b.policy.clone(),
        });
    }
    if a.tmpfs_mb != b.tmpfs_mb {
        out.push(Change::TmpfsMb {
            from: a.tmpfs_mb,
            to: b.tmpfs_mb,
        });
    }
    if a.limits != b.limits {
        out.push(Change::Limits {
            from: a.limits,
            to: b.limits,
        });
    }
    if a.env != b.env {
        let (added, removed, changed) = keyed_diff(&a.env, &b.env, |x, y| x != y, |k, _| k.clone());
        out.push(Change::Env {
            added,
            removed,
            changed,
        });
    }
    if crate::secrets::deliveries_differ(&a.secrets, &b.secrets) {
        let (added, removed, changed) = keyed_diff(
            &a.secrets,
            &b.secrets,
            |x, y| x.hmac != y.hmac || x.env != y.env,
            |k, _| k.clone(),
        );
        out.push(Change::Secrets {
            added,
            removed,
            changed,
        });
    }
    if a.egress != b.egress {
        let (added, removed, changed) = keyed_diff(
            &a.egress,
            &b.egress,
            |x, y| x != y,
            |k, v| format!("{k} = {v}"),
        );
        out.push(Change::Egress {
            added,
            removed,
            changed,
        });
    }
    out
}

/// What converging from `current` to `desired` does, per service. `reason` is not compared.
pub fn plan(current: &Deployment, desired: &Deployment) -> Plan {
    let mut services = BTreeMap::new();
    for (name, want) in &desired.services {
        let action = match current.services.get(name) {
            None => ServiceAction::Create,
            Some(have) => {
                let changes = diff(have, want);
                if changes.is_empty() {
                    ServiceAction::Unchanged
                } else {
                    ServiceAction::Update(changes)
                }
            }
        };
        services.insert(name.clone(), action);
    }
    for name in current.services.keys() {
        if !desired.services.contains_key(name) {
            services.insert(name.clone(), ServiceAction::Remove);
        }
    }
    Plan { services }
}
