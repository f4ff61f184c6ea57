//! The tool run with a minute's limit, and its output as text.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Runs the binary with `--store db` (and no store variables from the environment).
pub fn cli(db: &Path, args: &[&str]) -> Output {
    super::run_tool(db, args, Duration::from_secs(60)).0
}

/// What the tool printed on stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// What the tool printed on stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}
