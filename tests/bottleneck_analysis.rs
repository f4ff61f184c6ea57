//! The analyzer's contracts, as written on `BottleneckAnalyzer`: slowest node by total
//! (inclusive) time, shares of self time, bottlenecks strictly above the threshold and
//! largest first, zero-duration and empty cases, the JSON field names, and bad input.

use agent_profiler::{BottleneckAnalyzer, NodeShare, RecordError};

fn analyzer_with(records: &[(&str, f64)]) -> BottleneckAnalyzer {
    let analyzer = BottleneckAnalyzer::new();
    for (node, ms) in records {
        analyzer.record_node(node, *ms).unwrap();
    }
    analyzer
}

/// Checks a bottleneck's or the slowest node's total, average and number of calls.
fn assert_figures(node: &NodeShare, total_ms: f64, avg_ms: f64, calls: u64) {
    assert_eq!(
        (
            node.total_duration_ms,
            node.avg_duration_ms,
            node.call_count
        ),
        (total_ms, avg_ms, calls),
        "{node:?}"
    );
}

fn ids(shares: &[NodeShare]) -> Vec<&str> {
    shares.iter().map(|s| s.node_id.as_str()).collect()
}

#[test]
fn test_bottleneck_analyzer_record_node() {
    let analyzer = analyzer_with(&[("node1", 100.0)]);
    let node = analyzer.get_node("node1").expect("recorded");
    assert_eq!(node.node_id, "node1");
    assert_eq!(node.call_count, 1);
    assert_eq!(node.duration_ms, 100.0);
    assert_eq!(node.total_duration_ms, 100.0);
    assert_eq!(node.avg_duration_ms, 100.0);
    assert!(
        node.timestamp > 1.6e9,
        "timestamp is Unix seconds: {}",
        node.timestamp
    );
}

#[test]
fn test_bottleneck_analyzer_aggregates_multiple_calls() {
    let analyzer = analyzer_with(&[("node1", 100.0), ("node2", 200.0), ("node1", 150.0)]);
    let node1 = analyzer.get_node("node1").unwrap();
    assert_eq!(node1.call_count, 2);
    assert_eq!(node1.total_duration_ms, 250.0);
    assert_eq!(node1.avg_duration_ms, 125.0);
    assert_eq!(node1.duration_ms, 150.0, "duration_ms is the last call");
    assert_eq!(node1.min_duration_ms, 100.0);
    assert_eq!(node1.max_duration_ms, 150.0);
    assert_eq!(analyzer.get_timings().len(), 2);
}

#[test]
fn test_get_bottlenecks_default_threshold() {
    let analyzer = analyzer_with(&[("fast", 50.0), ("slow", 450.0)]);
    let found = analyzer.get_bottlenecks(agent_profiler::DEFAULT_THRESHOLD_PERCENT);
    assert_eq!(ids(&found), ["slow"]);
    assert_eq!(found[0].percent_of_total, 90.0);
    assert_figures(&found[0], 450.0, 450.0, 1);
}

#[test]
fn test_get_bottlenecks_custom_threshold() {
    let analyzer = analyzer_with(&[("node1", 100.0), ("node2", 200.0), ("node3", 100.0)]);
    assert!(analyzer.get_bottlenecks(66.0).is_empty());
    assert_eq!(ids(&analyzer.get_bottlenecks(49.0)), ["node2"]);
    assert_eq!(ids(&analyzer.get_bottlenecks(40.0)), ["node2"]);
    assert_eq!(
        ids(&analyzer.get_bottlenecks(20.0)),
        ["node2", "node1", "node3"]
    );
}

#[test]
fn test_get_slowest_node() {
    let analyzer = analyzer_with(&[("node1", 100.0), ("node1", 150.0), ("node2", 200.0)]);
    let slowest = analyzer.get_slowest_node().unwrap();
    assert_eq!(
        slowest.node_id, "node1",
        "highest total, not highest average"
    );
    assert_figures(&slowest, 250.0, 125.0, 2);
}

#[test]
fn test_get_summary_returns_complete_analysis() {
    let analyzer = analyzer_with(&[("node1", 100.0), ("node2", 200.0), ("node1", 150.0)]);
    let summary = analyzer.get_summary();
    assert_eq!(summary.total_time_ms, 450.0);
    assert_eq!(summary.node_count, 2);
    assert_eq!(summary.slowest_node.as_ref().unwrap().node_id, "node1");
    assert_eq!(ids(&summary.bottlenecks), ["node1"]);
    assert!((summary.bottlenecks[0].percent_of_total - 55.555_555).abs() < 1e-4);
    assert_eq!(summary.threshold_percent, 50.0);
    assert_eq!(summary.nodes.len(), 2);
}

#[test]
fn test_single_node_not_bottleneck() {
    // A single node is 100%, so it is a bottleneck at 50 but not at 100 (the share must be
    // strictly greater than the threshold).
    let analyzer = analyzer_with(&[("only", 80.0)]);
    let at_50 = analyzer.get_bottlenecks(50.0);
    assert_eq!(ids(&at_50), ["only"]);
    assert_eq!(at_50[0].percent_of_total, 100.0);
    assert!(analyzer.get_bottlenecks(100.0).is_empty());
}

#[test]
fn test_zero_duration_handled() {
    let analyzer = analyzer_with(&[("zero", 0.0)]);
    let summary = analyzer.get_summary();
    assert_eq!(summary.total_time_ms, 0.0);
    assert_eq!(
        summary.node_count, 1,
        "zero-duration records count as nodes"
    );
    assert!(summary.bottlenecks.is_empty(), "and never as bottlenecks");
    assert!(analyzer.get_bottlenecks(0.0).is_empty());
    assert_eq!(summary.slowest_node.unwrap().percent_of_total, 0.0);

    let mixed = analyzer_with(&[("zero", 0.0), ("busy", 10.0)]);
    assert_eq!(ids(&mixed.get_bottlenecks(0.0)), ["busy"]);
    assert_eq!(mixed.get_summary().node_count, 2);
}

#[test]
fn test_empty_analyzer_returns_none_slowest() {
    let analyzer = BottleneckAnalyzer::new();
    assert!(analyzer.get_slowest_node().is_none());
    let summary = analyzer.get_summary();
    assert_eq!(summary.total_time_ms, 0.0);
    assert_eq!(summary.node_count, 0);
    assert!(summary.slowest_node.is_none());
    assert!(summary.bottlenecks.is_empty());
    assert!(analyzer.get_bottlenecks(50.0).is_empty());
    assert!(analyzer.get_bottlenecks(0.0).is_empty());
}

#[test]
fn contract_fast_50_slow_450_at_50_gives_slow_90() {
    let found = analyzer_with(&[("fast", 50.0), ("slow", 450.0)]).get_bottlenecks(50.0);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].node_id.as_str(), found[0].percent_of_total),
        ("slow", 90.0)
    );
}

#[test]
fn contract_100_200_100_nothing_at_66_node2_at_49_and_40() {
    let analyzer = analyzer_with(&[("node1", 100.0), ("node2", 200.0), ("node3", 100.0)]);
    assert!(analyzer.get_bottlenecks(66.0).is_empty());
    // node2 has exactly 50%: above both thresholds, alone.
    for threshold in [49.0, 40.0] {
        let found = analyzer.get_bottlenecks(threshold);
        assert_eq!(ids(&found), ["node2"], "at {threshold}");
        assert_eq!(found[0].percent_of_total, 50.0);
    }
}

#[test]
fn contract_single_node_is_bottleneck_at_50_not_at_100() {
    let analyzer = analyzer_with(&[("solo", 1.0)]);
    assert_eq!(ids(&analyzer.get_bottlenecks(50.0)), ["solo"]);
    assert!(analyzer.get_bottlenecks(100.0).is_empty());
}

#[test]
fn contract_threshold_zero_returns_every_node_with_time() {
    let analyzer = analyzer_with(&[("a", 1.0), ("b", 2.0), ("c", 0.0), ("d", 3.0)]);
    assert_eq!(ids(&analyzer.get_bottlenecks(0.0)), ["d", "b", "a"]);
}

#[test]
fn contract_bottlenecks_sorted_by_share_largest_first() {
    let analyzer = analyzer_with(&[("small", 10.0), ("large", 60.0), ("mid", 30.0)]);
    let found = analyzer.get_bottlenecks(5.0);
    assert_eq!(ids(&found), ["large", "mid", "small"]);
    assert!(
        found
            .windows(2)
            .all(|w| w[0].percent_of_total >= w[1].percent_of_total)
    );
}

#[test]
fn contract_empty_analyzer_gives_empty_list() {
    assert!(BottleneckAnalyzer::new().get_bottlenecks(50.0).is_empty());
}

#[test]
fn contract_slowest_is_highest_total_not_average() {
    let analyzer = analyzer_with(&[("node1", 100.0), ("node1", 150.0), ("node2", 200.0)]);
    assert_eq!(analyzer.get_slowest_node().unwrap().node_id, "node1");
}

#[test]
fn contract_slowest_is_none_when_nothing_recorded() {
    assert!(BottleneckAnalyzer::new().get_slowest_node().is_none());
}

#[test]
fn contract_empty_summary_is_zero_zero_none_empty() {
    let summary = BottleneckAnalyzer::new().get_summary();
    assert_eq!(
        (
            summary.total_time_ms,
            summary.node_count,
            summary.slowest_node,
            summary.bottlenecks
        ),
        (0.0, 0, None, vec![])
    );
}

#[test]
fn contract_zero_duration_counts_as_node_never_as_bottleneck() {
    let analyzer = analyzer_with(&[("z", 0.0), ("z", 0.0)]);
    let summary = analyzer.get_summary_with_threshold(0.0);
    assert_eq!(summary.node_count, 1);
    assert!(summary.bottlenecks.is_empty());
}

#[test]
fn json_field_names_are_stable() {
    let analyzer = analyzer_with(&[("fast", 50.0), ("slow", 450.0)]);
    let json = serde_json::to_value(analyzer.get_summary()).unwrap();
    let expected: [(&str, &serde_json::Value, &[&str]); 3] = [
        (
            "summary",
            &json,
            &["total_time_ms", "node_count", "slowest_node", "bottlenecks"],
        ),
        (
            "bottleneck",
            &json["bottlenecks"][0],
            &[
                "node_id",
                "total_duration_ms",
                "avg_duration_ms",
                "call_count",
                "percent_of_total",
            ],
        ),
        (
            "node timings",
            &json["nodes"][0],
            &[
                "node_id",
                "duration_ms",
                "timestamp",
                "call_count",
                "total_duration_ms",
            ],
        ),
    ];
    for (what, object, keys) in expected {
        for key in keys {
            assert!(object.get(key).is_some(), "{what} has `{key}`: {object}");
        }
    }
    let back: agent_profiler::Summary = serde_json::from_value(json).unwrap();
    assert_eq!(back, analyzer.get_summary());
}

#[test]
fn disabled_analyzer_records_nothing_and_keeps_what_it_had() {
    let analyzer = analyzer_with(&[("before", 10.0)]);
    analyzer.set_enabled(false);
    assert!(!analyzer.is_enabled());
    analyzer.record_node("during", 10.0).unwrap();
    analyzer.record_node("before", 10.0).unwrap();
    analyzer.set_enabled(true);
    let nodes = analyzer.get_timings();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].call_count, 1);
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_loses_nothing() {
    let analyzer = analyzer_with(&[("kept", 10.0)]);
    assert_eq!(analyzer.record_node("", 1.0), Err(RecordError::EmptyNodeId));
    assert_eq!(
        RecordError::EmptyNodeId.to_string(),
        "the node id is empty: name the node"
    );
    // The node-id rules of `#[profile_node]` and config files, with the same wording.
    let too_long = "a".repeat(234);
    for (bad, message) in [
        (
            "fetch docs",
            "cannot record node `fetch docs`: the node id contains a space, which is not \
             allowed: use only ASCII letters, digits, `_`, `-`, `.` and `/`, as in \
             `\"fetch_docs\"`",
        ),
        (
            too_long.as_str(),
            "is 234 characters long; the limit is 233, so that the metric key \
             `node_{id}_duration_ms` fits MLflow's 250-character limit: shorten the id",
        ),
    ] {
        let err = analyzer.record_node(bad, 1.0).unwrap_err();
        assert!(
            matches!(&err, RecordError::InvalidNodeId { node_id, .. } if node_id == bad),
            "{err:?}"
        );
        assert!(err.to_string().ends_with(message), "{err}");
        // The id is checked before the duration.
        assert!(matches!(
            analyzer.record_node(bad, f64::NAN),
            Err(RecordError::InvalidNodeId { .. })
        ));
    }
    assert!(analyzer.record_node(&"a".repeat(233), 1.0).is_ok());
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let err = analyzer.record_node("kept", bad).unwrap_err();
        assert!(
            err.to_string()
                .contains("not a finite, non-negative number"),
            "{err}"
        );
        assert!(err.to_string().contains("kept"), "{err}");
    }
    let kept = analyzer.get_node("kept").unwrap();
    assert_eq!((kept.call_count, kept.total_duration_ms), (1, 10.0));
    assert_eq!(
        analyzer.get_timings().len(),
        2,
        "only `kept` and the 233-character id"
    );
}

#[test]
fn nesting_shares_are_of_self_time_and_slowest_is_of_total_time() {
    use agent_profiler::{ProfilerScope, profile_node};
    use std::time::Duration;

    #[profile_node("inner_step")]
    fn inner() {
        std::thread::sleep(Duration::from_millis(60));
    }
    #[profile_node("outer_step")]
    fn outer() {
        std::thread::sleep(Duration::from_millis(20));
        inner();
    }

    let analyzer = BottleneckAnalyzer::new();
    {
        let _scope = ProfilerScope::new(&analyzer);
        outer();
    }
    let summary = analyzer.get_summary();
    let node = |id: &str| summary.node(id).unwrap();
    let (o, i) = (node("outer_step"), node("inner_step"));
    // The outer call contains the inner one: total time is the sum of self times, which is
    // the outer total, not the sum of the totals.
    let self_sum = o.self_duration_ms + i.self_duration_ms;
    assert!((summary.total_time_ms - self_sum).abs() < 1e-9);
    assert!((summary.total_time_ms - o.total_duration_ms).abs() < 0.01);
    // Slowest by total: outer. Bottleneck by self-time share: inner (about 75%), not outer.
    assert_eq!(summary.slowest_node.as_ref().unwrap().node_id, "outer_step");
    assert_eq!(ids(&summary.bottlenecks), ["inner_step"]);
    let share = summary.bottlenecks[0].percent_of_total;
    assert!((share - i.self_duration_ms * 100.0 / self_sum).abs() < 1e-9);
}

#[test]
fn clones_share_data_and_threads_can_record_by_hand() {
    let analyzer = BottleneckAnalyzer::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let a = analyzer.clone();
            s.spawn(move || {
                for _ in 0..250 {
                    a.record_node("shared", 2.0).unwrap();
                }
            });
        }
    });
    let node = analyzer.get_node("shared").unwrap();
    assert_eq!(node.call_count, 1000);
    assert_eq!(node.total_duration_ms, 2000.0);
}

#[test]
fn percentiles_come_from_the_recorded_distribution() {
    let analyzer = BottleneckAnalyzer::new();
    for ms in 1..=100 {
        analyzer.record_node("spread", f64::from(ms)).unwrap();
    }
    let node = analyzer.get_node("spread").unwrap();
    let near = |got: f64, want: f64| (got - want).abs() / want < 0.07;
    assert!(
        near(node.p50_duration_ms, 50.0),
        "p50 {}",
        node.p50_duration_ms
    );
    assert!(
        near(node.p95_duration_ms, 95.0),
        "p95 {}",
        node.p95_duration_ms
    );
    assert!(
        near(node.p99_duration_ms, 99.0),
        "p99 {}",
        node.p99_duration_ms
    );
    assert_eq!((node.min_duration_ms, node.max_duration_ms), (1.0, 100.0));
}

#[test]
fn summary_table_lists_every_node() {
    let analyzer = analyzer_with(&[("fast", 50.0), ("slow", 450.0)]);
    let table = analyzer.get_summary().to_table();
    assert!(table.lines().next().unwrap().starts_with("node"));
    assert!(table.contains("slow") && table.contains("fast"));
    assert!(table.contains("90.0%"), "{table}");
    assert!(table.contains("slowest node: slow"), "{table}");
}
