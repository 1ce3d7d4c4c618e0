//! `kiln build`: spec → layers → config → manifest → referrers → store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_oci::{
    Descriptor, Digest, History, ImageConfig, ImageManifest, RootFs, Staging, Store, annotations,
    media,
};
use kiln_sbom::{FileKind, FileOrigin, FileRecord, ImageSubject, Inventory, ToolInfo};
use serde::Serialize;
use sha2::Digest as _;

use crate::compress::Compression;
use crate::spec::{Base, Spec};
use crate::tarw::EntryType;
use crate::tree::{self, Origin, Stack, Tree};
use crate::{BuildError, base, debs, entrypoint, layer, source, time};

/// Config label that carries the spec's `[baseline]` (compact JSON).
pub const BASELINE_LABEL: &str = "dev.kiln.baseline";
/// Manifest annotation recording that `[image] check_entrypoint = false`.
pub const ENTRYPOINT_CHECK_ANNOTATION: &str = "dev.kiln.entrypoint-check";
/// The kiln version that builds (recorded in SBOMs, not in the image).
pub const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Receives progress; the CLI draws bars on a terminal, tests ignore it.
pub trait Progress: Send + Sync {
    /// A new phase; `total` in bytes when known.
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    /// Bytes done in the current phase.
    fn advance(&self, _bytes: u64) {}
    /// The current phase finished.
    fn finish_phase(&self) {}
}

/// A `Progress` that shows nothing.
pub struct Quiet;
impl Progress for Quiet {}

/// How to build.
pub struct BuildOptions {
    pub state_dir: PathBuf,
    pub compression: Compression,
    /// Override the spec's `name:tag`.
    pub tag: Option<(String, String)>,
    /// Also export an OCI layout here.
    pub out: Option<PathBuf>,
    /// Worker threads (hashing, compression).
    pub threads: usize,
    /// The `SOURCE_DATE_EPOCH` value, if set.
    pub source_date_epoch: Option<String>,
    pub progress: Arc<dyn Progress>,
    /// Repository packages only from the cache: a missing `.deb` is an
    /// error naming it (see [`crate::packages::for_build`]).
    pub offline: bool,
}

/// What a build produced.
#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    pub name: String,
    pub tag: String,
    pub digest: Digest,
    pub manifest_size: u64,
    pub config_digest: Digest,
    pub epoch: u64,
    pub epoch_source: String,
    pub created: String,
    pub compression: String,
    /// The media type of the layers this build compressed.
    pub compression_media_type: String,
    pub base: Option<String>,
    pub layers: Vec<LayerReport>,
    pub referrers: Vec<ReferrerReport>,
    pub packages: usize,
    pub files: usize,
    pub spec_sha256: String,
    /// Every input of the build with its digest: the spec, the lock, each `[[files]]`
    /// source, each `.deb` and the base image (for provenance; see [`crate::inputs`]).
    pub inputs: Vec<BuildInput>,
    pub out: Option<PathBuf>,
    pub warnings: Vec<String>,
    pub maintainer_scripts_not_run: BTreeMap<String, Vec<String>>,
    /// Per package, what kiln did in place of its scripts (accounts, the CA
    /// bundle, alternatives; see [`crate::system`]).
    pub done_by_kiln: BTreeMap<String, Vec<String>>,
    pub elapsed_ms: u128,
    /// Wall-clock milliseconds per phase, in order.
    pub phases_ms: Vec<(String, u128)>,
}

/// Records how long each phase took.
struct Phases {
    last: Instant,
    done: Vec<(String, u128)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }
    fn mark(&mut self, name: &str) {
        let now = Instant::now();
        self.done
            .push((name.to_string(), (now - self.last).as_millis()));
        self.last = now;
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub role: String,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
    pub entries: usize,
    pub cached: bool,
}

pub use crate::inputs::BuildInput;

#[derive(Clone, Debug, Serialize)]
pub struct ReferrerReport {
    pub artifact_type: String,
    pub digest: Digest,
}

/// The epoch: `SOURCE_DATE_EPOCH`, else the commit time of the spec's git
/// checkout, else 0.
pub fn resolve_epoch(sde: Option<&str>, spec_dir: &Path) -> Result<(u64, String), BuildError> {
    if let Some(v) = sde {
        let t = v.trim();
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(BuildError::BadEpoch(v.to_string()));
        }
        let n: u64 = t.parse().map_err(|_| BuildError::BadEpoch(v.to_string()))?;
        return Ok((n, "SOURCE_DATE_EPOCH".into()));
    }
    // The spec directory may be someone else's checkout: its repository
    // config must not get git to run anything (fsmonitor, hooks, a pager,
    // a credential prompt); command-line `-c` overrides the repository's.
    let out = std::process::Command::new("git")
        .args(["--no-pager", "-c", "core.fsmonitor=false"])
        .args(["-c", "core.hooksPath=/dev/null", "-c", "core.pager=cat"])
        .arg("-C")
        .arg(spec_dir)
        .args(["log", "-1", "--format=%ct", "--", "."])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(o) = out
        && o.status.success()
        && let Ok(n) = String::from_utf8_lossy(&o.stdout).trim().parse::<u64>()
    {
        return Ok((n, "git commit time".into()));
    }
    Ok((0, "default (0)".into()))
}

/// Build `spec` into the store under `opts.state_dir`.
pub fn build(spec: &Spec, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    let (report, publish) = build_staged(spec, opts)?;
    publish.apply()?;
    Ok(report)
}

/// What a staged build still has to make visible: the index entries (tag
/// and referrers) and the `--out` export.
#[must_use = "the build is not visible until the publish step is applied"]
pub struct Publish {
    store: Store,
    name: String,
    tag: String,
    manifest: Descriptor,
    referrers: Vec<Descriptor>,
    out: Option<PathBuf>,
}

impl Publish {
    /// Tag the image, list its referrers, and write `--out`.
    pub fn apply(self) -> Result<(), BuildError> {
        self.store.add_untagged(&self.referrers)?;
        self.store.tag(&self.name, &self.tag, &self.manifest)?;
        if let Some(dir) = &self.out {
            crate::export::export(
                &self.store,
                &self.name,
                &self.tag,
                &self.manifest,
                &self.referrers,
                dir,
            )?;
        }
        Ok(())
    }
}

/// [`build`] up to the last step: every blob is committed to the store
/// (unreferenced, so invisible), and the returned [`Publish`] makes it
/// visible. Lets the caller record the build's audit event in between.
pub fn build_staged(
    spec: &Spec,
    opts: &BuildOptions,
) -> Result<(BuildReport, Publish), BuildError> {
    let started = Instant::now();
    let mut ph = Phases::new();
    let (epoch, epoch_source) = resolve_epoch(opts.source_date_epoch.as_deref(), &spec.dir)?;
    let created = time::rfc3339(epoch);
    let (name, tag) = opts
        .tag
        .clone()
        .unwrap_or_else(|| (spec.name.clone(), spec.tag.clone()));
    let store = Store::open_or_init(opts.state_dir.join("store"))?;
    let cache_dir = opts.state_dir.join("cache");
    let mut staging = store.staging()?;
    let p = &opts.progress;

    // 1. Base.
    let base = match &spec.base {
        Base::Scratch => None,
        Base::Layout {
            path,
            digest,
            spec: s,
        } => {
            p.phase("verifying base", None);
            let b = base::load(s, path, digest, &spec.arch)?;
            p.finish_phase();
            Some(b)
        }
    };
    ph.mark("base");
    let empty = Tree::new();
    let base_tree = base.as_ref().map(|b| &b.tree).unwrap_or(&empty);

    // 2. Packages layer: the lock's repository packages (from the cache,
    // fetched when missing) before the spec's own [[debs]].
    let with_repo = crate::packages::for_build(spec, &opts.state_dir, opts.offline, p.as_ref())?;
    let spec = with_repo.as_ref().unwrap_or(spec);
    let pkgs = debs::build(
        spec,
        base_tree,
        base.as_ref().and_then(|b| b.dpkg_status.as_deref()),
        &cache_dir.join("spool"),
    )?;
    let pkgs_tree = pkgs.as_ref().map(|p| &p.tree).unwrap_or(&empty);
    // 3. Files layer (over base + packages).
    ph.mark("packages");
    let hash_cache_path = cache_dir.join("hashes").join(format!(
        "{}.json",
        &hex::encode(sha2::Sha256::digest(spec.path.to_string_lossy().as_bytes()))[..32]
    ));
    // Load the hash cache while walking: they are independent.
    let (walked, hash_cache) = std::thread::scope(|s| {
        let loader = s.spawn(|| source::HashCache::load(hash_cache_path));
        let walked = source::collect(spec, &Stack(vec![pkgs_tree, base_tree]), opts.threads);
        (walked, loader.join())
    });
    let mut files_tree = walked?;
    let hash_cache =
        hash_cache.map_err(|_| BuildError::Internal("hash cache loader panicked".into()))?;
    ph.mark("walk");
    let total: u64 = files_tree
        .values()
        .filter(|n| n.kind == EntryType::File)
        .map(|n| n.size)
        .sum();
    p.phase("hashing files", Some(total));
    {
        let p2 = Arc::clone(p);
        source::hash_files(&mut files_tree, &hash_cache, opts.threads, &move |n| {
            p2.advance(n)
        })?;
    }
    p.finish_phase();
    ph.mark("hash");

    // 4. Layers.
    let mut layer_reports = Vec::new();
    let mut new_layers = Vec::new();
    let layer_cache = cache_dir.join("layers");
    let mut roles: Vec<(&str, &Tree)> = Vec::new();
    if pkgs.is_some() {
        roles.push(("packages", pkgs_tree));
    }
    if !files_tree.is_empty() {
        roles.push(("files", &files_tree));
    }
    for (role, t) in roles {
        let total: u64 = t
            .values()
            .filter(|n| n.kind == EntryType::File)
            .map(|n| n.size + 512)
            .sum();
        p.phase(&format!("writing {role} layer"), Some(total));
        let p2 = Arc::clone(p);
        let out = layer::build_layer(
            t,
            epoch,
            opts.compression,
            opts.threads,
            &store,
            &mut staging,
            &layer_cache,
            Arc::new(move |n| p2.advance(n)),
        )?;
        p.finish_phase();
        ph.mark(&format!("layer {role}"));
        layer_reports.push(LayerReport {
            role: role.to_string(),
            digest: out.descriptor.digest,
            diff_id: out.diff_id,
            size: out.descriptor.size,
            media_type: out.descriptor.media_type.clone(),
            entries: t.len(),
            cached: out.cached,
        });
        new_layers.push(out);
    }

    // 5. Config and manifest.
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    let mut cfg = match &base {
        Some(b) => {
            for l in &b.manifest.layers {
                let mut d = Descriptor::new(
                    if l.media_type == media::DOCKER_LAYER_GZIP {
                        media::LAYER_GZIP
                    } else {
                        &l.media_type
                    },
                    l.digest,
                    l.size,
                );
                d.annotations = l.annotations.clone();
                if !staging.has(&l.digest) {
                    staging.copy_from(&b.store, l)?;
                }
                layers.push(d);
            }
            diff_ids.extend(b.config.rootfs.diff_ids.iter().copied());
            history.extend(b.config.history.iter().cloned());
            b.config.clone()
        }
        None => ImageConfig {
            architecture: spec.arch.clone(),
            os: "linux".into(),
            ..Default::default()
        },
    };
    for (l, r) in new_layers.iter().zip(&layer_reports) {
        layers.push(l.descriptor.clone());
        diff_ids.push(l.diff_id);
        history.push(History {
            created: Some(created.clone()),
            created_by: Some(format!("kiln build: {} layer", r.role)),
            comment: Some(match r.role.as_str() {
                "packages" => format!(
                    "{} Debian package(s); maintainer scripts not run",
                    pkgs.as_ref().map(|p| p.installed.len()).unwrap_or(0)
                ),
                _ => format!("{} path(s) from [[files]]", r.entries),
            }),
            empty_layer: None,
        });
    }
    apply_runtime_config(spec, &mut cfg, &created)?;
    let mut notes: Vec<String> = Vec::new();
    if spec.check_entrypoint {
        check_entrypoint(
            spec,
            &cfg,
            &[&files_tree, pkgs_tree, base_tree],
            base.as_ref(),
            &cache_dir.join("spool"),
        )?;
    } else {
        notes.push(
            "image.check_entrypoint = false: the entrypoint was not checked, the image may not start"
                .into(),
        );
    }
    ph.mark("entrypoint");
    cfg.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids,
    };
    cfg.history = history;
    let cfg_bytes = cfg.to_bytes();
    let cfg_desc = staging.put(media::CONFIG, &cfg_bytes)?;
    let mut ann = BTreeMap::from([(annotations::CREATED.to_string(), created.clone())]);
    if !spec.check_entrypoint {
        ann.insert(ENTRYPOINT_CHECK_ANNOTATION.into(), "off".into());
    }
    if let Some(b) = &base {
        ann.insert(
            annotations::BASE_DIGEST.into(),
            b.manifest_digest.to_string(),
        );
        ann.insert(annotations::BASE_NAME.into(), b.spec.clone());
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        artifact_type: None,
        config: cfg_desc.clone(),
        layers,
        subject: None,
        annotations: ann,
    };
    let mbytes = manifest.to_bytes();
    let mdesc = staging.put(media::MANIFEST, &mbytes)?;

    // 6. Inventory: SBOMs and the file manifest, as referrers. They are a
    // function of the image digest, its name and tag, and kiln's version,
    // so an unchanged rebuild reuses them instead of regenerating.
    ph.mark("config");
    let inv_key = hex::encode(sha2::Sha256::digest(format!(
        "kiln-inventory-v2\n{KILN_VERSION}\n{}\n{name}\n{tag}\n",
        mdesc.digest
    )));
    let ref_cache = cache_dir.join("referrers").join(format!("{inv_key}.json"));
    let cached_refs = cached_referrers(&store, &ref_cache);
    let (referrers, n_packages, n_files, (scripts, done), ref_cached) = match cached_refs {
        Some(c) => (c.referrers, c.packages, c.files, (c.scripts, c.done), true),
        None => {
            let mut files =
                Vec::with_capacity(files_tree.len() + pkgs_tree.len() + base_tree.len());
            tree::for_each_merged(&[&files_tree, pkgs_tree, base_tree], |p, n| {
                files.push(record(p, n))
            });
            let mut packages = pkgs
                .as_ref()
                .map(|p| p.installed.clone())
                .unwrap_or_default();
            if let Some(st) = base.as_ref().and_then(|b| b.dpkg_status.as_deref()) {
                let replaced: BTreeSet<String> = packages.iter().map(|p| p.name.clone()).collect();
                packages.extend(debs::base_packages(st, &replaced));
            }
            packages.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
            let scripts: BTreeMap<String, Vec<String>> = packages
                .iter()
                .filter(|p| !p.maintainer_scripts_not_run.is_empty())
                .map(|p| (p.name.clone(), p.maintainer_scripts_not_run.clone()))
                .collect();
            let done: BTreeMap<String, Vec<String>> = packages
                .iter()
                .filter(|p| !p.done_by_kiln.is_empty())
                .map(|p| (p.name.clone(), p.done_by_kiln.clone()))
                .collect();
            let inv = Inventory {
                image: ImageSubject {
                    name: name.clone(),
                    tag: tag.clone(),
                    digest: mdesc.digest.to_string(),
                    created: created.clone(),
                    architecture: cfg.architecture.clone(),
                    os: cfg.os.clone(),
                },
                tool: ToolInfo {
                    name: "kiln".into(),
                    version: KILN_VERSION.into(),
                },
                packages,
                files,
            };
            let refs = attach_inventory(&mut staging, &mdesc, &inv, &created)?;
            let counts = (inv.packages.len(), inv.files.len());
            // Freeing ~100k small allocations is measurable; the process
            // does not need to wait for it.
            std::thread::spawn(move || drop(inv));
            (refs, counts.0, counts.1, (scripts, done), false)
        }
    };
    ph.mark("sbom");

    // 7. Commit the blobs; the index (the only visible step) is the
    // caller's, through `Publish`.
    staging.commit()?;
    let ref_descs: Vec<Descriptor> = referrers.iter().map(|(d, _)| d.clone()).collect();
    // Failed cache writes only cost speed next time.
    let _ = hash_cache.save(&files_tree);
    if !ref_cached {
        let entry = CachedReferrers {
            referrers: referrers.clone(),
            packages: n_packages,
            files: n_files,
            scripts: scripts.clone(),
            done: done.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&entry)
            && let Some(dir) = ref_cache.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            let _ = kiln_oci::layout::write_atomic(&ref_cache, &bytes);
        }
    }
    ph.mark("commit");

    let out = opts.out.clone();
    let publish = Publish {
        store: store.clone(),
        name: name.clone(),
        tag: tag.clone(),
        manifest: mdesc.clone(),
        referrers: ref_descs,
        out: out.clone(),
    };
    let mut warnings = base
        .as_ref()
        .map(|b| b.warnings.clone())
        .unwrap_or_default();
    warnings.extend(notes);
    if !scripts.is_empty() {
        warnings.push(format!(
            "maintainer scripts were not run: {}",
            scripts
                .iter()
                .map(|(k, v)| format!("{k} ({})", v.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let inputs = crate::inputs::build_inputs(
        spec,
        &files_tree,
        &Stack(vec![pkgs_tree, base_tree]),
        base.as_ref().map(|b| (b.spec.as_str(), &b.manifest_digest)),
    );
    let report = BuildReport {
        name,
        tag,
        digest: mdesc.digest,
        manifest_size: mdesc.size,
        config_digest: cfg_desc.digest,
        epoch,
        epoch_source,
        created,
        compression: opts.compression.describe(),
        compression_media_type: opts.compression.media_type().to_owned(),
        base: base
            .as_ref()
            .map(|b| format!("{} ({})", b.spec, b.manifest_digest)),
        layers: layer_reports,
        referrers: referrers
            .into_iter()
            .map(|(d, at)| ReferrerReport {
                artifact_type: at,
                digest: d.digest,
            })
            .collect(),
        packages: n_packages,
        files: n_files,
        spec_sha256: spec.sha256.clone(),
        inputs,
        out,
        warnings,
        maintainer_scripts_not_run: scripts,
        done_by_kiln: done,
        elapsed_ms: started.elapsed().as_millis(),
        phases_ms: ph.done,
    };
    Ok((report, publish))
}

/// A cached set of inventory referrers for one image digest, name and tag.
#[derive(Serialize, serde::Deserialize)]
struct CachedReferrers {
    referrers: Vec<(Descriptor, String)>,
    packages: usize,
    files: usize,
    scripts: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    done: BTreeMap<String, Vec<String>>,
}

/// The cached referrers, if every blob they need is still in the store.
fn cached_referrers(store: &Store, path: &Path) -> Option<CachedReferrers> {
    let c: CachedReferrers = serde_json::from_slice(
        &kiln_oci::untrusted::read_capped(
            path,
            crate::source::CACHE_FILE_LIMIT,
            kiln_oci::untrusted::Follow::No,
        )
        .ok()?,
    )
    .ok()?;
    for (d, _) in &c.referrers {
        let m = ImageManifest::from_bytes(&store.read_descriptor(d).ok()?, "referrer").ok()?;
        if !m
            .layers
            .iter()
            .chain(std::iter::once(&m.config))
            .all(|b| store.has_blob(&b.digest))
        {
            return None;
        }
    }
    Some(c)
}

fn record(path: &str, n: &tree::Node) -> FileRecord {
    FileRecord {
        path: path.to_string(),
        kind: match n.kind {
            EntryType::File => FileKind::File,
            EntryType::Dir => FileKind::Dir,
            EntryType::Symlink => FileKind::Symlink,
            EntryType::Hardlink => FileKind::Hardlink,
        },
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        size: if matches!(n.kind, EntryType::File | EntryType::Hardlink) {
            n.size
        } else {
            0
        },
        sha256: n.sha256.map(hex::encode),
        sha1: n.sha1.map(hex::encode),
        link: n.link.clone(),
        origin: match &n.origin {
            Origin::Base => FileOrigin::Base,
            Origin::Package(p) => FileOrigin::Package(p.clone()),
            Origin::Spec => FileOrigin::Spec,
        },
    }
}

/// Stage the SPDX, CycloneDX and file-manifest artifacts for `image`.
fn attach_inventory(
    staging: &mut Staging,
    image: &Descriptor,
    inv: &Inventory,
    created: &str,
) -> Result<Vec<(Descriptor, String)>, BuildError> {
    inv.validate()
        .map_err(|e| BuildError::Internal(format!("inventory: {e}")))?;
    staging.put(media::EMPTY, media::EMPTY_CONTENT)?;
    let mut subject = Descriptor::new(media::MANIFEST, image.digest, image.size);
    subject.annotations.clear();
    // The three documents are independent: write and hash them in parallel.
    type Doc = (&'static str, &'static str, Vec<u8>, Digest);
    let generate = |mt: &'static str, title: &'static str, f: fn(&Inventory) -> Vec<u8>| -> Doc {
        let bytes = f(inv);
        let d = Digest::of(&bytes);
        (mt, title, bytes, d)
    };
    let docs: Vec<Doc> = std::thread::scope(|s| {
        let spdx = s.spawn(|| {
            generate(
                kiln_sbom::MEDIA_TYPE_SPDX,
                "sbom.spdx.json",
                kiln_sbom::spdx_json,
            )
        });
        let cdx = generate(
            kiln_sbom::MEDIA_TYPE_CYCLONEDX,
            "sbom.cdx.json",
            kiln_sbom::cyclonedx_json,
        );
        let fm = generate(
            kiln_sbom::MEDIA_TYPE_FILE_MANIFEST,
            "files.json",
            kiln_sbom::file_manifest_json,
        );
        let spdx = spdx
            .join()
            .map_err(|_| BuildError::Internal("the SPDX writer panicked".into()))?;
        Ok::<_, BuildError>(vec![spdx, cdx, fm])
    })?;
    let mut out = Vec::new();
    for (mt, title, bytes, digest) in docs {
        let mut blob = staging.put_hashed(mt, &bytes, digest)?;
        blob.annotations
            .insert(annotations::TITLE.into(), title.into());
        let m = ImageManifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            artifact_type: Some(mt.into()),
            config: Descriptor::empty(),
            layers: vec![blob],
            subject: Some(subject.clone()),
            annotations: BTreeMap::from([(annotations::CREATED.to_string(), created.to_string())]),
        };
        let mut d = staging.put(media::MANIFEST, &m.to_bytes())?;
        d.artifact_type = Some(mt.into());
        out.push((d, mt.to_string()));
    }
    Ok(out)
}

fn apply_runtime_config(
    spec: &Spec,
    cfg: &mut ImageConfig,
    created: &str,
) -> Result<(), BuildError> {
    cfg.created = Some(created.to_string());
    cfg.author = None;
    cfg.architecture = spec.arch.clone();
    cfg.os = "linux".into();
    let rc = &mut cfg.config;
    if let Some(u) = &spec.user {
        rc.user = Some(u.clone());
    }
    let mut env: BTreeMap<String, String> = rc
        .env
        .iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    env.extend(spec.env.clone());
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    rc.env = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(ep) = &spec.entrypoint {
        rc.entrypoint = Some(ep.clone());
        // As in Dockerfiles: a new entrypoint drops the base's cmd.
        rc.cmd = None;
    }
    if let Some(c) = &spec.cmd {
        rc.cmd = Some(c.clone());
    }
    if let Some(w) = &spec.workdir {
        rc.working_dir = Some(w.clone());
    }
    for port in &spec.ports {
        rc.exposed_ports
            .insert(format!("{port}/tcp"), serde_json::Map::new());
    }
    rc.labels.extend(spec.labels.clone());
    let baseline =
        serde_json::to_string(&spec.baseline).map_err(|e| BuildError::Internal(e.to_string()))?;
    rc.labels.insert(BASELINE_LABEL.into(), baseline);
    if let Some(s) = &spec.stop_signal {
        rc.stop_signal = Some(s.clone());
    }
    Ok(())
}

/// The program the image starts (`entrypoint[0]`, else `cmd[0]`) must be
/// able to start in the image: see [`crate::entrypoint`].
fn check_entrypoint(
    spec: &Spec,
    cfg: &ImageConfig,
    layers: &[&Tree],
    base: Option<&base::BaseImage>,
    spool_dir: &Path,
) -> Result<(), BuildError> {
    let rc = &cfg.config;
    let Some(argv0) = rc
        .entrypoint
        .as_ref()
        .and_then(|e| e.first())
        .or_else(|| rc.cmd.as_ref().and_then(|c| c.first()))
    else {
        return Ok(());
    };
    let env = |k: &str| {
        rc.env
            .iter()
            .find_map(|kv| kv.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
    };
    let target = entrypoint::Target {
        arch: &spec.arch,
        argv0,
        path: env("PATH"),
        ld_library_path: env("LD_LIBRARY_PATH"),
        workdir: rc.working_dir.as_deref(),
    };
    entrypoint::check_build(&target, layers, base, spool_dir).map_err(|m| {
        let m = format!(
            "{m} (the image could not start; [image] check_entrypoint = false builds it anyway)"
        );
        if spec.entrypoint.is_some() {
            BuildError::Spec(spec.error_at(&spec.entrypoint_loc, format!("image.entrypoint: {m}")))
        } else {
            BuildError::Entrypoint(m)
        }
    })
}
