//! The `fleet.egress` audit: every minute, one event per instance whose egress counters
//! changed since its last event, and always a final one when the instance goes (its
//! forwarder is closed then), changed or not. Counts only, never payloads.

use std::collections::HashMap;
use std::sync::Arc;

use kiln_audit::{Event, Resource};

use super::{Shared, lock};
use crate::egress::forward::{Egress, RouteStats};

/// How often changed counters are recorded, in ms.
const EVERY_MS: u64 = 60_000;

/// The forwarders the audit follows, by instance id.
#[derive(Default)]
pub(super) struct Followed {
    last: u64,
    open: HashMap<String, (String, Arc<Egress>)>,
}

impl Shared {
    /// Follow new forwarders, close and report those whose instance went, and report changed
    /// counters when a period has passed. Cheap when nothing is due; called after each tick.
    pub(super) fn egress_audit(&self) {
        let now = self.clock.now_ms();
        let live: Vec<(String, String, Arc<Egress>)> = {
            let w = lock(&self.world);
            w.st.services
                .iter()
                .flat_map(|(name, svc)| svc.instances.keys().map(move |id| (name, id)))
                .filter_map(|(name, id)| {
                    let eg = w.live.get(id)?.watch.egress.clone()?;
                    Some((name.clone(), id.clone(), eg))
                })
                .collect()
        };
        let mut events = Vec::new();
        {
            let mut f = lock(&self.egress);
            let gone: Vec<String> = f
                .open
                .keys()
                .filter(|id| !live.iter().any(|(_, i, _)| i == *id))
                .cloned()
                .collect();
            for id in gone {
                if let Some((service, eg)) = f.open.remove(&id) {
                    eg.close();
                    let _ = eg.audit_delta();
                    events.push(self.egress_event(&service, &id, &eg.stats(), true));
                }
            }
            for (service, id, eg) in live {
                f.open.entry(id).or_insert((service, eg));
            }
            if now >= f.last.saturating_add(EVERY_MS) {
                f.last = now;
                for (id, (service, eg)) in &f.open {
                    if let Some(d) = eg.audit_delta() {
                        events.push(self.egress_event(service, id, &d, false));
                    }
                }
            }
        }
        for e in events {
            self.record(e);
        }
    }

    fn egress_event(&self, service: &str, id: &str, stats: &[RouteStats], last: bool) -> Event {
        self.event("fleet.egress", service)
            .resource(Resource::new("instance", id))
            .detail(
                "egress",
                serde_json::to_value(stats).unwrap_or(serde_json::Value::Null),
            )
            .detail("final", last)
    }
}
