//! The checked-in header `include/signal_crypto.h` must be exactly what cbindgen
//! generates from the code. Regenerate with `UPDATE_HEADER=1 cargo test -p ffi --test header`.

use std::path::Path;

#[test]
fn checked_in_header_matches_generated() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = crate_dir.join("include/signal_crypto.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "ffi/include/signal_crypto.h is out of date: run UPDATE_HEADER=1 cargo test -p ffi --test header"
    );
}
