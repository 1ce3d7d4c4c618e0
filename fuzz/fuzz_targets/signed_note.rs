#![no_main]
//! C2SP signed notes and checkpoints (saved checkpoints, evidence bundles,
//! tlog-tiles mirrors), and verifier key strings.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signer = kiln_tlog::Signer::from_seed("fuzz.example/log", &[7; 32]).expect("signer");
    let v = signer.verifier();
    let _ = kiln_tlog::open_note(data, std::slice::from_ref(&v));
    let _ = kiln_tlog::Checkpoint::open(data, std::slice::from_ref(&v));
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kiln_tlog::Checkpoint::parse(s);
        let _ = kiln_tlog::Verifier::from_key_str(s);
    }
});
