//! A small workflow of sync and async nodes: one slow, one nested, one failing. Prints the
//! summary as a table and as JSON.
//!
//! Run: `cargo run --example quickstart`

use std::time::Duration;

use agent_profiler::{BottleneckAnalyzer, ProfilerFutureExt, ProfilerScope, profile_node};

#[derive(Debug)]
struct Doc(String);

#[profile_node("retrieve")]
async fn retrieve(query: &str) -> Vec<Doc> {
    tokio::time::sleep(Duration::from_millis(15)).await;
    (1..=3).map(|i| Doc(format!("{query} #{i}"))).collect()
}

#[profile_node("rank")]
fn rank(docs: &mut [Doc]) {
    docs.sort_by(|a, b| b.0.cmp(&a.0));
    std::thread::sleep(Duration::from_millis(2));
}

#[profile_node("summarize")]
async fn summarize(docs: &[Doc]) -> Result<String, String> {
    // The bottleneck: a slow "LLM call" ...
    tokio::time::sleep(Duration::from_millis(60)).await;
    // ... with a nested node whose time is not counted twice.
    let titles = format_titles(docs);
    Ok(format!("summary of {titles}"))
}

#[profile_node("format_titles")]
fn format_titles(docs: &[Doc]) -> String {
    std::thread::sleep(Duration::from_millis(5));
    docs.iter()
        .map(|d| d.0.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[profile_node("fact_check")]
async fn fact_check(summary: &str) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(8)).await;
    Err(format!("could not verify {} characters", summary.len()))
}

async fn workflow(query: &str) -> Result<String, String> {
    let mut docs = retrieve(query).await;
    rank(&mut docs);
    let summary = summarize(&docs).await?;
    // Checks run concurrently on the runtime's worker threads; each task carries the analyzer.
    let checks: Vec<_> = (0..3)
        .map(|_| tokio::spawn(fact_check_owned(summary.clone()).in_current_profiler()))
        .collect();
    for check in checks {
        if let Err(e) = check.await.expect("task ran") {
            eprintln!("fact check failed (counted as an error outcome): {e}");
        }
    }
    Ok(summary)
}

async fn fact_check_owned(summary: String) -> Result<(), String> {
    fact_check(&summary).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let analyzer = BottleneckAnalyzer::new();
    let summary_text = {
        let _scope = ProfilerScope::new(&analyzer);
        workflow("rust profilers").await?
    };
    println!("workflow result: {summary_text}\n");

    let summary = analyzer.get_summary();
    print!("{}", summary.to_table());
    if let Some(slowest) = &summary.slowest_node {
        println!(
            "\nSlowest node: {} ({:.2}ms avg)",
            slowest.node_id, slowest.avg_duration_ms
        );
    }
    println!(
        "Bottlenecks (>{}% of total time):",
        summary.threshold_percent
    );
    for b in &summary.bottlenecks {
        println!(
            "  - {}: {:.1}% ({:.0}ms total)",
            b.node_id, b.percent_of_total, b.total_duration_ms
        );
    }
    println!("\n{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
