//! The run history read from an MLflow server: the runs the executor logged to one
//! experiment ([`mlflow_record`](super::LoggedRun) says what it logs), from any number of
//! machines and run stores.
//!
//! - A listing is one `runs/search` (more pages only when the limit asks for more runs
//!   than a page holds): its columns come from the runs' tags, nothing is downloaded.
//! - A run is named as in the store, by its store run id or the first characters of it
//!   (a `LIKE` search on the `agent_profiler.run_id` tag). Two stores may carry the same id
//!   (a copied store, or a run logged twice): then the name is ambiguous, and each of
//!   those runs is named `mlflow:<MLflow run id>` ([`MLFLOW_RUN_PREFIX`]), which always
//!   names exactly one MLflow run.
//! - A listing shows ids as long as they must be to tell apart the runs the command read
//!   (at least 8 characters). The store makes them tell apart every run it holds; MLflow
//!   would need a search of the whole experiment for that, so when two ids share their
//!   first 8 characters and only one of them was listed, the shown id is shorter than the
//!   store's and names both: `show` says it is ambiguous and lists the full ids.
//! - A check reads its baseline in one search from the run's start down
//!   (`metrics.agent_profiler.started_at <=` it), each artifact downloaded once; a line
//!   about a run left out is printed once per command.
//! - A run's record, node states and time splits come from its artifact
//!   (`agent_profiler_run.json`), at most [`MAX_RUN_ARTIFACT_BYTES`] each, downloaded only
//!   for the runs a command reads; the figures across runs read at most the runs asked for.
//! - A run the executor did not make (no `agent_profiler.run_id` tag) is left out of a
//!   listing with a line saying so; an ended run without its artifact, or whose artifact
//!   does not read, is an error naming it when it is the run asked for, and is left out with
//!   a line saying why when it is one of many ([`RunSource::skipped`]).
//!
//! Every request has the configuration's timeout and retry policy; a server that cannot be
//! reached is [`SourceError::Unreachable`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use agent_profiler_mlflow::{MlflowClient, MlflowConfig, MlflowError, Run, SearchRuns};
use serde_json::Value;

use super::mlflow_record::{
    LoggedRun, RUN_ARTIFACT, RUN_FORMAT, RUN_ID_TAG, STARTED_AT_METRIC, STATUS_TAG, WORKFLOW_TAG,
    has_ended, listing_of, store_run_id,
};
use super::source::{Listing, RunSource, SourceError};
use crate::store::{
    AMBIGUOUS_IDS_SHOWN, ExecutionStateRecord, NodeTimeSplit, RunListing, WorkflowRunRecord,
    WorkflowStatus,
};

/// The start of a run's name that names it by its MLflow run id: `mlflow:<run id>`.
pub const MLFLOW_RUN_PREFIX: &str = "mlflow:";

/// The largest run artifact read, in bytes: a run with more (its node states hold large
/// outputs) is reported as too large rather than held in memory.
pub const MAX_RUN_ARTIFACT_BYTES: u64 = 64 * 1024 * 1024;

/// Runs per `runs/search` page.
const PAGE: u32 = 500;

/// Runs whose artifact is kept for [`RunSource::states`] after being read.
const CACHED_RUNS: usize = 4;

/// Lines of [`RunSource::skipped`] kept; more are counted.
const SKIPPED_KEPT: usize = 20;

/// The runs the executor logged to one MLflow experiment, read as a [`RunSource`].
///
/// Runs are named as in the store (see the module's documentation), with one limit: the
/// width of the ids a listing shows ([`RunSource::unique_prefix_len`]) tells apart the
/// runs read by the command, not every run of the experiment, so it can be shorter than
/// the store's when two ids share their first 8 characters and only one was listed.
///
/// ```no_run
/// use agent_profiler_executor::history::{MlflowSource, RunSource, TrendRule};
/// use agent_profiler_mlflow::MlflowConfig;
///
/// let config = MlflowConfig::new("http://127.0.0.1:5000")?;
/// let source = MlflowSource::open(&config, Some("agents"))?;
/// for run in source.list_runs(None, 20)?.runs {
///     println!("{} {} {}", run.id, run.workflow_name, run.status);
/// }
/// let trend = agent_profiler_executor::history::trend(&source, "research", 10, TrendRule::default())?;
/// println!("flagged: {:?}", trend.flagged());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MlflowSource {
    client: MlflowClient,
    experiment_id: String,
    experiment_name: String,
    /// The store ids of the runs read so far (what shown ids must tell apart).
    seen: Mutex<BTreeSet<String>>,
    /// The last runs read in full, newest last: (MLflow run id, artifact).
    cache: Mutex<Vec<(String, Arc<LoggedRun>)>>,
    /// The lines of the runs left out: those shown, how many more, and those more (so a
    /// run left out by several reads counts once; as many as the runs read).
    skipped: Mutex<(Vec<String>, usize, BTreeSet<String>)>,
}

impl std::fmt::Debug for MlflowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowSource")
            .field("tracking_uri", &self.client.tracking_uri())
            .field("experiment_id", &self.experiment_id)
            .field("experiment_name", &self.experiment_name)
            .finish_non_exhaustive()
    }
}

/// `error` as a [`SourceError`]: a server that gave no answer is unreachable.
fn failed(uri: &str, what: impl Into<String>, error: MlflowError) -> SourceError {
    let unreachable = match &error {
        MlflowError::Transport { .. } | MlflowError::Tls { .. } => true,
        MlflowError::DeadlineExceeded { last, .. } => !matches!(
            last.as_deref(),
            Some(MlflowError::Api { .. } | MlflowError::InvalidResponse { .. })
        ),
        _ => false,
    };
    if unreachable {
        SourceError::Unreachable {
            uri: uri.to_owned(),
            error,
        }
    } else {
        SourceError::Mlflow {
            what: what.into(),
            error,
        }
    }
}

/// `value` as a string literal of MLflow's search syntax; `None` when it holds both kinds
/// of quote (MLflow has no escape): such a value is compared after the search.
fn literal(value: &str) -> Option<String> {
    if !value.contains('\'') {
        Some(format!("'{value}'"))
    } else if !value.contains('"') {
        Some(format!("\"{value}\""))
    } else {
        None
    }
}

/// How a run is named in messages: its store id, and its MLflow run.
fn both_names(run: &Run) -> String {
    format!(
        "{} ({MLFLOW_RUN_PREFIX}{})",
        store_run_id(run).unwrap_or("?"),
        run.info.run_id
    )
}

impl MlflowSource {
    /// The runs of the experiment named `experiment` at the server of `config` (its
    /// connection settings: URI, authentication, TLS, timeout, retries). Without a name,
    /// the experiment the executor logs to with the same configuration: its
    /// `MLFLOW_EXPERIMENT_NAME`, else its `MLFLOW_EXPERIMENT_ID`, else MLflow's default
    /// experiment (id 0).
    ///
    /// # Errors
    /// [`SourceError::Unreachable`] when the server cannot be reached,
    /// [`SourceError::NoExperiment`] when the experiment does not exist, and any other
    /// failure of the lookup.
    pub fn open(config: &MlflowConfig, experiment: Option<&str>) -> Result<Self, SourceError> {
        let uri = config.tracking_uri().to_owned();
        let client = MlflowClient::new(config).map_err(|e| failed(&uri, "the client", e))?;
        let found = match (
            experiment.or(config.target_experiment_name()),
            config.target_experiment_id(),
        ) {
            (Some(name), _) => client
                .get_experiment_by_name(name)
                .map_err(|e| failed(&uri, format!("experiment `{name}`"), e))?
                .ok_or_else(|| SourceError::NoExperiment {
                    uri: uri.clone(),
                    experiment: format!("`{name}`"),
                })?,
            (None, id) => {
                let id = id.unwrap_or("0");
                client.get_experiment(id).map_err(|e| {
                    if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") {
                        SourceError::NoExperiment {
                            uri: uri.clone(),
                            experiment: format!("with id {id}"),
                        }
                    } else {
                        failed(&uri, format!("experiment {id}"), e)
                    }
                })?
            }
        };
        Ok(Self {
            client,
            experiment_id: found.experiment_id,
            experiment_name: found.name,
            seen: Mutex::new(BTreeSet::new()),
            cache: Mutex::new(Vec::new()),
            skipped: Mutex::new((Vec::new(), 0, BTreeSet::new())),
        })
    }

    /// The experiment read: its id.
    pub fn experiment_id(&self) -> &str {
        &self.experiment_id
    }

    fn uri(&self) -> &str {
        self.client.tracking_uri()
    }

    /// Notes a run left out, once however many reads leave it out.
    fn skip(&self, line: String) {
        let mut skipped = self.skipped.lock().unwrap_or_else(PoisonError::into_inner);
        if skipped.0.contains(&line) {
            return;
        }
        if skipped.0.len() < SKIPPED_KEPT {
            skipped.0.push(line);
        } else if skipped.2.insert(line) {
            skipped.1 += 1;
        }
    }

    fn saw(&self, id: &str) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned());
    }

    /// A search of this experiment's runs, newest start first.
    fn search(&self, filter: Option<String>) -> SearchRuns {
        let mut query = SearchRuns::new([self.experiment_id.as_str()])
            .order_by(format!("metrics.`{STARTED_AT_METRIC}` DESC"))
            .order_by("attributes.start_time DESC")
            .max_results(PAGE);
        query.filter = filter;
        query
    }

    /// Calls `each` with the runs `query` selects, page by page, until it returns `false`
    /// or the pages end.
    fn each_run(
        &self,
        mut query: SearchRuns,
        page_size: u32,
        mut each: impl FnMut(Run) -> Result<bool, SourceError>,
    ) -> Result<(), SourceError> {
        query.max_results = page_size.clamp(1, PAGE);
        loop {
            let page = self
                .client
                .search_runs(&query)
                .map_err(|e| failed(self.uri(), "searching runs", e))?;
            for run in page.runs {
                if !each(run)? {
                    return Ok(());
                }
            }
            match page.next_page_token {
                Some(token) => query.page_token = Some(token),
                None => return Ok(()),
            }
        }
    }

    /// The filter selecting runs of `workflow`, and whether the search can say so itself
    /// (else the runs are compared after the search).
    fn workflow_filter(workflow: &str) -> (Option<String>, bool) {
        match literal(workflow) {
            Some(lit) => (Some(format!("tags.`{WORKFLOW_TAG}` = {lit}")), true),
            None => (None, false),
        }
    }

    /// The artifact of an ended run.
    fn logged(&self, run: &Run) -> Result<Arc<LoggedRun>, SourceError> {
        let mlflow_id = &run.info.run_id;
        if let Some((_, hit)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(id, _)| id == mlflow_id)
        {
            return Ok(hit.clone());
        }
        let corrupt = |why: String| SourceError::Corrupt {
            run: both_names(run),
            why,
        };
        let bytes = self
            .client
            .download_artifact_limited(&run.info, RUN_ARTIFACT, MAX_RUN_ARTIFACT_BYTES)
            .map_err(|e| match e {
                e if e.status() == Some(404)
                    || e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") =>
                {
                    corrupt(format!(
                        "the MLflow run has no {RUN_ARTIFACT} (its end was not delivered, or an \
                         older executor logged it): nothing to read"
                    ))
                }
                MlflowError::ArtifactsNotProxied { artifact_uri } => corrupt(format!(
                    "its artifacts ({artifact_uri}) are not served by the tracking server: \
                     start it with --serve-artifacts"
                )),
                MlflowError::InvalidResponse { message, .. } => corrupt(format!(
                    "its {RUN_ARTIFACT} cannot be read: {message} (at most \
                     {MAX_RUN_ARTIFACT_BYTES} bytes are read)"
                )),
                e => failed(self.uri(), format!("downloading {RUN_ARTIFACT}"), e),
            })?;
        let logged: LoggedRun = serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| format!("its {RUN_ARTIFACT} is not JSON: {e}"))
            .and_then(|value| {
                let format = value.get("format").and_then(Value::as_u64).unwrap_or(0);
                if format > u64::from(RUN_FORMAT) {
                    return Err(format!(
                        "its {RUN_ARTIFACT} has format {format}, newer than this tool reads \
                         ({RUN_FORMAT}): update agent-profiler"
                    ));
                }
                serde_json::from_value(value)
                    .map_err(|e| format!("its {RUN_ARTIFACT} is not a logged run: {e}"))
            })
            .map_err(corrupt)?;
        if Some(logged.record.id.as_str()) != store_run_id(run) {
            return Err(corrupt(format!(
                "its {RUN_ARTIFACT} holds run {}, not the run of its {RUN_ID_TAG} tag",
                logged.record.id
            )));
        }
        let logged = Arc::new(logged);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() == CACHED_RUNS {
            cache.remove(0);
        }
        cache.push((mlflow_id.clone(), logged.clone()));
        Ok(logged)
    }

    /// The record of a run found by name: from its artifact once it ended, else from its
    /// tags (a run still running, or whose process ended before its end was logged).
    fn record_of(&self, run: &Run) -> Result<WorkflowRunRecord, SourceError> {
        if has_ended(run) {
            return Ok(self.logged(run)?.record.clone());
        }
        let listing = listing_of(run).ok_or_else(|| SourceError::Corrupt {
            run: format!("{MLFLOW_RUN_PREFIX}{}", run.info.run_id),
            why: "not made by agent-profiler's executor (no agent_profiler.run_id tag)".into(),
        })?;
        if let Some(why) = listing.corrupt {
            return Err(SourceError::Corrupt {
                run: both_names(run),
                why,
            });
        }
        Ok(record_from_listing(listing))
    }

    /// The MLflow run named `mlflow:<run id>`.
    fn by_mlflow_id(&self, name: &str, mlflow_id: &str) -> Result<Run, SourceError> {
        let run = self.client.get_run(mlflow_id).map_err(|e| {
            if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") || e.status() == Some(404) {
                SourceError::RunNotFound {
                    location: self.location(),
                    id: name.to_owned(),
                }
            } else {
                failed(self.uri(), format!("run {name}"), e)
            }
        })?;
        if run.info.experiment_id != self.experiment_id {
            return Err(SourceError::RunNotFound {
                location: self.location(),
                id: name.to_owned(),
            });
        }
        Ok(run)
    }

    /// The one MLflow run whose store id is `name` or starts with it.
    fn by_store_id(&self, name: &str) -> Result<Run, SourceError> {
        let not_found = || SourceError::RunNotFound {
            location: self.location(),
            id: name.to_owned(),
        };
        let Some(lit) = literal(&format!("{name}%")).filter(|_| !name.is_empty()) else {
            return Err(not_found());
        };
        // `_` and `%` in the name are wildcards to LIKE: the search may select more runs than
        // the name does, which are left out after it.
        let query = self.search(Some(format!("tags.`{RUN_ID_TAG}` LIKE {lit}")));
        let (mut exact, mut prefixed): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
        let (mut exact_count, mut prefixed_count) = (0usize, 0usize);
        self.each_run(query, PAGE, |run| {
            match store_run_id(&run) {
                Some(id) if id == name => {
                    exact_count += 1;
                    if exact.len() < AMBIGUOUS_IDS_SHOWN {
                        exact.push(run);
                    }
                }
                Some(id) if id.starts_with(name) => {
                    prefixed_count += 1;
                    if prefixed.len() < AMBIGUOUS_IDS_SHOWN {
                        prefixed.push(run);
                    }
                }
                _ => {}
            }
            Ok(true)
        })?;
        // An exact id wins over longer ids that start with it, as in the store.
        let (runs, count) = if exact_count > 0 {
            (exact, exact_count)
        } else {
            (prefixed, prefixed_count)
        };
        match count {
            0 => Err(not_found()),
            1 => runs.into_iter().next().ok_or_else(not_found),
            _ => Err(SourceError::AmbiguousRun {
                prefix: name.to_owned(),
                count,
                examples: runs.iter().map(both_names).collect(),
            }),
        }
    }
}

/// The record of a run that has not ended, from its listing.
fn record_from_listing(listing: RunListing) -> WorkflowRunRecord {
    WorkflowRunRecord {
        id: listing.id,
        workflow_name: listing.workflow_name,
        status: listing.status,
        config_snapshot: Value::Null,
        inputs: Value::Null,
        outputs: None,
        error_message: listing.error_message,
        started_at: listing.started_at,
        completed_at: listing.completed_at,
        duration_ms: listing.duration_ms,
        total_tokens: listing.total_tokens,
        total_cost_usd: listing.total_cost_usd,
        bottleneck_info: None,
    }
}

impl RunSource for MlflowSource {
    type Error = SourceError;

    fn location(&self) -> String {
        format!(
            "MLflow experiment `{}` (id {}) at {}",
            self.experiment_name,
            self.experiment_id,
            self.uri()
        )
    }

    fn list_runs(&self, workflow: Option<&str>, limit: usize) -> Result<Listing, SourceError> {
        let (filter, exact) = match workflow {
            Some(w) => Self::workflow_filter(w),
            None => (None, true),
        };
        let mut listing = Listing::default();
        let mut ids: Vec<(String, String)> = Vec::new();
        let page = u32::try_from(limit).unwrap_or(PAGE).min(PAGE);
        self.each_run(self.search(filter), page, |run| {
            if listing.runs.len() >= limit {
                return Ok(false);
            }
            match listing_of(&run) {
                Some(row) if exact || workflow == Some(row.workflow_name.as_str()) => {
                    ids.push((row.id.clone(), run.info.run_id.clone()));
                    listing.runs.push(row);
                }
                Some(_) => {}
                None if listing.skipped.len() < SKIPPED_KEPT => listing.skipped.push(format!(
                    "MLflow run {} ({}): not made by agent-profiler's executor \
                     (no {RUN_ID_TAG} tag), skipped",
                    run.info.run_id,
                    run.info.run_name.as_deref().unwrap_or("unnamed")
                )),
                None => {}
            }
            Ok(listing.runs.len() < limit)
        })?;
        ids.sort();
        for pair in ids.windows(2) {
            if pair[0].0 == pair[1].0 {
                listing.skipped.push(format!(
                    "run {} is in MLflow more than once ({MLFLOW_RUN_PREFIX}{}, \
                     {MLFLOW_RUN_PREFIX}{}): name each by its MLflow run",
                    pair[0].0, pair[0].1, pair[1].1
                ));
            }
        }
        for (id, _) in ids {
            self.saw(&id);
        }
        Ok(listing)
    }

    fn workflow_names(&self) -> Result<Vec<String>, SourceError> {
        let mut names = BTreeSet::new();
        self.each_run(self.search(None), PAGE, |run| {
            if store_run_id(&run).is_some()
                && let Some(name) = run.data.tag(WORKFLOW_TAG)
            {
                names.insert(name.to_owned());
            }
            Ok(true)
        })?;
        Ok(names.into_iter().collect())
    }

    /// Over the runs read so far only (the store: over all its runs); see
    /// [`MlflowSource`].
    fn unique_prefix_len(&self, min: usize) -> Result<usize, SourceError> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let ids = seen.iter().cloned().map(Ok::<_, std::convert::Infallible>);
        let Ok(len) = crate::store::listing::unique_prefix_len(ids, min);
        Ok(len)
    }

    fn find_run(&self, name: &str) -> Result<WorkflowRunRecord, SourceError> {
        let run = match name.strip_prefix(MLFLOW_RUN_PREFIX) {
            Some(mlflow_id) => self.by_mlflow_id(name, mlflow_id)?,
            None => self.by_store_id(name)?,
        };
        let record = self.record_of(&run)?;
        self.saw(&record.id);
        Ok(record)
    }

    fn states(&self, run: &WorkflowRunRecord) -> Result<Vec<ExecutionStateRecord>, SourceError> {
        Ok(self
            .cached(run)?
            .map(|logged| logged.states.clone())
            .unwrap_or_default())
    }

    fn time_splits(&self, run: &WorkflowRunRecord) -> Result<Vec<NodeTimeSplit>, SourceError> {
        Ok(self
            .cached(run)?
            .map(|logged| logged.time_splits.clone())
            .unwrap_or_default())
    }

    fn finished_runs(
        &self,
        workflow: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, SourceError> {
        let mut runs: Vec<WorkflowRunRecord> = Vec::new();
        if limit == 0 {
            return Ok(runs);
        }
        self.each_finished(workflow, None, limit, |record| {
            runs.push(record);
            runs.len() < limit
        })?;
        Ok(runs)
    }

    /// One search from `run`'s start down (`metrics.agent_profiler.started_at <=` it), read
    /// until `count` completed runs are found: each artifact is downloaded once, however
    /// many runs after `run` there are.
    fn completed_runs_before(
        &self,
        run: &WorkflowRunRecord,
        count: usize,
    ) -> Result<Vec<WorkflowRunRecord>, SourceError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let from = format!("metrics.`{STARTED_AT_METRIC}` <= {}", run.started_at);
        // Runs that started at the same instant and are listed before `run` come after it
        // in no order: left out once `run` is found, as the store leaves them out.
        let (mut ties, mut before) = (Vec::new(), Vec::new());
        let mut found = false;
        let page = count.saturating_add(2);
        self.each_finished(&run.workflow_name, Some(from), page, |record| {
            if record.id == run.id {
                found = true;
                ties.clear();
            } else if record.started_at > run.started_at {
                // Not selected by the search; kept out should a server compare loosely.
            } else if !found && record.started_at == run.started_at {
                ties.push(record);
            } else if record.status == WorkflowStatus::Completed {
                before.push(record);
            }
            before.len() < count
        })?;
        let mut completed: Vec<WorkflowRunRecord> = ties
            .into_iter()
            .filter(|r| r.status == WorkflowStatus::Completed)
            .chain(before)
            .collect();
        completed.truncate(count);
        Ok(completed)
    }

    fn states_while_running(&self) -> bool {
        false
    }

    fn skipped(&self) -> Vec<String> {
        let skipped = self.skipped.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines = skipped.0.clone();
        if skipped.1 > 0 {
            lines.push(format!("... and {} more runs skipped", skipped.1));
        }
        lines
    }
}

impl MlflowSource {
    /// Calls `each` with the finished runs of `workflow` (and `extra`, a filter), newest
    /// first, with their summaries, until it returns `false` or the runs end: each read
    /// from its artifact, `page` runs a search page. A run logged twice is given once, a
    /// corrupt one is left out ([`RunSource::skipped`] says so).
    fn each_finished(
        &self,
        workflow: &str,
        extra: Option<String>,
        page: usize,
        mut each: impl FnMut(WorkflowRunRecord) -> bool,
    ) -> Result<(), SourceError> {
        let (filter, exact) = Self::workflow_filter(workflow);
        // Only ended runs have a status tag (and an artifact).
        let ended = format!("tags.`{STATUS_TAG}` LIKE '%'");
        let filter = [filter, Some(ended), extra]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" AND ");
        let mut given: BTreeSet<String> = BTreeSet::new();
        let page = u32::try_from(page).unwrap_or(PAGE).min(PAGE);
        self.each_run(self.search(Some(filter)), page, |run| {
            let Some(id) = store_run_id(&run) else {
                return Ok(true);
            };
            if !(exact || run.data.tag(WORKFLOW_TAG) == Some(workflow)) {
                return Ok(true);
            }
            // A run logged twice (a copied store) is one run: counted once.
            if given.contains(id) {
                self.skip(format!(
                    "run {}: logged to MLflow more than once, counted once",
                    both_names(&run)
                ));
                return Ok(true);
            }
            match self.logged(&run) {
                Ok(logged) => {
                    let mut record = logged.record.clone();
                    if matches!(
                        record.status,
                        WorkflowStatus::Running | WorkflowStatus::Interrupted
                    ) {
                        return Ok(true);
                    }
                    // As the store's figures read them: without what they never read.
                    record.config_snapshot = Value::Null;
                    record.inputs = Value::Null;
                    record.outputs = None;
                    given.insert(record.id.clone());
                    Ok(each(record))
                }
                Err(e @ SourceError::Corrupt { .. }) => {
                    self.skip(format!("{e}; skipped"));
                    Ok(true)
                }
                Err(e) => Err(e),
            }
        })
    }

    /// The artifact of `run` when it ended: from the cache, else found again by its id.
    fn cached(&self, run: &WorkflowRunRecord) -> Result<Option<Arc<LoggedRun>>, SourceError> {
        if let Some((_, hit)) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(_, logged)| logged.record.id == run.id)
        {
            return Ok(Some(hit.clone()));
        }
        if matches!(
            run.status,
            WorkflowStatus::Running | WorkflowStatus::Interrupted
        ) {
            return Ok(None);
        }
        let found = self.by_store_id(&run.id)?;
        if !has_ended(&found) {
            return Ok(None);
        }
        self.logged(&found).map(Some)
    }
}
