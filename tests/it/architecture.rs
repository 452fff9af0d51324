//! The module graph of docs/architecture.md, checked: a module imports only from modules below it,
//! each heavy external crate stays behind its one module, and `main.rs` stays parse -> dispatch.

use std::path::{Path, PathBuf};

/// Layers from the bottom up; a module may use its own layer's module (itself) and those below.
/// Keep in step with the picture in docs/architecture.md.
const LAYERS: &[(&str, u8)] = &[
    ("model", 0),
    ("capture", 1),
    ("store", 1),
    ("engines", 1),
    ("import", 2),
    ("demo", 2),
    ("transport", 3),
    ("claude", 3),
    ("cluster", 4),
    ("agent", 5),
    ("views", 6),
    ("cli", 7),
    ("commands", 8),
];

/// External crates that only one module (and `main.rs`, for clap's parser) may name.
const CRATE_HOMES: &[(&str, &[&str])] = &[
    ("clap", &["cli", "main"]),
    ("clap_complete", &["cli"]),
    ("clap_mangen", &["cli"]),
    ("duckdb", &["store"]),
    ("aya", &["capture"]),
    ("ratatui", &["views"]),
    ("crossterm", &["views"]),
    ("comfy_table", &["views"]),
    ("kube", &["cluster"]),
    ("k8s_openapi", &["cluster"]),
];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/engines/cost.rs` -> `engines`; `src/main.rs` -> `main`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

/// Every `prefix::name` path in the text (comments included: a doc link up the graph is a smell too).
fn paths_after<'t>(text: &'t str, prefix: &str) -> Vec<(usize, &'t str)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            let after = &rest[at + prefix.len()..];
            let end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && end > 0 {
                found.push((i + 1, &after[..end]));
            }
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_module_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let (own, prefix) = if module == "main" {
            (u8::MAX, "egressor::")
        } else {
            (rank(&module).unwrap_or_else(|| panic!("{module} is not in LAYERS")), "crate::")
        };
        for (line, used) in paths_after(&text, prefix) {
            let Some(r) = rank(used) else { continue };
            let allowed =
                if module == "main" { matches!(used, "cli" | "commands") } else { used == module || r < own };
            if !allowed {
                wrong.push(format!("{}:{line}: {module} uses {used}", file.display()));
            }
        }
        for (krate, homes) in CRATE_HOMES {
            for (line, _) in paths_after(&text, &format!("{krate}::")) {
                if !homes.contains(&module.as_str()) {
                    wrong.push(format!(
                        "{}:{line}: {module} names {krate} (only {homes:?} may)",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the module graph:\n{}", wrong.join("\n"));
}

#[test]
fn main_stays_parse_logging_dispatch() {
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(lines < 80, "src/main.rs has {lines} lines; a command's work belongs in src/commands/");
}

#[test]
fn the_checker_sees_an_upward_import() {
    let text = "use crate::cli::OutputFormat;\n// crate::views::x\nlet a = my_crate::cli;";
    assert_eq!(paths_after(text, "crate::"), vec![(1, "cli"), (2, "views")]);
}
