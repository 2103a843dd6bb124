//! Generates the Rust code of the contract from ../../idl with the `thrift` compiler (0.17, on PATH or
//! in $THRIFT) into $OUT_DIR. The generated files start with inner attributes (`#![allow(...)]`), which
//! `include!` cannot take inside a module: they are dropped here and set on the modules in main.rs.
use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let idl = manifest.join("../../idl");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("thrift");
    fs::create_dir_all(&out).unwrap();
    let thrift = env::var("THRIFT").unwrap_or_else(|_| "thrift".to_string());
    let status = Command::new(&thrift)
        .args(["-r", "--gen", "rs", "-out"])
        .arg(&out)
        .arg(idl.join("handshake.thrift"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{thrift}` (the Thrift compiler 0.17: apt-get install thrift-compiler): {e}"));
    assert!(status.success(), "`{thrift} -r --gen rs` failed: {status}");
    for name in ["session.rs", "handshake.rs"] {
        let path = out.join(name);
        let code = fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = code.lines().filter(|l| !l.trim_start().starts_with("#![")).collect();
        fs::write(&path, kept.join("\n")).unwrap();
    }
    // Shown by the client's first line.
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(rustc).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    println!("cargo:rustc-env=RUSTC_VERSION={}", version.unwrap_or_else(|_| "?".to_string()));
    let lock = fs::read_to_string(manifest.join("Cargo.lock")).unwrap_or_default();
    let thrift_version = lock.split("[[package]]").find(|p| p.contains("name = \"thrift\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string()).unwrap_or_else(|| "?".to_string());
    println!("cargo:rustc-env=THRIFT_CRATE_VERSION={thrift_version}");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed={}", idl.join("handshake.thrift").display());
    println!("cargo:rerun-if-changed={}", idl.join("session.thrift").display());
    println!("cargo:rerun-if-env-changed=THRIFT");
}
