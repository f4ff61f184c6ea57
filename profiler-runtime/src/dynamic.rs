//! Nodes whose id is only known at run time (read from a configuration file), which
//! `#[profile_node("id")]` cannot name.
//!
//! Each distinct id gets a call site of its own, made once and kept for the life of the
//! process, so a dynamic node is timed exactly as a macro node is: the same lock-free call
//! path, outcomes, self time under nesting, cancellation, per-call export, and cost
//! attribution through [`current_node_id`](crate::current_node_id). Making a site takes a
//! lock; later calls of the same id take it only to look the site up.
//!
//! At most [`MAX_DYNAMIC_NODE_IDS`] ids get a site of their own (memory must stay bounded
//! when ids are built from data); calls of ids beyond that are counted under
//! [`OTHER_DYNAMIC_NODES`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{PoisonError, RwLock};

use crate::future::NodeFuture;
use crate::outcome::Outcome;
use crate::site::CallSite;

/// Distinct run-time node ids that get a call site of their own.
pub const MAX_DYNAMIC_NODE_IDS: usize = 10_000;

/// The node id under which calls of ids beyond [`MAX_DYNAMIC_NODE_IDS`] (and calls with an
/// empty id) are counted.
pub const OTHER_DYNAMIC_NODES: &str = "_other_dynamic_nodes";

static SITES: RwLock<Option<HashMap<String, &'static CallSite>>> = RwLock::new(None);
static OTHER: CallSite = CallSite::new(OTHER_DYNAMIC_NODES, true);

/// The call site of run-time node `node_id`, made on first use.
fn site_of(node_id: &str) -> &'static CallSite {
    if node_id.is_empty() {
        return &OTHER;
    }
    // Known ids take the shared lock only: calls of config-file nodes do not queue behind
    // each other.
    let known = SITES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|sites| sites.get(node_id).copied());
    if let Some(site) = known {
        return site;
    }
    let mut sites = SITES.write().unwrap_or_else(PoisonError::into_inner);
    let sites = sites.get_or_insert_with(HashMap::new);
    if let Some(site) = sites.get(node_id) {
        return site;
    }
    if sites.len() >= MAX_DYNAMIC_NODE_IDS {
        return &OTHER;
    }
    // Leaked on purpose: a site must be 'static, and there is one per distinct id (bounded).
    let id: &'static str = Box::leak(node_id.to_owned().into_boxed_str());
    let site: &'static CallSite = Box::leak(Box::new(CallSite::new(id, true)));
    sites.insert(node_id.to_owned(), site);
    site
}

/// Runs `future` as one call of node `node_id`; every output counts as `ok` (see
/// [`profile_fallible`] for `Result` outputs). Timed from first poll to completion into the
/// analyzer installed when it is first polled; never polled, it records nothing.
///
/// ```
/// use agent_profiler_runtime::{BottleneckAnalyzer, ProfilerFutureExt, profile_call};
///
/// let analyzer = BottleneckAnalyzer::new();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let node_id = String::from("node-from-config");
/// let value = rt.block_on(profile_call(&node_id, async { 42 }).with_profiler(analyzer.clone()));
/// assert_eq!(value, 42);
/// assert_eq!(analyzer.get_node("node-from-config").unwrap().call_count, 1);
/// ```
pub fn profile_call<F: Future>(node_id: &str, future: F) -> impl Future<Output = F::Output> {
    NodeFuture::new(site_of(node_id), future, |_: &F::Output| Outcome::Ok)
}

/// Runs `future` as one call of node `node_id`, counted as an `error` when it returns `Err`.
///
/// ```
/// use agent_profiler_runtime::{BottleneckAnalyzer, ProfilerFutureExt, profile_fallible};
///
/// let analyzer = BottleneckAnalyzer::new();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let failed = rt.block_on(
///     profile_fallible("flaky", async { Err::<u8, String>("down".into()) })
///         .with_profiler(analyzer.clone()),
/// );
/// assert!(failed.is_err());
/// assert_eq!(analyzer.get_node("flaky").unwrap().outcomes.error, 1);
/// ```
pub fn profile_fallible<T, E, F>(node_id: &str, future: F) -> impl Future<Output = Result<T, E>>
where
    F: Future<Output = Result<T, E>>,
{
    NodeFuture::new(site_of(node_id), future, |out: &Result<T, E>| {
        if out.is_err() {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_site_per_id_and_empty_ids_go_to_other() {
        let a = site_of("dyn_a");
        assert!(std::ptr::eq(a, site_of("dyn_a")));
        assert!(!std::ptr::eq(a, site_of("dyn_b")));
        assert_eq!(a.id(), "dyn_a");
        assert!(std::ptr::eq(site_of(""), &OTHER));
    }
}
