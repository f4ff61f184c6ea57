//! The critical path in a run's report batch: the path and its method as tags, the wall
//! time and the largest what-if savings as metrics.

use std::collections::HashSet;

use agent_profiler_runtime::critical::{CriticalPath, PathMethod};

use super::client::BatchBody;
use super::keys::{MAX_TAG_VALUE_LENGTH, sanitize_key};

/// How many nodes get a `what_if_{node}_saves_ms` metric: those with the largest savings.
pub const WHAT_IF_METRICS: usize = 5;

/// Adds to `body`: tags `critical_path` (`a -> b -> c`, within MLflow's tag limit),
/// `critical_path.method` (`structure` or `trace`) and `what_if.best_node`; metrics
/// `critical_path_ms` (its wall time), `what_if_best_saves_ms` (0 when no node's speed-up
/// saves anything) and `what_if_{node}_saves_ms` for the [`WHAT_IF_METRICS`] nodes whose
/// speed-up saves the most.
pub(crate) fn push_critical_path(body: &mut BatchBody, path: &CriticalPath, now: i64, step: i64) {
    body.push_tag("critical_path", &path_tag(&path.path_text()));
    let method = match path.method {
        PathMethod::Structure => "structure",
        PathMethod::Trace => "trace",
    };
    body.push_tag("critical_path.method", method);
    body.push_metric("critical_path_ms", path.wall_time_ms, now, step);
    let best = path.best_speedup();
    body.push_metric(
        "what_if_best_saves_ms",
        best.map_or(0.0, |w| w.faster_saves_ms),
        now,
        step,
    );
    if let Some(best) = best {
        body.push_tag("what_if.best_node", &best.node_id);
    }
    // Two ids that sanitise to one key would make one series of two nodes: the first
    // (larger saving) keeps it.
    let mut keys = HashSet::new();
    for what in path.what_if.iter().take(WHAT_IF_METRICS) {
        let key = format!("what_if_{}_saves_ms", what.node_id);
        let Ok(key) = sanitize_key(&key).map(|k| k.into_owned()) else {
            continue;
        };
        if keys.insert(key.clone()) {
            body.push_metric(&key, what.faster_saves_ms, now, step);
        }
    }
}

/// The path text, cut after the last whole node that fits MLflow's tag limit with a note
/// of how many nodes were left out (the limit would otherwise cut a name in two).
fn path_tag(text: &str) -> String {
    if text.chars().count() <= MAX_TAG_VALUE_LENGTH {
        return text.to_owned();
    }
    let names: Vec<&str> = text.split(" -> ").collect();
    // Room for the note, whatever the count.
    let budget = MAX_TAG_VALUE_LENGTH - 40;
    let mut out = String::new();
    let mut kept = 0;
    for name in &names {
        let extra = if kept == 0 { 0 } else { 4 } + name.chars().count();
        if out.chars().count() + extra > budget {
            break;
        }
        if kept > 0 {
            out.push_str(" -> ");
        }
        out.push_str(name);
        kept += 1;
    }
    out.push_str(&format!(" -> ... ({} more)", names.len() - kept));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paths_are_kept_whole() {
        assert_eq!(path_tag("plan -> analyze"), "plan -> analyze");
    }

    #[test]
    fn long_paths_are_cut_between_nodes() {
        let name = "n".repeat(100);
        let text = vec![name.as_str(); 200].join(" -> ");
        let tag = path_tag(&text);
        assert!(tag.chars().count() <= MAX_TAG_VALUE_LENGTH, "{}", tag.len());
        let kept = tag.matches(&name).count();
        assert!(
            tag.ends_with(&format!(" -> ... ({} more)", 200 - kept)),
            "{tag}"
        );
        assert!(
            tag.split(" -> ")
                .filter(|n| n.starts_with('n'))
                .all(|n| n == name)
        );
    }
}
