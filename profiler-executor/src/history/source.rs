//! Where the history reads runs from: a [`RunSource`] yields the same records from the
//! SQLite run store ([`RunStore`]) or from an MLflow server ([`MlflowSource`]), so that
//! trends, comparisons and the gate are computed the same way over either.
//!
//! [`MlflowSource`]: super::MlflowSource

use std::fmt;

use agent_profiler_mlflow::MlflowError;

use crate::store::{
    ExecutionStateRecord, NodeTimeSplit, RunListing, RunStore, StoreError, WorkflowRunRecord,
};

/// What went wrong reading runs from a [`RunSource`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SourceError {
    /// The run store failed.
    Store(StoreError),
    /// The MLflow server could not be reached (refused, timed out, TLS): nothing was read.
    Unreachable {
        /// The tracking server.
        uri: String,
        /// What happened.
        error: MlflowError,
    },
    /// The MLflow server answered with an error.
    Mlflow {
        /// What was being read.
        what: String,
        /// The answer.
        error: MlflowError,
    },
    /// The experiment to read does not exist.
    NoExperiment {
        /// The tracking server.
        uri: String,
        /// The experiment as named (`name` or `id 7`).
        experiment: String,
    },
    /// No run is named so.
    RunNotFound {
        /// Where it was looked for.
        location: String,
        /// The name given.
        id: String,
    },
    /// Several runs are named so (MLflow runs of two stores can carry the same store id).
    AmbiguousRun {
        /// The name given.
        prefix: String,
        /// How many runs it names.
        count: usize,
        /// Some of them, newest first, each with the name that tells it apart
        /// (`mlflow:<run id>`).
        examples: Vec<String>,
    },
    /// A run was found, but what is kept of it cannot be read.
    Corrupt {
        /// The run.
        run: String,
        /// What is wrong, and what to do.
        why: String,
    },
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::Store(e) => e.fmt(f),
            SourceError::Unreachable { uri, error } => {
                write!(f, "cannot reach the MLflow server at {uri}: {error}")
            }
            SourceError::Mlflow { what, error } => write!(f, "MLflow, {what}: {error}"),
            SourceError::NoExperiment { uri, experiment } => write!(
                f,
                "no MLflow experiment {experiment} at {uri} (name it with --experiment NAME)"
            ),
            SourceError::RunNotFound { location, id } => {
                write!(f, "no run with an id starting with `{id}` in {location}")
            }
            SourceError::AmbiguousRun {
                prefix,
                count,
                examples,
            } => {
                write!(
                    f,
                    "run id `{prefix}` is ambiguous: {count} runs start with it ({}{}); \
                     type more of the id, or name one by its MLflow run as shown",
                    examples.join(", "),
                    if *count > examples.len() { ", ..." } else { "" }
                )
            }
            SourceError::Corrupt { run, why } => write!(f, "run {run}: {why}"),
        }
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SourceError::Store(e) => Some(e),
            SourceError::Unreachable { error, .. } | SourceError::Mlflow { error, .. } => {
                Some(error)
            }
            _ => None,
        }
    }
}

impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> Self {
        SourceError::Store(e)
    }
}

impl SourceError {
    /// Whether the source could not be reached at all (an MLflow server that refused,
    /// timed out or failed TLS): a tool exits with a code of its own for it.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SourceError::Unreachable { .. })
    }
}

/// The runs of a listing ([`RunSource::list_runs`]), and what was left out of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Listing {
    /// The runs, newest first (a corrupt one with [`RunListing::corrupt`] set).
    pub runs: Vec<RunListing>,
    /// Runs of the source skipped because the executor did not make them, one line each.
    pub skipped: Vec<String>,
}

/// Where runs are read from: the run store, or an MLflow server. Every method yields what
/// the run store would for the same runs, so the history ([`trend`](super::trend),
/// [`compare`](super::compare), [`gate`](super::gate)) runs unchanged over either; see
/// [`RunStore`]'s methods of the same names.
///
/// Runs are named by the store's run id, or by its first characters
/// ([`find_run`](Self::find_run)); a source may accept other names too (MLflow:
/// `mlflow:<run id>`). [`Uniform`] gives any source the one error type [`SourceError`], so
/// that a tool can hold either as `Box<dyn RunSource<Error = SourceError>>`.
pub trait RunSource {
    /// What goes wrong reading it.
    type Error;

    /// Where the runs are, for messages: the store's path, or the MLflow experiment.
    fn location(&self) -> String;

    /// The last `limit` runs of every workflow (or of `workflow` only), newest first, as
    /// a listing shows them.
    ///
    /// # Errors
    /// When the source cannot be read.
    fn list_runs(&self, workflow: Option<&str>, limit: usize) -> Result<Listing, Self::Error>;

    /// The names of the workflows with runs, sorted.
    ///
    /// # Errors
    /// When the source cannot be read.
    fn workflow_names(&self) -> Result<Vec<String>, Self::Error>;

    /// The shortest length, at least `min`, at which the shown ids tell the runs apart.
    ///
    /// # Errors
    /// When the source cannot be read.
    fn unique_prefix_len(&self, min: usize) -> Result<usize, Self::Error>;

    /// The run named `name`: its id or the first characters of it.
    ///
    /// # Errors
    /// When no run or several runs are named so, or what is kept of it cannot be read.
    fn find_run(&self, name: &str) -> Result<WorkflowRunRecord, Self::Error>;

    /// The node state snapshots of `run` (found by [`find_run`](Self::find_run)).
    ///
    /// # Errors
    /// When the source cannot be read.
    fn states(&self, run: &WorkflowRunRecord) -> Result<Vec<ExecutionStateRecord>, Self::Error>;

    /// Each node's LLM and own time in `run`, widest LLM time first.
    ///
    /// # Errors
    /// When the source cannot be read.
    fn time_splits(&self, run: &WorkflowRunRecord) -> Result<Vec<NodeTimeSplit>, Self::Error>;

    /// The last `limit` finished runs (completed, failed or panicked) of `workflow`, newest
    /// first, with their summaries (their configuration, inputs and outputs may be left
    /// out: figures across runs never read them).
    ///
    /// # Errors
    /// When the source cannot be read.
    fn finished_runs(
        &self,
        workflow: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, Self::Error>;

    /// The last `count` completed runs of `run`'s workflow before it, newest first: the
    /// finished runs listed after it, or, when it is not listed (not finished), the runs
    /// that started no later. A check's baseline. The default reads
    /// [`finished_runs`](Self::finished_runs), more of them while runs after `run` fill
    /// the page; a source whose reads are costly reads from `run`'s start on, once.
    ///
    /// # Errors
    /// When the source cannot be read.
    fn completed_runs_before(
        &self,
        run: &WorkflowRunRecord,
        count: usize,
    ) -> Result<Vec<WorkflowRunRecord>, Self::Error> {
        super::completed_runs_before(self, run, count)
    }

    /// Runs the reads so far left out because what is kept of them cannot be read, one
    /// line each (none for the store, which fails instead).
    fn skipped(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether a run's node states are kept as its nodes finish (the store), or only once
    /// the run ended (MLflow): without them, a run that has not ended has no states to show.
    fn states_while_running(&self) -> bool {
        true
    }
}

impl RunSource for RunStore {
    type Error = StoreError;

    fn location(&self) -> String {
        self.path().to_owned()
    }

    fn list_runs(&self, workflow: Option<&str>, limit: usize) -> Result<Listing, StoreError> {
        Ok(Listing {
            runs: self.list_runs_brief(workflow, limit)?,
            skipped: Vec::new(),
        })
    }

    fn workflow_names(&self) -> Result<Vec<String>, StoreError> {
        RunStore::workflow_names(self)
    }

    fn unique_prefix_len(&self, min: usize) -> Result<usize, StoreError> {
        RunStore::unique_prefix_len(self, min)
    }

    fn find_run(&self, name: &str) -> Result<WorkflowRunRecord, StoreError> {
        RunStore::find_run(self, name)
    }

    fn states(&self, run: &WorkflowRunRecord) -> Result<Vec<ExecutionStateRecord>, StoreError> {
        RunStore::states(self, &run.id)
    }

    fn time_splits(&self, run: &WorkflowRunRecord) -> Result<Vec<NodeTimeSplit>, StoreError> {
        RunStore::time_splits(self, &run.id)
    }

    fn finished_runs(
        &self,
        workflow: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.finished_runs_for_figures(workflow, limit)
    }
}

/// A source whose errors are [`SourceError`]s: what a tool holds, whichever source it
/// reads.
///
/// ```
/// use agent_profiler_executor::history::{RunSource, SourceError, Uniform};
/// use agent_profiler_executor::store::RunStore;
///
/// let source: Box<dyn RunSource<Error = SourceError>> =
///     Box::new(Uniform(RunStore::in_memory().unwrap()));
/// assert!(source.list_runs(None, 10).unwrap().runs.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct Uniform<S>(pub S);

impl<S: RunSource> RunSource for Uniform<S>
where
    SourceError: From<S::Error>,
{
    type Error = SourceError;

    fn location(&self) -> String {
        self.0.location()
    }

    fn list_runs(&self, workflow: Option<&str>, limit: usize) -> Result<Listing, SourceError> {
        Ok(self.0.list_runs(workflow, limit)?)
    }

    fn workflow_names(&self) -> Result<Vec<String>, SourceError> {
        Ok(self.0.workflow_names()?)
    }

    fn unique_prefix_len(&self, min: usize) -> Result<usize, SourceError> {
        Ok(self.0.unique_prefix_len(min)?)
    }

    fn find_run(&self, name: &str) -> Result<WorkflowRunRecord, SourceError> {
        Ok(self.0.find_run(name)?)
    }

    fn states(&self, run: &WorkflowRunRecord) -> Result<Vec<ExecutionStateRecord>, SourceError> {
        Ok(self.0.states(run)?)
    }

    fn time_splits(&self, run: &WorkflowRunRecord) -> Result<Vec<NodeTimeSplit>, SourceError> {
        Ok(self.0.time_splits(run)?)
    }

    fn finished_runs(
        &self,
        workflow: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, SourceError> {
        Ok(self.0.finished_runs(workflow, limit)?)
    }

    fn completed_runs_before(
        &self,
        run: &WorkflowRunRecord,
        count: usize,
    ) -> Result<Vec<WorkflowRunRecord>, SourceError> {
        Ok(self.0.completed_runs_before(run, count)?)
    }

    fn skipped(&self) -> Vec<String> {
        self.0.skipped()
    }

    fn states_while_running(&self) -> bool {
        self.0.states_while_running()
    }
}
