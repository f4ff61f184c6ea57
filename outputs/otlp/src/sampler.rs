//! Which runs' traces are sent: head sampling by the trace id (the OpenTelemetry SDKs'
//! `traceidratio`), and tail rules that keep a failed run, or a run slower than most recent
//! runs of its workflow, whatever the head decided.
//!
//! The decision is made when a trace is handed to the exporter, before anything is copied
//! or converted: a trace sampled out costs one decision and no export.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::OtlpError;

/// Runs of a workflow the slow rule compares a run with, by default.
pub const DEFAULT_RECENT_RUNS: usize = 1000;
/// The most recent runs per workflow [`Sampler::recent_runs`] keeps: the slow rule's work
/// per run and its memory (64 workflows of this many durations) stay bounded.
pub const MAX_RECENT_RUNS: usize = 10_000;
/// Runs of a workflow seen before the slow rule judges any: with fewer, a percentile says
/// little, and only the head and the failure rule decide.
pub const MIN_RUNS_FOR_SLOW_RULE: usize = 20;
/// Workflows (root span names) whose recent durations are kept; past this, the one used
/// least recently is forgotten, so memory stays bounded whatever the names.
const MAX_WORKFLOWS: usize = 64;

/// What the head decides from the trace id alone.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Head {
    AlwaysOn,
    AlwaysOff,
    /// Keeps a trace when the low 64 bits of its id, as a number, fall below this share of
    /// 2^64; trace ids are random, so that is this share of traces, and the same trace id
    /// gets the same answer on every machine.
    Ratio(f64),
}

/// Why a trace is sent, or that it is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Kept by the head sampler (always on, or its trace id fell within the ratio).
    Head,
    /// The head dropped it; kept because the run failed.
    Failed,
    /// The head dropped it; kept because the run was slower than the percentile of recent
    /// runs of its workflow.
    Slow,
    /// Not sent.
    Drop,
}

impl Decision {
    /// Whether the trace is sent.
    pub fn keeps(self) -> bool {
        self != Decision::Drop
    }
}

/// What the sampler knows of a finished run.
#[derive(Clone, Copy, Debug)]
pub struct RunFacts<'a> {
    /// The trace id, 16 bytes (OpenTelemetry's form).
    pub trace_id: [u8; 16],
    /// The workflow's name (the root span's): slow runs are judged against runs of the
    /// same name.
    pub name: &'a str,
    /// Whether the run failed (the root span's outcome is not OK).
    pub failed: bool,
    /// How long the run took, in nanoseconds.
    pub duration_ns: u64,
}

/// Decides which runs' traces are sent ([`OtlpConfig::sampler`](crate::OtlpConfig::sampler)).
///
/// The head samples by trace id, as the OpenTelemetry SDKs' `traceidratio` sampler does;
/// then, of the traces the head drops, failed runs are kept (on by default), and runs
/// slower than a percentile of the recent runs of their workflow when
/// [`keep_slower_than`](Self::keep_slower_than) asks for it. Every run counts in the recent
/// durations, sent or not. Clones share those durations.
///
/// ```
/// use agent_profiler_otlp::{Decision, RunFacts, Sampler};
///
/// let sampler = Sampler::trace_id_ratio(0.1).unwrap().keep_slower_than(99.0).unwrap();
/// let run = |id: u8, failed: bool| RunFacts {
///     trace_id: [id; 16],
///     name: "research",
///     failed,
///     duration_ns: 1_000_000,
/// };
/// // 0xffff... is above a tenth of 2^64: the head drops it, the failure rule keeps it.
/// assert_eq!(sampler.decide(&run(0xff, false)), Decision::Drop);
/// assert_eq!(sampler.decide(&run(0xff, true)), Decision::Failed);
/// assert_eq!(sampler.decide(&run(0x01, false)), Decision::Head);
/// ```
#[derive(Clone)]
pub struct Sampler {
    head: Head,
    keep_failed: bool,
    /// The slow rule's percentile, when on.
    slower_than: Option<f64>,
    recent_runs: usize,
    recent: Arc<Mutex<Recent>>,
}

impl Default for Sampler {
    /// Every trace is sent.
    fn default() -> Self {
        Self::always_on()
    }
}

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("head", &self.head)
            .field("keep_failed", &self.keep_failed)
            .field("keep_slower_than", &self.slower_than)
            .field("recent_runs", &self.recent_runs)
            .finish()
    }
}

impl PartialEq for Sampler {
    /// The same rules (the recent durations they learnt are not compared).
    fn eq(&self, other: &Self) -> bool {
        (
            self.head,
            self.keep_failed,
            self.slower_than,
            self.recent_runs,
        ) == (
            other.head,
            other.keep_failed,
            other.slower_than,
            other.recent_runs,
        )
    }
}

impl Sampler {
    fn with_head(head: Head) -> Self {
        Self {
            head,
            keep_failed: true,
            slower_than: None,
            recent_runs: DEFAULT_RECENT_RUNS,
            recent: Arc::default(),
        }
    }

    /// Every trace is sent (the default, `OTEL_TRACES_SAMPLER=always_on`).
    pub fn always_on() -> Self {
        Self::with_head(Head::AlwaysOn)
    }

    /// The head sends nothing (`always_off`); the tail rules still keep failed (and, when
    /// asked, slow) runs.
    pub fn always_off() -> Self {
        Self::with_head(Head::AlwaysOff)
    }

    /// The head sends this share of traces, chosen by trace id (`traceidratio`): 0.1 sends
    /// one in ten. Failed runs are kept too (see [`keep_failed`](Self::keep_failed)).
    ///
    /// # Errors
    /// [`OtlpError::InvalidValue`] unless `ratio` is a number from 0 to 1.
    pub fn trace_id_ratio(ratio: f64) -> Result<Self, OtlpError> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(OtlpError::InvalidValue {
                variable: "Sampler::trace_id_ratio",
                value: ratio.to_string(),
                expected: RATIO_EXPECTED,
            });
        }
        Ok(Self::with_head(Head::Ratio(ratio)))
    }

    /// Whether a failed run's trace is sent even when the head drops it (on by default).
    pub fn keep_failed(mut self, keep: bool) -> Self {
        self.keep_failed = keep;
        self
    }

    /// Sends, even when the head drops it, the trace of a run slower than `percentile`
    /// (e.g. 99.0) of the recent runs of its workflow (see
    /// [`recent_runs`](Self::recent_runs)), once [`MIN_RUNS_FOR_SLOW_RULE`] runs were seen.
    ///
    /// # Errors
    /// [`OtlpError::InvalidValue`] unless `percentile` is above 0 and below 100.
    pub fn keep_slower_than(mut self, percentile: f64) -> Result<Self, OtlpError> {
        if !(percentile > 0.0 && percentile < 100.0) {
            return Err(OtlpError::InvalidValue {
                variable: "Sampler::keep_slower_than",
                value: percentile.to_string(),
                expected: "a percentile above 0 and below 100, e.g. 99",
            });
        }
        self.slower_than = Some(percentile);
        Ok(self)
    }

    /// How many recent runs of each workflow the slow rule compares with (from
    /// [`MIN_RUNS_FOR_SLOW_RULE`] to [`MAX_RECENT_RUNS`]; [`DEFAULT_RECENT_RUNS`] by default).
    pub fn recent_runs(mut self, runs: usize) -> Self {
        self.recent_runs = runs.clamp(MIN_RUNS_FOR_SLOW_RULE, MAX_RECENT_RUNS);
        self
    }

    /// The sampler the OpenTelemetry SDKs would use, from the process environment:
    /// `OTEL_TRACES_SAMPLER` (`always_on`, the default; `always_off`; `traceidratio`; and
    /// their `parentbased_` forms, which are the same here: a run's trace has no parent)
    /// and `OTEL_TRACES_SAMPLER_ARG` (the ratio, from 0 to 1; 1 when unset).
    ///
    /// # Errors
    /// [`OtlpError::InvalidValue`] for another sampler name or a ratio that is not a number
    /// from 0 to 1.
    pub fn from_env() -> Result<Self, OtlpError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `get`.
    ///
    /// ```
    /// use agent_profiler_otlp::Sampler;
    ///
    /// let vars = [("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.1")];
    /// let get = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    /// assert_eq!(Sampler::from_vars(get).unwrap(), Sampler::trace_id_ratio(0.1).unwrap());
    ///
    /// let bad = |name: &str| (name == "OTEL_TRACES_SAMPLER").then(|| "jaeger_remote".to_string());
    /// assert!(Sampler::from_vars(bad).unwrap_err().to_string().contains("traceidratio"));
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, OtlpError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let name = var("OTEL_TRACES_SAMPLER").unwrap_or_else(|| "always_on".to_owned());
        match name.to_ascii_lowercase().as_str() {
            "always_on" | "parentbased_always_on" => Ok(Self::always_on()),
            "always_off" | "parentbased_always_off" => Ok(Self::always_off()),
            "traceidratio" | "parentbased_traceidratio" => {
                let ratio = match var("OTEL_TRACES_SAMPLER_ARG") {
                    None => 1.0,
                    Some(arg) => arg.parse::<f64>().map_err(|_| OtlpError::InvalidValue {
                        variable: "OTEL_TRACES_SAMPLER_ARG",
                        value: arg.clone(),
                        expected: RATIO_EXPECTED,
                    })?,
                };
                Self::trace_id_ratio(ratio).map_err(|_| OtlpError::InvalidValue {
                    variable: "OTEL_TRACES_SAMPLER_ARG",
                    value: ratio.to_string(),
                    expected: RATIO_EXPECTED,
                })
            }
            _ => Err(OtlpError::InvalidValue {
                variable: "OTEL_TRACES_SAMPLER",
                value: name,
                expected: "always_on, always_off, traceidratio (with OTEL_TRACES_SAMPLER_ARG), \
                           or their parentbased_ forms",
            }),
        }
    }

    /// Whether the head sends every trace: then the tail rules have nothing to add.
    pub fn sends_everything(&self) -> bool {
        self.head == Head::AlwaysOn || self.head == Head::Ratio(1.0)
    }

    /// Decides for one run, and remembers its duration for the slow rule.
    pub fn decide(&self, run: &RunFacts<'_>) -> Decision {
        let slow = self.slower_than.is_some_and(|p| {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            recent.slower_than(run.name, run.duration_ns, p, self.recent_runs)
        });
        if self.head_keeps(&run.trace_id) {
            Decision::Head
        } else if run.failed && self.keep_failed {
            Decision::Failed
        } else if slow {
            Decision::Slow
        } else {
            Decision::Drop
        }
    }

    fn head_keeps(&self, trace_id: &[u8; 16]) -> bool {
        match self.head {
            Head::AlwaysOn => true,
            Head::AlwaysOff => false,
            Head::Ratio(ratio) => {
                let mut low = [0; 8];
                low.copy_from_slice(&trace_id[8..]);
                let bound = (ratio * 18_446_744_073_709_551_616.0) as u128;
                u128::from(u64::from_be_bytes(low)) < bound
            }
        }
    }
}

const RATIO_EXPECTED: &str = "a number from 0 to 1, e.g. 0.1 to send one trace in ten";

/// The recent durations of each workflow, bounded in workflows and in runs per workflow.
#[derive(Default)]
struct Recent {
    by_name: HashMap<String, Durations>,
    /// Increases at each run: when each workflow was last seen.
    clock: u64,
}

struct Durations {
    ns: VecDeque<u64>,
    last_seen: u64,
}

impl Recent {
    /// Whether `duration_ns` is above `percentile` of the workflow's recent runs (false
    /// until enough were seen); then keeps it among them.
    fn slower_than(&mut self, name: &str, duration_ns: u64, percentile: f64, keep: usize) -> bool {
        self.clock += 1;
        if !self.by_name.contains_key(name) && self.by_name.len() >= MAX_WORKFLOWS {
            self.forget_least_recent();
        }
        let runs = self
            .by_name
            .entry(name.to_owned())
            .or_insert_with(|| Durations {
                ns: VecDeque::new(),
                last_seen: 0,
            });
        runs.last_seen = self.clock;
        let slow = runs.ns.len() >= MIN_RUNS_FOR_SLOW_RULE
            && duration_ns > percentile_of(runs.ns.iter().copied().collect(), percentile);
        if runs.ns.len() >= keep {
            runs.ns.pop_front();
        }
        runs.ns.push_back(duration_ns);
        slow
    }

    fn forget_least_recent(&mut self) {
        let oldest = self
            .by_name
            .iter()
            .min_by_key(|(_, d)| d.last_seen)
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            self.by_name.remove(&name);
        }
    }
}

/// The nearest-rank percentile of `values` (not empty).
fn percentile_of(mut values: Vec<u64>, percentile: f64) -> u64 {
    let rank = ((percentile / 100.0) * values.len() as f64).ceil() as usize;
    let index = rank.clamp(1, values.len()) - 1;
    *values.select_nth_unstable(index).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: u64, failed: bool, duration_ns: u64) -> RunFacts<'static> {
        let mut trace_id = [0; 16];
        trace_id[8..].copy_from_slice(&id.to_be_bytes());
        RunFacts {
            trace_id,
            name: "wf",
            failed,
            duration_ns,
        }
    }

    /// Trace ids spread like random ones: the ratio is the share kept.
    fn spread(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn the_ratio_is_the_share_kept() {
        for ratio in [0.0, 0.1, 0.5, 1.0] {
            let sampler = Sampler::trace_id_ratio(ratio).unwrap().keep_failed(false);
            let kept = (0..10_000)
                .filter(|&i| sampler.decide(&facts(spread(i), false, 1)).keeps())
                .count();
            let expected = ratio * 10_000.0;
            assert!(
                (kept as f64 - expected).abs() <= 100.0,
                "{ratio}: {kept} kept"
            );
        }
    }

    #[test]
    fn a_trace_id_gets_the_same_answer_every_time() {
        let a = Sampler::trace_id_ratio(0.3).unwrap();
        let b = Sampler::trace_id_ratio(0.3).unwrap();
        for i in 0..1000 {
            let run = facts(spread(i), false, 1);
            assert_eq!(a.decide(&run), b.decide(&run));
        }
    }

    #[test]
    fn failed_runs_are_kept_unless_told_otherwise() {
        let sampler = Sampler::always_off();
        assert_eq!(sampler.decide(&facts(1, true, 1)), Decision::Failed);
        assert_eq!(sampler.decide(&facts(1, false, 1)), Decision::Drop);
        let strict = Sampler::always_off().keep_failed(false);
        assert_eq!(strict.decide(&facts(1, true, 1)), Decision::Drop);
    }

    #[test]
    fn slow_runs_are_kept_once_enough_runs_were_seen() {
        let sampler = Sampler::always_off().keep_slower_than(90.0).unwrap();
        // Too few runs to judge: even a very slow one is dropped.
        assert_eq!(sampler.decide(&facts(1, false, 1_000_000)), Decision::Drop);
        for i in 0..100 {
            assert_eq!(
                sampler.decide(&facts(1, false, 100 + i % 2)),
                Decision::Drop
            );
        }
        assert_eq!(sampler.decide(&facts(1, false, 10_000)), Decision::Slow);
        assert_eq!(sampler.decide(&facts(1, false, 101)), Decision::Drop);
        // Another workflow has its own runs.
        let other = RunFacts {
            name: "other",
            ..facts(1, false, 10_000)
        };
        assert_eq!(sampler.decide(&other), Decision::Drop);
    }

    #[test]
    fn memory_is_bounded_in_runs_and_workflows() {
        let sampler = Sampler::always_off()
            .keep_slower_than(50.0)
            .unwrap()
            .recent_runs(30);
        let names: Vec<String> = (0..500).map(|i| format!("wf{i}")).collect();
        for round in 0..100u64 {
            for name in &names {
                let run = RunFacts {
                    name,
                    ..facts(1, false, round)
                };
                sampler.decide(&run);
            }
        }
        let recent = sampler.recent.lock().unwrap();
        assert!(recent.by_name.len() <= MAX_WORKFLOWS);
        assert!(recent.by_name.values().all(|d| d.ns.len() <= 30));
    }

    #[test]
    fn bad_settings_are_refused_with_what_to_write() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            assert!(Sampler::trace_id_ratio(ratio).is_err(), "{ratio}");
        }
        for p in [0.0, 100.0, f64::NAN] {
            assert!(Sampler::always_on().keep_slower_than(p).is_err(), "{p}");
        }
        let get = |arg: &'static str| {
            move |name: &str| match name {
                "OTEL_TRACES_SAMPLER" => Some("traceidratio".to_owned()),
                "OTEL_TRACES_SAMPLER_ARG" => Some(arg.to_owned()),
                _ => None,
            }
        };
        let error = Sampler::from_vars(get("ten percent")).unwrap_err();
        assert!(
            error.to_string().contains("OTEL_TRACES_SAMPLER_ARG"),
            "{error}"
        );
        assert!(Sampler::from_vars(get("2")).is_err());
        assert_eq!(
            Sampler::from_vars(|_| None).unwrap(),
            Sampler::always_on(),
            "unset: every trace"
        );
        assert_eq!(
            Sampler::from_vars(|n| (n == "OTEL_TRACES_SAMPLER").then(|| "traceidratio".into()))
                .unwrap(),
            Sampler::trace_id_ratio(1.0).unwrap(),
            "a ratio without its argument is 1"
        );
    }
}
