//! One integration test binary. Each test gets its own temporary directory and workspace and drives
//! the built `egressor` binary as a user would.

mod agent;
mod anomalies;
mod architecture;
mod ask;
mod capture;
mod claude_client;
mod cluster;
mod cost;
mod lab;
mod pricing;
mod pull;
mod run;
mod schemas;
mod top;
mod truth;
mod workspace;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestContext {
    pub dir: tempfile::TempDir,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    pub fn new() -> Self {
        TestContext { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("ws.duckdb")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `egressor ARGS` against this test's workspace, with a fixed "now" so relative ranges are stable.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_egressor"));
        c.args(args)
            .env("EGRESSOR_WORKSPACE", self.workspace())
            .env("EGRESSOR_NOW", "2026-11-20T12:00:00Z")
            .env("NO_COLOR", "1")
            .env_remove("EGRESSOR_LOG");
        c
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run egressor");
        assert!(out.status.success(), "egressor {args:?} failed:\n{}", show(&out));
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and requires failure with exit code 1; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run egressor");
        assert_eq!(out.status.code(), Some(1), "egressor {args:?} should fail:\n{}", show(&out));
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let s = self.ok(args);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
    }

    /// What python3's `jsonschema` (Draft 2020-12) finds wrong with `doc` against
    /// docs/schemas/SCHEMA, one line each (`path: message`); empty when it is valid. Fails loudly
    /// when python3 or the validator is missing (`cargo xtask deps` installs them).
    pub fn schema_errors(&self, schema: &str, doc: &serde_json::Value) -> Vec<String> {
        self.schema_errors_each(&[(schema, doc)]).pop().expect("one answer per document")
    }

    /// [`Self::schema_errors`] of each `(SCHEMA, document)`, in one run of the validator. Formats
    /// the validator can check (`ipv4`, `ipv6`, and `date-time` when rfc3339-validator is there)
    /// are checked too.
    pub fn schema_errors_each(&self, docs: &[(&str, &serde_json::Value)]) -> Vec<Vec<String>> {
        const SCRIPT: &str = r#"
import json, sys
try:
    from jsonschema import Draft202012Validator
except ImportError as e:
    print(f"MISSING: {e}", file=sys.stderr); sys.exit(3)
validators, answers = {}, []
for name, doc in json.load(open(sys.argv[2])):
    if name not in validators:
        schema = json.load(open(f"{sys.argv[1]}/{name}"))
        Draft202012Validator.check_schema(schema)
        validators[name] = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    answers.append([f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
                    for e in validators[name].iter_errors(doc)])
print(json.dumps(answers))
"#;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas");
        let file = self.path("schema-check.json");
        std::fs::write(&file, serde_json::to_vec(docs).unwrap()).unwrap();
        let out = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(&dir)
            .arg(&file)
            .output()
            .expect("python3 is not installed: run `cargo xtask deps`");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let names: Vec<&str> = docs.iter().map(|(s, _)| *s).collect();
        assert!(
            out.status.success(),
            "checking against {names:?} failed (run `cargo xtask deps` for jsonschema):\n{stderr}"
        );
        let answers: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).expect("the validator's answer");
        assert_eq!(answers.len(), docs.len());
        answers
    }

    pub fn info(&self) -> serde_json::Value {
        self.json(&["workspace", "info", "--output", "json"])
    }
}

pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}
