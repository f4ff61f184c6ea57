//! Compile-time behaviour of `#[profile_node]`: misuse is a clear error at the right span
//! (`tests/ui/fail`, each with its expected `.stderr`), and every supported function shape
//! compiles warning-free and runs (`tests/ui/pass`).
//!
//! After an intended change to a message, regenerate the `.stderr` files with
//! `TRYBUILD=overwrite cargo test --test ui` and read every diff: they are what users see.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
