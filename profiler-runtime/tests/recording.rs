//! The runtime's recording paths, driven the way `#[profile_node]`'s expansion drives them
//! (the facade's tests cover the same through the macro).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use agent_profiler_runtime::__private::{
    CallSite, ErrProbe as _, Guard, NodeFuture, OkProbe as _, call_once,
};
use agent_profiler_runtime::{
    BottleneckAnalyzer, ProfilerFutureExt, ProfilerScope, clear_profiler, current_node_id,
    get_profiler, set_profiler,
};

// Macros, not generic fns: the outcome probe must see the concrete return type, as it does
// in the macro's expansion.
macro_rules! sync_node {
    ($site:expr, $body:expr) => {{
        let mut guard = Guard::enter($site);
        let ret = call_once($body);
        let probe = &ret;
        guard.observe(probe.__ap_outcome());
        ret
    }};
}

macro_rules! async_node {
    ($site:expr, $body:expr) => {
        NodeFuture::new($site, $body, |r| r.__ap_outcome())
    };
}

/// Runs `f` with a context whose waker does nothing: the tests poll by hand.
fn noop_context<T>(f: impl FnOnce(&mut Context<'_>) -> T) -> T {
    f(&mut Context::from_waker(Waker::noop()))
}

/// A future that is pending `n` times, then ready.
struct YieldTimes(u32);
impl Future for YieldTimes {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            return Poll::Ready(());
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn sync_call_records_duration_outcome_and_self_time() {
    static OUTER: CallSite = CallSite::new("rec_outer", false);
    static INNER: CallSite = CallSite::new("rec_inner", false);
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    sync_node!(&OUTER, || {
        std::thread::sleep(Duration::from_millis(5));
        sync_node!(&INNER, || std::thread::sleep(Duration::from_millis(20)));
    });
    let summary = analyzer.get_summary();
    let node = |id: &str| {
        summary
            .nodes
            .iter()
            .find(|n| n.node_id == id)
            .unwrap()
            .clone()
    };
    let (outer, inner) = (node("rec_outer"), node("rec_inner"));
    assert!(outer.total_duration_ms >= 25.0, "{outer:?}");
    assert!(inner.total_duration_ms >= 20.0);
    assert!(
        outer.self_duration_ms >= 5.0 && outer.self_duration_ms < outer.total_duration_ms - 19.0
    );
    let sum_self = outer.self_duration_ms + inner.self_duration_ms;
    assert!(
        (summary.total_time_ms - sum_self).abs() < 1e-9,
        "total is the sum of self times"
    );
    assert!(summary.total_time_ms < outer.total_duration_ms + inner.total_duration_ms - 19.0);
    assert_eq!(summary.bottlenecks[0].node_id, "rec_inner");
}

#[test]
fn err_and_panic_outcomes_are_counted() {
    static SITE: CallSite = CallSite::new("rec_outcomes", false);
    let analyzer = BottleneckAnalyzer::new();
    set_profiler(&analyzer);
    let ok: Result<u8, String> = sync_node!(&SITE, || Ok(1));
    let err: Result<u8, String> = sync_node!(&SITE, || Err("no".into()));
    let panicked = std::panic::catch_unwind(|| sync_node!(&SITE, || -> u8 { panic!("boom") }));
    assert!(ok.is_ok() && err.is_err() && panicked.is_err());
    let node = analyzer.get_node("rec_outcomes").unwrap();
    assert_eq!(node.call_count, 3);
    assert_eq!(
        (
            node.outcomes.ok,
            node.outcomes.error,
            node.outcomes.panicked
        ),
        (1, 1, 1)
    );
    clear_profiler();
}

#[test]
fn nothing_is_recorded_without_an_analyzer_or_when_disabled() {
    static SITE: CallSite = CallSite::new("rec_idle", false);
    clear_profiler();
    sync_node!(&SITE, || ());
    let analyzer = BottleneckAnalyzer::new();
    set_profiler(&analyzer);
    analyzer.set_enabled(false);
    sync_node!(&SITE, || ());
    assert!(analyzer.get_timings().is_empty());
    analyzer.set_enabled(true);
    sync_node!(&SITE, || ());
    assert_eq!(analyzer.get_node("rec_idle").unwrap().call_count, 1);
    clear_profiler();
}

#[test]
fn a_call_records_into_the_analyzer_current_when_it_started() {
    static SITE: CallSite = CallSite::new("rec_switch", false);
    let first = BottleneckAnalyzer::new();
    let second = BottleneckAnalyzer::new();
    set_profiler(&first);
    sync_node!(&SITE, || set_profiler(&second));
    assert_eq!(first.get_node("rec_switch").unwrap().call_count, 1);
    assert!(second.get_timings().is_empty());
    clear_profiler();
}

#[test]
fn a_call_whose_analyzer_died_meanwhile_is_dropped_safely() {
    static SITE: CallSite = CallSite::new("rec_dead", false);
    let survivor = BottleneckAnalyzer::new();
    {
        let doomed = BottleneckAnalyzer::new();
        set_profiler(&doomed);
    }
    // The thread holds the only handle; replacing it inside the call kills it, and a later
    // install prunes its shard while the call still runs.
    sync_node!(&SITE, || {
        set_profiler(&survivor);
        clear_profiler();
        set_profiler(&survivor);
    });
    assert!(survivor.get_timings().is_empty());
    sync_node!(&SITE, || ());
    assert_eq!(survivor.get_node("rec_dead").unwrap().call_count, 1);
    clear_profiler();
}

#[test]
fn async_node_wall_busy_and_cancellation() {
    static SITE: CallSite = CallSite::new("rec_async", true);
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    noop_context(|cx| {
        // Never polled: records nothing.
        drop(async_node!(&SITE, async {}));
        assert!(analyzer.get_timings().is_empty());

        // Two pendings with a pause between polls: wall covers the pause, busy does not.
        let mut fut = pin!(async_node!(&SITE, YieldTimes(2)));
        assert!(fut.as_mut().poll(cx).is_pending());
        std::thread::sleep(Duration::from_millis(15));
        assert!(fut.as_mut().poll(cx).is_pending());
        assert!(fut.as_mut().poll(cx).is_ready());
        let node = analyzer.get_node("rec_async").unwrap();
        assert!(node.is_async);
        assert!(node.total_duration_ms >= 15.0, "{node:?}");
        assert!(node.busy_duration_ms < 10.0, "{node:?}");

        // Dropped after its first poll: cancelled.
        let mut cancelled = Box::pin(async_node!(&SITE, YieldTimes(5)));
        assert!(cancelled.as_mut().poll(cx).is_pending());
        drop(cancelled);
    });
    let node = analyzer.get_node("rec_async").unwrap();
    assert_eq!(node.call_count, 2);
    assert_eq!((node.outcomes.ok, node.outcomes.cancelled), (1, 1));
}

#[test]
fn async_error_and_panic_outcomes() {
    static SITE: CallSite = CallSite::new("rec_async_outcomes", true);
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    noop_context(|cx| {
        let mut err = pin!(async_node!(&SITE, async { Err::<(), u8>(7) }));
        assert!(err.as_mut().poll(cx).is_ready());
        let panicking = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut fut = Box::pin(async_node!(&SITE, async {
                if std::hint::black_box(true) {
                    panic!("inside poll")
                }
            }));
            let _ = fut.as_mut().poll(cx);
        }));
        assert!(panicking.is_err());
    });
    let node = analyzer.get_node("rec_async_outcomes").unwrap();
    assert_eq!((node.outcomes.error, node.outcomes.panicked), (1, 1));
}

#[test]
fn async_node_finishing_on_another_thread_records_into_its_analyzer() {
    static SITE: CallSite = CallSite::new("rec_migrate", true);
    let analyzer = BottleneckAnalyzer::new();
    set_profiler(&analyzer);
    let mut fut = Box::pin(async_node!(&SITE, YieldTimes(1)));
    noop_context(|cx| assert!(fut.as_mut().poll(cx).is_pending()));
    clear_profiler();
    std::thread::spawn(move || {
        assert!(get_profiler().is_none());
        noop_context(|cx| assert!(fut.as_mut().poll(cx).is_ready()));
    })
    .join()
    .unwrap();
    let node = analyzer.get_node("rec_migrate").unwrap();
    assert_eq!(node.call_count, 1);
}

#[tokio::test]
async fn nested_async_nodes_do_not_count_twice() {
    static OUTER: CallSite = CallSite::new("rec_async_outer", true);
    static INNER: CallSite = CallSite::new("rec_async_inner", true);
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    async_node!(&OUTER, async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        async_node!(&INNER, tokio::time::sleep(Duration::from_millis(20))).await;
    })
    .await;
    let outer = analyzer.get_node("rec_async_outer").unwrap();
    let inner = analyzer.get_node("rec_async_inner").unwrap();
    assert!(inner.total_duration_ms >= 20.0);
    assert!(outer.total_duration_ms >= 25.0);
    assert!(outer.self_duration_ms <= outer.total_duration_ms - inner.total_duration_ms + 0.001);
    assert!(outer.self_duration_ms >= 4.0, "{outer:?}");
}

/// The runtime is built by hand to be dropped before the check: the workers have exited, and
/// what they recorded is kept.
#[test]
fn with_profiler_carries_the_analyzer_to_worker_threads() {
    static SITE: CallSite = CallSite::new("rec_spawned", true);
    let analyzer = BottleneckAnalyzer::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..64_u64 {
            let work = async_node!(&SITE, async move {
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(Duration::from_millis(i % 3)).await;
            });
            tasks.push(tokio::spawn(work.with_profiler(analyzer.clone())));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    drop(rt);
    assert_eq!(analyzer.get_node("rec_spawned").unwrap().call_count, 64);
}

#[test]
fn in_current_profiler_captures_the_installed_analyzer() {
    static SITE: CallSite = CallSite::new("rec_in_current", true);
    let analyzer = BottleneckAnalyzer::new();
    set_profiler(&analyzer);
    let fut = async_node!(&SITE, async {}).in_current_profiler();
    clear_profiler();
    std::thread::spawn(move || noop_context(|cx| assert!(pin!(fut).poll(cx).is_ready())))
        .join()
        .unwrap();
    assert_eq!(analyzer.get_node("rec_in_current").unwrap().call_count, 1);
    assert!(
        get_profiler().is_none(),
        "the poll restored the thread's state"
    );
}

#[test]
fn many_threads_lose_no_calls_and_exited_threads_keep_theirs() {
    static SITE: CallSite = CallSite::new("rec_threads", false);
    let analyzer = BottleneckAnalyzer::new();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let a = analyzer.clone();
            std::thread::spawn(move || {
                set_profiler(&a);
                for _ in 0..10_000 {
                    sync_node!(&SITE, || std::hint::black_box(1));
                }
            })
        })
        .collect();
    // Summaries while threads record must not disturb them.
    for _ in 0..20 {
        let calls = analyzer.get_node("rec_threads").map_or(0, |n| n.call_count);
        assert!(calls <= 80_000);
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(analyzer.get_node("rec_threads").unwrap().call_count, 80_000);
}

#[test]
fn memory_stays_flat_after_warm_up() {
    static SITES: [CallSite; 4] = [
        CallSite::new("mem_a", false),
        CallSite::new("mem_b", false),
        CallSite::new("mem_c", false),
        CallSite::new("mem_d", false),
    ];
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    for site in &SITES {
        sync_node!(site, || ());
    }
    let warm = analyzer.memory_bytes();
    for i in 0..200_000 {
        sync_node!(&SITES[i % 4], || ());
    }
    assert_eq!(analyzer.memory_bytes(), warm);
    assert_eq!(analyzer.get_summary().node_count, 4);
}

#[test]
fn current_node_id_follows_nesting_sync_and_async() {
    static OUTER: CallSite = CallSite::new("cur_outer", false);
    static INNER: CallSite = CallSite::new("cur_inner", true);
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    assert_eq!(current_node_id(), None);
    sync_node!(&OUTER, || {
        assert_eq!(current_node_id(), Some("cur_outer"));
        noop_context(|cx| {
            let mut fut = pin!(async_node!(&INNER, async {
                assert_eq!(current_node_id(), Some("cur_inner"));
                YieldTimes(1).await;
                assert_eq!(current_node_id(), Some("cur_inner"));
            }));
            assert!(fut.as_mut().poll(cx).is_pending());
            assert_eq!(current_node_id(), Some("cur_outer"));
            assert!(fut.as_mut().poll(cx).is_ready());
        });
        assert_eq!(current_node_id(), Some("cur_outer"));
    });
    assert_eq!(current_node_id(), None);
}

#[test]
fn exported_calls_arrive_once_each_in_order_with_call_indexes() {
    static SITE: CallSite = CallSite::new("exp_calls", false);
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_call_export(1 << 16);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let a = analyzer.clone();
            std::thread::spawn(move || {
                let _scope = ProfilerScope::new(&a);
                for _ in 0..5_000 {
                    sync_node!(&SITE, || std::hint::black_box(3));
                }
            })
        })
        .collect();
    let mut calls = Vec::new();
    while workers.iter().any(|w| !w.is_finished()) {
        analyzer.drain_calls(&mut calls);
    }
    for w in workers {
        w.join().unwrap();
    }
    // The threads have exited: what their rings still held was kept for this drain.
    analyzer.drain_calls(&mut calls);
    assert_eq!(calls.len(), 20_000);
    assert_eq!(analyzer.dropped_calls(), 0);
    let indexes: Vec<u64> = calls.iter().map(|c| c.call_index).collect();
    assert_eq!(indexes, (0..20_000).collect::<Vec<_>>());
    assert!(
        calls
            .iter()
            .all(|c| c.node_id == "exp_calls" && c.end_unix_ms >= c.start_unix_ms)
    );
    assert_eq!(analyzer.get_node("exp_calls").unwrap().call_count, 20_000);
}

#[test]
fn a_full_ring_drops_records_but_never_calls() {
    static SITE: CallSite = CallSite::new("exp_full", false);
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_call_export(100);
    let _scope = ProfilerScope::new(&analyzer);
    for _ in 0..250 {
        sync_node!(&SITE, || ());
    }
    let mut calls = Vec::new();
    assert_eq!(analyzer.drain_calls(&mut calls), 100);
    assert_eq!(analyzer.dropped_calls(), 150);
    assert_eq!(analyzer.get_node("exp_full").unwrap().call_count, 250);
    // Drained, the ring takes calls again, and memory stays what it was.
    let after_warm_up = analyzer.memory_bytes();
    for _ in 0..10 {
        for _ in 0..50 {
            sync_node!(&SITE, || ());
        }
        analyzer.drain_calls(&mut calls);
    }
    assert_eq!(calls.len(), 600);
    assert_eq!(analyzer.memory_bytes(), after_warm_up);
    analyzer.disable_call_export();
    sync_node!(&SITE, || ());
    assert_eq!(analyzer.drain_calls(&mut calls), 0);
}

#[test]
fn async_outcomes_reach_the_exported_records() {
    static SITE: CallSite = CallSite::new("exp_async", true);
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_call_export(16);
    let _scope = ProfilerScope::new(&analyzer);
    noop_context(|cx| {
        let mut err = pin!(async_node!(&SITE, async { Err::<(), u8>(1) }));
        assert!(err.as_mut().poll(cx).is_ready());
        let mut cancelled = Box::pin(async_node!(&SITE, YieldTimes(3)));
        assert!(cancelled.as_mut().poll(cx).is_pending());
        drop(cancelled);
    });
    let mut calls = Vec::new();
    analyzer.drain_calls(&mut calls);
    let outcomes: Vec<_> = calls.iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            agent_profiler_runtime::Outcome::Error,
            agent_profiler_runtime::Outcome::Cancelled
        ]
    );
}

#[test]
fn async_node_outliving_the_thread_it_started_on_still_records() {
    static SITE: CallSite = CallSite::new("rec_orphan", true);
    let analyzer = BottleneckAnalyzer::new();
    let a = analyzer.clone();
    let fut = std::thread::spawn(move || {
        set_profiler(&a);
        let mut fut = Box::pin(async_node!(&SITE, YieldTimes(1)));
        noop_context(|cx| assert!(fut.as_mut().poll(cx).is_pending()));
        fut
    })
    .join()
    .unwrap();
    // The starting thread has exited and its shard was retired; finish here.
    let mut fut = fut;
    noop_context(|cx| assert!(fut.as_mut().poll(cx).is_ready()));
    assert_eq!(analyzer.get_node("rec_orphan").unwrap().call_count, 1);

    // And when the analyzer itself is gone by then, the call is dropped quietly.
    let doomed = BottleneckAnalyzer::new();
    set_profiler(&doomed);
    let mut fut = Box::pin(async_node!(&SITE, YieldTimes(1)));
    noop_context(|cx| assert!(fut.as_mut().poll(cx).is_pending()));
    clear_profiler();
    drop(doomed);
    std::thread::spawn(move || noop_context(|cx| assert!(fut.as_mut().poll(cx).is_ready())))
        .join()
        .unwrap();
}

/// 100 distinct node ids, as a program with 100 profiled functions has.
static MANY_IDS: [&str; 100] = [
    "mem_node_000",
    "mem_node_001",
    "mem_node_002",
    "mem_node_003",
    "mem_node_004",
    "mem_node_005",
    "mem_node_006",
    "mem_node_007",
    "mem_node_008",
    "mem_node_009",
    "mem_node_010",
    "mem_node_011",
    "mem_node_012",
    "mem_node_013",
    "mem_node_014",
    "mem_node_015",
    "mem_node_016",
    "mem_node_017",
    "mem_node_018",
    "mem_node_019",
    "mem_node_020",
    "mem_node_021",
    "mem_node_022",
    "mem_node_023",
    "mem_node_024",
    "mem_node_025",
    "mem_node_026",
    "mem_node_027",
    "mem_node_028",
    "mem_node_029",
    "mem_node_030",
    "mem_node_031",
    "mem_node_032",
    "mem_node_033",
    "mem_node_034",
    "mem_node_035",
    "mem_node_036",
    "mem_node_037",
    "mem_node_038",
    "mem_node_039",
    "mem_node_040",
    "mem_node_041",
    "mem_node_042",
    "mem_node_043",
    "mem_node_044",
    "mem_node_045",
    "mem_node_046",
    "mem_node_047",
    "mem_node_048",
    "mem_node_049",
    "mem_node_050",
    "mem_node_051",
    "mem_node_052",
    "mem_node_053",
    "mem_node_054",
    "mem_node_055",
    "mem_node_056",
    "mem_node_057",
    "mem_node_058",
    "mem_node_059",
    "mem_node_060",
    "mem_node_061",
    "mem_node_062",
    "mem_node_063",
    "mem_node_064",
    "mem_node_065",
    "mem_node_066",
    "mem_node_067",
    "mem_node_068",
    "mem_node_069",
    "mem_node_070",
    "mem_node_071",
    "mem_node_072",
    "mem_node_073",
    "mem_node_074",
    "mem_node_075",
    "mem_node_076",
    "mem_node_077",
    "mem_node_078",
    "mem_node_079",
    "mem_node_080",
    "mem_node_081",
    "mem_node_082",
    "mem_node_083",
    "mem_node_084",
    "mem_node_085",
    "mem_node_086",
    "mem_node_087",
    "mem_node_088",
    "mem_node_089",
    "mem_node_090",
    "mem_node_091",
    "mem_node_092",
    "mem_node_093",
    "mem_node_094",
    "mem_node_095",
    "mem_node_096",
    "mem_node_097",
    "mem_node_098",
    "mem_node_099",
];

const fn many_sites() -> [CallSite; 100] {
    let mut sites = [const { CallSite::new("", false) }; 100];
    let mut i = 0;
    while i < 100 {
        sites[i] = CallSite::new(MANY_IDS[i], false);
        i += 1;
    }
    sites
}

static MANY_SITES: [CallSite; 100] = many_sites();

#[test]
fn ten_million_calls_across_100_nodes_leave_memory_flat() {
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    for site in &MANY_SITES {
        sync_node!(site, || ());
    }
    let warm = analyzer.memory_bytes();
    for round in 0..100_000 {
        for site in &MANY_SITES {
            sync_node!(site, || std::hint::black_box(round));
        }
        if round % 25_000 == 0 {
            assert_eq!(analyzer.memory_bytes(), warm, "after {round} rounds");
        }
    }
    assert_eq!(analyzer.memory_bytes(), warm);
    let summary = analyzer.get_summary();
    assert_eq!(summary.node_count, 100);
    let calls: u64 = summary.nodes.iter().map(|n| n.call_count).sum();
    assert_eq!(calls, 100 * 100_001);
}
