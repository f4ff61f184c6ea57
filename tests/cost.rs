//! LLM cost tracking through the facade: real response bodies of every provider with
//! hand-computed costs, prices from a LiteLLM file and from code, bad input, concurrency,
//! and attribution to `#[profile_node]` nodes (sync, nested, async on a multi-thread
//! runtime).

mod support {
    #[allow(dead_code)] // four workers, not two
    pub mod runtimes;
}

use std::path::PathBuf;
use std::sync::Arc;

use agent_profiler::cost::{CostError, CostInfo, ModelPrice, PricingTable, Usage};
use agent_profiler::{
    BottleneckAnalyzer, MultiProviderCostTracker, ProfilerFutureExt, ProfilerScope, Summary,
    extract_provider, profile_node,
};
use serde_json::{Value, json};
use support::runtimes;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/providers")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Tracks the response in `file` as a call of `provider`'s `model`; the call.
fn track(tracker: &MultiProviderCostTracker, provider: &str, model: &str, file: &str) -> CostInfo {
    tracker
        .track_call(provider, model, &fixture(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn assert_usd(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-12 + 1e-9 * want.abs(),
        "cost {got} != {want}"
    );
}

/// One provider response, who served it, and what it must come to.
struct Case {
    file: &'static str,
    provider: &'static str,
    model: &'static str,
    /// input, cached, cache creation, output, reasoning, total
    tokens: [u64; 6],
    cost_usd: f64,
}

/// Every expected cost is worked out by hand from the LiteLLM per-token rates embedded in the
/// crate (shown per token, e.g. gpt-4o input $2.50/M = 2.5e-6).
const CASES: &[Case] = &[
    // OpenAI chat, gpt-4o: (2006 - 1920) uncached * 2.5e-6 + 1920 cached * 1.25e-6
    // + 300 out * 1e-5 = 0.000215 + 0.0024 + 0.003
    Case {
        file: "openai_chat_cached.json",
        provider: "openai",
        model: "gpt-4o-2024-08-06",
        tokens: [2006, 1920, 0, 300, 0, 2306],
        cost_usd: 0.005615,
    },
    // OpenAI chat, o3-mini (no reasoning rate: reasoning is output): 176 * 1.1e-6
    // + 1024 * 5.5e-7 + 1850 * 4.4e-6 = 0.0001936 + 0.0005632 + 0.00814
    Case {
        file: "openai_chat_reasoning.json",
        provider: "openai",
        model: "o3-mini-2025-01-31",
        tokens: [1200, 1024, 0, 1850, 1536, 3050],
        cost_usd: 0.0088968,
    },
    // OpenAI Responses, o4-mini: 1304 * 1.1e-6 + 4096 * 2.75e-7 + 800 * 4.4e-6
    // = 0.0014344 + 0.0011264 + 0.00352
    Case {
        file: "openai_responses.json",
        provider: "openai",
        model: "o4-mini-2025-04-16",
        tokens: [5400, 4096, 0, 800, 512, 6200],
        cost_usd: 0.0060808,
    },
    // Anthropic, Sonnet 4.5: 50 * 3e-6 + 8000 read * 3e-7 + 1200 written * 3.75e-6
    // + 420 * 1.5e-5 = 0.00015 + 0.0024 + 0.0045 + 0.0063
    Case {
        file: "anthropic_cache.json",
        provider: "anthropic",
        model: "claude-sonnet-4-5-20250929",
        tokens: [9250, 8000, 1200, 420, 0, 9670],
        cost_usd: 0.01335,
    },
    // Anthropic, Opus 4.1 with one-hour cache writes: 30 * 1.5e-5 + 500 (5 min) * 1.875e-5
    // + 1500 (1 h) * 3e-5 + 150 * 7.5e-5 = 0.00045 + 0.009375 + 0.045 + 0.01125
    Case {
        file: "anthropic_1h_cache.json",
        provider: "anthropic",
        model: "claude-opus-4-1-20250805",
        tokens: [2030, 0, 2000, 150, 0, 2180],
        cost_usd: 0.066075,
    },
    // Gemini 2.5 Flash: (12000 - 8192) * 3e-7 + 8192 * 3e-8 + 350 * 2.5e-6
    // + 1200 thoughts * 2.5e-6 = 0.0011424 + 0.00024576 + 0.000875 + 0.003
    Case {
        file: "gemini_thinking_cached.json",
        provider: "gemini",
        model: "gemini-2.5-flash",
        tokens: [12000, 8192, 0, 1550, 1200, 13550],
        cost_usd: 0.00526316,
    },
    // Gemini 2.5 Pro above 200k prompt tokens, every token at the long-prompt rates:
    // 250000 * 2.5e-6 + (2000 + 1000) * 1.5e-5 = 0.625 + 0.045
    Case {
        file: "gemini_pro_long_prompt.json",
        provider: "gemini",
        model: "gemini-2.5-pro",
        tokens: [250000, 0, 0, 3000, 1000, 253000],
        cost_usd: 0.67,
    },
    // Ollama: local, free.
    Case {
        file: "ollama_chat.json",
        provider: "ollama",
        model: "llama3.2",
        tokens: [26, 0, 0, 298, 0, 324],
        cost_usd: 0.0,
    },
    // LiteLLM proxy in front of Anthropic (OpenAI shape, cache-inclusive prompt_tokens):
    // 20 * 1e-6 + 3000 * 1e-7 + 100 * 1.25e-6 + 64 * 5e-6
    // = 0.00002 + 0.0003 + 0.000125 + 0.00032
    Case {
        file: "litellm_proxy_anthropic.json",
        provider: "anthropic",
        model: "claude-haiku-4-5-20251001",
        tokens: [3120, 3000, 100, 64, 0, 3184],
        cost_usd: 0.000765,
    },
];

#[test]
fn every_provider_response_is_priced_as_computed_by_hand() {
    let tracker = MultiProviderCostTracker::new();
    let mut want_total = 0.0;
    for case in CASES {
        let info = track(&tracker, case.provider, case.model, case.file);
        let got = [
            info.input_tokens,
            info.cached_input_tokens,
            info.cache_creation_input_tokens,
            info.output_tokens,
            info.reasoning_tokens,
            info.total_tokens,
        ];
        assert_eq!(got, case.tokens, "{}", case.file);
        let cost = info
            .cost_usd
            .unwrap_or_else(|| panic!("{} unpriced: {:?}", case.file, info.unpriced_reason));
        assert_usd(cost, case.cost_usd);
        assert_eq!(info.provider, case.provider);
        assert_eq!(info.node_id, None);
        want_total += case.cost_usd;
    }
    let summary = tracker.get_cost_summary();
    assert_eq!(summary.calls, CASES.len() as u64);
    assert_eq!((summary.unpriced_calls, summary.failed_calls), (0, 0));
    assert_usd(summary.total_cost_usd, want_total);
    assert_eq!(
        summary.total_tokens,
        CASES.iter().map(|c| c.tokens[5]).sum::<u64>()
    );
    assert_usd(
        summary.by_provider["anthropic"].cost_usd,
        0.01335 + 0.066075 + 0.000765,
    );
    assert_eq!(summary.by_provider["ollama"].calls, 1);
    assert_usd(summary.by_provider["ollama"].cost_usd, 0.0);
    assert_eq!(summary.by_model["gemini-2.5-flash"].reasoning_tokens, 1200);
}

#[test]
fn provider_comes_from_the_model_name() {
    let tracker = MultiProviderCostTracker::new();
    let response = fixture("openai_chat_cached.json");
    let model = response["model"].as_str().unwrap();
    let info = tracker
        .track_call(&extract_provider(model), model, &response)
        .unwrap();
    assert_eq!(info.provider, "openai");
    assert_usd(info.cost_usd.unwrap(), 0.005615);
    let gemini = fixture("gemini_thinking_cached.json");
    let model = gemini["modelVersion"].as_str().unwrap();
    assert_eq!(extract_provider(model), "gemini");
    // An empty provider means "from the model name".
    let info = tracker.track_call("", model, &gemini).unwrap();
    assert_usd(info.cost_usd.unwrap(), 0.00526316);
}

#[test]
fn raw_body_text_works_like_a_value() {
    let tracker = MultiProviderCostTracker::new();
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/providers/anthropic_cache.json");
    let body = std::fs::read_to_string(path).unwrap();
    let from_text = tracker
        .track_call("anthropic", "claude-sonnet-4-5-20250929", body.as_str())
        .unwrap();
    assert_usd(from_text.cost_usd.unwrap(), 0.01335);
    assert_eq!(Usage::from_json_str(&body).unwrap().input_tokens, 9250);
}

#[test]
fn unknown_model_is_unpriced_and_counted_never_zero() {
    let tracker = MultiProviderCostTracker::new();
    let known = track(&tracker, "openai", "gpt-4o", "openai_chat_cached.json");
    let vllm = fixture("vllm_chat.json");
    let model = vllm["model"].as_str().unwrap();
    assert_eq!(
        extract_provider(model),
        "meta-llama",
        "a prefix wins, never guessed free"
    );
    let info = tracker.track_call("vllm", model, &vllm).unwrap();
    assert_eq!(info.cost_usd, None);
    assert!(info.unpriced_reason.as_deref().unwrap().contains(model));
    assert_eq!((info.input_tokens, info.output_tokens), (41, 120));
    let summary = tracker.get_cost_summary();
    assert_eq!(
        (summary.calls, summary.priced_calls, summary.unpriced_calls),
        (2, 1, 1)
    );
    assert_usd(summary.total_cost_usd, known.cost_usd.unwrap());
    assert_eq!(
        summary.total_tokens,
        2306 + 161,
        "unpriced tokens still count"
    );
    assert_eq!(summary.by_provider["vllm"].unpriced_calls, 1);
    assert_eq!(summary.by_model[model].unpriced_calls, 1);
}

#[test]
fn responses_without_usage_are_errors_and_lose_nothing() {
    let tracker = MultiProviderCostTracker::new();
    let before = track(&tracker, "openai", "gpt-4o", "openai_chat_cached.json");
    for name in ["openai_chat_stream_chunk.json", "openai_error.json"] {
        let got = tracker.track_call("openai", "gpt-4o", &fixture(name));
        match got {
            Err(CostError::MissingUsage { looked_for }) => {
                assert!(looked_for.contains("usage"), "{name}: {looked_for}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let bad_json = r#"{"id": "chatcmpl-1", "usage": {"prompt_tokens": 12,"#;
    let got = tracker.track_call("openai", "gpt-4o", bad_json);
    assert!(matches!(got, Err(CostError::InvalidJson { .. })), "{got:?}");
    let message = got.unwrap_err().to_string();
    assert!(message.contains("not valid JSON"), "{message}");
    let negative = json!({"usage": {"prompt_tokens": -1, "completion_tokens": 3}});
    assert!(matches!(
        tracker.track_call("openai", "gpt-4o", &negative),
        Err(CostError::Malformed { .. })
    ));
    let summary = tracker.get_cost_summary();
    assert_eq!((summary.calls, summary.failed_calls), (1, 4));
    assert_usd(summary.total_cost_usd, before.cost_usd.unwrap());
    assert_eq!(summary.total_tokens, 2306);
    assert_eq!(tracker.get_history(), vec![before]);
}

/// A file in the system's temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "agent-profiler-{}-{}-{name}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn litellm_price_file_prices_a_model_the_embedded_table_lacks() {
    // The shape of LiteLLM's model_prices_and_context_window.json, with its sample_spec and
    // a non-token entry, and a model the embedded table does not have.
    let file = TempFile::new(
        "model_prices_and_context_window.json",
        r#"{
            "sample_spec": {
                "input_cost_per_token": 0.0,
                "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
                "max_tokens": "LEGACY parameter",
                "mode": "one of: chat, embedding, completion"
            },
            "mistral/mistral-medium-2505": {
                "input_cost_per_token": 4e-07,
                "output_cost_per_token": 2e-06,
                "litellm_provider": "mistral",
                "max_input_tokens": 131072,
                "max_output_tokens": 8191,
                "mode": "chat",
                "supports_function_calling": true
            },
            "deepseek/deepseek-chat": {
                "cache_read_input_token_cost": 7e-08,
                "input_cost_per_token": 2.7e-07,
                "output_cost_per_token": 1.1e-06,
                "litellm_provider": "deepseek",
                "mode": "chat"
            },
            "dall-e-3": {
                "litellm_provider": "openai",
                "mode": "image_generation",
                "output_cost_per_image": 0.04
            }
        }"#,
    );
    let response = json!({
        "id": "cmpl-e5cc70bb28c444948073e77776eb30ef",
        "object": "chat.completion",
        "model": "mistral-medium-2505",
        "usage": {"prompt_tokens": 16, "completion_tokens": 34, "total_tokens": 50}
    });
    assert!(
        MultiProviderCostTracker::new()
            .track_call("mistral", "mistral-medium-2505", &response)
            .unwrap()
            .cost_usd
            .is_none(),
        "not embedded"
    );

    let mut pricing = PricingTable::default();
    assert_eq!(pricing.extend_from_litellm_file(&file.0).unwrap(), 2);
    let tracker = MultiProviderCostTracker::with_pricing(pricing);
    let info = tracker
        .track_call("mistral", "mistral-medium-2505", &response)
        .unwrap();
    // 16 * 4e-7 + 34 * 2e-6
    assert_usd(info.cost_usd.unwrap(), 0.0000744);
    assert_eq!(
        info.price_key.as_deref(),
        Some("mistral/mistral-medium-2505")
    );
    // Cache reads at their own rate: (1000 - 600) * 2.7e-7 + 600 * 7e-8 + 10 * 1.1e-6
    let info = tracker
        .track_usage(
            "deepseek",
            "deepseek-chat",
            Usage::new(1000, 10).with_cached_input(600),
        )
        .unwrap();
    assert_usd(info.cost_usd.unwrap(), 0.000108 + 0.000042 + 0.000011);
    // The embedded prices are still there.
    assert!(
        tracker
            .track_call("openai", "gpt-4o", &response)
            .unwrap()
            .cost_usd
            .is_some()
    );

    // The file alone: nothing else, not even free Ollama.
    let only = PricingTable::from_litellm_file(&file.0).unwrap();
    assert_eq!(
        only.keys(),
        ["deepseek/deepseek-chat", "mistral/mistral-medium-2505"]
    );
    assert!(only.lookup("ollama", "llama3.2").is_none());

    let broken = TempFile::new("broken.json", r#"{"m": {"input_cost_per_token": -3}}"#);
    assert!(matches!(
        PricingTable::from_litellm_file(&broken.0),
        Err(CostError::InvalidPrice { .. })
    ));
}

#[test]
fn prices_overridden_in_code() {
    let pricing = PricingTable::default()
        // A self-hosted model behind vLLM, at what the GPU hour comes to per token.
        .with_price(
            "vllm/meta-llama/Llama-3.1-8B-Instruct",
            ModelPrice::per_million(0.20, 0.20),
        )
        // A negotiated discount on an embedded model.
        .with_price(
            "gpt-4o",
            ModelPrice::per_million(2.0, 8.0).with_cache_read_per_million(1.0),
        );
    let tracker = MultiProviderCostTracker::with_pricing(pricing);
    let vllm = fixture("vllm_chat.json");
    let info = tracker
        .track_call("vllm", "meta-llama/Llama-3.1-8B-Instruct", &vllm)
        .unwrap();
    // 161 tokens * 2e-7
    assert_usd(info.cost_usd.unwrap(), 0.0000322);
    let info = track(&tracker, "openai", "gpt-4o", "openai_chat_cached.json");
    // 86 * 2e-6 + 1920 * 1e-6 + 300 * 8e-6
    assert_usd(info.cost_usd.unwrap(), 0.000172 + 0.00192 + 0.0024);
    // Only the undated key was overridden.
    let dated = track(
        &tracker,
        "openai",
        "gpt-4o-2024-08-06",
        "openai_chat_cached.json",
    );
    assert_usd(dated.cost_usd.unwrap(), 0.005615);
}

#[test]
fn eight_threads_give_exact_totals() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 500;
    let tracker = MultiProviderCostTracker::builder()
        .history_limit(100)
        .build();
    let responses = Arc::new([
        fixture("openai_chat_cached.json"),
        fixture("anthropic_cache.json"),
        fixture("gemini_thinking_cached.json"),
        fixture("ollama_chat.json"),
    ]);
    let models = [
        ("openai", "gpt-4o-2024-08-06"),
        ("anthropic", "claude-sonnet-4-5-20250929"),
        ("gemini", "gemini-2.5-flash"),
        ("ollama", "llama3.2"),
    ];
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let tracker = tracker.clone();
            let responses = responses.clone();
            s.spawn(move || {
                for i in 0..CALLS {
                    let k = ((t + i) % 4) as usize;
                    let (provider, model) = models[k];
                    tracker.track_call(provider, model, &responses[k]).unwrap();
                    if i % 50 == 0 {
                        let _ = tracker.track_call(provider, model, &json!({"usage": null}));
                    }
                }
            });
        }
    });
    let summary = tracker.get_cost_summary();
    let calls = THREADS * CALLS;
    let each = calls / 4; // every thread spreads its calls evenly over the four models
    assert_eq!(summary.calls, calls);
    assert_eq!(summary.failed_calls, THREADS * CALLS.div_ceil(50));
    assert_eq!(summary.total_tokens, each * (2306 + 9670 + 13550 + 324));
    assert_eq!(summary.cached_input_tokens, each * (1920 + 8000 + 8192));
    assert_eq!(summary.reasoning_tokens, each * 1200);
    for (_, model) in models {
        assert_eq!(summary.by_model[model].calls, each, "{model}");
    }
    assert_usd(
        summary.total_cost_usd,
        each as f64 * (0.005615 + 0.01335 + 0.00526316),
    );
    assert_eq!(summary.history_len, 100);
    assert_eq!(summary.history_dropped, calls - 100);
}

// Attribution through the macro.

#[profile_node("plan")]
fn plan(tracker: &MultiProviderCostTracker) -> Option<String> {
    let info = track(tracker, "openai", "o3-mini", "openai_chat_reasoning.json");
    retrieve(tracker);
    info.node_id
}

#[profile_node("retrieve")]
fn retrieve(tracker: &MultiProviderCostTracker) {
    track(
        tracker,
        "openai",
        "gpt-4o-2024-08-06",
        "openai_chat_cached.json",
    );
    track(tracker, "vllm", "my-finetune", "vllm_chat.json");
}

fn node<'a>(summary: &'a Summary, id: &str) -> &'a agent_profiler::NodeTimings {
    summary
        .node(id)
        .unwrap_or_else(|| panic!("node `{id}` not in {summary:?}"))
}

/// The cost fields of a summary and of its nodes, which JSON written before cost tracking
/// lacks.
const SUMMARY_COST_FIELDS: [&str; 5] = [
    "total_cost_usd",
    "total_tokens",
    "llm_calls",
    "unpriced_calls",
    "costliest_node",
];
const NODE_COST_FIELDS: [&str; 9] = [
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "llm_calls",
    "unpriced_calls",
];

#[test]
fn nested_sync_nodes_get_their_own_calls() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    {
        let _scope = ProfilerScope::new(&analyzer);
        assert_eq!(plan(&tracker).as_deref(), Some("plan"));
        // Outside any node: tracked, attributed to none.
        let outside = track(
            &tracker,
            "anthropic",
            "claude-sonnet-4-5",
            "anthropic_cache.json",
        );
        assert_eq!(outside.node_id, None);
    }
    let summary = analyzer.get_summary();
    let plan = node(&summary, "plan");
    assert_eq!(
        (plan.call_count, plan.llm_calls, plan.unpriced_calls),
        (1, 1, 0)
    );
    assert_eq!((plan.input_tokens, plan.reasoning_tokens), (1200, 1536));
    assert_usd(plan.cost_usd, 0.0088968);
    let retrieve = node(&summary, "retrieve");
    assert_eq!((retrieve.llm_calls, retrieve.unpriced_calls), (2, 1));
    assert_eq!(retrieve.total_tokens, 2306 + 161);
    assert_usd(retrieve.cost_usd, 0.005615);
    assert_eq!(summary.llm_calls, 3);
    assert_eq!(summary.unpriced_calls, 1);
    assert_usd(summary.total_cost_usd, 0.0088968 + 0.005615);
    assert_eq!(summary.costliest_node.as_ref().unwrap().node_id, "plan");
    let history = tracker.get_history();
    let ids: Vec<_> = history.iter().map(|c| c.node_id.as_deref()).collect();
    assert_eq!(
        ids,
        [Some("plan"), Some("retrieve"), Some("retrieve"), None]
    );
    assert_eq!(tracker.get_cost_summary().calls, 4);

    let json = serde_json::to_value(&summary).unwrap();
    for key in SUMMARY_COST_FIELDS {
        assert!(json.get(key).is_some(), "summary has `{key}`");
    }
    for key in NODE_COST_FIELDS {
        assert!(json["nodes"][0].get(key).is_some(), "node has `{key}`");
    }
    let table = summary.to_table();
    assert!(
        table.contains("cost usd") && table.contains("0.008897"),
        "{table}"
    );
    assert!(table.contains("0.005615*"), "{table}");
    assert!(table.contains("costliest node: plan"), "{table}");
}

#[profile_node("summarize")]
async fn summarize(tracker: MultiProviderCostTracker, chunks: u32) -> Vec<Option<String>> {
    let mut ids = Vec::new();
    for _ in 0..chunks {
        // Resume on whatever worker thread the runtime picks.
        tokio::task::yield_now().await;
        let info = track(
            &tracker,
            "gemini",
            "gemini-2.5-flash",
            "gemini_thinking_cached.json",
        );
        ids.push(info.node_id);
        check(&tracker).await;
    }
    ids
}

#[profile_node("check")]
async fn check(tracker: &MultiProviderCostTracker) {
    tokio::task::yield_now().await;
    track(
        tracker,
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "anthropic_cache.json",
    );
}

#[test]
fn async_nodes_on_a_multi_thread_runtime() {
    let runtime = runtimes::multi_thread(4);
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let tasks: Vec<_> = (0..6)
        .map(|_| runtime.spawn(summarize(tracker.clone(), 4).with_profiler(analyzer.clone())))
        .collect();
    // Tracked on the runtime but outside any node.
    let outside = runtime
        .block_on(async {
            let tracker = tracker.clone();
            tokio::spawn(async move {
                tracker.track_call("ollama", "llama3.2", &fixture("ollama_chat.json"))
            })
            .await
        })
        .unwrap()
        .unwrap();
    assert_eq!(outside.node_id, None);
    for task in tasks {
        let ids = runtime.block_on(task).unwrap();
        assert_eq!(ids, vec![Some("summarize".to_owned()); 4]);
    }
    let summary = analyzer.get_summary();
    let summarize = node(&summary, "summarize");
    assert_eq!((summarize.call_count, summarize.llm_calls), (6, 24));
    assert!(summarize.is_async);
    assert_eq!(summarize.total_tokens, 24 * 13550);
    assert_usd(summarize.cost_usd, 24.0 * 0.00526316);
    let check = node(&summary, "check");
    assert_eq!((check.call_count, check.llm_calls), (24, 24));
    assert_usd(check.cost_usd, 24.0 * 0.01335);
    assert_eq!(summary.llm_calls, 48);
    assert_eq!(summary.costliest_node.as_ref().unwrap().node_id, "check");
    assert_eq!(tracker.get_cost_summary().calls, 49);
}

#[test]
fn older_summary_json_still_reads() {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.record_node("fetch", 30.0).unwrap();
    let mut json = serde_json::to_value(analyzer.get_summary()).unwrap();
    let summary = json.as_object_mut().unwrap();
    for key in SUMMARY_COST_FIELDS {
        summary.remove(key);
    }
    let node = summary["nodes"][0].as_object_mut().unwrap();
    for key in NODE_COST_FIELDS {
        node.remove(key);
    }
    let back: Summary = serde_json::from_value(json).unwrap();
    assert_eq!(back, analyzer.get_summary());
}
