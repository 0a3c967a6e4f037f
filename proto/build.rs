//! Compiles every `.proto` under this folder with protox (pure Rust, nothing from the system
//! package manager) and generates messages, clients and servers into `OUT_DIR`, plus the
//! descriptor set that gRPC reflection and event decoding in other languages use.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("kith"), &mut files)?;
    files.sort();
    // tonic-prost-build does not watch protos on its own.
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("kith_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Type names let events be written under their fully-qualified protobuf name.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}

fn collect(dir: &std::path::Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    // A folder's mtime changes when a file is added to it, not to its subfolders: watch each,
    // so that a new proto in an existing package is compiled.
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    Ok(())
}
