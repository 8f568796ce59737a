//! Compiles the hand-written Mesos v1 protobuf subset under `proto/` with protox (a pure-Rust
//! protobuf compiler), so building needs no system `protoc`.
//!
//! Besides the prost types (`mesos.v1.rs`, `mesos.v1.scheduler.rs`) it writes the encoded
//! `FileDescriptorSet` (`mesos_descriptor.bin`), which `mesos::json` uses to speak Mesos's
//! JSON encoding through `prost-reflect`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mesos/v1/mesos.proto",
        "proto/mesos/v1/scheduler.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    // `sqlx::migrate!` embeds the migrations at compile time: a new or edited one must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(files)?;
    std::fs::write(
        out_dir.join("mesos_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    prost_build::Config::new()
        // Deterministic encoding of map fields (e.g. `TaskInfo.limits`).
        .btree_map(["."])
        // `prost::Name` impls, so the JSON codec can find each message's descriptor.
        .enable_type_names()
        .compile_fds(fds)?;
    Ok(())
}
