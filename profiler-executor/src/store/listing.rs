//! Runs as a listing shows them: a few columns of each run, read without its
//! configuration, inputs, outputs or trace, and without parsing its summary (SQLite picks
//! the few figures out). A row whose columns cannot be read is listed as corrupt rather
//! than failing the listing.

use rusqlite::Row;
use rusqlite::types::ValueRef;

use super::owner::Owner;
use super::schema::{owner_at, owner_columns, shown_status};
use super::{RunStore, StoreError, WorkflowStatus};

/// One run in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct RunListing {
    /// The run's id.
    pub id: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// How the run ended (`interrupted` when its process died while it ran).
    pub status: WorkflowStatus,
    /// Start, seconds since the Unix epoch.
    pub started_at: f64,
    /// End, seconds since the Unix epoch.
    pub completed_at: Option<f64>,
    /// Wall time, ms.
    pub duration_ms: Option<f64>,
    /// LLM cost, USD (so far, for a run that did not finish).
    pub total_cost_usd: f64,
    /// LLM tokens.
    pub total_tokens: u64,
    /// Why the run failed.
    pub error_message: Option<String>,
    /// Whether the run has a summary (it finished).
    pub has_summary: bool,
    /// LLM calls, from the summary.
    pub llm_calls: u64,
    /// LLM calls of unknown price, from the summary.
    pub unpriced_calls: u64,
    /// The slowest node and its total time, ms, from the summary.
    pub slowest_node: Option<(String, f64)>,
    /// What is wrong with the row, when a column cannot be read (the other fields are
    /// then what could be).
    pub corrupt: Option<String>,
}

const LISTING_COLUMNS: &str = "id, workflow_name, status, started_at, completed_at, \
    duration_ms, total_cost_usd, total_tokens, error_message, \
    bottleneck_info IS NOT NULL, \
    bottleneck_info IS NOT NULL AND NOT json_valid(bottleneck_info), \
    CASE WHEN json_valid(bottleneck_info) THEN json_extract(bottleneck_info, '$.llm_calls') END, \
    CASE WHEN json_valid(bottleneck_info) THEN json_extract(bottleneck_info, '$.unpriced_calls') END, \
    CASE WHEN json_valid(bottleneck_info) THEN json_extract(bottleneck_info, '$.slowest_node.node_id') END, \
    CASE WHEN json_valid(bottleneck_info) \
        THEN json_extract(bottleneck_info, '$.slowest_node.total_duration_ms') END";

fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Text(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
}

fn number(v: ValueRef<'_>) -> Option<f64> {
    match v {
        #[allow(clippy::cast_precision_loss)]
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Real(f) => Some(f),
        _ => None,
    }
}

/// A count: a non-negative integer, else 0.
fn count(v: ValueRef<'_>) -> u64 {
    match v {
        ValueRef::Integer(i) => u64::try_from(i).unwrap_or(0),
        _ => 0,
    }
}

fn listing_from_row(r: &Row<'_>) -> rusqlite::Result<RunListing> {
    let mut corrupt: Vec<&str> = Vec::new();
    let v = |i: usize| r.get_ref(i);
    let id = text(v(0)?).unwrap_or_default();
    let workflow_name = text(v(1)?).unwrap_or_else(|| {
        corrupt.push("workflow_name");
        String::new()
    });
    let stored_status = text(v(2)?).unwrap_or_default();
    let started_at = number(v(3)?).unwrap_or_else(|| {
        corrupt.push("started_at");
        0.0
    });
    let completed_at = number(v(4)?);
    let duration_ms = number(v(5)?);
    let total_cost_usd = number(v(6)?).unwrap_or(0.0);
    let total_tokens = count(v(7)?);
    let error_message = text(v(8)?);
    let has_summary = matches!(v(9)?, ValueRef::Integer(1));
    if matches!(v(10)?, ValueRef::Integer(1)) {
        corrupt.push("bottleneck_info");
    }
    let llm_calls = count(v(11)?);
    let unpriced_calls = count(v(12)?);
    let slowest_ms = number(v(14)?).unwrap_or(0.0);
    let slowest_node = text(v(13)?).map(|node| (node, slowest_ms));
    let owner: Option<Owner> = owner_at(r, 15).unwrap_or(None);
    let corrupt =
        (!corrupt.is_empty()).then(|| format!("corrupt record (bad `{}`)", corrupt.join("`, `")));
    Ok(RunListing {
        status: shown_status(&stored_status, owner.as_ref()),
        id,
        workflow_name,
        started_at,
        completed_at,
        duration_ms,
        total_cost_usd,
        total_tokens,
        error_message,
        has_summary: has_summary && corrupt.is_none(),
        llm_calls,
        unpriced_calls,
        slowest_node,
        corrupt,
    })
}

impl RunStore {
    /// The last `limit` runs of every workflow (or of `workflow_name` only), newest first,
    /// as a listing shows them. A row with a column that cannot be read is listed with
    /// [`RunListing::corrupt`] set.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when SQLite fails.
    pub fn list_runs_brief(
        &self,
        workflow_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunListing>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.sql(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {LISTING_COLUMNS}, {} WHERE (?1 IS NULL OR workflow_name = ?1) \
                 ORDER BY started_at DESC, workflow_runs.rowid DESC LIMIT ?2",
                owner_columns(self.has_owners)
            ))?;
            let rows = stmt.query_map(rusqlite::params![workflow_name, limit], listing_from_row)?;
            rows.collect()
        })
    }
}

/// The shortest id length, at least `min`, at which sorted run ids are all told apart; the
/// first error of `sorted_ids` ends it. In sorted order the longest common start of any two
/// ids is that of two neighbours, so one id is kept at a time, whatever the number of runs.
pub(crate) fn unique_prefix_len<E>(
    sorted_ids: impl IntoIterator<Item = Result<String, E>>,
    min: usize,
) -> Result<usize, E> {
    let mut len = min;
    let mut previous: Option<String> = None;
    for id in sorted_ids {
        let id = id?;
        if let Some(previous) = &previous {
            let common = previous
                .chars()
                .zip(id.chars())
                .take_while(|(a, b)| a == b)
                .count();
            len = len.max(common + 1);
        }
        previous = Some(id);
    }
    Ok(len)
}
