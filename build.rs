//! Compiles every `ebpf-probes/*.bpf.c` with clang into `$OUT_DIR/NAME.bpf.o`, which
//! `src/capture` embeds with `aya::include_bytes_aligned!`.
//!
//! Same approach as aya's own `test/integration-test/build.rs`: the probes are C, built
//! by clang for the `bpfel` target, so the Rust side stays on stable. The probes use only
//! the stable UAPI context structs, so the uapi headers (linux-libc-dev) and
//! `bpf/bpf_helpers.h` (libbpf-dev) are all they need: no vmlinux.h is generated.
//!
//! Environment: `CLANG` overrides the compiler (default `clang`), `EGRESSOR_BPF_CFLAGS`
//! adds flags.
//!
//! Without the `bundled-duckdb` feature it also links the prebuilt libduckdb (see
//! [`link_prebuilt_duckdb`]).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let probes_dir = manifest_dir.join("ebpf-probes");
    let include_dir = probes_dir.join("include");

    println!("cargo:rerun-if-changed={}", probes_dir.display());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=EGRESSOR_BPF_CFLAGS");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&probes_dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", probes_dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".bpf.c")))
        .collect();
    sources.sort();
    for header in std::fs::read_dir(&include_dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", include_dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
    {
        println!("cargo:rerun-if-changed={}", header.display());
    }

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    check_clang(&clang);

    // With `-target bpfel` clang does not search the multiarch include directory, where
    // Debian keeps <asm/types.h>; add it for the host architecture.
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => ("aarch64-linux-gnu", "arm64"),
        _ => ("x86_64-linux-gnu", "x86"),
    };
    let extra: Vec<String> = env::var("EGRESSOR_BPF_CFLAGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();

    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let name = src.file_name().and_then(|n| n.to_str()).expect("utf-8 file name");
        let obj = out_dir.join(name.replace(".bpf.c", ".bpf.o"));
        compile(&clang, src, &obj, &include_dir, multiarch, &extra);
    }

    if env::var_os("CARGO_FEATURE_BUNDLED_DUCKDB").is_none() {
        link_prebuilt_duckdb();
    }
}

/// The prebuilt libduckdb (`cargo xtask setup --prebuilt-duckdb`, docs/install.md): libduckdb-sys
/// links `DUCKDB_LIB_DIR/libduckdb.so` but a build script of a dependency cannot give the binaries
/// above it a run-time path, so this one does: `EGRESSOR_DUCKDB_RPATH` (`cargo xtask dist` sets
/// `$ORIGIN/../lib`), else `DUCKDB_LIB_DIR` itself. The library xtask fetches is the DuckDB C API
/// inside PyPI's duckdb wheel, which also refers to the CPython API that egressor never calls;
/// `libduckdb_pystub.so` beside it (built by xtask) resolves those names to a function that aborts.
fn link_prebuilt_duckdb() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-env-changed=EGRESSOR_DUCKDB_RPATH");
    let Some(dir) = env::var_os("DUCKDB_LIB_DIR").map(PathBuf::from) else {
        println!(
            "cargo:warning=built without the bundled-duckdb feature and without DUCKDB_LIB_DIR: \
             libduckdb-sys looks for a system libduckdb (`cargo xtask setup --prebuilt-duckdb` \
             fetches one of the right version)"
        );
        return;
    };
    let stub = dir.join("libduckdb_pystub.so");
    println!("cargo:rerun-if-changed={}", stub.display());
    if stub.exists() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // Nothing in egressor refers to it, and rustc links with --as-needed, putting the
        // libraries of a crate before those of its dependencies: kept only without --as-needed.
        println!("cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-lduckdb_pystub,--pop-state");
    }
    let rpath = env::var("EGRESSOR_DUCKDB_RPATH").unwrap_or_else(|_| dir.display().to_string());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{rpath}");
}

fn check_clang(clang: &str) {
    match Command::new(clang).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{clang} --version` failed ({}): the eBPF probes in ebpf-probes/ need clang \
             with the BPF target. {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{clang}` ({e}): the eBPF probes in ebpf-probes/ are compiled with clang. \
             Install it (Debian/Ubuntu: `apt-get install clang llvm libbpf-dev linux-libc-dev`) \
             or point the CLANG environment variable at it."
        ),
    }
}

fn compile(
    clang: &str,
    src: &Path,
    obj: &Path,
    include_dir: &Path,
    (multiarch, target_arch): (&str, &str),
    extra: &[String],
) {
    let mut cmd = Command::new(clang);
    cmd.args(["-g", "-O2", "-target", "bpfel"])
        // v3: 32-bit atomics (flags are or-ed from several CPUs); kernel >= 5.12.
        .arg("-mcpu=v3")
        .arg(format!("-D__TARGET_ARCH_{target_arch}"))
        .args(["-Wall", "-Werror"])
        .arg("-I")
        .arg(include_dir)
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(extra)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "clang failed to compile {} ({}):\n{}\n{}\nIf a header is missing, install \
             libbpf-dev (bpf/bpf_helpers.h) and linux-libc-dev (linux/bpf.h).",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}
