//! Link `cove` as a non-PIE executable, as cove-oci is (see its build.rs):
//! a PIE binary is relocated at start-up, and the loader's writes turn the
//! 230 KiB of its .data.rel.ro into private anonymous pages that every
//! process keeps. Every CT's monitor is a `cove` process that lives as long
//! as its CT; non-PIE, those pages stay clean file pages that the monitor's
//! trim gives back after start (crates/cove/src/trim.rs). The cost: no
//! ASLR for the binary's own code (libraries, heap and stack keep it).
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
