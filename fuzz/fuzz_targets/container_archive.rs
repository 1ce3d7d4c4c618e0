#![no_main]
//! `kiln import FILE`: oci-archive / docker-archive tars are hostile input. Whatever the
//! bytes, unpacking never panics and writes nothing outside its scratch directory.
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("kiln-fuzz-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let scratch = base.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let archive: PathBuf = base.join("in.tar");
    std::fs::write(&archive, data).unwrap();
    let _ = kiln_image::archive::unpack_archive(&archive, &scratch);
    // Only the archive and the scratch directory exist under base.
    let mut names: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["in.tar", "scratch"]);
    let _ = std::fs::remove_dir_all(&base);
});
