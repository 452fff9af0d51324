//! `cargo xtask <task>`: the project's own commands, so the README and CI need only two lines.
//!
//! - `setup`: install the system packages egressor needs (Debian), build it, and run the main job on
//!   demo data so a newcomer sees real output.
//! - `test`: formatting, clippy and every test (unit and integration; probe tests need root).
//! - `bench`: the benchmarks behind docs/benchmarks.md.
//! - `dist`: the release binary, stripped, in a tarball with its sha256 (docs/install.md).
//! - `fetch-duckdb`: the prebuilt DuckDB that `--prebuilt-duckdb` builds against.
//!
//! Every nested cargo call shares one persistent target directory outside the work tree
//! (`$CARGO_TARGET_DIR`, default `~/.cache/egressor/target`): the bundled DuckDB takes ~50 minutes to
//! compile from scratch on two cores and must be built once per machine, not once per clone.
//! `setup`, `test` and `dist` take `--prebuilt-duckdb` (or `EGRESSOR_PREBUILT_DUCKDB=1`) to link a
//! prebuilt libduckdb of the same version instead, for new machines and CI (see [`PREBUILT_DUCKDB`]).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages: clang/llvm/libbpf-dev build the probes, bpftool inspects them, iperf3 and tmux are
/// used by tests and benchmarks, nethogs is the agent benchmark's peer (bandwhich, the other, comes
/// from crates.io: `cargo install bandwhich`), graphviz renders `egressor graph --output dot`, time
/// (`/usr/bin/time`) measures iperf3 in `docs/experiments/veth-hook-floor.py`; python3, util-linux
/// (setpriv), zsh and man-db are used by the `run`, completion and man page tests.
const APT_PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libbpf-dev",
    "linux-libc-dev",
    "bpftool",
    "iproute2",
    "iptables",
    "iperf3",
    "nethogs",
    "tmux",
    "graphviz",
    "curl",
    "unzip",
    "time",
    // `egressor run` tests: python3 is a forked server, setpriv runs egressor without root, zsh and
    // man-db load the completion script and render the man page.
    "python3",
    "util-linux",
    "zsh",
    "man-db",
];

/// The DuckDB that libduckdb-sys =1.20000.1 bundles (`duckdb.tar.gz`, pragma_version.cpp:
/// `DUCKDB_VERSION`, `DUCKDB_SOURCE_ID`). A prebuilt library must be exactly this build; the store's
/// test `linked_duckdb_is_the_pinned_build` checks the one a build links.
const DUCKDB_VERSION: &str = "v2.0.0";
const DUCKDB_SOURCE_ID: &str = "d54cbbe3df";

/// A prebuilt DuckDB from a package registry, so that a new machine or a CI job does not compile
/// DuckDB (~50 minutes on two cores).
///
/// No registry this project reaches ships a plain libduckdb.so of v2.0.0: the npm `@duckdb/node-bindings-*`
/// packages stop at 1.5.6, Debian 12 has no DuckDB, crates.io's crates carry sources. PyPI's duckdb
/// 2.0.0 wheel does: its extension module is DuckDB v2.0.0 (d54cbbe3df) built as one shared object with
/// Parquet and JSON built in, and it exports the whole C API (`duckdb_open`, `duckdb_appender_*`,
/// `duckdb_query_arrow`, ... 1,762 functions) beside the Python binding. It also refers to 212 CPython
/// functions and objects that only its Python binding uses; [`fetch_duckdb`] builds
/// `libduckdb_pystub.so`, which defines each of them as a function that aborts with a message, so no
/// Python is needed. The stable-ABI (abi3) wheel is pinned: one file for every Python version.
struct Prebuilt {
    arch: &'static str,
    url: &'static str,
    sha256: &'static str,
    /// The extension module inside the wheel (a zip).
    member: &'static str,
}

const PREBUILT_DUCKDB: &[Prebuilt] = &[
    Prebuilt {
        arch: "x86_64",
        url: "https://files.pythonhosted.org/packages/cc/33/01ad2535ee897db2bad70cbc800655167c53afd0b955eed84f0759c2f417/duckdb-2.0.0-cp312-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        sha256: "ab51ec57d329d6f3df37c0287b55d71c3fc07bb54b61d1afed09104f953b1431",
        member: "_duckdb.abi3.so",
    },
    // Not tried on an arm64 machine (none here); the same wheel for aarch64.
    Prebuilt {
        arch: "aarch64",
        url: "https://files.pythonhosted.org/packages/92/4a/985fb9d93d7f9f8e82092ddfe05ec8c9a1d0df7bdb0f562a10ced30e3e8f/duckdb-2.0.0-cp312-abi3-manylinux_2_26_aarch64.manylinux_2_28_aarch64.whl",
        sha256: "e38daf0acbad9de7ce892d402b68409519291ee16af3c2cba85ace3b085c7eaa",
        member: "_duckdb.abi3.so",
    },
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo run` sets CARGO_MANIFEST_DIR for the process: the clone this runs in. The compile-time
    // value names the clone that built the binary, which a shared target directory can reuse.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let root = manifest.parent().expect("xtask is in the workspace").to_path_buf();
    std::env::set_current_dir(&root)?;
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        let home = std::env::var_os("HOME").context("HOME is not set; set CARGO_TARGET_DIR")?;
        let dir = PathBuf::from(home).join(".cache/egressor/target");
        // SAFETY: single-threaded at this point; every child process inherits it.
        unsafe { std::env::set_var("CARGO_TARGET_DIR", &dir) };
    }
    let mut rest: Vec<String> = args.iter().skip(1).cloned().collect();
    match args.first().map(String::as_str) {
        Some("setup") => setup(&mut rest),
        Some("deps") => install_packages(),
        Some("test") => test(&DuckDb::from_args(&mut rest)?, &rest),
        Some("bench") => bench(&DuckDb::from_args(&mut rest)?, &rest),
        Some("dist") => dist(&mut rest),
        Some("fetch-duckdb") => {
            println!("{}", fetch_duckdb()?.display());
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: cargo xtask setup [--prebuilt-duckdb] | deps | test [--prebuilt-duckdb] [-- cargo test args] \
                 | bench [--prebuilt-duckdb] [ingest|cost|top|agent|cluster|anomalies] | dist [--prebuilt-duckdb] [--profile P] | fetch-duckdb"
            );
            bail!("unknown task {:?}", args.first());
        }
    }
}

/// Which DuckDB a build links.
enum DuckDb {
    /// Compiled from the sources libduckdb-sys ships (the default feature `bundled-duckdb`).
    Bundled,
    /// The prebuilt library in this directory (`--no-default-features`, `DUCKDB_LIB_DIR`).
    Prebuilt(PathBuf),
}

impl DuckDb {
    /// `--prebuilt-duckdb` (removed from `args`) or `EGRESSOR_PREBUILT_DUCKDB=1` fetch the prebuilt
    /// library; anything else builds the bundled one.
    fn from_args(args: &mut Vec<String>) -> Result<Self> {
        let flag = take_flag(args, "--prebuilt-duckdb");
        let env = std::env::var("EGRESSOR_PREBUILT_DUCKDB").is_ok_and(|v| !matches!(v.as_str(), "" | "0"));
        if flag || env { Ok(DuckDb::Prebuilt(fetch_duckdb()?)) } else { Ok(DuckDb::Bundled) }
    }

    /// Adds the features and environment to a cargo build, clippy or test command (after its
    /// subcommand).
    fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        match self {
            DuckDb::Bundled => cmd,
            DuckDb::Prebuilt(dir) => cmd.arg("--no-default-features").env("DUCKDB_LIB_DIR", dir),
        }
    }
}

fn take_flag(args: &mut Vec<String>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != flag);
    args.len() != before
}

fn take_value(args: &mut Vec<String>, flag: &str) -> Result<Option<String>> {
    let Some(i) = args.iter().position(|a| a == flag) else { return Ok(None) };
    if i + 1 >= args.len() {
        bail!("{flag} needs a value");
    }
    let value = args.remove(i + 1);
    args.remove(i);
    Ok(Some(value))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A cargo command with the environment `cargo run` gave xtask removed. Build scripts such as
/// ring's declare `rerun-if-env-changed=CARGO_PKG_NAME` / `CARGO_MANIFEST_DIR`: inheriting xtask's
/// values would make them rerun, rebuild every crate above them and recompile the bundled DuckDB
/// (~30 minutes) whenever cargo is run both directly and through xtask, or from another clone.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                k.as_ref(),
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            c.env_remove(k.as_ref());
        }
    }
    c
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

fn setup(args: &mut Vec<String>) -> Result<()> {
    // Packages first: fetching the prebuilt DuckDB needs curl and unzip, which a new machine may lack.
    install_packages()?;
    let duckdb = DuckDb::from_args(args)?;
    if !args.is_empty() {
        bail!("setup: unexpected arguments {args:?}");
    }
    // The dev profile compiles every dependency (DuckDB included) with optimisation, and it is the
    // profile the tests use: one DuckDB build serves both.
    run(duckdb.apply(cargo().args(["build", "--bin", "egressor"])))?;
    let bin = PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap()).join("debug/egressor");
    eprintln!("\negressor is built: {}\nThe main job on demo data:\n", bin.display());
    run(Command::new(&bin).args(["demo", "--days", "14"]))?;
    run(Command::new(&bin).args(["workspace", "info"]))?;
    // The demo ends at the start of the current hour, so the last hour may hold none of its windows:
    // a day back always holds its latest records.
    run(Command::new(&bin).args(["flows", "--since", "1d", "--limit", "10"]))?;
    run(Command::new(&bin).args(["cost", "--since", "7d"]))?;
    Ok(())
}

/// Installs the Debian packages that are missing (nothing to do, and no network, when all are there).
fn install_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg").args(["-s", p]).output().map(|o| o.status.success()).unwrap_or(false)
        })
        .collect();
    if !missing.is_empty() {
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        let mut update = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            update.arg("apt-get");
        }
        run(update.arg("update"))?;
        let mut install = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            install.arg("apt-get");
        }
        run(install.args(["install", "-y"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    install_python_tools()
}

/// The official Kubernetes JSON schemas, which the cluster tests validate every applied object and
/// `deploy --dry-run` against (PyPI `kubernetes-validate`; 1.37.0 carries Kubernetes 1.32-1.37).
fn install_python_tools() -> Result<()> {
    let have =
        Command::new("kubernetes-validate").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "kubernetes-validate==1.37.0",
        ]))?;
    }
    Ok(())
}

fn test(duckdb: &DuckDb, extra: &[String]) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(duckdb
        .apply(cargo().args(["clippy", "--workspace", "--all-targets"]))
        .args(["--", "-D", "warnings"]))?;
    run(duckdb.apply(cargo().args(["test", "--workspace"])).args(extra))?;
    Ok(())
}

fn bench(duckdb: &DuckDb, which: &[String]) -> Result<()> {
    let names: Vec<&str> = if which.is_empty() {
        vec!["ingest", "cost", "top", "agent", "cluster", "anomalies"]
    } else {
        which.iter().map(String::as_str).collect()
    };
    // The dev profile compiles DuckDB with -O3 (see Cargo.toml) and shares its build with the tests;
    // a release build would compile DuckDB a second time for ~30 minutes. Benchmarks say which
    // profile produced their numbers.
    for name in names {
        run(duckdb.apply(cargo().args(["bench", "--profile", "dev", "--bench", name])))?;
    }
    Ok(())
}

/// Fetches, checks and unpacks the prebuilt DuckDB ([`PREBUILT_DUCKDB`]) into
/// `~/.cache/egressor/duckdb-VERSION-SOURCEID-ARCH/` (`$XDG_CACHE_HOME` if set) once per machine:
/// `libduckdb.so`, `libduckdb_pystub.so` and `SOURCE` (where they came from). Returns that directory.
fn fetch_duckdb() -> Result<PathBuf> {
    let arch = std::env::consts::ARCH;
    let Some(pin) = PREBUILT_DUCKDB.iter().find(|p| p.arch == arch) else {
        bail!(
            "no prebuilt DuckDB is pinned for {arch}: build without --prebuilt-duckdb (DuckDB is then compiled)"
        );
    };
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let dir = cache.join(format!("egressor/duckdb-{DUCKDB_VERSION}-{DUCKDB_SOURCE_ID}-{arch}"));
    let (lib, stub, source) = (dir.join("libduckdb.so"), dir.join("libduckdb_pystub.so"), dir.join("SOURCE"));
    if lib.exists() && stub.exists() && source.exists() {
        eprintln!("prebuilt DuckDB {DUCKDB_VERSION} ({DUCKDB_SOURCE_ID}): {}", dir.display());
        return Ok(dir);
    }
    let work = dir.join("download");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let wheel = work.join(pin.url.rsplit('/').next().expect("a file name"));
    run(Command::new("curl").args(["-fsSL", "--retry", "3", "-o"]).arg(&wheel).arg(pin.url))?;
    let sum = sha256(&wheel)?;
    if sum != pin.sha256 {
        bail!("{} has sha256 {sum}, expected {} (pinned in xtask): not used", wheel.display(), pin.sha256);
    }
    let out = Command::new("unzip")
        .arg("-p")
        .arg(&wheel)
        .arg(pin.member)
        .output()
        .context("cannot run unzip (Debian package unzip: `cargo xtask deps`)")?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!("unzip -p {} {} failed: {}", wheel.display(), pin.member, String::from_utf8_lossy(&out.stderr));
    }
    let so = out.stdout;
    for needle in [DUCKDB_VERSION, DUCKDB_SOURCE_ID] {
        let z = format!("{needle}\0");
        if !so.windows(z.len()).any(|w| w == z.as_bytes()) {
            bail!(
                "{} in {} does not carry DuckDB's {needle}: not the pinned build",
                pin.member,
                wheel.display()
            );
        }
    }
    let names = undefined_python_symbols(&so)?;
    let c = work.join("pystub.c");
    std::fs::write(&c, pystub_source(&names))?;
    // `cc`, not clang: this runs before `cargo xtask deps` has installed clang on a new machine, and
    // Rust's own linker driver is `cc`, so it is there wherever cargo builds.
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let stub_tmp = work.join("libduckdb_pystub.so");
    run(Command::new(&compiler).args(["-shared", "-fPIC", "-O1", "-o"]).arg(&stub_tmp).arg(&c))?;
    let lib_tmp = work.join("libduckdb.so");
    std::fs::write(&lib_tmp, &so)?;
    std::fs::rename(&lib_tmp, &lib)?;
    std::fs::rename(&stub_tmp, &stub)?;
    std::fs::write(
        &source,
        format!(
            "DuckDB {DUCKDB_VERSION} ({DUCKDB_SOURCE_ID}) for {arch}\nlibduckdb.so: {} from {}\nsha256 of the wheel: {}\n\
             libduckdb_pystub.so: {} CPython names, built by `cargo xtask fetch-duckdb`\n",
            pin.member,
            pin.url,
            pin.sha256,
            names.len()
        ),
    )?;
    std::fs::remove_dir_all(&work)?;
    eprintln!("prebuilt DuckDB {DUCKDB_VERSION} ({DUCKDB_SOURCE_ID}) unpacked: {}", dir.display());
    Ok(dir)
}

fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(file).output().context("cannot run sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed", file.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_owned())
}

/// The C source of `libduckdb_pystub.so`: every name a function that says what happened and aborts.
/// Some of the names are objects (`PyBool_Type`) in CPython; the module refers to them by address
/// only, from code egressor never runs.
fn pystub_source(names: &[String]) -> String {
    let mut c = String::from(
        "/* Generated by `cargo xtask fetch-duckdb`: the CPython names the prebuilt libduckdb refers to\n   \
         (from its Python binding, which egressor never calls). */\n#include <stdio.h>\n#include <stdlib.h>\n\
         static void egressor_no_python(const char *name) {\n    \
         fprintf(stderr, \"egressor: the prebuilt libduckdb called the CPython function %s, which is not \
         there\\n\", name);\n    abort();\n}\n",
    );
    for name in names {
        c.push_str(&format!("void {name}(void) {{ egressor_no_python(\"{name}\"); }}\n"));
    }
    c
}

/// One ELF64 little-endian file's sections: (type, offset, size, link).
fn elf_sections(elf: &[u8]) -> Result<Vec<(u32, usize, usize, usize)>> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    if shentsize < 64 || shoff + shnum * shentsize > elf.len() {
        bail!("truncated ELF section table");
    }
    let sections = (0..shnum)
        .map(|i| {
            let h = shoff + i * shentsize;
            (u32_at(h + 4), u64_at(h + 24), u64_at(h + 32), u32_at(h + 40) as usize)
        })
        .collect::<Vec<_>>();
    const SHT_NOBITS: u32 = 8; // .bss: a size, no bytes in the file
    if sections.iter().any(|&(kind, off, size, _)| kind != SHT_NOBITS && off + size > elf.len()) {
        bail!("truncated ELF section");
    }
    Ok(sections)
}

fn c_str_at(table: &[u8], at: usize) -> String {
    let bytes = table.get(at..).unwrap_or_default();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The CPython names (`Py*`, `_Py*`) an ELF shared object needs and does not define (strong
/// undefined symbols of `.dynsym`).
fn undefined_python_symbols(elf: &[u8]) -> Result<Vec<String>> {
    const SHT_DYNSYM: u32 = 11;
    const STB_WEAK: u8 = 2;
    let sections = elf_sections(elf)?;
    let &(_, off, size, link) =
        sections.iter().find(|s| s.0 == SHT_DYNSYM).context("the library has no dynamic symbol table")?;
    let &(_, str_off, str_size, _) = sections.get(link).context("bad string table index")?;
    let strings = &elf[str_off..str_off + str_size];
    let mut names = Vec::new();
    for sym in elf[off..off + size].chunks_exact(24) {
        let name = u32::from_le_bytes(sym[..4].try_into().unwrap()) as usize;
        let (info, shndx) = (sym[4], u16::from_le_bytes([sym[6], sym[7]]));
        let name = c_str_at(strings, name);
        if shndx == 0 && info >> 4 != STB_WEAK && (name.starts_with("Py") || name.starts_with("_Py")) {
            names.push(name);
        }
    }
    names.sort();
    names.dedup();
    if names.iter().any(|n| !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')) {
        bail!("unexpected symbol name among {names:?}");
    }
    Ok(names)
}

/// The shared libraries an ELF file needs (`DT_NEEDED`), to say what a binary links dynamically.
fn needed_libraries(elf: &[u8]) -> Result<Vec<String>> {
    const SHT_DYNAMIC: u32 = 6;
    const DT_NEEDED: u64 = 1;
    let sections = elf_sections(elf)?;
    let Some(&(_, off, size, link)) = sections.iter().find(|s| s.0 == SHT_DYNAMIC) else {
        return Ok(Vec::new()); // static
    };
    let &(_, str_off, str_size, _) = sections.get(link).context("bad string table index")?;
    let strings = &elf[str_off..str_off + str_size];
    Ok(elf[off..off + size]
        .chunks_exact(16)
        .filter(|d| u64::from_le_bytes(d[..8].try_into().unwrap()) == DT_NEEDED)
        .map(|d| c_str_at(strings, u64::from_le_bytes(d[8..].try_into().unwrap()) as usize))
        .collect())
}

/// `cargo xtask dist [--prebuilt-duckdb] [--profile P]`: builds egressor (profile `release` by
/// default, the bundled DuckDB), strips it and packs
/// `$CARGO_TARGET_DIR/dist/egressor-VERSION-TRIPLE.tar.gz` with `bin/egressor`, the README's user
/// sections, docs/install.md, shell completions and the man page when the binary has the commands
/// for them, and a `.sha256` beside it (docs/install.md installs it in a pipeline).
///
/// With `--prebuilt-duckdb` the tarball (named `...-prebuilt-duckdb`) also carries `lib/` with the
/// prebuilt DuckDB, found through the run-time path `$ORIGIN/../lib`: quick to build, for trying
/// the packaging; the release artifact is the bundled one, one file with nothing to find.
fn dist(args: &mut Vec<String>) -> Result<()> {
    let duckdb = DuckDb::from_args(args)?;
    let profile = take_value(args, "--profile")?.unwrap_or_else(|| "release".into());
    if !args.is_empty() {
        bail!("dist: unexpected arguments {args:?}");
    }
    let mut build = cargo();
    build.args(["build", "--locked", "--bin", "egressor", "--profile", &profile]);
    duckdb.apply(&mut build);
    if let DuckDb::Prebuilt(_) = duckdb {
        build.env("EGRESSOR_DUCKDB_RPATH", "$ORIGIN/../lib");
    }
    run(&mut build)?;
    let target = PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap());
    let built = target.join(if profile == "dev" { "debug" } else { &profile }).join("egressor");

    // From Cargo.toml: a binary built for $ORIGIN/../lib does not run where cargo leaves it.
    let manifest = std::fs::read_to_string("Cargo.toml")?;
    let version = manifest
        .split("[package]")
        .nth(1)
        .and_then(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .context("no version in Cargo.toml's [package]")?;
    let mut name = format!("egressor-{version}-{}-unknown-linux-gnu", std::env::consts::ARCH);
    if let DuckDb::Prebuilt(_) = duckdb {
        name.push_str("-prebuilt-duckdb");
    }
    if profile != "release" {
        name.push_str(&format!("-{profile}"));
    }
    let dist = target.join("dist");
    let stage = dist.join(&name);
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    std::fs::create_dir_all(stage.join("bin"))?;
    let bin = stage.join("bin/egressor");
    std::fs::copy(&built, &bin)?;
    strip(&bin)?;
    if let DuckDb::Prebuilt(dir) = &duckdb {
        std::fs::create_dir_all(stage.join("lib"))?;
        for lib in ["libduckdb.so", "libduckdb_pystub.so"] {
            std::fs::copy(dir.join(lib), stage.join("lib").join(lib))?;
        }
        std::fs::copy(dir.join("SOURCE"), stage.join("lib/SOURCE.duckdb"))?;
    }
    std::fs::write(stage.join("README.md"), readme_excerpt(&std::fs::read_to_string("README.md")?))?;
    std::fs::copy("docs/install.md", stage.join("INSTALL.md"))?;
    for file in ["LICENSE", "LICENSE-APACHE", "NOTICE"] {
        if Path::new(file).exists() {
            std::fs::copy(file, stage.join(file))?;
        }
    }
    generated_files(&bin, &stage)?;
    // The packed binary itself runs (finds its libraries) before it is shipped.
    run(Command::new(&bin).arg("--version"))?;

    let tarball = format!("{name}.tar.gz");
    let mtime = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".into());
    run(Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .arg(format!("--mtime=@{mtime}"))
        .args(["-I", "gzip -n -9", "-cf", &tarball, &name])
        .current_dir(&dist))?;
    let sum = sha256(&dist.join(&tarball))?;
    std::fs::write(dist.join(format!("{tarball}.sha256")), format!("{sum}  {tarball}\n"))?;

    let needed = needed_libraries(&std::fs::read(&bin)?)?;
    let size = std::fs::metadata(dist.join(&tarball))?.len();
    eprintln!(
        "\n{}\n{}.sha256\n{:.1} MiB; bin/egressor ({profile}, stripped) needs at run time: {}",
        dist.join(&tarball).display(),
        dist.join(&tarball).display(),
        size as f64 / (1024.0 * 1024.0),
        needed.join(", ")
    );
    Ok(())
}

/// Strips symbols and debug information (`strip`, binutils; `llvm-strip` where only LLVM is there).
fn strip(bin: &Path) -> Result<()> {
    for tool in ["strip", "llvm-strip"] {
        if let Ok(status) = Command::new(tool).arg("--strip-all").arg(bin).status() {
            if status.success() {
                return Ok(());
            }
            bail!("{tool} --strip-all {} failed with {status}", bin.display());
        }
    }
    bail!("neither strip (binutils) nor llvm-strip (llvm) is installed")
}

/// Completions and the man page, from the binary's own commands when it has them (`egressor
/// completions SHELL`, `egressor man`); a binary without them is packed without, and says so.
fn generated_files(bin: &Path, stage: &Path) -> Result<()> {
    let outputs: [(&[&str], &str); 3] = [
        (&["completions", "bash"], "completions/egressor.bash"),
        (&["completions", "zsh"], "completions/_egressor"),
        (&["completions", "fish"], "completions/egressor.fish"),
    ];
    // The man pages: egressor.1 and one per command (egressor-run.1, ...).
    let man = stage.join("man/man1");
    std::fs::create_dir_all(&man)?;
    let st = Command::new(bin).arg("man").arg("--dir").arg(&man).status()?;
    if !st.success() {
        bail!("`egressor man --dir {}` failed", man.display());
    }
    for (args, file) in outputs {
        let out = Command::new(bin).args(args).output()?;
        if !out.status.success() || out.stdout.is_empty() {
            eprintln!("dist: `egressor {}` gave nothing; {file} is not packed", args.join(" "));
            continue;
        }
        let path = stage.join(file);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(path, out.stdout)?;
    }
    Ok(())
}

/// The README for people who install the binary: the introduction and the sections on using it
/// (not the developer set-up, which needs the sources).
fn readme_excerpt(readme: &str) -> String {
    const KEEP: &[&str] = &["## What it looks like", "## Use it on a cluster", "## Commands"];
    let mut out = String::new();
    let mut keep = true;
    for line in readme.lines() {
        if line.starts_with("## ") {
            keep = KEEP.contains(&line.trim_end());
        }
        if keep && !line.starts_with("![") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(
        "\nInstalling this tarball: INSTALL.md. The documentation (docs/) and the sources are in the \
         egressor repository.\n",
    );
    out
}
