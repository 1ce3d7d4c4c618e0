//! Drift detection's machinery (no world lock here): inotify watchers per
//! unpacked root filesystem, inode records, file baselines, the full
//! re-hash and the metadata sweep, runtime checks and quarantine. The
//! daemon's use of it (when to check, marking instances, events) is in
//! `drift_apply.rs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_oci::{Digest, Store};
use serde_json::{Value, json};

use super::clock::Clock;
use super::host::{HostError, Quarantine};
use super::lock;
use crate::state::{Db, Instance};

/// Paths of a rootfs that are mount points in every instance.
const MOUNT_POINTS: [&str; 5] = ["/proc", "/sys", "/dev", "/tmp", "/run"];

/// What a drift check of an image's rootfs leaves out: the [`MOUNT_POINTS`] (whole subtrees).
fn ignored_paths() -> Vec<String> {
    MOUNT_POINTS.iter().map(|p| p.to_string()).collect()
}

/// The `/etc/hosts` mount point kiln makes in a shared rootfs for instances with declared
/// egress when the image has none (the instance's own hosts file is bound over it): exactly
/// those paths are left out of a drift diff, never a subtree, and only while they are what
/// kiln made (`/etc` a directory, `/etc/hosts` an empty regular file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct HostsMountPoint {
    /// The image has no `/etc`: kiln may have made the directory.
    etc: bool,
    /// The image has no `/etc/hosts`: kiln may have made the empty file.
    hosts: bool,
}

impl HostsMountPoint {
    fn of(manifest: &kiln_sbom::FileManifest) -> HostsMountPoint {
        let has = |p: &str| manifest.entries.iter().any(|e| e.path == p);
        HostsMountPoint {
            etc: !has("/etc"),
            hosts: !has("/etc/hosts"),
        }
    }

    /// Whether `added` (a path in the tree but not in the image) is what kiln made.
    fn made_by_kiln(&self, added: &kiln_drift::Item) -> bool {
        use kiln_drift::Kind;
        match added.path.as_str() {
            "/etc" => self.etc && added.attrs.kind == Kind::Dir,
            "/etc/hosts" => {
                self.hosts && added.attrs.kind == Kind::File && added.attrs.size == Some(0)
            }
            _ => false,
        }
    }

    /// `diff` without kiln's own mount point; `None` when nothing else differs.
    fn forgive(&self, mut diff: kiln_drift::Diff) -> Option<kiln_drift::Diff> {
        diff.added.retain(|i| !self.made_by_kiln(i));
        (diff.exit_code() != 0).then_some(diff)
    }
}

/// Why a drift check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Oci(#[from] kiln_oci::OciError),
    #[error("{digest}: {source}")]
    Image {
        digest: String,
        #[source]
        source: kiln_oci::OciError,
    },
    #[error(transparent)]
    Sbom(#[from] kiln_sbom::SbomError),
    #[error("{0} has no file manifest to compare against")]
    NoManifest(String),
    #[error(transparent)]
    Drift(#[from] kiln_drift::DriftError),
    #[error("{} has no parent directory", .0.display())]
    NoParent(PathBuf),
    #[error("creating {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("moving {} to {}: {source}", from.display(), to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What an instance of one image must look like.
pub(super) struct Baseline {
    manifest: kiln_sbom::FileManifest,
    /// The manifest's entries as a drift baseline (for the sweep).
    entries: Vec<kiln_drift::Entry>,
    /// path → sha256 of regular files.
    files: HashMap<String, String>,
    /// Declared ports (image config and `[baseline] ingress`), on any address.
    ports: Vec<u16>,
    /// Where kiln's egress listeners are inside each instance (the addresses depend only on
    /// the declared names: see [`crate::egress::routes`]), each allowed at exactly that
    /// address.
    egress_via: Vec<std::net::SocketAddr>,
    /// Paths the drift checks leave out ([`ignored_paths`]).
    ignore: Vec<String>,
    /// The `/etc/hosts` mount point kiln may have made.
    hosts: HostsMountPoint,
}

impl Baseline {
    fn ignore(&self) -> Vec<&str> {
        self.ignore.iter().map(String::as_str).collect()
    }
}

/// How often every unpacked root filesystem is fully re-hashed (PCI DSS
/// asks for at least weekly). `KILN_DRIFT_FULL_SECS` overrides it.
fn full_scan_interval() -> Duration {
    std::env::var("KILN_DRIFT_FULL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs)
}

/// How often every unpacked root filesystem gets the cheap metadata sweep
/// (`lstat` of every path: inode numbers and link counts, which inotify on
/// the rootfs cannot see change from outside). `KILN_DRIFT_SWEEP_SECS`
/// overrides the 5 s default (fractions allowed, at least 0.1 s).
fn sweep_interval() -> Duration {
    std::env::var("KILN_DRIFT_SWEEP_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map_or(Duration::from_secs(5), |s| {
            Duration::from_secs_f64(s.clamp(0.1, 86_400.0))
        })
}

/// The diff of a root filesystem that has no unpack-time inode record.
fn no_record_diff() -> Value {
    json!({"inode_record": "missing"})
}

pub(super) fn is_no_record(diff: &Value) -> bool {
    diff.get("inode_record").and_then(Value::as_str) == Some("missing")
}

/// Which checks of one root filesystem are due.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Due {
    /// inotify saw a change.
    pub changed: bool,
    /// The scheduled full re-hash.
    pub full: bool,
    /// The metadata sweep.
    pub sweep: bool,
}

/// Watchers, records, baselines and the drift clocks.
pub(super) struct DriftWatch {
    pub db: Arc<Db>,
    pub clock: Arc<dyn Clock>,
    pub state_dir: PathBuf,
    pub fleet_dir: PathBuf,
    pub rootfs_dir: PathBuf,
    pub bundles_dir: PathBuf,
    /// This state directory's tag ([`super::host_paths::state_tag`]), computed once.
    pub tag: String,
    /// The daemon's secrets: its HMAC key checks the `config.json` of instances that hold one.
    secrets: Arc<crate::secrets::SecretStore>,
    exe_hashes: crate::drift::ExeHashes,
    /// inotify watchers, per unpacked root filesystem.
    watches: Mutex<HashMap<PathBuf, crate::drift::RootfsWatch>>,
    /// File manifests (the drift baselines), per image digest.
    baselines: Mutex<HashMap<String, Arc<Baseline>>>,
    /// Inode records of unpacked root filesystems, per image digest (a
    /// cache of the state database's `rootfs-inodes` table).
    inodes: Mutex<HashMap<String, Arc<kiln_drift::InodeRecord>>>,
    /// Drifted root filesystems that could not be moved into quarantine:
    /// still at their cached path, so no instance may start on them until
    /// a retried quarantine succeeds.
    condemned: Mutex<HashSet<PathBuf>>,
    /// When runtime checks last ran, and each root's full re-hash and sweep.
    clocks: Mutex<Clocks>,
    /// How often every root filesystem is fully re-hashed.
    full_scan: Duration,
    sweep_every: Duration,
}

#[derive(Default)]
struct Clocks {
    runtime: Duration,
    full: HashMap<PathBuf, Duration>,
    sweep: HashMap<PathBuf, Duration>,
}

impl DriftWatch {
    pub fn new(
        db: Arc<Db>,
        clock: Arc<dyn Clock>,
        state_dir: &Path,
        secrets: Arc<crate::secrets::SecretStore>,
    ) -> DriftWatch {
        let fleet_dir = state_dir.join("fleet");
        let now = clock.monotonic();
        DriftWatch {
            db,
            clock,
            state_dir: state_dir.to_path_buf(),
            rootfs_dir: fleet_dir.join("rootfs"),
            bundles_dir: fleet_dir.join("instances"),
            fleet_dir,
            tag: super::host_paths::state_tag(state_dir),
            secrets,
            exe_hashes: crate::drift::ExeHashes::default(),
            watches: Mutex::new(HashMap::new()),
            baselines: Mutex::new(HashMap::new()),
            inodes: Mutex::new(HashMap::new()),
            condemned: Mutex::new(HashSet::new()),
            clocks: Mutex::new(Clocks {
                runtime: now,
                ..Clocks::default()
            }),
            full_scan: full_scan_interval(),
            sweep_every: sweep_interval(),
        }
    }

    /// The config of an image in the store, by manifest digest.
    pub fn image_config(&self, digest: &str) -> Result<kiln_oci::ImageConfig, CheckError> {
        let e = |source| CheckError::Image {
            digest: digest.to_string(),
            source,
        };
        let store = Store::open(self.state_dir.join("store")).map_err(e)?;
        let d: Digest = digest.parse().map_err(e)?;
        let desc = store
            .resolve(&kiln_oci::ImageRef::Digest {
                name: None,
                digest: d,
            })
            .map_err(e)?;
        let bytes = store.read_descriptor(&desc).map_err(e)?;
        let m = kiln_oci::ImageManifest::from_bytes(&bytes, "manifest").map_err(e)?;
        let bytes = store.read_descriptor(&m.config).map_err(e)?;
        kiln_oci::ImageConfig::from_bytes(&bytes, "config").map_err(e)
    }

    /// The image's `[baseline]` (config label `dev.kiln.baseline`).
    pub fn baseline(&self, digest: &str) -> Option<Value> {
        let c = self.image_config(digest).ok()?;
        serde_json::from_str(c.config.labels.get("dev.kiln.baseline")?).ok()
    }

    pub fn is_watched(&self, root: &Path) -> bool {
        lock(&self.watches).contains_key(root)
    }

    pub fn is_condemned(&self, root: &Path) -> bool {
        lock(&self.condemned).contains(root)
    }

    /// Start an inotify watcher for `root` unless it has one. A new watcher
    /// asks for a check at once unless the tree is known to be `clean`.
    pub fn watch_rootfs(&self, root: &Path, clean: bool) {
        let mut ws = lock(&self.watches);
        if !ws.contains_key(root)
            && let Ok(wt) = crate::drift::RootfsWatch::new(root)
        {
            if clean {
                wt.dirty.store(false, Ordering::Relaxed);
            }
            ws.insert(root.to_path_buf(), wt);
        }
    }

    /// Whether runtime checks are due (once a second).
    pub fn runtime_due(&self) -> bool {
        let now = self.clock.monotonic();
        let mut c = lock(&self.clocks);
        if now.saturating_sub(c.runtime) >= Duration::from_secs(1) {
            c.runtime = now;
            true
        } else {
            false
        }
    }

    /// Which checks of `root` are due now (a new root gets its watcher here).
    pub fn due(&self, root: &Path) -> Due {
        // Adopted instances' root filesystems get their watcher here.
        self.watch_rootfs(root, false);
        let now = self.clock.monotonic();
        let changed = lock(&self.watches)
            .get(root)
            .is_some_and(|wt| wt.dirty.swap(false, Ordering::Relaxed));
        let mut c = lock(&self.clocks);
        let tick = |m: &mut HashMap<PathBuf, Duration>, every: Duration| {
            let last = *m.entry(root.to_path_buf()).or_insert(now);
            let due = now.saturating_sub(last) >= every;
            if due {
                m.insert(root.to_path_buf(), now);
            }
            due
        };
        let full = tick(&mut c.full, self.full_scan);
        let sweep = tick(&mut c.sweep, self.sweep_every);
        Due {
            changed,
            full,
            sweep,
        }
    }

    fn drift_baseline(&self, digest: &str) -> Result<Arc<Baseline>, CheckError> {
        if let Some(b) = lock(&self.baselines).get(digest) {
            return Ok(b.clone());
        }
        let store = Store::open(self.state_dir.join("store"))?;
        let d: Digest = digest.parse().map_err(|source| CheckError::Image {
            digest: digest.to_string(),
            source,
        })?;
        let mut manifest = None;
        for (_, m) in store.referrers(&d)? {
            if m.artifact_type.as_deref() == Some(kiln_sbom::MEDIA_TYPE_FILE_MANIFEST)
                && let Some(layer) = m.layers.first()
            {
                let bytes = store.read_descriptor(layer)?;
                manifest = Some(kiln_sbom::FileManifest::parse(&bytes)?);
                break;
            }
        }
        let manifest = manifest.ok_or_else(|| CheckError::NoManifest(digest.to_string()))?;
        let cfg = self.image_config(digest)?;
        let mut ports: Vec<u16> = cfg
            .config
            .exposed_ports
            .keys()
            .filter_map(|p| p.split('/').next()?.parse().ok())
            .collect();
        let mut egress_via = Vec::new();
        if let Some(b) = cfg.config.labels.get("dev.kiln.baseline")
            && let Ok(v) = serde_json::from_str::<Value>(b)
        {
            // kiln's own egress listeners in the instance's namespace (see crate::egress).
            let names: crate::egress::EgressMap = crate::egress::declared(Some(&v))
                .into_iter()
                .map(|to| (to, String::new()))
                .collect();
            egress_via = crate::egress::routes(&names)
                .unwrap_or_default()
                .iter()
                .map(|r| std::net::SocketAddr::V4(r.via))
                .collect();
            ports.extend(
                v["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_u64())
                    .filter_map(|p| u16::try_from(p).ok()),
            );
        }
        let files = manifest
            .entries
            .iter()
            .filter_map(|e| Some((e.path.clone(), e.sha256.clone()?)))
            .collect();
        let b = Arc::new(Baseline {
            ignore: ignored_paths(),
            hosts: HostsMountPoint::of(&manifest),
            entries: kiln_drift::baseline_from_manifest(&manifest),
            manifest,
            files,
            ports,
            egress_via,
        });
        lock(&self.baselines).insert(digest.to_string(), b.clone());
        Ok(b)
    }

    /// Keep the inode record a fresh unpack of `digest` took (in memory and
    /// in the state database); `None` (a cached rootfs) keeps what is kept.
    pub fn keep_inodes(&self, digest: &str, record: Option<kiln_drift::InodeRecord>) {
        let Some(record) = record else { return };
        if let Err(e) = self.db.save_inodes(digest, &record) {
            // Held in memory still; after a restart the rootfs has no record
            // and is replaced by a fresh unpack (see `fs_drift`).
            eprintln!("kiln serve: {e}");
        }
        lock(&self.inodes).insert(digest.to_string(), Arc::new(record));
    }

    /// The inode record of the rootfs of `digest`, if one was kept.
    fn inode_record(&self, digest: &str) -> Option<Arc<kiln_drift::InodeRecord>> {
        if let Some(r) = lock(&self.inodes).get(digest) {
            return Some(r.clone());
        }
        match self.db.load_inodes(digest) {
            Ok(Some(r)) => {
                let r = Arc::new(r);
                lock(&self.inodes).insert(digest.to_string(), r.clone());
                Some(r)
            }
            Ok(None) => None,
            Err(e) => {
                eprintln!("kiln serve: {e}; the root filesystem counts as having no record");
                None
            }
        }
    }

    /// Unpack `digest` after its cached copy was moved away; anything but a
    /// fresh unpack (which takes its record before the rootfs is visible)
    /// is refused.
    pub fn unpack_fresh(
        &self,
        store: &Store,
        digest: &Digest,
        image: &str,
    ) -> Result<kiln_runtime::Rootfs, HostError> {
        let mut rootfs =
            kiln_runtime::unpack(store, digest, &self.rootfs_dir).map_err(|source| {
                HostError::Unpack {
                    image: image.to_string(),
                    source,
                }
            })?;
        if !rootfs.fresh {
            return Err(HostError::Drifted {
                image: image.to_string(),
                why: "it is still in the cache".into(),
                drift: None,
            });
        }
        self.keep_inodes(&digest.to_string(), rootfs.inodes.take());
        Ok(rootfs)
    }

    /// Forget the inode record of `digest` (its rootfs was moved away).
    fn forget_inodes(&self, digest: &str) {
        lock(&self.inodes).remove(digest);
        if let Err(e) = self.db.remove_inodes(digest) {
            eprintln!("kiln serve: {e}");
        }
    }

    /// Compare one root filesystem with its image's file manifest: every
    /// content, and each path's inode number and link count with the record
    /// taken at unpack. A rootfs without a record (unpacked by an older
    /// kiln, or its record lost) is drift: what is on disk now cannot be
    /// told apart from a tampered tree (a file swapped for an outside inode
    /// with the same content passes every hash and link count), so it is
    /// never recorded here — it is quarantined and unpacked afresh, and the
    /// fresh unpack takes the record.
    pub fn fs_drift(&self, rootfs: &Path, digest: &str) -> Result<Option<Value>, CheckError> {
        let b = self.drift_baseline(digest)?;
        let Some(record) = self.inode_record(digest) else {
            return Ok(Some(no_record_diff()));
        };
        let (diff, _) =
            kiln_drift::check_rootfs_with(rootfs, &b.manifest, Some(&record), &b.ignore())?;
        Ok(b.hosts
            .forgive(diff)
            .map(|d| serde_json::to_value(&d).unwrap_or(Value::Null)))
    }

    /// The cheap metadata sweep of one root filesystem (see
    /// [`crate::drift::sweep_rootfs`]); no record is drift, as in
    /// [`DriftWatch::fs_drift`].
    pub fn sweep_drift(&self, rootfs: &Path, digest: &str) -> Result<Option<Value>, CheckError> {
        let b = self.drift_baseline(digest)?;
        let Some(record) = self.inode_record(digest) else {
            return Ok(Some(no_record_diff()));
        };
        let diff = crate::drift::sweep_rootfs(rootfs, &b.entries, Some(&record), &b.ignore())?;
        Ok(diff
            .and_then(|d| b.hosts.forgive(d))
            .map(|d| serde_json::to_value(&d).unwrap_or(Value::Null)))
    }

    /// Runtime checks of one instance.
    pub fn runtime_drift(
        &self,
        inst: &Instance,
        digest: &str,
        port: u16,
    ) -> Vec<crate::drift::Finding> {
        let Ok(b) = self.drift_baseline(digest) else {
            return Vec::new();
        };
        let mut allowed = b.ports.clone();
        allowed.push(port);
        let mut f = crate::drift::process_drift(inst.pid, &b.files, &self.exe_hashes);
        f.extend(crate::drift::socket_drift(
            inst.pid,
            &allowed,
            &b.egress_via,
        ));
        if let Some(want) = &inst.config_sha256 {
            let bundle = super::host_paths::bundle_dir(&self.bundles_dir, &self.tag, &inst.id);
            let x = if want.starts_with(crate::secrets::CONFIG_HMAC_PREFIX) {
                let key = self.secrets.existing_key(&self.fleet_dir);
                crate::secrets::config_drift_keyed(&bundle, want, key.as_deref())
            } else {
                crate::drift::config_drift(&bundle, want)
            };
            f.extend(x);
        }
        f
    }

    /// Move the directory of a drifted root filesystem into quarantine
    /// (evidence, and out of the cache so the next unpack is fresh). Its
    /// inode record is forgotten only once the move succeeded: a copy left
    /// at its cached path stays held to the record (and is refused).
    pub fn quarantine_rootfs(&self, rootfs: &Path, digest: &str) -> Result<PathBuf, CheckError> {
        let dir = rootfs
            .parent()
            .ok_or_else(|| CheckError::NoParent(rootfs.to_path_buf()))?;
        let quarantine = self.fleet_dir.join("quarantine");
        std::fs::create_dir_all(&quarantine).map_err(|source| CheckError::Create {
            path: quarantine.clone(),
            source,
        })?;
        let to = quarantine.join(format!(
            "{}-{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.clock.now_ms()
        ));
        std::fs::rename(dir, &to).map_err(|source| CheckError::Move {
            from: dir.to_path_buf(),
            to: to.clone(),
            source,
        })?;
        lock(&self.condemned).remove(rootfs);
        self.forget_inodes(digest);
        Ok(to)
    }

    /// A drifted root filesystem: stop watching it and move it into
    /// quarantine; if that fails it stays condemned (no instance starts on
    /// it until a retried move succeeds).
    pub fn condemn(&self, rootfs: &Path, digest: &str) -> Quarantine {
        lock(&self.watches).remove(rootfs);
        {
            let mut c = lock(&self.clocks);
            c.sweep.remove(rootfs);
        }
        match self.quarantine_rootfs(rootfs, digest) {
            Ok(to) => Quarantine::Moved(to),
            Err(e) => {
                lock(&self.condemned).insert(rootfs.to_path_buf());
                Quarantine::Failed(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image without `/etc`: its rootfs, manifest entries and unpack-time record.
    fn etc_less(d: &Path) -> (PathBuf, Vec<kiln_drift::Entry>, kiln_drift::InodeRecord) {
        let root = d.join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/app"), b"app").unwrap();
        crate::drift::as_unpacked(root)
    }

    fn sweep(
        root: &Path,
        base: &[kiln_drift::Entry],
        rec: &kiln_drift::InodeRecord,
    ) -> Option<kiln_drift::Diff> {
        let ignore = ignored_paths();
        let ignore: Vec<&str> = ignore.iter().map(String::as_str).collect();
        let hosts = HostsMountPoint {
            etc: true,
            hosts: true,
        };
        crate::drift::sweep_rootfs(root, base, Some(rec), &ignore)
            .unwrap()
            .and_then(|d| hosts.forgive(d))
    }

    #[test]
    fn only_kiln_s_own_hosts_mount_point_is_left_out_of_an_etc_less_image() {
        let d = tempfile::tempdir().unwrap();
        let (root, base, rec) = etc_less(d.path());
        assert!(sweep(&root, &base, &rec).is_none());
        // kiln's mount point for an instance's own /etc/hosts: not drift.
        super::super::runc_host::hosts_mount_point(&root).unwrap();
        assert!(root.join("etc/hosts").is_file());
        assert!(sweep(&root, &base, &rec).is_none());
        // Anything else under the /etc kiln made is.
        std::fs::write(root.join("etc/passwd"), b"root::0:0::/:/bin/sh\n").unwrap();
        let diff = sweep(&root, &base, &rec).expect("drift");
        let added: Vec<&str> = diff.added.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(added, ["/etc/passwd"]);
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        assert!(sweep(&root, &base, &rec).is_none());
        // And so is the mount point once it is no longer the empty file kiln made.
        std::fs::write(root.join("etc/hosts"), b"10.0.0.1 db.internal\n").unwrap();
        let diff = sweep(&root, &base, &rec).expect("drift");
        let added: Vec<&str> = diff.added.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(added, ["/etc/hosts"]);
    }

    #[test]
    fn an_image_with_its_own_etc_keeps_all_of_it_checked() {
        let m = |paths: &[&str]| HostsMountPoint {
            etc: !paths.contains(&"/etc"),
            hosts: !paths.contains(&"/etc/hosts"),
        };
        assert_eq!(
            m(&["/etc", "/etc/hosts"]),
            HostsMountPoint {
                etc: false,
                hosts: false
            }
        );
        let item = |path: &str, kind, size| kiln_drift::Item {
            path: path.into(),
            attrs: kiln_drift::Attrs {
                kind,
                mode: "0644".into(),
                uid: 0,
                gid: 0,
                size,
                sha256: None,
                link: None,
                rdev: None,
                ino: None,
                nlink: None,
            },
        };
        let has_etc = m(&["/etc"]);
        assert!(!has_etc.made_by_kiln(&item("/etc", kiln_drift::Kind::Dir, None)));
        assert!(has_etc.made_by_kiln(&item("/etc/hosts", kiln_drift::Kind::File, Some(0))));
        assert!(!has_etc.made_by_kiln(&item("/etc/hosts", kiln_drift::Kind::File, Some(3))));
        assert!(!has_etc.made_by_kiln(&item("/etc/hosts", kiln_drift::Kind::Symlink, None)));
        assert!(!m(&["/etc", "/etc/hosts"]).made_by_kiln(&item(
            "/etc/hosts",
            kiln_drift::Kind::File,
            Some(0)
        )));
    }
}
