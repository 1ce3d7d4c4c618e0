//! Benchmark of the durable log (used by bench/audit-log.sh; not a test).
//!
//! `log_bench appends <dir> <writers> <events>`: concurrent durable appends.
//! `log_bench fill <dir> <events>`: build a log in batches of 1,000.
//! `log_bench prove <dir> <count>`: mean inclusion-proof time.
//! `log_bench verify <dir>`: full verification time.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use kiln_tlog::{Log, Signer};

fn open(dir: &Path) -> Log {
    let s = Signer::from_seed("bench.kiln/log", &[1; 32]).expect("signer");
    let v = s.verifier();
    Log::open(dir, Some(s), v).expect("open log")
}

/// An event the size of a real kiln audit event (~450 bytes).
fn event(w: u64, k: u64) -> Vec<u8> {
    format!(
        r#"{{"v":1,"time":"2026-11-22T06:00:00.000Z","action":"image.build","outcome":"success","actor":{{"user":"root","uid":0,"key":null}},"origin":{{"host":"bench","pid":{w},"command":"kiln build"}},"resources":[{{"kind":"image","name":"hello:1.0.0","digest":"sha256:{:064x}"}}],"reason":"benchmark writer {w} event {k}","details":{{"layers":3}}}}"#,
        w * 1_000_000 + k
    )
    .into_bytes()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let dir = Path::new(arg(2));
    match arg(1) {
        "appends" => {
            let writers: u64 = arg(3).parse().expect("writers");
            let events: u64 = arg(4).parse().expect("events");
            let log = Arc::new(open(dir));
            let per = events / writers;
            let t = Instant::now();
            let hs: Vec<_> = (0..writers)
                .map(|w| {
                    let log = log.clone();
                    std::thread::spawn(move || {
                        for k in 0..per {
                            log.append(&event(w, k)).expect("append");
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().expect("writer");
            }
            let s = t.elapsed().as_secs_f64();
            let n = per * writers;
            let cps = log.checkpoints().expect("checkpoints").len();
            println!(
                "appends={n} writers={writers} seconds={s:.3} per_second={:.0} batches={cps}",
                n as f64 / s
            );
        }
        "fill" => {
            let events: u64 = arg(3).parse().expect("events");
            let log = open(dir);
            let mut k = 0;
            while k < events {
                let batch: Vec<Vec<u8>> =
                    (k..(k + 1000).min(events)).map(|i| event(0, i)).collect();
                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                log.append_batch(&refs).expect("append");
                k += batch.len() as u64;
            }
            println!("size={}", log.size());
        }
        "prove" => {
            let count: u64 = arg(3).parse().expect("count");
            let log = open(dir);
            let n = log.size();
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            let t = Instant::now();
            for _ in 0..count {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let p = log.inclusion_proof(x % n, n).expect("proof");
                std::hint::black_box(p);
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / count as f64;
            println!("size={n} proofs={count} mean_us={us:.1}");
        }
        "verify" => {
            let t0 = Instant::now();
            let log = open(dir);
            let t = Instant::now();
            let r = log.verify(None).expect("verify");
            println!(
                "size={} checkpoints={} open_s={:.3} verify_s={:.3}",
                r.size,
                r.checkpoints,
                t.duration_since(t0).as_secs_f64(),
                t.elapsed().as_secs_f64()
            );
        }
        _ => {
            eprintln!("usage: log_bench appends|fill|prove|verify <dir> ...");
            std::process::exit(2);
        }
    }
}
