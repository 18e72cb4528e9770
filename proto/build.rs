//! Compiles `vecino/v1/*.proto` with protox (pure Rust) and prost-build: no `protoc` anywhere.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("vecino/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    println!("cargo:rerun-if-changed=vecino/v1");
    let fds = protox::compile(&files, ["."])?;
    let mut config = prost_build::Config::new();
    // Byte fields are `bytes::Bytes`: decoding from a `Bytes` buffer slices it instead of copying.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
