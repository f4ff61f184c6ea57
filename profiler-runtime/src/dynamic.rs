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
//!
//! An id that breaks the node-id rules is not an error here (see [`profile_call`]): it is
//! checked once, on the cold path that registers a new id, and its calls are counted under
//! [`OTHER_DYNAMIC_NODES`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{PoisonError, RwLock};

use crate::future::NodeFuture;
use crate::node_id::{NodeIdError, check_node_id};
use crate::outcome::Outcome;
use crate::site::CallSite;

/// Distinct run-time node ids that get a call site of their own.
pub const MAX_DYNAMIC_NODE_IDS: usize = 10_000;

/// The node id under which calls of ids beyond [`MAX_DYNAMIC_NODE_IDS`], and calls of ids
/// that break the node-id rules ([`check_node_id`], an empty id included), are counted.
pub const OTHER_DYNAMIC_NODES: &str = "_other_dynamic_nodes";

/// Every run-time id seen so far, and its site: its own, or [`OTHER`] for a rejected id.
#[derive(Default)]
struct Sites {
    by_id: HashMap<String, &'static CallSite>,
    /// How many of `by_id` have a site of their own (the rest are rejected ids).
    own: usize,
}

static SITES: RwLock<Option<Sites>> = RwLock::new(None);
static OTHER: CallSite = CallSite::new(OTHER_DYNAMIC_NODES, true);

/// The call site of run-time node `node_id`: looked up, or made on first use.
fn site_of(node_id: &str) -> &'static CallSite {
    // Known ids take the shared lock only: calls of config-file nodes do not queue behind
    // each other, and pay nothing for the id check made when they were first seen.
    let known = SITES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|sites| sites.by_id.get(node_id).copied());
    match known {
        Some(site) => site,
        None => register(node_id),
    }
}

/// The first call of `node_id` (or a call of an id that is not remembered): checks the id and
/// makes its site.
#[cold]
fn register(node_id: &str) -> &'static CallSite {
    let mut sites = SITES.write().unwrap_or_else(PoisonError::into_inner);
    let sites = sites.get_or_insert_with(Sites::default);
    if let Some(site) = sites.by_id.get(node_id) {
        return site;
    }
    match check_node_id(node_id) {
        Ok(()) => {
            if sites.own >= MAX_DYNAMIC_NODE_IDS {
                return &OTHER;
            }
            // Leaked on purpose: a site must be 'static, and there is one per distinct id
            // (bounded).
            let id: &'static str = Box::leak(node_id.to_owned().into_boxed_str());
            let site: &'static CallSite = Box::leak(Box::new(CallSite::new(id, true)));
            sites.by_id.insert(node_id.to_owned(), site);
            sites.own += 1;
            site
        }
        // Not remembered: the id could be of any size.
        Err(NodeIdError::TooLong { .. }) => &OTHER,
        Err(_) => {
            if sites.by_id.len() - sites.own < MAX_DYNAMIC_NODE_IDS {
                sites.by_id.insert(node_id.to_owned(), &OTHER);
            }
            &OTHER
        }
    }
}

/// Runs `future` as one call of node `node_id`; every output counts as `ok` (see
/// [`profile_fallible`] for `Result` outputs). Timed from first poll to completion into the
/// analyzer installed when it is first polled; never polled, it records nothing.
///
/// # Ids that break the node-id rules
///
/// `node_id` follows the rules every node id follows ([`check_node_id`]). This function
/// cannot return an error (it returns the caller's future), and dropping the call's time
/// would leave a hole in the totals, so a call whose id breaks the rules (an empty id
/// included) still runs, timed like any other call, and is counted under
/// [`OTHER_DYNAMIC_NODES`]: its time is in the summary, under a name that says it was not
/// given a node of its own. Check ids before they get here with [`check_node_id`] to see the
/// message (workflow configuration files are checked when read).
///
/// The check is made once per distinct id, when the id is first seen, on the cold path that
/// registers it under a write lock; later calls of the id only look it up, as any call of a
/// known id does. A rejected id is remembered as such (up to [`MAX_DYNAMIC_NODE_IDS`] of
/// them, without taking a slot from valid ids), except one longer than
/// [`MAX_NODE_ID_LEN`](crate::MAX_NODE_ID_LEN), whose size has no bound: each of its calls
/// takes the cold path again.
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
/// An id that breaks the node-id rules is counted under [`OTHER_DYNAMIC_NODES`], as by
/// [`profile_call`] (see its section on such ids).
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
    use crate::{BottleneckAnalyzer, ProfilerFutureExt};

    #[test]
    fn one_site_per_id() {
        let a = site_of("dyn_a");
        assert!(std::ptr::eq(a, site_of("dyn_a")));
        assert!(!std::ptr::eq(a, site_of("dyn_b")));
        assert_eq!(a.id(), "dyn_a");
    }

    #[test]
    fn ids_that_break_the_rules_go_to_other() {
        let too_long = "x".repeat(crate::MAX_NODE_ID_LEN + 1);
        for bad in ["", "dyn bad", "dyn:bad", "dyn_é", too_long.as_str()] {
            assert!(std::ptr::eq(site_of(bad), &OTHER), "{bad:?}");
            // The second time from the shared lookup (or, too long, the cold path again).
            assert!(std::ptr::eq(site_of(bad), &OTHER), "{bad:?}");
        }
        let sites = SITES.read().unwrap();
        let sites = sites.as_ref().unwrap();
        assert!(std::ptr::eq(sites.by_id["dyn bad"], &OTHER));
        assert!(
            !sites.by_id.contains_key(too_long.as_str()),
            "not remembered"
        );
        assert!(sites.by_id.len() > sites.own);
    }

    #[test]
    fn calls_with_a_bad_id_still_run_and_are_counted_under_other() {
        let analyzer = BottleneckAnalyzer::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let work = async {
            let a = profile_call("has space", async { 1 }).await;
            let b = profile_fallible("", async { Err::<u8, &str>("down") }).await;
            let c = profile_call("has space", async { 2 }).await;
            let d = profile_call("fine_id", async { 3 }).await;
            (a, b, c, d)
        };
        let out = rt.block_on(work.with_profiler(analyzer.clone()));
        assert_eq!(out, (1, Err("down"), 2, 3));
        let other = analyzer.get_node(OTHER_DYNAMIC_NODES).unwrap();
        assert_eq!(other.call_count, 3);
        assert_eq!((other.outcomes.ok, other.outcomes.error), (2, 1));
        assert!(analyzer.get_node("has space").is_none());
        assert!(analyzer.get_node("").is_none());
        assert_eq!(analyzer.get_node("fine_id").unwrap().call_count, 1);
    }
}
