//! Link option for the `klaxon` binary only: pack its relative relocations (`DT_RELR`).
//!
//! A position-independent executable carries one 24-byte relative relocation per pointer
//! in its data, which the loader reads at every start: ≈ 1.3 MiB of `.rela.dyn` that
//! stayed resident in the idle agent. Packed, the table is about 20 KiB and the idle agent
//! is ≈ 1.4 MiB smaller (bench/RESULTS-scheduler.md). The binary stays
//! position-independent, so ASLR is kept; the loader still writes each pointer (the
//! relocated `.data.rel.ro`, ≈ 1.4 MiB, is unchanged).
//!
//! Only for Linux with glibc, where the loader knows `DT_RELR` since glibc 2.36: the
//! linker then records a `GLIBC_ABI_DT_RELR` version need, so an older glibc refuses to
//! load the binary with a clear message rather than misread it. Only when a probe link with
//! the flag succeeds silently and the probe runs here (a linker that does not know the
//! option warns and ignores it). Otherwise, or with `KLAXON_NO_PACKED_RELOCS` set (to build
//! for an older glibc than the build machine's), the binary is linked as before.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    println!("cargo::rerun-if-env-changed=KLAXON_NO_PACKED_RELOCS");
    if env::var_os("KLAXON_NO_PACKED_RELOCS").is_some() {
        return;
    }
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let libc = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && libc == "gnu" && linker_packs() {
        println!("cargo::rustc-link-arg-bins={FLAG}");
    }
}

/// Whether the linker rustc will use links a position-independent program with the flag,
/// silently, and whether this machine's loader runs the result. Probed only for native
/// builds: a cross linker, and the target's loader, are unknown here.
fn linker_packs() -> bool {
    if env::var("HOST").ok() != env::var("TARGET").ok() {
        return false;
    }
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr_probe.c");
    let program = out.join("relr_probe");
    // One pointer in data, so the probe has a relative relocation to pack.
    let code = "static int x; int *volatile p = &x; int main(void) { return *p; }\n";
    if std::fs::write(&source, code).is_err() {
        return false;
    }
    let linker = env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned());
    let linked = Command::new(linker)
        .args(["-fPIE", "-pie", FLAG, "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        // Not a word on stderr: GNU ld before 2.38 links anyway, warning that it ignores
        // the option (and `--fatal-warnings` does not catch that warning).
        .is_ok_and(|o| o.status.success() && o.stderr.is_empty());
    linked && Command::new(&program).status().is_ok_and(|s| s.success())
}
