//! Compiles `runtime/v1/api.proto` into prost messages and tonic servers and clients.
//!
//! The compiler is protox, a protobuf compiler written in Rust, rather than `protoc`: `cargo build`
//! then works on a new machine with nothing but the Rust toolchain (no `protobuf-compiler`
//! package, no downloaded binary), and every machine compiles the file with the same compiler
//! version, pinned in Cargo.lock.
//!
//! The compiled descriptor set is written next to the generated code, encoded as the compiler
//! produced it (with every option, including ones prost's own descriptor types do not model), for
//! the contract test and for anyone who wants reflection.

use std::path::PathBuf;

const PROTO: &str = "runtime/v1/api.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);

    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_source_info(false).open_file(PROTO)?;
    std::fs::write(out.join("runtime.v1.descriptors.bin"), compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
