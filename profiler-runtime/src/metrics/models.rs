//! A node's LLM calls per provider and model: the part of the analyzer's per-node LLM
//! record that scrapers read, bounded to [`MAX_MODELS_PER_NODE`] models.

use super::{MAX_MODELS_PER_NODE, ModelMetrics, OTHER_MODEL, SecondsHistogram, TokenCounts};
use crate::cost::{CostBreakdown, CostInfo};
use crate::histogram::{BUCKETS, Histogram};

/// One node's calls per model, in the order the models were first seen; calls of models
/// beyond [`MAX_MODELS_PER_NODE`] go to one [`OTHER_MODEL`] entry.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModelCosts {
    models: Vec<ModelCost>,
}

#[derive(Clone, Debug)]
struct ModelCost {
    provider: String,
    model: String,
    totals: CostBreakdown,
    /// The timed calls' wall time, ns; boxed and made on the first one.
    duration: Option<Box<Timings>>,
    /// The streamed calls' time to first token, ns; boxed and made on the first one.
    ttft: Option<Box<Timings>>,
}

#[derive(Clone, Debug, Default)]
struct Timings {
    histogram: Histogram,
    sum_ns: u64,
}

impl Timings {
    fn add(slot: &mut Option<Box<Timings>>, ns: u64) {
        let timings = slot.get_or_insert_with(Box::default);
        timings.histogram.record(ns);
        timings.sum_ns = timings.sum_ns.saturating_add(ns);
    }

    fn seconds(slot: &Option<Box<Timings>>) -> SecondsHistogram {
        slot.as_ref().map_or_else(SecondsHistogram::default, |t| {
            SecondsHistogram::from_ns(&t.histogram, t.sum_ns)
        })
    }
}

impl ModelCosts {
    /// Adds one tracked call (its tokens, cost, duration and time to first token).
    pub(crate) fn add(&mut self, info: &CostInfo) {
        let entry = self.entry(&info.provider, &info.model);
        entry.totals.add(info);
        if let Some(timing) = &info.timing {
            Timings::add(&mut entry.duration, timing.duration_ns());
            if let Some(ttft) = timing.ttft_ns() {
                Timings::add(&mut entry.ttft, ttft);
            }
        }
    }

    fn entry(&mut self, provider: &str, model: &str) -> &mut ModelCost {
        let found = self
            .models
            .iter()
            .position(|m| m.provider == provider && m.model == model);
        let at = match found {
            Some(at) => at,
            None if self.models.len() < MAX_MODELS_PER_NODE => self.push(provider, model),
            None => self
                .models
                .iter()
                .position(|m| m.provider == OTHER_MODEL && m.model == OTHER_MODEL)
                .unwrap_or_else(|| self.push(OTHER_MODEL, OTHER_MODEL)),
        };
        &mut self.models[at]
    }

    fn push(&mut self, provider: &str, model: &str) -> usize {
        self.models.push(ModelCost {
            provider: provider.to_owned(),
            model: model.to_owned(),
            totals: CostBreakdown::default(),
            duration: None,
            ttft: None,
        });
        self.models.len() - 1
    }

    /// Each model's figures, as a snapshot shows them.
    pub(crate) fn metrics(&self) -> impl Iterator<Item = ModelMetrics> + '_ {
        self.models.iter().map(|m| {
            let t = &m.totals;
            let mut out = ModelMetrics::new(&m.provider, &m.model);
            out.calls = t.calls;
            out.failed_calls = t.failed_calls;
            out.unpriced_calls = t.unpriced_calls;
            out.tokens = TokenCounts {
                input: t.input_tokens,
                output: t.output_tokens,
                cached_input: t.cached_input_tokens,
                cache_creation: t.cache_creation_input_tokens,
                reasoning: t.reasoning_tokens,
            };
            out.cost_usd = t.cost_usd;
            out.duration = Timings::seconds(&m.duration);
            out.time_to_first_token = Timings::seconds(&m.ttft);
            out
        })
    }

    /// Every model's time-to-first-token histogram added up (ns), `None` without one.
    pub(crate) fn ttft_histogram(&self) -> Option<Histogram> {
        let mut all = self.models.iter().filter_map(|m| m.ttft.as_ref());
        let first = all.next()?;
        let mut total = first.histogram.clone();
        for t in all {
            total.merge(&t.histogram);
        }
        Some(total)
    }

    /// Bytes held beyond the struct.
    pub(crate) fn memory_bytes(&self) -> usize {
        let timings = std::mem::size_of::<Timings>() + BUCKETS * std::mem::size_of::<u64>();
        self.models.capacity() * std::mem::size_of::<ModelCost>()
            + self
                .models
                .iter()
                .map(|m| {
                    m.provider.capacity()
                        + m.model.capacity()
                        + (usize::from(m.duration.is_some()) + usize::from(m.ttft.is_some()))
                            * timings
                })
                .sum::<usize>()
    }
}
