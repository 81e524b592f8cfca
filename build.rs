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
    Ok(())
}
