//! Workflow configuration files: nodes in order and groups that run concurrently.
//!
//! ```json
//! {
//!   "name": "research",
//!   "steps": [
//!     {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan research on {topic}", "output_key": "plan"},
//!     {"parallel": [
//!       {"id": "search_web", "model": "gpt-4o-mini", "prompt": "Search for {plan}", "output_key": "web"},
//!       {"id": "search_papers", "model": "gpt-4o-mini", "prompt": "Papers on {plan}", "output_key": "papers"}
//!     ]},
//!     {"id": "write", "model": "gpt-4o", "prompt": "Write about {topic} from {web} and {papers}", "output_key": "report", "max_tokens": 800}
//!   ]
//! }
//! ```
//!
//! A prompt names state fields as `{field}` (`{{` and `}}` for literal braces); the state
//! starts as the run's inputs and each node adds its `output_key`.
//!
//! Every field a prompt names must be there when the node runs: the output of an earlier
//! step (not of a node in the same parallel group, which sees the state as it was before
//! the group, nor of a later node), or an input of the run. A config may declare its
//! inputs (`"inputs": ["topic"]`): its prompts are then checked completely when the file
//! is read. Without the list, fields that no node writes are taken as inputs, and
//! [`WorkflowConfig::check_inputs`] checks them against the inputs a run is given, before
//! the run starts.
//!
//! A node may ask for its answer as a stream (`"stream": true`): the call takes about as
//! long, and the time its first text came (the time to first token) is recorded too.
//!
//! Limits: a config file holds at most [`MAX_CONFIG_BYTES`]; names (the workflow's, models,
//! output keys) at most [`MAX_NAME_LEN`] characters and no control characters; `max_tokens`
//! is 1 to [`MAX_MAX_TOKENS`]. A UTF-8 byte order mark at the start of the file is skipped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use agent_profiler_runtime::{NodeIdError, check_node_id};
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::{Map, Value};

/// The default `max_tokens` of a node.
pub const DEFAULT_MAX_TOKENS: u32 = 512;

/// The largest `max_tokens` a node may ask for: above every model's output limit, below
/// what would make a simulated or metered call run for hours.
pub const MAX_MAX_TOKENS: u32 = 1_000_000;

/// The largest workflow config file, in bytes (1 MiB): checked before the file is read.
/// A config is stored with every run, so it stays small.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The longest name (of the workflow, a model, an output key, an input), in characters.
pub const MAX_NAME_LEN: usize = 200;

/// A workflow read from a JSON file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// The workflow's name: runs are stored under it.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The inputs a run must be given (the state's first fields), when declared: prompts
    /// are then checked against them when the config is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    /// The steps, in order.
    pub steps: Vec<StepConfig>,
}

/// One LLM node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node id: ASCII letters, digits and `_ - . /`, at most
    /// [`MAX_NODE_ID_LEN`](agent_profiler_runtime::MAX_NODE_ID_LEN) characters (the rules of
    /// every entry point, [`check_node_id`]). Checked while the file is read, so that a bad
    /// id is reported with its line and column.
    #[serde(deserialize_with = "node_id")]
    pub id: String,
    /// The model (its provider, for prices, is taken from the name).
    pub model: String,
    /// A system prompt (a template too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The prompt template over state fields.
    pub prompt: String,
    /// The state field the answer goes to.
    pub output_key: String,
    /// The most output tokens ([`DEFAULT_MAX_TOKENS`] when absent).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Whether to ask for the answer as a stream of server-sent events (false when absent),
    /// which also tells when the first text came.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stream: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

/// A step: one node, or a group of nodes that run concurrently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawStep", untagged)]
pub enum StepConfig {
    /// One node.
    Node(NodeConfig),
    /// Nodes that run concurrently; each sees the state as it was before the group.
    Parallel {
        /// The nodes.
        parallel: Vec<NodeConfig>,
    },
}

impl StepConfig {
    /// The step's nodes (one, or the group's).
    pub fn nodes(&self) -> &[NodeConfig] {
        match self {
            StepConfig::Node(n) => std::slice::from_ref(n),
            StepConfig::Parallel { parallel } => parallel,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default, deserialize_with = "optional_node_id")]
    id: Option<String>,
    model: Option<String>,
    system: Option<String>,
    prompt: Option<String>,
    output_key: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    stream: Option<bool>,
    parallel: Option<Vec<NodeConfig>>,
}

impl TryFrom<RawStep> for StepConfig {
    type Error = String;

    fn try_from(raw: RawStep) -> Result<Self, String> {
        let node_fields = raw.id.is_some()
            || raw.model.is_some()
            || raw.system.is_some()
            || raw.prompt.is_some()
            || raw.output_key.is_some()
            || raw.max_tokens.is_some()
            || raw.temperature.is_some()
            || raw.stream.is_some();
        if let Some(parallel) = raw.parallel {
            if node_fields {
                return Err(
                    "a step is either a node or a group `{\"parallel\": [...]}`, \
                            not both: move the node fields into the group"
                        .to_owned(),
                );
            }
            return Ok(StepConfig::Parallel { parallel });
        }
        let missing = |f: &str| {
            format!(
                "missing field `{f}` (a node needs `id`, `model`, `prompt` and `output_key`; \
                 a group is `{{\"parallel\": [...]}}`)"
            )
        };
        Ok(StepConfig::Node(NodeConfig {
            id: raw.id.ok_or_else(|| missing("id"))?,
            model: raw.model.ok_or_else(|| missing("model"))?,
            system: raw.system,
            prompt: raw.prompt.ok_or_else(|| missing("prompt"))?,
            output_key: raw.output_key.ok_or_else(|| missing("output_key"))?,
            max_tokens: raw.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            temperature: raw.temperature,
            stream: raw.stream.unwrap_or(false),
        }))
    }
}

/// A configuration that cannot be used: where, and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    /// Line and column (1-based) in the file, for JSON errors.
    pub position: Option<(usize, usize)>,
    /// The field, as a path (`steps[2].parallel[0].model`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid workflow config")?;
        if let Some(file) = &self.file {
            write!(f, " {}", file.display())?;
        }
        if let Some((line, column)) = self.position {
            write!(f, " at line {line}, column {column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl WorkflowConfig {
    /// Reads and checks the workflow in the JSON file `path`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the line and column, the field and the problem.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let fail = |message: String| ConfigError {
            file: Some(path.to_owned()),
            position: None,
            field: None,
            message,
        };
        let file =
            std::fs::File::open(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("cannot read the file: {e}")))?;
        if !meta.is_file() {
            return Err(fail(
                "cannot read the file: it is not a regular file".to_owned(),
            ));
        }
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(fail(too_big(meta.len())));
        }
        // Read at most one byte more than the limit, whatever the size said.
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read the file: {e}")))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(fail(too_big(bytes.len() as u64)));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Self::from_json_str(&text).map_err(|mut e| {
            e.file = Some(path.to_owned());
            e
        })
    }

    /// Parses and checks a workflow from JSON text.
    ///
    /// ```
    /// use agent_profiler_executor::WorkflowConfig;
    ///
    /// let err = WorkflowConfig::from_json_str(r#"{"name": "w", "steps": [{"id": "a", "prompt": "p", "output_key": "o"}]}"#)
    ///     .unwrap_err();
    /// assert_eq!(err.field.as_deref(), Some("steps[0]"));
    /// assert!(err.message.contains("missing field `model`"), "{err}");
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`] naming the line and column, the field and the problem.
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                file: None,
                position: None,
                field: None,
                message: too_big(text.len() as u64),
            });
        }
        // A byte order mark (as some editors write) is not JSON: skipped.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut de = serde_json::Deserializer::from_str(text);
        let json_error = |path: Option<String>, inner: serde_json::Error| {
            let position = (inner.line() > 0).then(|| (inner.line(), inner.column()));
            let mut message = inner.to_string();
            if let Some(cut) = message.rfind(" at line ") {
                message.truncate(cut);
            }
            ConfigError {
                file: None,
                position,
                field: path.filter(|p| p != "." && !p.is_empty()),
                message,
            }
        };
        let config: WorkflowConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            json_error(Some(path), e.into_inner())
        })?;
        de.end().map_err(|e| json_error(None, e))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what JSON parsing cannot: at least one step, non-empty groups, valid and
    /// unique node ids, non-empty fields, well-formed templates.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |field: String, message: String| ConfigError {
            file: None,
            position: None,
            field: Some(field),
            message,
        };
        if self.name.trim().is_empty() {
            return Err(bad("name".into(), "the workflow name is empty".into()));
        }
        if let Err(why) = name_problem(&self.name) {
            return Err(bad("name".into(), format!("the workflow name {why}")));
        }
        // A config built in code has no file to measure: its text is bounded the same way
        // (it is stored with every run).
        let text: usize = self.description.as_ref().map_or(0, String::len)
            + self
                .nodes()
                .map(|n| n.prompt.len() + n.system.as_ref().map_or(0, String::len))
                .sum::<usize>();
        if text as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError {
                file: None,
                position: None,
                field: None,
                message: format!(
                    "the prompts and description hold {text} bytes; a workflow config holds \
                     at most {MAX_CONFIG_BYTES} bytes (1 MiB)"
                ),
            });
        }
        if let Some(inputs) = &self.inputs {
            let mut seen = HashSet::new();
            for (i, input) in inputs.iter().enumerate() {
                if input.trim().is_empty() {
                    return Err(bad(format!("inputs[{i}]"), "the input is empty".into()));
                }
                if let Err(why) = name_problem(input) {
                    return Err(bad(format!("inputs[{i}]"), format!("the input {why}")));
                }
                if !seen.insert(input) {
                    return Err(bad(
                        format!("inputs[{i}]"),
                        format!("input `{input}` is declared twice"),
                    ));
                }
            }
        }
        if self.steps.is_empty() {
            return Err(bad(
                "steps".into(),
                "a workflow needs at least one step".into(),
            ));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            let prefix = match step {
                StepConfig::Node(_) => vec![format!("steps[{i}]")],
                StepConfig::Parallel { parallel } => {
                    if parallel.is_empty() {
                        return Err(bad(
                            format!("steps[{i}].parallel"),
                            "a group needs at least one node".into(),
                        ));
                    }
                    (0..parallel.len())
                        .map(|j| format!("steps[{i}].parallel[{j}]"))
                        .collect()
                }
            };
            for (node, at) in step.nodes().iter().zip(prefix) {
                if let Err(why) = node_id_problem(&node.id) {
                    return Err(bad(format!("{at}.id"), why));
                }
                if !ids.insert(node.id.clone()) {
                    return Err(bad(
                        format!("{at}.id"),
                        format!("node id `{}` is used twice", node.id),
                    ));
                }
                if node.model.trim().is_empty() {
                    return Err(bad(format!("{at}.model"), "the model is empty".into()));
                }
                if let Err(why) = name_problem(&node.model) {
                    return Err(bad(format!("{at}.model"), format!("the model {why}")));
                }
                if node.output_key.trim().is_empty() || node.output_key.starts_with('_') {
                    return Err(bad(
                        format!("{at}.output_key"),
                        "the output key must be non-empty and not start with `_` \
                         (reserved for `_execution_time_ms`, `_cost_usd`)"
                            .into(),
                    ));
                }
                if let Err(why) = name_problem(&node.output_key) {
                    return Err(bad(
                        format!("{at}.output_key"),
                        format!("the output key {why}"),
                    ));
                }
                if self
                    .inputs
                    .as_ref()
                    .is_some_and(|i| i.contains(&node.output_key))
                {
                    return Err(bad(
                        format!("{at}.output_key"),
                        format!(
                            "output key `{}` is also a declared input: a node would overwrite it",
                            node.output_key
                        ),
                    ));
                }
                if !keys.insert(node.output_key.clone()) {
                    return Err(bad(
                        format!("{at}.output_key"),
                        format!("output key `{}` is written by two nodes", node.output_key),
                    ));
                }
                if node.max_tokens == 0 || node.max_tokens > MAX_MAX_TOKENS {
                    return Err(bad(
                        format!("{at}.max_tokens"),
                        format!(
                            "{} is out of range: must be 1 to {MAX_MAX_TOKENS}",
                            node.max_tokens
                        ),
                    ));
                }
                if let Err(why) = placeholders(&node.prompt) {
                    return Err(bad(format!("{at}.prompt"), why));
                }
                if let Some(system) = &node.system
                    && let Err(why) = placeholders(system)
                {
                    return Err(bad(format!("{at}.system"), why));
                }
            }
        }
        self.check_fields(None)
    }

    /// Checks that every field a prompt names is there when its node runs, given the
    /// run's `inputs`: an input, or the output of an earlier step. Run before a run starts
    /// ([`WorkflowExecutor::run_config`](crate::WorkflowExecutor::run_config)), so that a
    /// missing field is an error before any node runs rather than a failed node.
    ///
    /// ```
    /// use agent_profiler_executor::WorkflowConfig;
    ///
    /// let config = WorkflowConfig::from_json_str(
    ///     r#"{"name": "w", "steps": [{"id": "a", "model": "m", "prompt": "On {topic}", "output_key": "o"}]}"#,
    /// ).unwrap();
    /// let inputs = serde_json::json!({"subject": "x"});
    /// let err = config.check_inputs(inputs.as_object().unwrap()).unwrap_err();
    /// assert_eq!(err.field.as_deref(), Some("steps[0].prompt"));
    /// assert_eq!(err.message, "node `a` uses `{topic}`, which no input and no earlier step \
    ///     provides (available: `subject`)");
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`] naming the node's field, the node, the field it uses and what is
    /// available there.
    pub fn check_inputs(&self, inputs: &Map<String, Value>) -> Result<(), ConfigError> {
        self.check_fields(Some(inputs))
    }

    /// The fields check: against `given` inputs, else the declared ones (if any).
    fn check_fields(&self, given: Option<&Map<String, Value>>) -> Result<(), ConfigError> {
        // Which node writes each key, and in which step.
        let mut writers: HashMap<&str, (usize, &str)> = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            for node in step.nodes() {
                writers.insert(&node.output_key, (i, &node.id));
            }
        }
        let inputs: Option<BTreeSet<&str>> = match (given, &self.inputs) {
            (Some(given), _) => Some(given.keys().map(String::as_str).collect()),
            (None, Some(declared)) => Some(declared.iter().map(String::as_str).collect()),
            (None, None) => None,
        };
        let mut available: BTreeSet<&str> = inputs.clone().unwrap_or_default();
        for (i, step) in self.steps.iter().enumerate() {
            let prefix = |j: usize| match step {
                StepConfig::Node(_) => format!("steps[{i}]"),
                StepConfig::Parallel { .. } => format!("steps[{i}].parallel[{j}]"),
            };
            for (j, node) in step.nodes().iter().enumerate() {
                let templates = [
                    ("prompt", Some(&node.prompt)),
                    ("system", node.system.as_ref()),
                ];
                for (what, template) in templates {
                    let Some(template) = template else { continue };
                    // Malformed templates were reported by `check`.
                    for field in placeholders(template).unwrap_or_default() {
                        if available.contains(field.as_str()) {
                            continue;
                        }
                        let message = match writers.get(field.as_str()) {
                            Some(&(step, writer)) if step == i => format!(
                                "node `{}` uses `{{{field}}}`, the output of `{writer}` in the \
                                 same parallel group: a node of a group sees the state as it \
                                 was before the group (move it to a later step)",
                                node.id
                            ),
                            Some(&(step, writer)) => format!(
                                "node `{}` uses `{{{field}}}`, the output of `{writer}`, which \
                                 runs later (steps[{step}])",
                                node.id
                            ),
                            None if inputs.is_none() => continue,
                            None => format!(
                                "node `{}` uses `{{{field}}}`, which no input and no earlier \
                                 step provides (available: {})",
                                node.id,
                                listed(&available)
                            ),
                        };
                        return Err(ConfigError {
                            file: None,
                            position: None,
                            field: Some(format!("{}.{what}", prefix(j))),
                            message,
                        });
                    }
                }
            }
            for node in step.nodes() {
                available.insert(&node.output_key);
            }
        }
        Ok(())
    }

    /// Every node, in step order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeConfig> {
        self.steps.iter().flat_map(StepConfig::nodes)
    }
}

/// `` `a`, `b` `` or "nothing".
fn listed(keys: &BTreeSet<&str>) -> String {
    if keys.is_empty() {
        return "nothing".to_owned();
    }
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "is 1234 bytes; the limit is ...".
fn too_big(len: u64) -> String {
    format!(
        "the file is {len} bytes; a workflow config holds at most {MAX_CONFIG_BYTES} bytes \
         (1 MiB)"
    )
}

/// What is wrong with a name (after "the workflow name", "the model", ...): too long, or
/// with a control character (a newline, an escape sequence), which would garble every
/// line it is printed in.
pub(crate) fn name_problem(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(format!(
            "is {len} characters long; the limit is {MAX_NAME_LEN}"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains the control character {c:?}, which is not allowed"
        ));
    }
    Ok(())
}

/// The message for an id that breaks the node-id rules: the wording every entry point shares,
/// after the id itself (a config error has no span to point at it; an empty id has nothing
/// to show).
fn node_id_problem(id: &str) -> Result<(), String> {
    check_node_id(id).map_err(|e| match e {
        NodeIdError::Empty => e.to_string(),
        _ => format!("`{id}`: {e}"),
    })
}

fn node_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let id = String::deserialize(deserializer)?;
    node_id_problem(&id).map_err(de::Error::custom)?;
    Ok(id)
}

fn optional_node_id<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        Some(id) => {
            node_id_problem(&id).map_err(de::Error::custom)?;
            Ok(Some(id))
        }
        None => Ok(None),
    }
}

/// The `{field}` names of a template.
///
/// # Errors
/// An unclosed `{`, a lone `}` or an empty `{}`.
pub fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed `{{{name}` in the template")),
                    }
                }
                let name = name.trim().to_owned();
                if name.is_empty() {
                    return Err("empty `{}` in the template (write `{{}}` for braces)".into());
                }
                out.push(name);
            }
            '}' => return Err("lone `}` in the template (write `}}`)".into()),
            _ => {}
        }
    }
    Ok(out)
}

/// Fills `template` from `state`: strings as they are, other values as JSON.
///
/// # Errors
/// The name of the first field the state does not have.
pub fn render(template: &str, state: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                    name.push(c);
                }
                match state.get(name.trim()) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(v) => out.push_str(&v.to_string()),
                    None => return Err(name.trim().to_owned()),
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> String {
        format!(
            r#"{{"id": {id:?}, "model": "m", "prompt": "p", "output_key": "o_{}"}}"#,
            id.len()
        )
    }

    #[test]
    fn bad_node_ids_name_the_line_column_field_and_rule() {
        // (id, expected message)
        let too_long = "a".repeat(234);
        let cases = [
            (
                "a b",
                "`a b`: the node id contains a space, which is not allowed",
            ),
            ("", "the node id is empty: name the node"),
            (
                too_long.as_str(),
                "is 234 characters long; the limit is 233",
            ),
            ("résumé", "`résumé`: the node id contains 'é'"),
        ];
        for (id, expected) in cases {
            // The bad id is on line 3.
            let text = format!(
                "{{\"name\": \"w\", \"steps\": [\n  {},\n  {}\n]}}",
                node("ok"),
                node(id)
            );
            let err = WorkflowConfig::from_json_str(&text).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("steps[1].id"), "{err}");
            assert_eq!(err.position.map(|(line, _)| line), Some(3), "{err}");
            assert!(err.message.contains(expected), "{err}");
            assert!(!err.message.contains(" at line "), "{err}");
        }
        // In a group too.
        let text = format!(
            r#"{{"name": "w", "steps": [{{"parallel": [{}]}}]}}"#,
            node("x:y")
        );
        let err = WorkflowConfig::from_json_str(&text).unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("steps[0].parallel[0].id"),
            "{err}"
        );
        assert!(err.message.contains("as in `\"x_y\"`"), "{err}");
    }

    /// What [`WorkflowConfig::check`] says of a one-node workflow built in code after
    /// `edit` changes its node.
    fn check_edited_node(edit: impl FnOnce(&mut NodeConfig)) -> ConfigError {
        let mut config = WorkflowConfig::from_json_str(&format!(
            r#"{{"name": "w", "steps": [{}]}}"#,
            node("ok")
        ))
        .unwrap();
        let StepConfig::Node(first) = &mut config.steps[0] else {
            unreachable!()
        };
        edit(first);
        config.check().unwrap_err()
    }

    #[test]
    fn a_node_may_ask_for_a_stream() {
        let one = |stream: &str| {
            WorkflowConfig::from_json_str(&format!(
                r#"{{"name": "w", "steps": [{{"id": "a", "model": "m", "prompt": "p",
                    "output_key": "o"{stream}}}]}}"#
            ))
        };
        let config = one(r#", "stream": true"#).unwrap();
        assert!(config.nodes().next().unwrap().stream);
        assert!(!one("").unwrap().nodes().next().unwrap().stream);
        // Written back only when asked for, so older configs stay as they were.
        assert!(
            serde_json::to_string(&config)
                .unwrap()
                .contains(r#""stream":true"#)
        );
        let plain = serde_json::to_string(&one("").unwrap()).unwrap();
        assert!(!plain.contains("stream"), "{plain}");
        let err = one(r#", "stream": "yes""#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("steps[0].stream"), "{err}");
        assert!(err.message.contains("expected a boolean"), "{err}");
        // On a group it is a node field, not the group's.
        let err = WorkflowConfig::from_json_str(&format!(
            r#"{{"name": "w", "steps": [{{"stream": true, "parallel": [{}]}}]}}"#,
            node("a")
        ))
        .unwrap_err();
        assert!(err.message.contains("either a node or a group"), "{err}");
    }

    #[test]
    fn configs_built_in_code_are_bounded_in_size() {
        let err = check_edited_node(|n| n.prompt = "p".repeat(MAX_CONFIG_BYTES as usize + 1));
        assert!(err.message.contains("1048577 bytes"), "{err}");
    }

    #[test]
    fn configs_built_in_code_are_checked_by_the_same_rules() {
        let err = check_edited_node(|n| n.id = "tool:search".into());
        assert_eq!(err.field.as_deref(), Some("steps[0].id"));
        assert_eq!(
            err.message,
            format!(
                "`tool:search`: {}",
                check_node_id("tool:search").unwrap_err()
            )
        );
    }
}
