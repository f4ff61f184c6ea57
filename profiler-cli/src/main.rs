//! `agent-profiler`: the command-line tool over the run store that agent-profiler's
//! `WorkflowExecutor` writes. Lists recent runs, prints one run's report, compares two
//! runs node by node, shows each node's trend over the last runs of a workflow, gates CI
//! on a run's regressions and budgets (`check`), and writes a run's HTML report or
//! Perfetto trace.
//!
//! `runs`, `show`, `compare`, `trend` and `check` read the SQLite run store by default, or,
//! with `--mlflow URI` (or `--mlflow-env`: `$MLFLOW_TRACKING_URI`), the runs the executor
//! logged to an MLflow server, from any number of machines and stores, in the experiment
//! of `--experiment NAME` (default: the executor's, `$MLFLOW_EXPERIMENT_NAME`, else
//! `$MLFLOW_EXPERIMENT_ID`, else MLflow's default experiment).
//!
//! Bad input (no store, an unknown or ambiguous run id, a corrupt record, an output file
//! that cannot be written) is one line on stderr, `error: ...`, and exit code 1; usage
//! errors exit with 2 (clap's), and so does an MLflow server that cannot be reached. The gates (`check`, `trend --fail-on-slow`) keep exit code
//! 1 for "regressed", so their bad input exits with 2, as `grep` and `diff` do: a CI job
//! can tell a slower build from a broken gate. Text output fits 80 columns, except `show`,
//! which prints the executor's report as the executor printed it.

mod commands;
mod output;
mod text;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_profiler_executor::history::{GateRule, MlflowSource, SourceError, TrendRule, Uniform};
use agent_profiler_executor::store::{RunStore, StoreError};
use agent_profiler_mlflow::MlflowConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The environment variable naming the run store, read before the runtime's own
/// (`AGENT_PROFILER_DB`, which `RunStore::default_path` reads).
const CLI_STORE_ENV: &str = "AGENT_PROFILER_STORE";

/// Run history on the command line: the runs that agent-profiler's
/// workflow executor stored, listed, shown, compared, trended and
/// checked for regressions.
///
/// The store is the SQLite file the executor writes. It is opened
/// read-only: a mistyped path is an error, never a new empty store.
#[derive(Parser)]
#[command(name = "agent-profiler", version, verbatim_doc_comment)]
#[command(
    after_help = "Runs are named by id or by the first characters of their id\n\
(8 are shown by `runs`). From MLflow, `mlflow:<MLflow run id>` names\n\
one MLflow run when two stores logged runs of the same id."
)]
struct Cli {
    /// The run store file (default:
    /// $AGENT_PROFILER_STORE, else
    /// $AGENT_PROFILER_DB, else
    /// agent-profiler-runs.sqlite3)
    #[arg(long, global = true, value_name = "PATH", verbatim_doc_comment)]
    store: Option<PathBuf>,

    /// Read the runs the executor logged to
    /// this MLflow server instead of the store
    /// (runs, show, compare, trend, check)
    #[arg(
        long,
        global = true,
        value_name = "URI",
        verbatim_doc_comment,
        conflicts_with = "mlflow_env"
    )]
    mlflow: Option<String>,

    /// As --mlflow, at $MLFLOW_TRACKING_URI
    #[arg(long, global = true)]
    mlflow_env: bool,

    /// The MLflow experiment (default: the
    /// executor's: $MLFLOW_EXPERIMENT_NAME,
    /// else $MLFLOW_EXPERIMENT_ID, else 0)
    #[arg(long, global = true, value_name = "NAME", verbatim_doc_comment)]
    experiment: Option<String>,

    #[command(subcommand)]
    command: Command,
}

// The commands' help is the doc comment of their argument structs below.
#[derive(Subcommand)]
enum Command {
    Runs(RunsArgs),
    Show(ShowArgs),
    Compare(CompareArgs),
    Trend(TrendArgs),
    Check(CheckArgs),
    Report(ReportArgs),
    Trace(TraceArgs),
}

/// List recent runs: workflow, status, duration, cost, slowest node
///
/// Newest first. The id column shows the first characters of each id
/// (8, or more when 8 do not tell two runs apart): type them to name
/// the run in the other commands. Times are UTC.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct RunsArgs {
    /// Only the runs of this workflow
    #[arg(long, short, value_name = "NAME")]
    pub workflow: Option<String>,
    /// How many runs to list
    #[arg(long, short = 'n', default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print JSON (for scripts) instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Print the stored report of one run, as the executor printed it
///
/// The bottleneck report and the node table, then the line with the
/// run's status and duration, rebuilt from the stored record. The
/// table is the executor's and may be wider than 80 columns. A run
/// without a report (still running, or its process ended early) gets
/// its node states instead.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ShowArgs {
    /// The run: its id or the first characters of it
    pub run: String,
    /// Print JSON: the record, its nodes, states and report
    #[arg(long)]
    pub json: bool,
}

/// Per-node time and cost deltas of two runs, regressions first
///
/// For each node: its total time in run A and in run B, the change
/// in ms and %, and the change in LLM cost. Rows are sorted by the
/// time change, largest increase (the worst regression) first. A node
/// that ran in only one of the runs is marked `only A` / `only B` and
/// counts as 0 ms in the other.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CompareArgs {
    /// The first run (the baseline): id or first characters
    pub run_a: String,
    /// The second run: id or first characters
    pub run_b: String,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Each node's time over the last runs of a workflow; flags slow ones
///
/// For every node of WORKFLOW, over its last N finished runs
/// (completed, failed or panicked): the node's total time in the
/// newest run ("latest"), the median of its times in the runs before
/// it ("prev median"), the change, and a history line (one bar per
/// run, oldest first, the last 10 runs at most). --json adds costs
/// and the node's figures in every run.
///
/// A node is flagged SLOW when all three hold:
///   latest > X x prev median   (X: --threshold, default 1.5)
///   latest - prev median > MS  (MS: --min-delta-ms, default 1)
///   the node ran in at least 3 of the previous runs
/// Why: the median ignores one odd run where a mean would not; 1.5 x
/// sits above the usual run-to-run jitter of LLM calls (about 30%);
/// the 1 ms floor keeps sub-millisecond nodes from flagging on
/// noise; a median of fewer than 3 runs is no baseline.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct TrendArgs {
    /// The workflow's name
    pub workflow: String,
    /// How many of the last runs to look at
    #[arg(long, short = 'n', default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Flag when latest > X x median (X >= 1)
    #[arg(long, default_value_t = TrendRule::default().threshold, value_name = "X",
          value_parser = parse_threshold)]
    pub threshold: f64,
    /// ... and latest - median > MS
    #[arg(long, default_value_t = TrendRule::default().min_delta_ms, value_name = "MS",
          value_parser = parse_min_delta)]
    pub min_delta_ms: f64,
    /// Exit with 1 when a node is flagged SLOW (for CI)
    #[arg(long)]
    pub fail_on_slow: bool,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Exit 1 when a run regressed against earlier runs or broke a budget
///
/// A gate for CI. RUN (default: the newest run of the store) is
/// judged against the last N completed runs of its workflow that
/// started before it (the baseline, --baseline). Its wall time, its
/// LLM cost and each node's total time regressed when
///   value > median + max(K x 1.4826 x MAD, P% of median, floor)
/// with median and MAD (median absolute deviation) of the baseline's
/// values, K: --noise-factor (3), P: --min-change-pct (10), floor:
/// --min-change-ms (5) for times, --min-change-usd (0.0001) for cost.
/// Why: the median and the MAD ignore a few odd runs; 1.4826 x MAD
/// estimates the standard deviation, so K = 3 is three sigmas of the
/// workflow's own noise; the floors keep a series that hardly moves
/// from failing on a change nobody would act on.
/// A figure is judged only with at least --min-runs (5) baseline
/// values: with fewer, the output says "not enough history" and only
/// the budgets count (exit 0 unless --require-baseline). A node new
/// in the run is not judged. A run that did not complete fails.
///
/// Budgets (--max-duration-ms, --max-cost-usd) are hard limits,
/// whatever the history.
///
/// Exit codes: 0 pass, 1 regression, budget exceeded or run not
/// completed, 2 usage or store error.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// The run: id or first characters (default: the newest run)
    pub run: Option<String>,
    /// Completed runs of the workflow before RUN to judge it against
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub baseline: u32,
    /// Baseline values needed to judge a figure
    #[arg(long, default_value_t = GateRule::default().min_runs as u32, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub min_runs: u32,
    /// Fail (exit 1) when the baseline is too short to judge the run
    #[arg(long)]
    pub require_baseline: bool,
    /// Fail when the run's wall time exceeds MS
    #[arg(long, value_name = "MS", value_parser = parse_budget)]
    pub max_duration_ms: Option<f64>,
    /// Fail when the run's LLM cost exceeds USD
    #[arg(long, value_name = "USD", value_parser = parse_budget)]
    pub max_cost_usd: Option<f64>,
    /// K: standard deviations (1.4826 x MAD) a value may exceed the median by
    #[arg(long, default_value_t = GateRule::default().noise_factor, value_name = "K",
          value_parser = parse_non_negative)]
    pub noise_factor: f64,
    /// Smallest change that counts, % of the median
    #[arg(long, default_value_t = GateRule::default().min_relative * 100.0, value_name = "PCT",
          value_parser = parse_non_negative)]
    pub min_change_pct: f64,
    /// Smallest change of a time that counts, ms
    #[arg(long, default_value_t = GateRule::default().min_ms, value_name = "MS",
          value_parser = parse_non_negative)]
    pub min_change_ms: f64,
    /// Smallest change of the cost that counts, USD
    #[arg(long, default_value_t = GateRule::default().min_usd, value_name = "USD",
          value_parser = parse_non_negative)]
    pub min_change_usd: f64,
    /// A table, or Markdown for $GITHUB_STEP_SUMMARY
    #[arg(long, value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    pub format: Format,
}

/// How `check` prints its verdict.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An 80-column table.
    Text,
    /// Markdown tables, for a CI job summary.
    Markdown,
}

/// Write the HTML report of a run (charts of time and cost)
///
/// A self-contained HTML file: the bottleneck report, charts of each
/// node's share of time and cost, and a timeline when the run has a
/// stored trace.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct ReportArgs {
    /// The run: its id or the first characters of it
    pub run: String,
    /// The HTML file to write
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}

/// Write the trace of a run as a Perfetto (Chrome JSON) trace file
///
/// Open it at ui.perfetto.dev or in chrome://tracing. Only runs made
/// with trace mode on have a trace.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct TraceArgs {
    /// The run: its id or the first characters of it
    pub run: String,
    /// The trace file to write
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 1.0 => Ok(v),
        _ => Err("must be a number, at least 1 (a factor of the median)".to_owned()),
    }
}

fn parse_min_delta(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("must be a number of ms, at least 0".to_owned()),
    }
}

fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("must be a number, at least 0".to_owned()),
    }
}

fn parse_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("must be a number above 0".to_owned()),
    }
}

/// What a command prints on stdout, and whether a gate failed (exit code 1).
pub struct Done {
    /// The output.
    pub text: String,
    /// Whether a gate (`check`, `trend --fail-on-slow`) failed.
    pub failed: bool,
    /// Runs left out because what is kept of them cannot be read: `warning: ` lines on
    /// stderr.
    pub warnings: Vec<String>,
}

impl From<String> for Done {
    fn from(text: String) -> Self {
        Self {
            text,
            failed: false,
            warnings: Vec::new(),
        }
    }
}

/// A failure of a command: printed as one line, `error: {message}`, with exit code 1 (2
/// for a gate's, and for an MLflow server that cannot be reached).
#[derive(Debug)]
pub struct CliError {
    /// What went wrong, and what to do.
    pub message: String,
    /// Whether the source could not be reached at all (exit code 2).
    pub unreachable: bool,
}

impl CliError {
    /// A failure saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            unreachable: false,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Missing { .. } => CliError::new(format!(
                "{e} (name the store with --store PATH or ${CLI_STORE_ENV})"
            )),
            e => CliError::new(e.to_string()),
        }
    }
}

impl From<SourceError> for CliError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Store(e) => e.into(),
            e => CliError {
                unreachable: e.is_unreachable(),
                message: e.to_string(),
            },
        }
    }
}

/// The store path: `--store`, else `$AGENT_PROFILER_STORE`, else the runtime's default
/// (`$AGENT_PROFILER_DB`, else `agent-profiler-runs.sqlite3`).
fn store_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os(CLI_STORE_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(RunStore::default_path)
}

/// A request timeout and retries for a command-line tool, where the official client's
/// (120 s, 7 retries) would keep a user waiting for minutes on a server that hangs; the
/// MLflow variables still set them.
const CLI_REQUEST_TIMEOUT: &str = "30";
const CLI_MAX_RETRIES: &str = "2";

/// The MLflow server to read, when `--mlflow` or `--mlflow-env` asks for one: the
/// connection settings of the MLflow variables (authentication, TLS, timeout, retries),
/// with the tracking URI of `--mlflow`.
fn mlflow_config(cli: &Cli) -> Result<Option<MlflowConfig>, CliError> {
    let uri = match (&cli.mlflow, cli.mlflow_env) {
        (Some(uri), _) => Some(uri.clone()),
        (None, true) => None,
        (None, false) => {
            if cli.experiment.is_some() {
                return Err(CliError::new(
                    "--experiment names an MLflow experiment: add --mlflow URI or --mlflow-env",
                ));
            }
            return Ok(None);
        }
    };
    let config = MlflowConfig::from_vars(|name| {
        let var = std::env::var(name).ok().filter(|v| !v.is_empty());
        match name {
            "MLFLOW_TRACKING_URI" if uri.is_some() => uri.clone(),
            "MLFLOW_HTTP_REQUEST_TIMEOUT" => var.or_else(|| Some(CLI_REQUEST_TIMEOUT.into())),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES" => var.or_else(|| Some(CLI_MAX_RETRIES.into())),
            _ => var,
        }
    })
    .map_err(|e| match e {
        agent_profiler_mlflow::ConfigError::MissingTrackingUri => CliError::new(
            "--mlflow-env: MLFLOW_TRACKING_URI is not set (or give the server: --mlflow URI)",
        ),
        e => CliError::new(format!("MLflow: {e}")),
    })?;
    Ok(Some(config))
}

/// The source of `runs`, `show`, `compare`, `trend` and `check`.
fn source(cli: &Cli) -> Result<Box<commands::Source>, CliError> {
    match mlflow_config(cli)? {
        Some(config) => Ok(Box::new(MlflowSource::open(
            &config,
            cli.experiment.as_deref(),
        )?)),
        None => Ok(Box::new(Uniform(RunStore::open_existing(store_path(
            cli.store.clone(),
        ))?))),
    }
}

/// `command` over the source `cli` names, with the runs it had to leave out as warnings.
fn read(
    cli: &Cli,
    command: impl FnOnce(&commands::Source) -> Result<Done, CliError>,
) -> Result<Done, CliError> {
    let source = source(cli)?;
    let mut done = command(&*source)?;
    done.warnings.extend(source.skipped());
    Ok(done)
}

fn run(cli: Cli) -> Result<Done, CliError> {
    let from_mlflow = cli.mlflow.is_some() || cli.mlflow_env;
    let store = || RunStore::open_existing(store_path(cli.store.clone()));
    match &cli.command {
        Command::Runs(args) => read(&cli, |s| commands::runs(s, args).map(Done::from)),
        Command::Show(args) => read(&cli, |s| commands::show(s, args).map(Done::from)),
        Command::Compare(args) => read(&cli, |s| commands::compare(s, args).map(Done::from)),
        Command::Trend(args) => read(&cli, |s| commands::trend(s, args)),
        Command::Check(args) => read(&cli, |s| commands::check(s, args)),
        Command::Report(_) | Command::Trace(_) if from_mlflow => Err(CliError::new(
            "`report` and `trace` read the run store only (MLflow keeps the trace and the \
             bottleneck report as the run's own): leave out --mlflow",
        )),
        Command::Report(args) => commands::report(&store()?, args).map(Done::from),
        Command::Trace(args) => commands::trace(&store()?, args).map(Done::from),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let error_code = match &cli.command {
        Command::Check(_) => 2,
        Command::Trend(args) if args.fail_on_slow => 2,
        _ => 1,
    };
    match run(cli) {
        Ok(done) => {
            for warning in &done.warnings {
                let one_line = text::printable(&warning.replace(['\n', '\r'], " ")).into_owned();
                let _ = writeln!(std::io::stderr().lock(), "warning: {one_line}");
            }
            let code = if done.failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(done.text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => code,
                // The reader went away (`| head`): nothing more to say, the verdict stands.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
                Err(e) => fail(&format!("cannot write to stdout: {e}"), error_code),
            }
        }
        Err(CliError {
            message,
            unreachable,
        }) => fail(&message, if unreachable { 2 } else { error_code }),
    }
}

/// Prints `error: {message}` on one line of stderr; exit code `code`.
fn fail(message: &str, code: u8) -> ExitCode {
    let one_line = text::printable(&message.replace(['\n', '\r'], " ")).into_owned();
    let _ = writeln!(std::io::stderr().lock(), "error: {one_line}");
    ExitCode::from(code)
}
