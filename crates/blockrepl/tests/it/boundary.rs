//! The engine crate stays free of I/O runtimes: the driver lives in `blockrepld`.

#[test]
fn the_engine_crate_depends_on_no_io_runtime() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("manifest");
    for banned in ["tokio", "quinn", "nix", "rustix", "fuser", "libc"] {
        assert!(
            !manifest.lines().any(|l| l.trim_start().starts_with(banned)),
            "blockrepl's Cargo.toml names {banned}: I/O belongs in blockrepld"
        );
    }
    let engine = include_str!("../../src/engine.rs");
    for banned in ["std::net", "std::fs", "std::time::Instant", "std::thread", "HashMap"] {
        assert!(!engine.contains(banned), "engine.rs uses {banned}");
    }
}
