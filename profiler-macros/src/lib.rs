//! The `#[profile_node]` attribute of agent-profiler: argument parsing and code generation
//! only. Everything that runs lives in `agent-profiler-runtime`; users depend on the
//! `agent-profiler` facade, which re-exports this macro.
//!
//! - `attr`: the arguments (`"id"`, `crate = path`);
//! - `node_id`: the node id rules, the very file the runtime uses (a proc-macro crate cannot
//!   depend on the runtime, so it compiles the file itself): one rule set and one wording
//!   for the attribute, configuration files and the runtime's entry points;
//! - `expand`: which item was annotated, and the new function body.
#![warn(missing_docs)]

mod attr;
mod expand;
#[path = "../../profiler-runtime/src/node_id.rs"]
mod node_id;

use proc_macro::TokenStream;

/// Times every call of a function as node `"id"` of the profiled workflow.
///
/// ```
/// use agent_profiler::{BottleneckAnalyzer, ProfilerScope, profile_node};
///
/// #[profile_node("retrieve")]
/// fn retrieve(query: &str) -> Vec<String> {
///     vec![format!("doc about {query}")]
/// }
///
/// #[profile_node("summarize")]
/// async fn summarize(docs: Vec<String>) -> Result<String, String> {
///     docs.into_iter().next().ok_or_else(|| "no documents".to_owned())
/// }
///
/// let analyzer = BottleneckAnalyzer::new();
/// let _scope = ProfilerScope::new(&analyzer);
/// let docs = retrieve("profilers");
/// # let _ = summarize(docs);
/// assert_eq!(analyzer.get_node("retrieve").unwrap().call_count, 1);
/// ```
///
/// # Arguments
///
/// - `"id"` (required): the node id, a string literal of ASCII letters, digits, `_`, `-`,
///   `.` and `/`, at most 233 characters (so that the `MLflow` key `node_{id}_duration_ms` fits
///   `MLflow`'s 250-character limit). Checked at compile time.
/// - `crate = path` (optional): the path through which the expansion reaches the runtime,
///   `::agent_profiler` by default. A library that re-exports the macro and the runtime
///   (`pub use agent_profiler as profiler;`) lets its users write
///   `#[my_lib::profile_node("id", crate = my_lib::profiler)]` without depending on
///   `agent-profiler` themselves. It is also what a crate that renamed the dependency
///   (`prof = { package = "agent-profiler", .. }`) writes: `crate = ::prof`.
///
/// # What it times
///
/// - A sync fn: from entry to return, whether it returns normally, early (`return`, `?`) or
///   by unwinding. A `Result::Err` return counts as an error, a panic as panicked (the panic
///   continues unchanged).
/// - An `async fn`, and a fn whose body ends in an `async` block or in
///   `Box::pin(async move { .. })` (which is what `#[async_trait]` produces): the future, from
///   its first poll to completion; dropped in between, the call counts as cancelled; never
///   polled, it records nothing. A `Send` body gives a `Send` future.
/// - A `#[track_caller]` fn keeps reporting its caller's location; only its tail value is
///   classified (an early `return Err(..)` or `?` counts as ok).
///
/// Only the function's block is replaced: attributes, visibility, generics, `where` clauses,
/// receivers, `unsafe`, `extern` and `#[cfg]` on parameters stay as written. With the `noop`
/// feature the function is emitted unchanged (the arguments are still checked).
///
/// Applied to anything but a function with a body (a struct, an `impl` block, a trait method
/// declaration, a `const fn`, ...), or with wrong arguments, it is a compile error that says
/// what to write instead.
#[proc_macro_attribute]
pub fn profile_node(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::profile_node(args.into(), item.into()).into()
}
