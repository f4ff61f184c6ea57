//! The facade's default features are the macro and the core only: a library that re-exports
//! `#[profile_node]` (the fixture crate `tests/fixtures/reexporter`, which depends on
//! `agent-profiler` with default features) passes only a handful of small crates on to its
//! users. Checked on the dependency graph cargo resolves for that crate.

use std::process::Command;

/// Crates that must never come with the default features: HTTP, TLS, async runtime,
/// SQLite, protobuf.
const HEAVY: &[&str] = &[
    "reqwest", "rustls", "ring", "tokio", "rusqlite", "prost", "hyper",
];

/// What the default build may compile at most, the re-exporting crate included.
const MAX_CRATES: usize = 20;

#[test]
fn default_features_build_the_macro_and_the_core_only() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--offline",
            "-p",
            "reexporter",
            "-e",
            "normal,build",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo tree failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut crates: Vec<&str> = stdout
        .lines()
        .map(|line| line.trim_end_matches(" (*)").trim())
        .filter(|line| !line.is_empty())
        .collect();
    crates.sort_unstable();
    crates.dedup();
    let names: Vec<&str> = crates
        .iter()
        .map(|c| c.split_whitespace().next().unwrap_or(c))
        .collect();
    assert!(
        names.contains(&"agent-profiler-runtime") && names.contains(&"agent-profiler-macros"),
        "the graph is not the facade's: {crates:#?}"
    );
    for heavy in HEAVY {
        assert!(
            !names.contains(heavy),
            "`{heavy}` is built with default features: {crates:#?}"
        );
    }
    assert!(
        crates.len() <= MAX_CRATES,
        "{} crates with default features (at most {MAX_CRATES}): {crates:#?}",
        crates.len()
    );
}
