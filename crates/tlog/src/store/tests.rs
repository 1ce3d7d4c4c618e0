use super::*;

fn open(dir: &Path) -> Log {
    let s = Signer::from_seed("kiln.test/log", &[3; 32]).unwrap();
    let v = s.verifier();
    Log::open(dir, Some(s), v).unwrap()
}

/// Opening reads records only from the previous checkpoint on: the cost
/// is the newest batch (plus O(log n) tree reads), never the history.
#[test]
fn open_reads_only_the_newest_batch() {
    let d = tempfile::tempdir().unwrap();
    let log = open(d.path());
    let old: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let refs: Vec<&[u8]> = old.iter().map(|e| e.as_slice()).collect();
    log.append_batch(&refs).unwrap();
    log.append_batch(&refs[..500]).unwrap();
    for e in &refs[..3] {
        log.append(e).unwrap();
    }
    let newest = log.append_batch(&refs[..7]).unwrap();
    assert_eq!(newest, 2503);
    let prev_end = log.files.lock().unwrap().entry_offset(newest).unwrap();
    drop(log);
    let log = open(d.path());
    assert!(log.poisoned().is_none());
    let f = log.files.lock().unwrap();
    assert_eq!(f.prev_size, 2503);
    assert_eq!(f.entry_reads, 7, "records checked on open");
    assert_eq!(f.lowest_entry_read, prev_end);
    drop(f);
    // A read-only handle (`kiln log show`) costs the same.
    let s = Signer::from_seed("kiln.test/log", &[3; 32]).unwrap();
    let ro = Log::open(d.path(), None, s.verifier()).unwrap();
    assert_eq!(ro.files.lock().unwrap().entry_reads, 7);
}
