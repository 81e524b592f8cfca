//! Compiles the protobuf API. protoc comes from the `protoc-bin-vendored` crate so a fresh machine
//! needs nothing installed by hand.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("smogwatch_descriptor.bin"))
        .compile_protos(&["proto/smogwatch/v1/smogwatch.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    // The ScyllaDB half of tests/store_conformance.rs exists only when a server is configured at
    // build time; otherwise a test named `scylla_conformance_skipped_no_server` says so, instead of
    // a row of Scylla tests that would "pass" without having run.
    println!("cargo:rustc-check-cfg=cfg(smogwatch_scylla_server)");
    println!("cargo:rerun-if-env-changed=SMOGWATCH_SCYLLA_URI");
    if std::env::var_os("SMOGWATCH_SCYLLA_URI").is_some_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=smogwatch_scylla_server");
    }
    Ok(())
}
