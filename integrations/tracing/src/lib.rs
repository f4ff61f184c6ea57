//! LLM and tool calls captured from `tracing` spans that carry OpenTelemetry GenAI
//! attributes: a [`GenAiLayer`] turns each span of a model request into a timed, priced
//! LLM call of the profiled node (`#[profile_node]`) that was running where the span was
//! first entered, and each `execute_tool` span into a tool call of that node. An agent
//! framework that already emits GenAI spans (rig, genai with its `otel` feature) is
//! profiled without a line of cost-tracking code.
//!
//! ```
//! use agent_profiler::{BottleneckAnalyzer, MultiProviderCostTracker, ProfilerScope, profile_node};
//! use agent_profiler_tracing::GenAiLayer;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let analyzer = BottleneckAnalyzer::new();
//! let _scope = ProfilerScope::new(&analyzer);
//! let tracker = MultiProviderCostTracker::new();
//! let subscriber = tracing_subscriber::registry().with(GenAiLayer::new(tracker.clone()));
//! let _default = tracing::subscriber::set_default(subscriber);
//!
//! // What a framework does around its request, here by hand.
//! #[profile_node("summarize")]
//! fn summarize() {
//!     let span = tracing::info_span!(
//!         "chat gpt-4o-mini",
//!         "gen_ai.operation.name" = "chat",
//!         "gen_ai.provider.name" = "openai",
//!         "gen_ai.request.model" = "gpt-4o-mini",
//!         "gen_ai.usage.input_tokens" = tracing::field::Empty,
//!         "gen_ai.usage.output_tokens" = tracing::field::Empty,
//!     );
//!     let _entered = span.enter();
//!     std::thread::sleep(std::time::Duration::from_millis(20)); // the request
//!     span.record("gen_ai.usage.input_tokens", 1200);
//!     span.record("gen_ai.usage.output_tokens", 300);
//! }
//!
//! summarize();
//! let node = analyzer.get_node("summarize").unwrap();
//! assert_eq!(node.llm_calls, 1);
//! assert!(node.llm_time_ms >= 20.0);
//! let summary = tracker.get_cost_summary();
//! assert_eq!((summary.input_tokens, summary.output_tokens), (1200, 300));
//! ```
//!
//! # What is read
//!
//! A span is looked at only if it declares a `gen_ai.*` field. Its operation decides what it
//! is:
//!
//! | `gen_ai.operation.name` | becomes |
//! |---|---|
//! | `chat`, `chat_streaming` (older rig), `text_completion`, `generate_content`, `embeddings` | an LLM call |
//! | `execute_tool` | a tool call (count and time) |
//! | anything else (`invoke_agent`, `create_agent`, ...) | nothing: an agent span's usage is the sum of its calls', already counted |
//!
//! Of an LLM span, from its creation and from every later `record`:
//!
//! | what | fields, first found wins |
//! |---|---|
//! | provider | `gen_ai.provider.name`, else `gen_ai.system` (older conventions); the conventions' names are mapped to the pricing table's (`gcp.gemini` is `gemini`, `aws.bedrock` is `bedrock`, `mistral_ai` is `mistral`, `x_ai` is `xai`, ...) |
//! | model | `gen_ai.response.model` (the model that answered), else `gen_ai.request.model` |
//! | input tokens, cache reads and writes included | `gen_ai.usage.input_tokens`, `gen_ai.usage.prompt_tokens` |
//! | output tokens, reasoning included | `gen_ai.usage.output_tokens`, `gen_ai.usage.completion_tokens` |
//! | cache reads | `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_read_input_tokens` |
//! | cache writes | `gen_ai.usage.cache_creation.input_tokens`, `gen_ai.usage.cache_creation_input_tokens` |
//! | reasoning | `gen_ai.usage.reasoning.output_tokens` (conventions, genai), `gen_ai.usage.reasoning_tokens` (rig) |
//! | streamed | `gen_ai.request.stream`, or the operation `chat_streaming` |
//! | first chunk of a stream | the moment `gen_ai.response.time_to_first_chunk` is recorded (genai) |
//! | failed | `otel.status_code` = `ERROR` (any case), a non-empty `error.type`, an `error` field |
//!
//! Of an `execute_tool` span: `gen_ai.tool.name`; it failed when `gen_ai.tool.call.outcome`
//! (rig) is other than `success`, or `gen_ai.tool.error.type`, `error.type`, `error` or an
//! `ERROR` status is recorded. Counts may be recorded as integers, floats without a fraction
//! or text; a negative or fractional count is ignored.
//!
//! # When a call starts and ends, and whose it is
//!
//! An LLM call starts when its span is first entered (for an instrumented future: first
//! polled), on the thread that entered it: the profiled node running there gets the call,
//! whichever thread later closes the span. When the operation is recorded only after the
//! span was entered, the call starts at that record, if the span is entered on the
//! recording thread. A tool call starts the same way once its name is known (rig records
//! it inside the span).
//!
//! The call ends when the span closes (its last handle dropped):
//!
//! - with an error recorded: a failed call, with the tokens recorded if any (billed);
//! - else with tokens recorded: a finished call, priced from the tracker's pricing table;
//! - else: a cancelled call. A request whose future was dropped closes its span this way.
//!   A framework that gets no usage from its provider (some streams) looks the same.
//!
//! A span that was never entered ran no code of any node: it records nothing.
//!
//! A GenAI LLM span created inside another LLM span (a framework's request span inside a
//! hand-written `chat` span, say) is not a call of its own: what it records goes to the
//! enclosing span's call, which times both. An `execute_tool` span between them separates
//! them (an agent used as a tool makes its own calls).
//!
//! # Cost and memory
//!
//! A span without `gen_ai.*` fields costs one scan of its field names when created. A
//! GenAI span keeps a few hundred bytes (strings cut to 200 bytes) until it closes; message
//! contents some frameworks record (`gen_ai.input.messages`) are never copied. The layer
//! never panics on what a span records, and never holds a span's extensions while the
//! tracker records a call.

#![warn(missing_docs)]

mod fields;

use std::sync::Mutex;

use agent_profiler_runtime::{LlmCall, LlmOutcome, MultiProviderCostTracker, ToolCall};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use fields::{GenAiFields, Kind};

/// How many ancestors are searched for an enclosing LLM span: keeps span creation cheap in
/// deep span trees.
const MAX_ANCESTORS: usize = 32;

/// A [`Layer`] that makes LLM calls and tool calls of spans with OpenTelemetry GenAI
/// attributes, recorded in a [`MultiProviderCostTracker`] and on the profiled node running
/// where each span was entered. See the [crate documentation](crate) for the attributes
/// read and when a call starts and ends.
///
/// Needs a subscriber that stores spans ([`tracing_subscriber::registry()`]).
#[derive(Clone)]
pub struct GenAiLayer {
    tracker: MultiProviderCostTracker,
}

impl std::fmt::Debug for GenAiLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenAiLayer").finish_non_exhaustive()
    }
}

impl GenAiLayer {
    /// A layer that records the calls it sees in `tracker` (prices from its pricing table,
    /// totals in its summary, and each call on its node's analyzer).
    pub fn new(tracker: MultiProviderCostTracker) -> Self {
        Self { tracker }
    }

    /// The tracker the calls are recorded in.
    pub fn tracker(&self) -> &MultiProviderCostTracker {
        &self.tracker
    }
}

/// What the layer keeps in a GenAI span's extensions. The mutex only makes it `Sync`, as
/// extensions must be: every access already holds the span's extensions.
struct SpanState(Mutex<State>);

#[derive(Default)]
struct State {
    fields: GenAiFields,
    /// The enclosing LLM span this one reports into, if any.
    into: Option<Id>,
    call: Option<LlmCall>,
    tool: Option<ToolCall>,
    /// A call of this span was started (and may have ended): never start another.
    started: bool,
}

/// Whether `metadata` declares a GenAI field: spans without one are left alone.
fn declares_gen_ai(metadata: &Metadata<'_>) -> bool {
    metadata
        .fields()
        .iter()
        .any(|field| field.name().starts_with("gen_ai."))
}

/// Runs `f` on the state of span `span`, if it has one; a poisoned lock (a panic in another
/// layer's code while it was held cannot happen, but never panic here) still gives the state.
fn with_state<S, R>(span: &SpanRef<'_, S>, f: impl FnOnce(&mut State) -> R) -> Option<R>
where
    S: for<'a> LookupSpan<'a>,
{
    let extensions = span.extensions();
    let state = extensions.get::<SpanState>()?;
    let mut guard = state.0.lock().unwrap_or_else(|e| e.into_inner());
    Some(f(&mut guard))
}

/// What to start for a span, decided under its lock and done after it is released.
enum Start {
    Llm {
        provider: String,
        model: String,
        stream: bool,
    },
    Tool(String),
}

impl State {
    /// The call to start now, if the span's identity is known and none was started; marks
    /// it started.
    fn start(&mut self) -> Option<Start> {
        if self.started || self.into.is_some() {
            return None;
        }
        let start = match self.fields.kind? {
            Kind::Llm => Start::Llm {
                provider: self.fields.provider().unwrap_or_default(),
                model: self.fields.model().unwrap_or_default().to_owned(),
                stream: self.fields.stream.unwrap_or(false),
            },
            Kind::Tool => Start::Tool(self.fields.tool_name.clone()?),
            Kind::Other => return None,
        };
        self.started = true;
        Some(start)
    }

    /// Passes what was recorded since the call started on to it.
    fn update_call(&mut self) {
        let fields = &mut self.fields;
        let Some(call) = self.call.as_mut() else {
            return;
        };
        if let Some(provider) = fields.provider() {
            call.set_provider(&provider);
        }
        if let Some(model) = fields.model() {
            call.set_model(model);
        }
        if let Some(stream) = fields.stream {
            call.set_stream(stream);
        }
        if std::mem::take(&mut fields.first_chunk) {
            call.first_chunk();
        }
    }
}

impl GenAiLayer {
    /// Starts what `start` says and keeps it in the span's state.
    fn begin<S>(&self, span: &SpanRef<'_, S>, start: Start)
    where
        S: for<'a> LookupSpan<'a>,
    {
        match start {
            Start::Llm {
                provider,
                model,
                stream,
            } => {
                let call = self.tracker.start_call(&provider, &model);
                call.set_stream(stream);
                with_state(span, |state| {
                    state.call = Some(call);
                    state.update_call();
                });
            }
            Start::Tool(name) => {
                let tool = ToolCall::start(&name);
                with_state(span, |state| state.tool = Some(tool));
            }
        }
    }

    /// The nearest LLM span enclosing `span` (through spans of other kinds, not through a
    /// tool span), resolved to the span it itself reports into.
    fn enclosing_llm<S>(span: &SpanRef<'_, S>) -> Option<Id>
    where
        S: for<'a> LookupSpan<'a>,
    {
        for ancestor in span.scope().skip(1).take(MAX_ANCESTORS) {
            let verdict = with_state(&ancestor, |state| match (&state.into, state.fields.kind) {
                (Some(into), _) => Some(Some(into.clone())),
                (None, Some(Kind::Llm)) => Some(Some(ancestor.id())),
                (None, Some(Kind::Tool)) => Some(None),
                _ => None,
            });
            // `Some(found)`: this ancestor decides (an LLM span, or a tool span: none).
            if let Some(Some(found)) = verdict {
                return found;
            }
        }
        None
    }
}

/// Whether span `id` is entered on this thread: it is the current span or encloses it.
fn entered_here<S>(id: &Id, ctx: &Context<'_, S>) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.lookup_current()
        .is_some_and(|current| current.scope().take(MAX_ANCESTORS).any(|s| s.id() == *id))
}

impl<S> Layer<S> for GenAiLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !declares_gen_ai(attrs.metadata()) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut state = State::default();
        attrs.record(&mut state.fields);
        if state.fields.kind == Some(Kind::Llm)
            && let Some(into) = Self::enclosing_llm(&span)
        {
            if let Some(outer) = ctx.span(&into) {
                let fields = std::mem::take(&mut state.fields);
                with_state(&outer, |outer| {
                    outer.fields.merge(&fields);
                    outer.update_call();
                });
            }
            state.fields.kind = Some(Kind::Llm);
            state.into = Some(into);
        }
        span.extensions_mut().insert(SpanState(Mutex::new(state)));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        /// What a record leads to, once the span's state is released.
        enum Next {
            Nothing,
            /// Pass the fields on to the enclosing LLM span.
            Forward(Id, Box<GenAiFields>),
            /// No call started yet: the record may have told what the span is.
            MaybeStart,
        }
        let next = with_state(&span, |state| {
            if let Some(into) = &state.into {
                let mut fields = GenAiFields::default();
                values.record(&mut fields);
                return Next::Forward(into.clone(), Box::new(fields));
            }
            values.record(&mut state.fields);
            state.update_call();
            if state.started {
                Next::Nothing
            } else {
                Next::MaybeStart
            }
        });
        match next {
            Some(Next::Forward(into, fields)) => {
                if let Some(outer) = ctx.span(&into) {
                    with_state(&outer, |outer| {
                        outer.fields.merge(&fields);
                        outer.update_call();
                    });
                }
            }
            // Only while the span runs here: its node is the one running on this thread.
            Some(Next::MaybeStart) if entered_here(id, &ctx) => {
                if let Some(start) = with_state(&span, State::start).flatten() {
                    self.begin(&span, start);
                }
            }
            _ => {}
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        if let Some(start) = with_state(&span, State::start).flatten() {
            self.begin(&span, start);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(SpanState(state)) = span.extensions_mut().remove::<SpanState>() else {
            return;
        };
        let mut state = state.into_inner().unwrap_or_else(|e| e.into_inner());
        state.update_call();
        if let Some(tool) = state.tool.take() {
            // The tool's outcome is in the span's fields; the tool call keeps its count and time.
            tool.finish();
        }
        let Some(call) = state.call.take() else {
            return;
        };
        let usage = state.fields.usage();
        match (state.fields.error.take(), usage) {
            (Some(reason), usage) => {
                call.fail(LlmOutcome::Error, reason, usage);
            }
            // A usage the tracker cannot price is still recorded, with its time.
            (None, Some(usage)) => drop(call.finish(usage)),
            (None, None) => {
                call.fail(
                    LlmOutcome::Cancelled,
                    "the span closed without usage or an error",
                    None,
                );
            }
        }
    }
}
