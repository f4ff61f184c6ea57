//! Prices per token: an embedded default, LiteLLM's price file, overrides in code.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::provider::canonical_provider;
use super::{CostError, Usage};

/// The embedded prices: a subset of LiteLLM's `model_prices_and_context_window.json`
/// (BerriAI/litellm, commit `00035b69f416be24e2e323c13198d9b7d2d1bdf9`), same format.
const EMBEDDED_PRICES: &str = include_str!("prices.json");

/// Providers whose every model is free by default: local Ollama (`ollama`, and LiteLLM's
/// `ollama_chat`).
const DEFAULT_FREE_PROVIDERS: [&str; 2] = ["ollama", "ollama_chat"];

/// The price of one model, in USD per token, with LiteLLM's field names and meanings.
///
/// A rate that is `None` is not in the table: cache reads and cache writes then cost the
/// input rate, one-hour cache writes the cache-write rate, reasoning the output rate. A
/// model with no input rate (or no output rate) is unpriced for calls that have input
/// (output) tokens.
///
/// ```
/// use agent_profiler_runtime::{ModelPrice, Usage};
///
/// // $3 / $15 per million tokens, cache reads $0.30, cache writes $3.75.
/// let price = ModelPrice::per_million(3.0, 15.0)
///     .with_cache_read_per_million(0.30)
///     .with_cache_creation_per_million(3.75);
/// let usage = Usage::new(10_000, 1_000)
///     .with_cached_input(8_000)
///     .with_cache_creation(1_000);
/// // 1000 uncached * 3 + 8000 * 0.30 + 1000 * 3.75 + 1000 * 15, per million.
/// let cost = price.cost_usd(&usage).unwrap();
/// assert!((cost - 0.02415).abs() < 1e-12);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelPrice {
    /// `input_cost_per_token`: uncached input.
    pub input_cost_per_token: Option<f64>,
    /// `output_cost_per_token`: output (and reasoning, without a reasoning rate).
    pub output_cost_per_token: Option<f64>,
    /// `cache_read_input_token_cost`: input read from the prompt cache.
    pub cache_read_input_token_cost: Option<f64>,
    /// `cache_creation_input_token_cost`: input written to the prompt cache.
    pub cache_creation_input_token_cost: Option<f64>,
    /// `cache_creation_input_token_cost_above_1hr`: cache writes with a one-hour lifetime.
    pub cache_creation_input_token_cost_above_1hr: Option<f64>,
    /// `output_cost_per_reasoning_token`: reasoning output.
    pub output_cost_per_reasoning_token: Option<f64>,
    /// Higher rates for long prompts (`*_above_200k_tokens` and the like), lowest threshold
    /// first.
    pub tiers: Vec<PriceTier>,
    /// `litellm_provider`, as the table says.
    pub litellm_provider: Option<String>,
    /// `mode` (`chat`, `embedding`, `responses`, ...), as the table says.
    pub mode: Option<String>,
}

/// The rates of a long-prompt tier: they apply, to every token of the call, when the call's
/// input tokens are strictly more than `above_input_tokens` (as LiteLLM applies
/// `input_cost_per_token_above_200k_tokens` and its siblings). A rate that is `None` keeps the
/// base rate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PriceTier {
    /// The input-token threshold (200 000 for `_above_200k_tokens`).
    pub above_input_tokens: u64,
    /// `input_cost_per_token_above_*_tokens`.
    pub input_cost_per_token: Option<f64>,
    /// `output_cost_per_token_above_*_tokens`.
    pub output_cost_per_token: Option<f64>,
    /// `cache_read_input_token_cost_above_*_tokens`.
    pub cache_read_input_token_cost: Option<f64>,
    /// `cache_creation_input_token_cost_above_*_tokens`.
    pub cache_creation_input_token_cost: Option<f64>,
    /// `cache_creation_input_token_cost_above_1hr_above_*_tokens`.
    pub cache_creation_input_token_cost_above_1hr: Option<f64>,
}

/// The rates that apply to one call, after choosing the tier.
struct Rates {
    input: Option<f64>,
    output: Option<f64>,
    cache_read: Option<f64>,
    cache_creation: Option<f64>,
    cache_creation_1h: Option<f64>,
    reasoning: Option<f64>,
}

impl ModelPrice {
    /// Input and output rates in USD per token.
    pub fn per_token(input_cost_per_token: f64, output_cost_per_token: f64) -> Self {
        Self {
            input_cost_per_token: Some(input_cost_per_token),
            output_cost_per_token: Some(output_cost_per_token),
            ..Self::default()
        }
    }

    /// Input and output rates in USD per million tokens (how providers publish them).
    pub fn per_million(input_usd: f64, output_usd: f64) -> Self {
        Self::per_token(input_usd / 1e6, output_usd / 1e6)
    }

    /// A model that costs nothing.
    pub fn free() -> Self {
        Self::per_token(0.0, 0.0)
    }

    /// The same price, with cache reads at `usd` per million tokens.
    pub fn with_cache_read_per_million(mut self, usd: f64) -> Self {
        self.cache_read_input_token_cost = Some(usd / 1e6);
        self
    }

    /// The same price, with cache writes at `usd` per million tokens.
    pub fn with_cache_creation_per_million(mut self, usd: f64) -> Self {
        self.cache_creation_input_token_cost = Some(usd / 1e6);
        self
    }

    /// The same price, with reasoning output at `usd` per million tokens.
    pub fn with_reasoning_per_million(mut self, usd: f64) -> Self {
        self.output_cost_per_reasoning_token = Some(usd / 1e6);
        self
    }

    /// The price of one call with `usage`, in USD, computed as LiteLLM computes it:
    /// uncached input at the input rate, cache reads at `cache_read_input_token_cost`,
    /// cache writes at `cache_creation_input_token_cost` (one-hour writes at
    /// `cache_creation_input_token_cost_above_1hr`), output at the output rate, and with an
    /// `output_cost_per_reasoning_token` the reasoning part of the output at that rate. A
    /// rate the table lacks falls back as described on [`ModelPrice`] (LiteLLM would count
    /// a missing cache rate as free; here a missing rate never makes tokens free). A
    /// long-prompt [`PriceTier`] replaces the rates it has when the input is above its
    /// threshold.
    ///
    /// # Errors
    /// The reason the call cannot be priced, when tokens of some kind have no rate at all.
    pub fn cost_usd(&self, usage: &Usage) -> Result<f64, String> {
        let rates = self.rates_for(usage.input_tokens);
        let uncached = usage.uncached_input_tokens();
        let creation_1h = usage
            .cache_creation_1h_input_tokens
            .min(usage.cache_creation_input_tokens);
        let creation_short = usage.cache_creation_input_tokens - creation_1h;
        let plain_output = match rates.reasoning {
            Some(_) => usage.output_tokens.saturating_sub(usage.reasoning_tokens),
            None => usage.output_tokens,
        };
        let input_rate = |tokens: u64| match rates.input {
            Some(rate) => Ok(rate),
            None if tokens == 0 => Ok(0.0),
            None => Err("the table has no `input_cost_per_token` for it".to_owned()),
        };
        let output_rate = |tokens: u64| match rates.output {
            Some(rate) => Ok(rate),
            None if tokens == 0 => Ok(0.0),
            None => Err("the table has no `output_cost_per_token` for it".to_owned()),
        };
        let read_rate = match rates.cache_read {
            Some(rate) => rate,
            None => input_rate(usage.cached_input_tokens)?,
        };
        let creation_rate = match rates.cache_creation {
            Some(rate) => rate,
            None => input_rate(usage.cache_creation_input_tokens)?,
        };
        let creation_1h_rate = rates.cache_creation_1h.unwrap_or(creation_rate);
        let mut cost = uncached as f64 * input_rate(uncached)?
            + usage.cached_input_tokens as f64 * read_rate
            + creation_short as f64 * creation_rate
            + creation_1h as f64 * creation_1h_rate
            + plain_output as f64 * output_rate(plain_output)?;
        if let Some(reasoning_rate) = rates.reasoning {
            cost += usage.reasoning_tokens.min(usage.output_tokens) as f64 * reasoning_rate;
        }
        Ok(cost)
    }

    fn rates_for(&self, input_tokens: u64) -> Rates {
        let mut rates = Rates {
            input: self.input_cost_per_token,
            output: self.output_cost_per_token,
            cache_read: self.cache_read_input_token_cost,
            cache_creation: self.cache_creation_input_token_cost,
            cache_creation_1h: self.cache_creation_input_token_cost_above_1hr,
            reasoning: self.output_cost_per_reasoning_token,
        };
        // The highest threshold the prompt is above decides.
        if let Some(tier) = self
            .tiers
            .iter()
            .rev()
            .find(|t| input_tokens > t.above_input_tokens)
        {
            let pick = |tiered: Option<f64>, base: Option<f64>| tiered.or(base);
            rates.input = pick(tier.input_cost_per_token, rates.input);
            rates.output = pick(tier.output_cost_per_token, rates.output);
            rates.cache_read = pick(tier.cache_read_input_token_cost, rates.cache_read);
            rates.cache_creation = pick(tier.cache_creation_input_token_cost, rates.cache_creation);
            rates.cache_creation_1h = pick(
                tier.cache_creation_input_token_cost_above_1hr,
                rates.cache_creation_1h,
            );
        }
        rates
    }

    /// Reads one entry of a LiteLLM price file. `None` when it has no per-token price (image,
    /// audio-second or per-request pricing), which this crate does not compute.
    fn from_litellm_entry(
        key: &str,
        entry: &Map<String, Value>,
    ) -> Result<Option<Self>, CostError> {
        let field_rate = |field: &str| rate(key, field, entry.get(field));
        let mut price = ModelPrice {
            input_cost_per_token: field_rate("input_cost_per_token")?,
            output_cost_per_token: field_rate("output_cost_per_token")?,
            cache_read_input_token_cost: field_rate("cache_read_input_token_cost")?,
            cache_creation_input_token_cost: field_rate("cache_creation_input_token_cost")?,
            cache_creation_input_token_cost_above_1hr: field_rate(
                "cache_creation_input_token_cost_above_1hr",
            )?,
            output_cost_per_reasoning_token: field_rate("output_cost_per_reasoning_token")?,
            tiers: Vec::new(),
            litellm_provider: entry
                .get("litellm_provider")
                .and_then(Value::as_str)
                .map(str::to_owned),
            mode: entry.get("mode").and_then(Value::as_str).map(str::to_owned),
        };
        if price.input_cost_per_token.is_none() && price.output_cost_per_token.is_none() {
            return Ok(None);
        }
        for field in entry.keys() {
            let Some(threshold) = field
                .strip_prefix("input_cost_per_token_above_")
                .and_then(|rest| rest.strip_suffix("_tokens"))
            else {
                continue;
            };
            let Some(above) = parse_threshold(threshold) else {
                // `_priority`, `_flex` and other service-tier variants end differently.
                continue;
            };
            let tiered = |base: &str| {
                let field = format!("{base}_above_{threshold}_tokens");
                rate(key, &field, entry.get(&field))
            };
            price.tiers.push(PriceTier {
                above_input_tokens: above,
                input_cost_per_token: tiered("input_cost_per_token")?,
                output_cost_per_token: tiered("output_cost_per_token")?,
                cache_read_input_token_cost: tiered("cache_read_input_token_cost")?,
                cache_creation_input_token_cost: tiered("cache_creation_input_token_cost")?,
                cache_creation_input_token_cost_above_1hr: tiered(
                    "cache_creation_input_token_cost_above_1hr",
                )?,
            });
        }
        price.tiers.sort_by_key(|t| t.above_input_tokens);
        Ok(Some(price))
    }
}

/// `200k` is 200 000, `128000` is 128 000.
fn parse_threshold(text: &str) -> Option<u64> {
    match text.strip_suffix('k') {
        Some(thousands) => thousands.parse::<u64>().ok()?.checked_mul(1000),
        None => text.parse().ok(),
    }
}

/// A per-token rate: a finite non-negative number, or a string holding one (LiteLLM
/// accepts `"3e-7"` from YAML configs). Absent or null is `None`.
fn rate(key: &str, field: &str, value: Option<&Value>) -> Result<Option<f64>, CostError> {
    let invalid = |why: String| CostError::InvalidPrice {
        key: key.to_owned(),
        reason: format!("`{field}` {why}"),
    };
    let number = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(other) => return Err(invalid(format!("is not a number: {other}"))),
    };
    match number {
        Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
        _ => Err(invalid(format!(
            "is {}: a price is a finite, non-negative number",
            value.map_or_else(String::new, Value::to_string)
        ))),
    }
}

/// Where a price came from: the table key it was found under, and the price.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriceMatch<'a> {
    /// The key that matched (`gpt-4o`, `gemini/gemini-2.5-flash`, or `ollama/*` for a free
    /// provider).
    pub key: &'a str,
    /// The price found under it.
    pub price: &'a ModelPrice,
}

/// Prices per model, keyed as LiteLLM keys them (`gpt-4o`, `claude-sonnet-4-5`,
/// `gemini/gemini-2.5-flash`, `openrouter/openai/gpt-4o`).
///
/// [`PricingTable::default()`] holds the embedded prices of the common OpenAI, Anthropic
/// and Gemini models (a subset of LiteLLM's price file) and makes every model of the
/// `ollama` provider free. Load the full LiteLLM file that you maintain with
/// [`from_litellm_file`](Self::from_litellm_file) (that file alone) or
/// [`extend_from_litellm_file`](Self::extend_from_litellm_file) (on top of what the table
/// has), and set prices in code with [`set_price`](Self::set_price).
///
/// A lookup for `provider` and `model` tries `provider/model`, then, for a free provider,
/// the free price, then `model`, then `model` without its `prefix/` (repeatedly), each as
/// written and then lower-cased. Nothing is guessed beyond that: a dated or renamed model
/// that is not in the table is unpriced, never priced as its neighbour or as zero.
///
/// ```
/// use agent_profiler_runtime::{ModelPrice, PricingTable, Usage};
///
/// let mut table = PricingTable::default();
/// table.set_price("vllm/my-finetune", ModelPrice::per_million(0.20, 0.20));
/// let usage = Usage::new(1_000_000, 500_000);
/// let found = table.lookup("vllm", "my-finetune").unwrap();
/// assert!((found.price.cost_usd(&usage).unwrap() - 0.30).abs() < 1e-12);
/// assert!(table.lookup("openai", "gpt-4o").is_some());
/// assert!(table.lookup("openai", "gpt-9-ultra").is_none());
/// assert_eq!(table.lookup("ollama", "llama3.2").unwrap().key, "ollama/*");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PricingTable {
    prices: HashMap<String, ModelPrice>,
    free_providers: BTreeSet<String>,
    free_keys: HashMap<String, String>,
}

static FREE: OnceLock<ModelPrice> = OnceLock::new();
static EMBEDDED: OnceLock<PricingTable> = OnceLock::new();

impl Default for PricingTable {
    /// The embedded prices, with Ollama free.
    fn default() -> Self {
        EMBEDDED
            .get_or_init(|| {
                let mut table = PricingTable::from_litellm_json(EMBEDDED_PRICES)
                    .expect("the embedded price file is valid LiteLLM JSON");
                for provider in DEFAULT_FREE_PROVIDERS {
                    table.set_free_provider(provider, true);
                }
                table
            })
            .clone()
    }
}

impl PricingTable {
    /// A table with no prices and no free provider.
    pub fn empty() -> Self {
        Self {
            prices: HashMap::new(),
            free_providers: BTreeSet::new(),
            free_keys: HashMap::new(),
        }
    }

    /// The embedded default (the same as [`PricingTable::default()`]).
    pub fn embedded() -> Self {
        Self::default()
    }

    /// A table of the prices in a LiteLLM `model_prices_and_context_window.json` text, and
    /// nothing else (no free provider).
    ///
    /// # Errors
    /// As [`extend_from_litellm_json`](Self::extend_from_litellm_json).
    pub fn from_litellm_json(json: &str) -> Result<Self, CostError> {
        let mut table = Self::empty();
        table.extend_from_litellm_json(json)?;
        Ok(table)
    }

    /// A table of the prices in a LiteLLM price file, and nothing else.
    ///
    /// # Errors
    /// As [`extend_from_litellm_file`](Self::extend_from_litellm_file).
    pub fn from_litellm_file(path: impl AsRef<Path>) -> Result<Self, CostError> {
        let mut table = Self::empty();
        table.extend_from_litellm_file(path)?;
        Ok(table)
    }

    /// Adds the per-token prices of a LiteLLM price file's text, replacing the prices of
    /// the same keys. Entries without a per-token price (images, audio seconds) and
    /// LiteLLM's `sample_spec` are skipped. Returns the number of prices added.
    ///
    /// # Errors
    /// [`CostError::InvalidJson`] when the text is not JSON, [`CostError::InvalidPrice`]
    /// when it is not an object of entries or an entry has a negative, non-finite or
    /// non-numeric rate. The table is unchanged on error.
    pub fn extend_from_litellm_json(&mut self, json: &str) -> Result<usize, CostError> {
        let value: Value = serde_json::from_str(json).map_err(|e| CostError::InvalidJson {
            reason: format!("price file: {e}"),
        })?;
        let Value::Object(entries) = value else {
            return Err(CostError::InvalidPrice {
                key: String::new(),
                reason: "a LiteLLM price file is a JSON object of model entries".to_owned(),
            });
        };
        let mut loaded = Vec::new();
        for (key, entry) in &entries {
            if key == "sample_spec" {
                continue;
            }
            let Value::Object(entry) = entry else {
                return Err(CostError::InvalidPrice {
                    key: key.clone(),
                    reason: "the entry is not a JSON object".to_owned(),
                });
            };
            if let Some(price) = ModelPrice::from_litellm_entry(key, entry)? {
                loaded.push((key.clone(), price));
            }
        }
        let count = loaded.len();
        for (key, price) in loaded {
            self.set_price(key, price);
        }
        Ok(count)
    }

    /// Adds the prices of a LiteLLM price file (see
    /// [`extend_from_litellm_json`](Self::extend_from_litellm_json)).
    ///
    /// # Errors
    /// [`CostError::Io`] when the file cannot be read, otherwise as
    /// [`extend_from_litellm_json`](Self::extend_from_litellm_json).
    pub fn extend_from_litellm_file(&mut self, path: impl AsRef<Path>) -> Result<usize, CostError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| CostError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.extend_from_litellm_json(&text)
    }

    /// Sets the price of `key` (`model` or `provider/model`), returning the one it replaces.
    pub fn set_price(&mut self, key: impl Into<String>, price: ModelPrice) -> Option<ModelPrice> {
        self.prices.insert(key.into(), price)
    }

    /// [`set_price`](Self::set_price), by value, for building a table in one expression.
    pub fn with_price(mut self, key: impl Into<String>, price: ModelPrice) -> Self {
        self.set_price(key, price);
        self
    }

    /// Removes the price of `key`.
    pub fn remove_price(&mut self, key: &str) -> Option<ModelPrice> {
        self.prices.remove(key)
    }

    /// The price stored under exactly `key`.
    pub fn get(&self, key: &str) -> Option<&ModelPrice> {
        self.prices.get(key)
    }

    /// Makes every model of `provider` free (or stops doing so). A price set for a
    /// `provider/model` key still wins.
    pub fn set_free_provider(&mut self, provider: &str, free: bool) {
        let provider = canonical_provider(provider);
        if free {
            self.free_keys
                .insert(provider.clone(), format!("{provider}/*"));
            self.free_providers.insert(provider);
        } else {
            self.free_keys.remove(&provider);
            self.free_providers.remove(&provider);
        }
    }

    /// The providers whose models are free.
    pub fn free_providers(&self) -> impl Iterator<Item = &str> {
        self.free_providers.iter().map(String::as_str)
    }

    /// Number of prices (not counting free providers).
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether the table has no price and no free provider.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty() && self.free_providers.is_empty()
    }

    /// Every key with a price, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.prices.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// The price of `model` of `provider`, found as described on [`PricingTable`].
    pub fn lookup(&self, provider: &str, model: &str) -> Option<PriceMatch<'_>> {
        let provider = canonical_provider(provider);
        let model = model.trim();
        let exact = |key: &str| {
            self.prices
                .get_key_value(key)
                .or_else(|| {
                    let lower = key.to_ascii_lowercase();
                    (lower != key)
                        .then(|| self.prices.get_key_value(&lower))
                        .flatten()
                })
                .map(|(key, price)| PriceMatch { key, price })
        };
        let prefixed = if !provider.is_empty() && !model.starts_with(&format!("{provider}/")) {
            format!("{provider}/{model}")
        } else {
            model.to_owned()
        };
        if let Some(found) = exact(&prefixed) {
            return Some(found);
        }
        let model_prefix = model.split_once('/').map(|(p, _)| canonical_provider(p));
        for free in [Some(&provider), model_prefix.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(key) = self.free_keys.get(free) {
                return Some(PriceMatch {
                    key,
                    price: FREE.get_or_init(ModelPrice::free),
                });
            }
        }
        let mut name = model;
        loop {
            if let Some(found) = exact(name) {
                return Some(found);
            }
            match name.split_once('/') {
                Some((_, rest)) if !rest.is_empty() => name = rest,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-9)
    }

    #[test]
    fn embedded_table_parses_and_has_the_common_models() {
        let table = PricingTable::default();
        for (provider, model) in [
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
            ("openai", "gpt-4.1"),
            ("openai", "gpt-4.1-mini"),
            ("openai", "gpt-4.1-nano"),
            ("openai", "o1"),
            ("openai", "o3"),
            ("openai", "o3-mini"),
            ("openai", "o4-mini"),
            ("openai", "gpt-5"),
            ("openai", "gpt-5-mini"),
            ("openai", "gpt-5-nano"),
            ("anthropic", "claude-3-7-sonnet-20250219"),
            ("anthropic", "claude-sonnet-4-20250514"),
            ("anthropic", "claude-sonnet-4-5"),
            ("anthropic", "claude-haiku-4-5"),
            ("anthropic", "claude-opus-4-1"),
            ("gemini", "gemini-2.5-pro"),
            ("gemini", "gemini-2.5-flash"),
            ("gemini", "gemini-2.0-flash"),
            ("google", "gemini-2.5-flash-lite"),
        ] {
            let found = table.lookup(provider, model);
            assert!(found.is_some(), "{provider}/{model}");
            let price = found.unwrap().price;
            assert!(
                price.input_cost_per_token.unwrap() > 0.0
                    && price.output_cost_per_token.unwrap() > 0.0,
                "{provider}/{model}"
            );
        }
        assert!(table.len() >= 40, "{}", table.len());
    }

    #[test]
    fn lookup_order() {
        let table = PricingTable::empty()
            .with_price("gpt-x", ModelPrice::per_token(1.0, 1.0))
            .with_price("azure/gpt-x", ModelPrice::per_token(2.0, 2.0))
            .with_price("openrouter/openai/gpt-y", ModelPrice::per_token(3.0, 3.0))
            .with_price("gpt-y", ModelPrice::per_token(4.0, 4.0));
        assert_eq!(table.lookup("azure", "gpt-x").unwrap().key, "azure/gpt-x");
        assert_eq!(table.lookup("openai", "gpt-x").unwrap().key, "gpt-x");
        assert_eq!(table.lookup("openai", "openai/gpt-x").unwrap().key, "gpt-x");
        assert_eq!(
            table.lookup("azure", "azure/gpt-x").unwrap().key,
            "azure/gpt-x"
        );
        assert_eq!(
            table.lookup("openrouter", "openai/gpt-y").unwrap().key,
            "openrouter/openai/gpt-y"
        );
        assert_eq!(table.lookup("other", "a/b/gpt-y").unwrap().key, "gpt-y");
        assert_eq!(table.lookup("OpenAI", "GPT-X").unwrap().key, "gpt-x");
        assert!(table.lookup("openai", "gpt-x-2025-01-01").is_none());
    }

    #[test]
    fn free_providers_come_before_bare_names() {
        let mut table = PricingTable::default();
        let found = table.lookup("ollama", "gpt-4o").unwrap();
        assert_eq!(found.key, "ollama/*");
        assert_eq!(found.price, &ModelPrice::free());
        assert_eq!(table.lookup("", "ollama/llama3").unwrap().key, "ollama/*");
        table.set_price("ollama/special", ModelPrice::per_token(1e-6, 1e-6));
        assert_eq!(
            table.lookup("ollama", "special").unwrap().key,
            "ollama/special"
        );
        table.set_free_provider("ollama", false);
        assert!(table.lookup("ollama", "llama3").is_none());
        assert!(PricingTable::empty().lookup("ollama", "llama3").is_none());
    }

    #[test]
    fn fallbacks_never_make_tokens_free() {
        let price = ModelPrice::per_token(2.0, 10.0);
        let usage = Usage::new(100, 10)
            .with_cached_input(30)
            .with_cache_creation(20)
            .with_reasoning(4);
        // Cache reads and writes at the input rate, reasoning at the output rate.
        assert!(close(
            price.cost_usd(&usage).unwrap(),
            100.0 * 2.0 + 10.0 * 10.0
        ));
        let no_output = ModelPrice {
            input_cost_per_token: Some(1.0),
            ..ModelPrice::default()
        };
        assert!(no_output.cost_usd(&Usage::new(5, 1)).is_err());
        assert!(close(no_output.cost_usd(&Usage::new(5, 0)).unwrap(), 5.0));
    }

    #[test]
    fn reasoning_rate_splits_the_output() {
        let price = ModelPrice::per_token(1.0, 2.0);
        let price = ModelPrice {
            output_cost_per_reasoning_token: Some(5.0),
            ..price
        };
        let usage = Usage::new(10, 100).with_reasoning(40);
        assert!(close(
            price.cost_usd(&usage).unwrap(),
            10.0 + 60.0 * 2.0 + 40.0 * 5.0
        ));
    }

    #[test]
    fn long_prompt_tiers_and_one_hour_cache() {
        let json = r#"{
            "m": {
                "input_cost_per_token": 1.0, "output_cost_per_token": 10.0,
                "cache_read_input_token_cost": 0.1, "cache_creation_input_token_cost": 1.25,
                "cache_creation_input_token_cost_above_1hr": 2.0,
                "input_cost_per_token_above_200k_tokens": 2.0,
                "output_cost_per_token_above_200k_tokens": 15.0,
                "cache_read_input_token_cost_above_200k_tokens": 0.2,
                "input_cost_per_token_above_200k_tokens_priority": 99.0,
                "input_cost_per_token_above_128000_tokens": 1.5
            }
        }"#;
        let table = PricingTable::from_litellm_json(json).unwrap();
        let price = table.get("m").unwrap();
        assert_eq!(
            price
                .tiers
                .iter()
                .map(|t| t.above_input_tokens)
                .collect::<Vec<_>>(),
            [128_000, 200_000]
        );
        let short = Usage::new(1000, 10).with_cached_input(500);
        assert!(close(price.cost_usd(&short).unwrap(), 500.0 + 50.0 + 100.0));
        // Exactly at the threshold is not above it.
        let at = Usage::new(200_000, 0);
        assert!(close(price.cost_usd(&at).unwrap(), 200_000.0 * 1.5));
        let long = Usage::new(300_000, 10).with_cached_input(100_000);
        assert!(close(
            price.cost_usd(&long).unwrap(),
            200_000.0 * 2.0 + 100_000.0 * 0.2 + 10.0 * 15.0
        ));
        let one_hour = Usage {
            cache_creation_1h_input_tokens: 30,
            ..Usage::new(100, 0).with_cache_creation(100)
        };
        assert!(close(
            price.cost_usd(&one_hour).unwrap(),
            70.0 * 1.25 + 30.0 * 2.0
        ));
    }

    #[test]
    fn loader_skips_what_is_not_per_token_and_rejects_bad_rates() {
        let json = r#"{
            "sample_spec": {"input_cost_per_token": 0.0, "max_tokens": "text"},
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
            "cheap": {"input_cost_per_token": "3e-7", "output_cost_per_token": 1e-6, "mode": "chat"}
        }"#;
        let table = PricingTable::from_litellm_json(json).unwrap();
        assert_eq!(table.keys(), ["cheap"]);
        assert_eq!(table.get("cheap").unwrap().input_cost_per_token, Some(3e-7));
        assert!(table.free_providers().next().is_none());

        for bad in [
            r#"{"m": {"input_cost_per_token": -1.0}}"#,
            r#"{"m": {"input_cost_per_token": "cheap"}}"#,
            r#"{"m": {"input_cost_per_token": 1.0, "output_cost_per_token": [1]}}"#,
            r#"{"m": 3}"#,
            r#"[1, 2]"#,
        ] {
            assert!(
                matches!(
                    PricingTable::from_litellm_json(bad),
                    Err(CostError::InvalidPrice { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            PricingTable::from_litellm_json("{"),
            Err(CostError::InvalidJson { .. })
        ));
        assert!(matches!(
            PricingTable::from_litellm_file("/nonexistent/prices.json"),
            Err(CostError::Io { .. })
        ));
        let mut table = PricingTable::default();
        let before = table.clone();
        assert!(table.extend_from_litellm_json(r#"{"gpt-4o": {"input_cost_per_token": 1.0}, "m": {"input_cost_per_token": -1}}"#).is_err());
        assert_eq!(table, before, "unchanged on error");
    }
}
