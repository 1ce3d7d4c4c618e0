//! Records the exact versions of the compression libraries that shape layer
//! bytes, so builds can state (and provenance can record) what produced them.
use std::path::Path;

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (krate, var) in [
        ("zstd-sys", "KILN_ZSTD_SYS_VERSION"),
        ("libdeflate-sys", "KILN_LIBDEFLATE_VERSION"),
    ] {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        let v = text
            .find(&needle)
            .and_then(|i| text[i + needle.len()..].split('"').next())
            .unwrap_or("unknown");
        println!("cargo:rustc-env={var}={v}");
    }
}
