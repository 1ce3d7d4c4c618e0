#![no_main]
//! Base-image layer tars: applied to a tree with whiteouts, never escaping.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut tree = kiln_image::tree::Tree::new();
    let mut r: &[u8] = data;
    if kiln_image::base::apply_tar(&mut r, &mut tree, &mut None, &mut Vec::new()).is_ok() {
        for k in tree.keys() {
            assert!(k.starts_with('/') && !k.split('/').any(|c| c == ".."), "{k}");
        }
    }
});
