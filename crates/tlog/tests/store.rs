//! The durable log: recovery, group commit, tamper detection.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use kiln_tlog::proof::{verify_consistency, verify_inclusion};
use kiln_tlog::{Checkpoint, Log, Signer, leaf_hash, root};
use proptest::prelude::*;

const SEED: [u8; 32] = [7; 32];

fn signer() -> Signer {
    Signer::from_seed("kiln.test/log", &SEED).unwrap()
}

fn open(dir: &Path) -> Log {
    let s = signer();
    let v = s.verifier();
    Log::open(dir, Some(s), v).unwrap()
}

fn event(i: u64) -> Vec<u8> {
    format!(
        "{{\"event\":{i},\"pad\":\"{}\"}}",
        "x".repeat((i % 50) as usize)
    )
    .into_bytes()
}

fn fill(log: &Log, n: u64) {
    for i in 0..n {
        assert_eq!(log.append(&event(i)).unwrap(), i);
    }
}

fn build(dir: &Path, entries: &[Vec<u8>]) -> Log {
    let log = open(dir);
    for e in entries {
        log.append(e).unwrap();
    }
    log
}

#[test]
fn appends_survive_reopen_and_prove() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    let mut all = Vec::new();
    let mut i = 0u64;
    for batch in [1usize, 3, 7, 64, 1, 200, 5] {
        let es: Vec<Vec<u8>> = (0..batch).map(|k| event(i + k as u64)).collect();
        let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
        assert_eq!(log.append_batch(&refs).unwrap(), i);
        i += batch as u64;
        all.extend(es);
    }
    drop(log);
    let log = open(d.path());
    let leaves: Vec<_> = all.iter().map(|e| leaf_hash(e)).collect();
    assert_eq!(log.size(), all.len() as u64);
    assert_eq!(log.root(), root(&leaves));
    let (cp, _) = log.checkpoint().unwrap();
    assert_eq!((cp.size, cp.root), (log.size(), log.root()));
    let n = log.size();
    for idx in 0..n {
        let p = log.inclusion_proof(idx, n).unwrap();
        verify_inclusion(idx, n, &leaves[idx as usize], &p, &log.root()).unwrap();
        assert_eq!(log.entry(idx).unwrap().0, all[idx as usize]);
    }
    for old in [0u64, 1, 2, 3, 4, 11, 75, 76, 200, n] {
        let p = log.consistency_proof(old, n).unwrap();
        verify_consistency(old, n, &root(&leaves[..old as usize]), &log.root(), &p).unwrap();
    }
    // One for the empty tree at creation, one per batch.
    assert_eq!(log.checkpoints().unwrap().len(), 8);
    log.verify(None).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn stored_tree_matches_naive_mth(batches in prop::collection::vec(1usize..40, 0..12)) {
        let d = tempfile::tempdir().unwrap();
        let log = open(d.path());
        let mut leaves = Vec::new();
        for b in batches {
            let es: Vec<Vec<u8>> = (0..b).map(|k| event((leaves.len() + k) as u64)).collect();
            let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
            log.append_batch(&refs).unwrap();
            leaves.extend(es.iter().map(|e| leaf_hash(e)));
        }
        let n = leaves.len() as u64;
        for k in 0..=n {
            prop_assert_eq!(log.root_at(k).unwrap(), root(&leaves[..k as usize]));
        }
        for idx in 0..n {
            let mut p = log.inclusion_proof(idx, n).unwrap();
            verify_inclusion(idx, n, &leaves[idx as usize], &p, &root(&leaves)).unwrap();
            if let Some(h) = p.first_mut() {
                h[0] ^= 1;
                prop_assert!(verify_inclusion(idx, n, &leaves[idx as usize], &p, &root(&leaves)).is_err());
            }
        }
    }
}

#[test]
fn concurrent_writers_get_distinct_indices() {
    let d = tempfile::tempdir().unwrap();
    let log = Arc::new(open(d.path()));
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|k| {
                        let e = format!("t{t}-{k}").into_bytes();
                        (log.append(&e).unwrap(), e)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = std::collections::BTreeMap::new();
    for h in handles {
        for (i, e) in h.join().unwrap() {
            assert!(seen.insert(i, e).is_none());
        }
    }
    assert_eq!(seen.len(), 800);
    for (i, e) in &seen {
        assert_eq!(&log.entry(*i).unwrap().0, e);
    }
    let report = log.verify(None).unwrap();
    assert_eq!(report.size, 800);
    // Group commit: fewer checkpoints than appends.
    assert!(report.checkpoints <= 800);
}

#[test]
fn two_handles_interleave_like_two_processes() {
    let d = tempfile::tempdir().unwrap();
    let a = open(d.path());
    let b = open(d.path());
    a.append(b"a0").unwrap();
    assert_eq!(b.append(b"b1").unwrap(), 1);
    assert_eq!(a.append(b"a2").unwrap(), 2);
    let c = open(d.path());
    assert_eq!(c.size(), 3);
    assert_eq!(c.entry(1).unwrap().0, b"b1");
    c.verify(None).unwrap();
}

fn append_file(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn torn_tail_is_trimmed_and_log_verifies() {
    let d = tempfile::tempdir().unwrap();
    fill(&open(d.path()), 10);
    let len = std::fs::metadata(d.path().join("entries")).unwrap().len();
    // A record whose length promises more than was written.
    append_file(&d.path().join("entries"), &[0, 0, 1, 0, b'{', b'"']);
    // A torn checkpoint too.
    append_file(&d.path().join("checkpoints"), &[0, 0, 0, 9, b'x']);
    let log = open(d.path());
    assert_eq!(log.size(), 10);
    assert_eq!(
        std::fs::metadata(d.path().join("entries")).unwrap().len(),
        len
    );
    log.verify(None).unwrap();
    assert_eq!(log.append(b"after").unwrap(), 10);
    log.verify(None).unwrap();
}

#[test]
fn garbage_tail_with_valid_length_is_trimmed() {
    let d = tempfile::tempdir().unwrap();
    fill(&open(d.path()), 3);
    // Complete framing, wrong check bytes: zeros written by a crash.
    append_file(&d.path().join("entries"), &[0, 0, 0, 2, 0, 0, 0, 0, 0, 0]);
    let log = open(d.path());
    assert_eq!(log.size(), 3);
    log.verify(None).unwrap();
}

#[test]
fn lost_derived_files_are_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let root = {
        let log = open(d.path());
        fill(&log, 37);
        log.root()
    };
    std::fs::write(d.path().join("index"), b"").unwrap();
    let t = std::fs::read(d.path().join("tree")).unwrap();
    std::fs::write(d.path().join("tree"), &t[..t.len() / 3 + 5]).unwrap();
    let log = open(d.path());
    assert_eq!((log.size(), log.root()), (37, root));
    log.verify(None).unwrap();
}

#[test]
fn records_past_the_derived_files_are_replayed() {
    // A crash after `entries` was synced but before `index`/`tree` were.
    let d = tempfile::tempdir().unwrap();
    fill(&open(d.path()), 5);
    let idx = std::fs::read(d.path().join("index")).unwrap();
    let tree = std::fs::read(d.path().join("tree")).unwrap();
    fill_from(&open(d.path()), 5, 9);
    std::fs::write(d.path().join("index"), idx).unwrap();
    std::fs::write(d.path().join("tree"), tree).unwrap();
    let log = open(d.path());
    assert_eq!(log.size(), 9);
    assert_eq!(log.entry(8).unwrap().0, event(8));
    log.verify(None).unwrap();
}

fn fill_from(log: &Log, from: u64, to: u64) {
    for i in from..to {
        assert_eq!(log.append(&event(i)).unwrap(), i);
    }
}

fn err_of(log: &Log, saved: Option<&[u8]>) -> (Option<u64>, String) {
    let e = log.verify(saved).unwrap_err();
    (e.index, e.message)
}

#[test]
fn modified_record_names_its_index() {
    let d = tempfile::tempdir().unwrap();
    fill(&open(d.path()), 20);
    let mut bytes = std::fs::read(d.path().join("entries")).unwrap();
    let pos = bytes.windows(9).position(|w| w == b"\"event\":7").unwrap();
    bytes[pos + 8] = b'8';
    std::fs::write(d.path().join("entries"), bytes).unwrap();
    let log = open(d.path());
    let (i, msg) = err_of(&log, None);
    assert_eq!(i, Some(7), "{msg}");
    assert!(msg.contains("event 7"), "{msg}");
}

/// Rebuild the log from `entries` with the same key, keeping the original
/// checkpoint history: what an attacker who rewrites every data file (and
/// recomputes every hash) but cannot forge the old signatures leaves behind.
fn rewritten(orig: &[Vec<u8>], forged: &[Vec<u8>]) -> (tempfile::TempDir, Log) {
    let a = tempfile::tempdir().unwrap();
    build(a.path(), orig);
    let b = tempfile::tempdir().unwrap();
    build(b.path(), forged);
    std::fs::copy(a.path().join("checkpoints"), b.path().join("checkpoints")).unwrap();
    let log = open(b.path());
    (b, log)
}

fn events(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(event).collect()
}

#[test]
fn rewritten_history_names_first_bad_index() {
    let orig = events(12);
    let mut modified = orig.clone();
    modified[5] = b"{\"event\":5,\"forged\":true}".to_vec();
    let mut removed = orig.clone();
    removed.remove(5);
    removed.push(event(99)); // keep the length so only history differs
    let mut reordered = orig.clone();
    reordered.swap(3, 4);
    let mut inserted = orig.clone();
    inserted.insert(8, b"{\"event\":\"inserted\"}".to_vec());
    for (what, forged, want) in [
        ("modified", modified, 5u64),
        ("removed", removed, 5),
        ("reordered", reordered, 3),
        ("inserted", inserted, 8),
    ] {
        let (_d, log) = rewritten(&orig, &forged);
        assert!(log.poisoned().is_some(), "{what}");
        assert!(
            log.append(b"more").is_err(),
            "{what}: appended to a contradicted log"
        );
        let (i, msg) = err_of(&log, None);
        assert_eq!(i, Some(want), "{what}: {msg}");
        assert!(msg.contains(&format!("event {want}")), "{what}: {msg}");
    }
}

#[test]
fn truncated_log_is_detected() {
    let orig = events(10);
    let (_d, log) = rewritten(&orig, &orig[..6]);
    let (i, msg) = err_of(&log, None);
    assert_eq!(i, Some(6), "{msg}");
    assert!(msg.contains("removed"), "{msg}");
}

#[test]
fn forged_checkpoint_is_detected() {
    let d = tempfile::tempdir().unwrap();
    fill(&open(d.path()), 4);
    let mallory = Signer::from_seed("kiln.test/log", &[9; 32]).unwrap();
    let text = Checkpoint::new("kiln.test/log", 4, [0; 32])
        .sign(&mallory)
        .unwrap();
    let mut rec = (text.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(text.as_bytes());
    rec.extend_from_slice(&(text.len() as u32).to_be_bytes());
    append_file(&d.path().join("checkpoints"), &rec);
    let log = open(d.path());
    assert!(log.poisoned().is_some());
    let (_, msg) = err_of(&log, None);
    assert!(
        msg.contains("checkpoint #5") && msg.contains("forged"),
        "{msg}"
    );
}

#[test]
fn saved_checkpoint_catches_rewrites_the_log_hides() {
    let orig = events(10);
    let a = tempfile::tempdir().unwrap();
    let saved = {
        let log = build(a.path(), &orig);
        log.checkpoint().unwrap().1
    };
    // The log grew honestly: consistent.
    let log = open(a.path());
    fill_from(&log, 10, 15);
    let r = log.verify(Some(saved.as_bytes())).unwrap();
    assert_eq!(r.saved_size, Some(10));
    // Rewritten with the stolen key, checkpoints and all.
    let mut forged = orig.clone();
    forged[2] = b"{\"event\":2,\"rewritten\":true}".to_vec();
    forged.extend(events(15).into_iter().skip(10));
    let b = tempfile::tempdir().unwrap();
    let log = build(b.path(), &forged);
    log.verify(None).unwrap();
    let (_, msg) = err_of(&log, Some(saved.as_bytes()));
    assert!(msg.contains("rewritten"), "{msg}");
    // Shrunk below the saved checkpoint.
    let c = tempfile::tempdir().unwrap();
    let log = build(c.path(), &orig[..7]);
    let (i, msg) = err_of(&log, Some(saved.as_bytes()));
    assert_eq!(i, Some(7));
    assert!(msg.contains("shrank"), "{msg}");
}

/// Child side of `kill_9_loses_no_acknowledged_event`.
#[test]
fn child_appender() {
    let Some(dir) = std::env::var_os("KILN_TLOG_CHILD_DIR") else {
        return;
    };
    let log = Arc::new(open(Path::new(&dir)));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || {
                for k in 0.. {
                    let e = format!("child-{t}-{k}");
                    let i = log.append(e.as_bytes()).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "{i} {e}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_event() {
    let d = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("KILN_TLOG_CHILD_DIR", d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        while acked.len() < 300 + round * 50 {
            let line = lines.next().unwrap().unwrap();
            if let Some((i, e)) = line.split_once(' ')
                && let Ok(i) = i.parse::<u64>()
            {
                acked.push((i, e.to_string()));
            }
        }
        // SIGKILL mid-stream (`Child::kill` sends SIGKILL).
        child.kill().unwrap();
        child.wait().unwrap();
        let log = open(d.path());
        for (i, e) in &acked {
            assert_eq!(
                log.entry(*i).unwrap().0,
                e.as_bytes(),
                "acknowledged event {i} lost"
            );
        }
        log.verify(None).unwrap();
        let (cp, _) = log.checkpoint().unwrap();
        assert_eq!(cp.size, log.size());
    }
}

#[test]
fn damage_under_a_checkpoint_is_kept_as_evidence_not_trimmed() {
    let d = tempfile::tempdir().unwrap();
    fill(&open(d.path()), 6);
    let path = d.path().join("entries");
    let mut bytes = std::fs::read(&path).unwrap();
    let pos = bytes.windows(9).position(|w| w == b"\"event\":5").unwrap();
    bytes[pos + 8] = b'9';
    std::fs::write(&path, &bytes).unwrap();
    let log = open(d.path());
    assert!(log.poisoned().is_some());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "recovery destroyed the evidence"
    );
    let (i, msg) = err_of(&log, None);
    assert_eq!(i, Some(5), "{msg}");
    assert!(msg.contains("modified"), "{msg}");
    assert!(log.append(b"x").is_err());
}

/// Rewrite the record of event `i` in `entries` to `new` (same length),
/// recomputing its check bytes, as a careful tamperer would.
fn rewrite_record(dir: &Path, i: u64, new: &[u8]) {
    let idx = std::fs::read(dir.join("index")).unwrap();
    let off =
        u64::from_be_bytes(idx[i as usize * 8..i as usize * 8 + 8].try_into().unwrap()) as usize;
    let path = dir.join("entries");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = u32::from_be_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
    assert_eq!(
        len,
        new.len(),
        "a same-length rewrite keeps the index valid"
    );
    bytes[off + 4..off + 4 + len].copy_from_slice(new);
    bytes[off + 4 + len..off + 8 + len].copy_from_slice(&leaf_hash(new)[..4]);
    std::fs::write(&path, &bytes).unwrap();
}

/// Equal-length events, so a swap leaves every index offset valid.
fn same_len(i: u64) -> Vec<u8> {
    format!("{{\"event\":{i:06}}}").into_bytes()
}

/// Swap events `a` and `b` in the entries file (`tree` left in place).
fn swap(dir: &Path, a: u64, b: u64) {
    let log = open(dir);
    let (ea, _) = log.entry(a).unwrap();
    let (eb, _) = log.entry(b).unwrap();
    drop(log);
    rewrite_record(dir, a, &eb);
    rewrite_record(dir, b, &ea);
}

/// Batches of `sizes` equal-length events; returns the log directory.
fn batches(sizes: &[usize]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    let mut i = 0u64;
    for &n in sizes {
        let es: Vec<Vec<u8>> = (0..n as u64).map(|k| same_len(i + k)).collect();
        let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
        log.append_batch(&refs).unwrap();
        i += n as u64;
    }
    d
}

fn snapshot(dir: &Path) -> Vec<Vec<u8>> {
    ["entries", "index", "tree", "checkpoints"]
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect()
}

/// Tampering the open check must see: poisoned, appends refused, nothing
/// on disk repaired or re-signed, and a full verification fails too.
fn assert_refused_on_open(dir: &Path) {
    let before = snapshot(dir);
    let log = open(dir);
    let why = log
        .poisoned()
        .expect("open accepted a tampered newest batch");
    assert!(why.contains("tree"), "{why}");
    assert!(matches!(
        log.append(b"after tampering"),
        Err(kiln_tlog::LogError::Inconsistent(_))
    ));
    assert!(log.verify(None).is_err());
    drop(log);
    assert_eq!(snapshot(dir), before, "open changed a tampered log");
}

#[test]
fn swap_inside_the_newest_batch_is_refused_on_open() {
    let d = batches(&[3, 4, 5]);
    swap(d.path(), 8, 10);
    assert_refused_on_open(d.path());
}

#[test]
fn swap_of_the_last_two_events_is_refused_on_open() {
    let d = batches(&[1, 1, 1, 1]);
    swap(d.path(), 2, 3);
    assert_refused_on_open(d.path());
}

#[test]
fn edit_with_recomputed_check_bytes_in_the_newest_batch_is_refused_on_open() {
    let d = batches(&[2, 6]);
    rewrite_record(d.path(), 5, &same_len(999_999));
    assert_refused_on_open(d.path());
    // The first event of the batch is checked as well as the last.
    let d = batches(&[2, 6]);
    rewrite_record(d.path(), 2, &same_len(999_999));
    assert_refused_on_open(d.path());
}

#[test]
fn older_batches_are_left_to_full_verification() {
    // What the bounded open check cannot see (documented): a record below
    // the previous checkpoint. `verify` names it.
    let d = batches(&[3, 3, 3]);
    swap(d.path(), 0, 1);
    let log = open(d.path());
    assert!(log.poisoned().is_none());
    let (i, msg) = err_of(&log, None);
    assert_eq!(i, Some(0), "{msg}");
}

#[test]
fn refuse_changes_marker_persists_until_cleared() {
    let d = batches(&[2]);
    let log = open(d.path());
    log.refuse_changes("event 1: modified").unwrap();
    assert!(log.append(b"x").is_err());
    drop(log);
    let log = open(d.path());
    let why = log
        .poisoned()
        .expect("the marker did not survive reopening");
    assert!(why.contains("event 1: modified"), "{why}");
    assert!(log.append(b"x").is_err());
    // Another handle (another process) leaving the marker stops this one.
    let other = open(d.path());
    other.clear_refusal().unwrap();
    assert!(other.poisoned().is_none());
    assert_eq!(log.append(b"x").unwrap(), 2);
    other.refuse_changes("again").unwrap();
    assert!(log.append(b"y").is_err());
    assert!(other.clear_refusal().unwrap());
    assert!(!other.clear_refusal().unwrap());
    assert_eq!(log.append(b"y").unwrap(), 3);
}

#[test]
fn a_repeated_newest_checkpoint_does_not_hide_the_newest_batch() {
    // Copying the newest checkpoint frame needs no key; it must not make
    // the newest batch look empty and so skip its check.
    let d = batches(&[3]);
    let before = std::fs::metadata(d.path().join("checkpoints"))
        .unwrap()
        .len() as usize;
    {
        let log = open(d.path());
        let es: Vec<Vec<u8>> = (3..7).map(same_len).collect();
        let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
        log.append_batch(&refs).unwrap();
    }
    let path = d.path().join("checkpoints");
    let mut cps = std::fs::read(&path).unwrap();
    let frame = cps[before..].to_vec();
    cps.extend_from_slice(&frame);
    std::fs::write(&path, &cps).unwrap();
    swap(d.path(), 4, 5);
    let snap = snapshot(d.path());
    let log = open(d.path());
    let why = log
        .poisoned()
        .expect("a repeated checkpoint hid a tampered newest batch");
    assert!(why.contains("not fewer than"), "{why}");
    assert!(log.append(b"after tampering").is_err());
    drop(log);
    assert_eq!(snapshot(d.path()), snap, "open changed a tampered log");
}

#[test]
fn a_crafted_index_offset_reads_as_damage_not_overflow() {
    let d = batches(&[2, 2]);
    // Point the newest event's record at u64::MAX - 2.
    let path = d.path().join("index");
    let mut idx = std::fs::read(&path).unwrap();
    idx[3 * 8..4 * 8].copy_from_slice(&(u64::MAX - 2).to_be_bytes());
    std::fs::write(&path, &idx).unwrap();
    // Opening does not panic, and nothing is accepted on top of it.
    let log = open(d.path());
    assert!(log.verify(None).is_err());
}

#[test]
fn an_empty_batch_signs_no_checkpoint() {
    let d = batches(&[2]);
    let path = d.path().join("checkpoints");
    let before = std::fs::read(&path).unwrap();
    let log = open(d.path());
    assert_eq!(log.append_batch(&[]).unwrap(), 2);
    drop(log);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let log = open(d.path());
    assert!(log.poisoned().is_none());
    log.append(b"next").unwrap();
}
