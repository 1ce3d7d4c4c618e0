//! Compliance frameworks as data: each requirement, what kiln evidence
//! satisfies it, and which audit events and artifacts count.
//!
//! A requirement is a list of [`Need`]s. It is `satisfied` when every need
//! is met by the bundle, `partial` when some are, and `missing` when none
//! are. Needs on events that kiln does not record yet (deploys, drift
//! checks, scans) stay unmet, and are listed as missing, until those events
//! appear in the log.

use serde::{Deserialize, Serialize};

/// Kinds of artifact the bundle can carry (see [`crate::ArtifactKind`]).
pub use crate::artifacts::ArtifactKind;

/// What one need of a requirement asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// At least one in-period event with one of these actions (and, if
    /// given, this outcome).
    Events {
        actions: &'static [&'static str],
        failures_only: bool,
    },
    /// At least one in-period event of any action (the log is active).
    AnyEvent,
    /// Every in-period event has the PCI DSS 10.2.2 fields: user, action,
    /// time (UTC), outcome, origin host, and affected resources or a reason.
    EventFields,
    /// At least one artifact of one of these kinds for the cited images.
    Artifacts(&'static [ArtifactKind]),
    /// At least one image config declaring a `[baseline]` (label
    /// `dev.kiln.baseline`) with its ingress/egress.
    Baseline,
    /// A signed checkpoint and an RFC 9162 inclusion proof for every cited
    /// event.
    SignedLog,
    /// A consistency proof from an older checkpoint to the latest.
    Consistency,
    /// The log's history reaches back at least this many days.
    Retention { days: u64 },
    /// Events of these actions at least every `max_gap_days` days across the
    /// period.
    Periodic {
        actions: &'static [&'static str],
        max_gap_days: u64,
    },
    /// Every image the cited events name is named by digest, not by tag.
    DigestPinned,
}

/// One need: what satisfies it, in words an assessor reads, and how kiln
/// checks it.
#[derive(Debug, Clone, Copy)]
pub struct Need {
    pub what: &'static str,
    pub check: Check,
}

/// A requirement of a framework.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    pub id: &'static str,
    pub title: &'static str,
    /// What kiln provides for it (the assessor's column).
    pub kiln_evidence: &'static str,
    pub needs: &'static [Need],
}

/// A compliance framework.
#[derive(Debug, Clone, Copy)]
pub struct Framework {
    pub id: &'static str,
    pub title: &'static str,
    pub requirements: &'static [Requirement],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Satisfied,
    Partial,
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Satisfied => "satisfied",
            Status::Partial => "partial",
            Status::Missing => "missing",
        }
    }
}

const fn ev(what: &'static str, actions: &'static [&'static str]) -> Need {
    Need {
        what,
        check: Check::Events {
            actions,
            failures_only: false,
        },
    }
}

const fn fail(what: &'static str, actions: &'static [&'static str]) -> Need {
    Need {
        what,
        check: Check::Events {
            actions,
            failures_only: true,
        },
    }
}

const fn art(what: &'static str, kinds: &'static [ArtifactKind]) -> Need {
    Need {
        what,
        check: Check::Artifacts(kinds),
    }
}

const fn need(what: &'static str, check: Check) -> Need {
    Need { what, check }
}

use ArtifactKind as A;

const SBOMS: &[ArtifactKind] = &[A::SbomSpdx, A::SbomCycloneDx];
const SIGNATURES: &[ArtifactKind] = &[A::CosignSignature, A::SigstoreBundle];

const SIGNED_LOG: Need = need(
    "a signed checkpoint (C2SP signed note, Ed25519 log key) and an RFC 9162 inclusion proof for every cited event",
    Check::SignedLog,
);
const CONSISTENCY: Need = need(
    "an RFC 9162 consistency proof from an earlier checkpoint to the latest (the log only grew)",
    Check::Consistency,
);

/// PCI DSS v4.0.
pub const PCI_DSS_4_0: Framework = Framework {
    id: "pci-dss-4.0",
    title: "PCI DSS v4.0",
    requirements: &[
        Requirement {
            id: "1.2.1",
            title: "Configuration standards for network security controls are defined, implemented and maintained",
            kiln_evidence: "declared ingress/egress per image (config label dev.kiln.baseline), enforced per instance, diffs per release",
            needs: &[
                ev(
                    "images built from a spec in the period (image.build)",
                    &["image.build"],
                ),
                need(
                    "image configs declaring the [baseline] ingress/egress",
                    Check::Baseline,
                ),
                ev("enforcement per instance (fleet.apply)", &["fleet.apply"]),
                ev(
                    "baseline diffs per release (release.switch)",
                    &["release.switch"],
                ),
            ],
        },
        Requirement {
            id: "2.2.1",
            title: "Configuration standards are developed, implemented and maintained for all system components",
            kiln_evidence: "baseline checks per image digest; running instances are exactly a verified image",
            needs: &[
                ev(
                    "images built reproducibly from a spec (image.build)",
                    &["image.build"],
                ),
                need(
                    "image configs carrying the security baseline",
                    Check::Baseline,
                ),
                ev(
                    "policy verification of the image digest (image.verify)",
                    &["image.verify"],
                ),
                ev(
                    "instances started from the image digest (instance.start, instance.replace)",
                    &["instance.start", "instance.replace"],
                ),
            ],
        },
        Requirement {
            id: "2.2.2",
            title: "Vendor default accounts are managed; one primary function per server (2.2.3)",
            kiln_evidence: "one image per service with its file manifest and SBOM: nothing else is installed",
            needs: &[
                ev("images built from a spec (image.build)", &["image.build"]),
                art(
                    "file manifest and SBOM of each image",
                    &[A::FileManifest, A::SbomSpdx, A::SbomCycloneDx],
                ),
            ],
        },
        Requirement {
            id: "6.3.1",
            title: "Security vulnerabilities are identified and managed",
            kiln_evidence: "scan results per image digest with the vulnerability database time",
            needs: &[
                ev("vulnerability scans of the images (scan)", &["scan"]),
                art("scan results attached to the image", &[A::ScanResult]),
                art("SBOMs the scans are based on", SBOMS),
            ],
        },
        Requirement {
            id: "6.3.3",
            title: "Critical security patches are installed within one month of release",
            kiln_evidence: "advisory-to-deploy time per fix: scan, patched image, release",
            needs: &[
                ev("vulnerability scans (scan)", &["scan"]),
                ev("patched images (patch.*)", &["patch.*"]),
                ev(
                    "patched releases deployed (release.switch)",
                    &["release.switch"],
                ),
            ],
        },
        Requirement {
            id: "6.5.1",
            title: "Changes to system components in production are made according to established procedures",
            kiln_evidence: "each change: signed image, reasoned approvals, policy verification, deploy with rollback target",
            needs: &[
                ev("signed images (image.sign)", &["image.sign"]),
                ev("reasoned approvals (image.approve)", &["image.approve"]),
                art("signed approval statements", &[A::Approval]),
                ev(
                    "policy verification before deploy (image.verify)",
                    &["image.verify"],
                ),
                ev(
                    "deploys with their rollback target (release.switch, release.rollback)",
                    &["release.switch", "release.rollback"],
                ),
            ],
        },
        Requirement {
            id: "6.5.2",
            title: "Upon completion of a significant change, applicable requirements are confirmed",
            kiln_evidence: "provenance and verification of the new image digest before it runs",
            needs: &[
                art("SLSA provenance of the built images", &[A::Provenance]),
                ev(
                    "policy verification of the new digest (image.verify)",
                    &["image.verify"],
                ),
            ],
        },
        Requirement {
            id: "10.2.1",
            title: "Audit logs are enabled and active for all system components",
            kiln_evidence: "every state-changing kiln command appends an event to the Merkle audit log",
            needs: &[need("audit events recorded in the period", Check::AnyEvent)],
        },
        Requirement {
            id: "10.2.2",
            title: "Audit logs record user, type of event, date and time, success or failure, origin, and affected resource",
            kiln_evidence: "the audit event schema (actor, action, time UTC, outcome, origin host, resources, reason)",
            needs: &[need(
                "every event carries user, action, UTC time, outcome, origin host and affected resources or a reason",
                Check::EventFields,
            )],
        },
        Requirement {
            id: "10.3.2",
            title: "Audit log files are protected to prevent modifications by individuals",
            kiln_evidence: "Merkle log (RFC 6962 hashing) with signed checkpoints; inclusion proofs per event",
            needs: &[SIGNED_LOG],
        },
        Requirement {
            id: "10.3.3",
            title: "Audit log files are promptly backed up to a secure, central, internal log server or media",
            kiln_evidence: "tlog-tiles export of the log for external mirrors and witnesses",
            needs: &[ev(
                "log exported to external storage (log.export)",
                &["log.export"],
            )],
        },
        Requirement {
            id: "10.3.4",
            title: "File integrity monitoring or change-detection is used on audit logs",
            kiln_evidence: "consistency proofs between checkpoints; log verification",
            needs: &[
                CONSISTENCY,
                ev("log verification runs (log.verify)", &["log.verify"]),
            ],
        },
        Requirement {
            id: "10.5.1",
            title: "Audit log history is retained for at least 12 months",
            kiln_evidence: "append-only log from its first event, with signed checkpoints",
            needs: &[
                need(
                    "log history covering at least 365 days",
                    Check::Retention { days: 365 },
                ),
                SIGNED_LOG,
            ],
        },
        Requirement {
            id: "10.7.2",
            title: "Failures of critical security control systems are detected, alerted and addressed promptly",
            kiln_evidence: "verification and drift-check failures recorded with their response",
            needs: &[
                ev(
                    "critical control runs recorded (image.verify, log.verify)",
                    &["image.verify", "log.verify"],
                ),
                ev("drift checks (drift.check)", &["drift.check"]),
                ev(
                    "responses to detected drift (drift.detected, instance.replace)",
                    &["drift.detected", "instance.replace"],
                ),
            ],
        },
        Requirement {
            id: "10.7.3",
            title: "Failures of critical security control systems are responded to promptly",
            kiln_evidence: "each failure event and the replacement or abort that followed, with times",
            needs: &[
                fail(
                    "failures of critical controls recorded (failed image.verify, log.verify, drift.detected)",
                    &["image.verify", "log.verify", "drift.detected"],
                ),
                ev(
                    "the response (instance.replace, release.abort, release.rollback)",
                    &["instance.replace", "release.abort", "release.rollback"],
                ),
            ],
        },
        Requirement {
            id: "11.5.2",
            title: "A change-detection mechanism runs at least weekly and alerts on unauthorized modification",
            kiln_evidence: "drift checks, their schedule, alerts and the replacements they caused",
            needs: &[
                ev("drift checks (drift.check)", &["drift.check"]),
                need(
                    "drift checks at least every 7 days across the period",
                    Check::Periodic {
                        actions: &["drift.check"],
                        max_gap_days: 7,
                    },
                ),
                ev(
                    "alerts and replacements (drift.detected, instance.replace)",
                    &["drift.detected", "instance.replace"],
                ),
            ],
        },
        Requirement {
            id: "12.5.1",
            title: "An inventory of system components in scope is maintained and kept current",
            kiln_evidence: "every image digest with its SBOM and where it runs",
            needs: &[
                ev(
                    "image digests built or imported (image.build, image.import, image.pull)",
                    &["image.build", "image.import", "image.pull"],
                ),
                art("an SBOM (SPDX or CycloneDX) per image", SBOMS),
                ev(
                    "where each image runs (fleet.apply, instance.start)",
                    &["fleet.apply", "instance.start"],
                ),
            ],
        },
    ],
};

/// SOC 2 (2017 Trust Services Criteria, common criteria).
pub const SOC2: Framework = Framework {
    id: "soc2",
    title: "SOC 2 Trust Services Criteria (Security)",
    requirements: &[
        Requirement {
            id: "CC6.1",
            title: "Logical access security over protected information assets",
            kiln_evidence: "signing keys, signatures by key id, verification against a trust policy",
            needs: &[
                ev("signing keys created (key.generate)", &["key.generate"]),
                ev("images signed by a key (image.sign)", &["image.sign"]),
                art("signatures (cosign .sig, Sigstore bundles)", SIGNATURES),
                ev("policy verification (image.verify)", &["image.verify"]),
            ],
        },
        Requirement {
            id: "CC7.1",
            title: "Detection of configuration changes and newly discovered vulnerabilities",
            kiln_evidence: "drift checks, vulnerability scans, verification of every image digest",
            needs: &[
                ev("drift checks (drift.check)", &["drift.check"]),
                ev("vulnerability scans (scan)", &["scan"]),
                ev("image verification (image.verify)", &["image.verify"]),
            ],
        },
        Requirement {
            id: "CC7.2",
            title: "Monitoring of system components for anomalies",
            kiln_evidence: "tamper-evident audit log, drift alerts, verification failures",
            needs: &[
                SIGNED_LOG,
                CONSISTENCY,
                ev(
                    "anomalies detected (drift.detected, failed image.verify)",
                    &["drift.detected", "image.verify"],
                ),
            ],
        },
        Requirement {
            id: "CC8.1",
            title: "Changes are authorized, designed, developed, tested, approved and implemented",
            kiln_evidence: "provenance, reasoned approvals, verification and deploy of each image digest",
            needs: &[
                ev("builds (image.build)", &["image.build"]),
                art("SLSA provenance", &[A::Provenance]),
                ev("approvals with reasons (image.approve)", &["image.approve"]),
                art("signed approval statements", &[A::Approval]),
                ev("verification (image.verify)", &["image.verify"]),
                ev("deploys (release.switch)", &["release.switch"]),
            ],
        },
    ],
};

/// NIST SP 800-190, Application Container Security Guide, section 4.
pub const NIST_800_190: Framework = Framework {
    id: "nist-800-190",
    title: "NIST SP 800-190 Application Container Security Guide",
    requirements: &[
        Requirement {
            id: "4.1.1",
            title: "Image vulnerabilities",
            kiln_evidence: "scan results per image digest",
            needs: &[
                ev("vulnerability scans (scan)", &["scan"]),
                art("SBOMs of the images", SBOMS),
            ],
        },
        Requirement {
            id: "4.1.2",
            title: "Image configuration defects",
            kiln_evidence: "baseline per image, verified against policy",
            needs: &[
                need(
                    "image configs carrying the security baseline",
                    Check::Baseline,
                ),
                ev("policy verification (image.verify)", &["image.verify"]),
            ],
        },
        Requirement {
            id: "4.1.5",
            title: "Use of untrusted images",
            kiln_evidence: "signature and provenance checks before run",
            needs: &[
                ev("images signed (image.sign)", &["image.sign"]),
                art("signatures (cosign .sig, Sigstore bundles)", SIGNATURES),
                art("SLSA provenance", &[A::Provenance]),
                ev("verification before run (image.verify)", &["image.verify"]),
            ],
        },
        Requirement {
            id: "4.2.1",
            title: "Insecure connections to registries",
            kiln_evidence: "push and pull over TLS with every digest verified",
            needs: &[ev(
                "registry transfers (image.push, image.pull)",
                &["image.push", "image.pull"],
            )],
        },
        Requirement {
            id: "4.2.2",
            title: "Stale images in registries",
            kiln_evidence: "images named by digest, not by tag",
            needs: &[
                need(
                    "every image in the cited events named by sha256 digest",
                    Check::DigestPinned,
                ),
                ev("deploys by digest (release.switch)", &["release.switch"]),
            ],
        },
        Requirement {
            id: "4.4.4",
            title: "App vulnerabilities (runtime drift, read-only root filesystems)",
            kiln_evidence: "runtime drift detection and replacement; read-only, shell-less instances",
            needs: &[
                ev("drift checks (drift.check)", &["drift.check"]),
                ev(
                    "read-only instances started (instance.start)",
                    &["instance.start"],
                ),
                ev(
                    "drifted instances replaced (instance.replace)",
                    &["instance.replace"],
                ),
            ],
        },
    ],
};

/// GDPR Art. 32, security of processing: the parts a platform can evidence.
pub const GDPR_ART32: Framework = Framework {
    id: "gdpr-art32",
    title: "GDPR Article 32 (security of processing)",
    requirements: &[
        Requirement {
            id: "32(1)(b)",
            title: "Ongoing confidentiality, integrity, availability and resilience of processing systems",
            kiln_evidence: "only verified images run, read-only and isolated; drift is replaced; instances heal; privacy-relevant changes roll out all-or-nothing",
            needs: &[
                ev("verification before run (image.verify)", &["image.verify"]),
                ev(
                    "read-only, network-isolated instances started (instance.start)",
                    &["instance.start"],
                ),
                ev("drift checks (drift.check)", &["drift.check"]),
                ev(
                    "failed or drifted instances replaced (instance.replace)",
                    &["instance.replace"],
                ),
                ev(
                    "releases switched as a whole (release.switch)",
                    &["release.switch"],
                ),
                need(
                    "image configs carrying the privacy baseline (log level, TLS, ingress/egress, encryption, PII)",
                    Check::Baseline,
                ),
            ],
        },
        Requirement {
            id: "32(1)(c)",
            title: "Ability to restore availability in a timely manner",
            kiln_evidence: "rollbacks and instance replacement through the normal rollout path",
            needs: &[
                ev(
                    "instances replaced after failures (instance.replace)",
                    &["instance.replace"],
                ),
                ev(
                    "rollbacks available and used (release.rollback)",
                    &["release.rollback"],
                ),
            ],
        },
        Requirement {
            id: "32(1)(d)",
            title: "Regularly testing, assessing and evaluating the effectiveness of the measures",
            kiln_evidence: "scheduled drift re-hashes, vulnerability scans, chaos runs, verifiable audit log",
            needs: &[
                ev("drift checks (drift.check)", &["drift.check"]),
                ev("vulnerability scans (scan)", &["scan"]),
                ev(
                    "resilience tests (chaos.start, chaos.kill)",
                    &["chaos.start", "chaos.kill"],
                ),
                SIGNED_LOG,
                CONSISTENCY,
            ],
        },
        Requirement {
            id: "32(4)",
            title: "Persons with access act only on instruction (accountability of changes)",
            kiln_evidence: "every change attributed to a user or key, with a reason and approvals",
            needs: &[
                need(
                    "every event with user, UTC time, host, and resources or a reason",
                    Check::EventFields,
                ),
                ev("approvals with reasons (image.approve)", &["image.approve"]),
            ],
        },
    ],
};

/// Every framework, by id.
pub const FRAMEWORKS: &[&Framework] = &[&PCI_DSS_4_0, &SOC2, &NIST_800_190, &GDPR_ART32];

/// The framework with this id (`pci-dss-4.0`, `soc2`, `nist-800-190`, `gdpr-art32`).
pub fn framework(id: &str) -> Option<&'static Framework> {
    FRAMEWORKS.iter().copied().find(|f| f.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_requirement_has_needs() {
        for f in FRAMEWORKS {
            let mut ids: Vec<_> = f.requirements.iter().map(|r| r.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), f.requirements.len(), "{}", f.id);
            assert!(f.requirements.iter().all(|r| !r.needs.is_empty()));
        }
        assert!(framework("pci-dss-4.0").is_some());
        assert!(framework("gdpr-art32").is_some());
        assert!(framework("gdpr").is_none());
    }
}
