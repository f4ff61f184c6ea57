//! The rules every node id follows, whichever way it comes in: `#[profile_node("id")]`
//! (checked at compile time), a workflow configuration file,
//! `BottleneckAnalyzer::record_node` and `record_cost`, and `profile_call` /
//! `profile_fallible`. One set of rules and one wording of each mistake, wherever it is made.
//!
//! A node id is non-empty, made of ASCII letters, digits and `_ - . /` only, and at most
//! [`MAX_NODE_ID_LEN`] (233) characters long. The characters keep ids usable as words in
//! logs, file names, metric keys and shell commands (`MLflow` itself would also take spaces);
//! the length leaves room for the longest metric key a node gets, `node_{id}_duration_ms`,
//! within `MLflow`'s 250-character key limit.
//!
//! This file is compiled twice: as the `node_id` module of `agent-profiler-runtime`, and
//! into the proc-macro crate `agent-profiler-macros` through `#[path]` (a proc-macro crate
//! cannot depend on the runtime). So it uses `std` only and names (or links to) nothing of
//! either crate.

use std::fmt;

/// `MLflow` rejects metric keys longer than this many characters.
const MLFLOW_KEY_LIMIT: usize = 250;

/// The longest node id: the longest metric key a node gets is `node_{id}_duration_ms`, and it
/// must fit `MLflow`'s 250-character key limit, which leaves 233 characters for the id.
pub const MAX_NODE_ID_LEN: usize = MLFLOW_KEY_LIMIT - "node_".len() - "_duration_ms".len();

/// Whether `c` may appear in a node id: an ASCII letter or digit, `_`, `-`, `.` or `/`.
pub fn is_node_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// The first rule a node id breaks. Its `Display` is the message, the same for every entry
/// point: what is wrong, and what to write instead. It does not repeat the id; where the id
/// is not already in view (a compile error points at it), the caller names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeIdError {
    /// The id is empty.
    Empty,
    /// The id has characters other than ASCII letters, digits and `_ - . /`.
    ForbiddenChars {
        /// Each forbidden character once, in order of first appearance.
        chars: Vec<char>,
        /// The id with every forbidden character replaced by `_`.
        suggestion: String,
    },
    /// The id is longer than [`MAX_NODE_ID_LEN`] characters.
    TooLong {
        /// Its length in characters.
        len: usize,
    },
}

impl fmt::Display for NodeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeIdError::Empty => f.write_str("the node id is empty: name the node"),
            NodeIdError::ForbiddenChars { chars, suggestion } => {
                let listed: Vec<String> = chars.iter().map(|&c| describe_char(c)).collect();
                write!(
                    f,
                    "the node id contains {}, which {} not allowed: use only ASCII letters, \
                     digits, `_`, `-`, `.` and `/`, as in `{suggestion:?}`",
                    join_and(&listed),
                    if chars.len() == 1 { "is" } else { "are" }
                )
            }
            NodeIdError::TooLong { len } => write!(
                f,
                "the node id is {len} characters long; the limit is {MAX_NODE_ID_LEN}, so that \
                 the metric key `node_{{id}}_duration_ms` fits MLflow's {MLFLOW_KEY_LIMIT}-character \
                 limit: shorten the id"
            ),
        }
    }
}

impl std::error::Error for NodeIdError {}

/// Checks `id` against the node-id rules and returns the first one it breaks: emptiness, then
/// characters (all of the forbidden ones are named), then length. Linear in the id's length.
///
/// A node id is non-empty, made of ASCII letters, digits and `_ - . /` only, and at most
/// [`MAX_NODE_ID_LEN`] (233) characters long. The same rules, with the same messages, hold
/// for `#[profile_node("id")]` (a compile error), workflow configuration files (a config
/// error naming the field, line and column), `BottleneckAnalyzer::record_node` and
/// `record_cost` (a `RecordError`), and `profile_call` / `profile_fallible` (which cannot
/// fail: the call is counted under `_other_dynamic_nodes`).
/// (No doctest here: this file is also compiled into the macro crate, where the runtime's
/// paths do not exist; the tests below check every message word for word.)
///
/// # Errors
/// The [`NodeIdError`] of the first rule broken.
pub fn check_node_id(id: &str) -> Result<(), NodeIdError> {
    if id.is_empty() {
        return Err(NodeIdError::Empty);
    }
    if !id.chars().all(is_node_id_char) {
        let mut chars: Vec<char> = Vec::new();
        for c in id.chars() {
            if !is_node_id_char(c) && !chars.contains(&c) {
                chars.push(c);
            }
        }
        let suggestion = id
            .chars()
            .map(|c| if is_node_id_char(c) { c } else { '_' })
            .collect();
        return Err(NodeIdError::ForbiddenChars { chars, suggestion });
    }
    // Only ASCII is left, so bytes are characters.
    if id.len() > MAX_NODE_ID_LEN {
        return Err(NodeIdError::TooLong { len: id.len() });
    }
    Ok(())
}

/// Names a character so that invisible ones can be seen in the message.
fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        c if c.is_whitespace() || c.is_control() => {
            format!("'{}' (U+{:04X})", c.escape_debug(), u32::from(c))
        }
        c => format!("'{c}'"),
    }
}

fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_NODE_ID_LEN, NodeIdError, check_node_id};

    fn message(id: &str) -> String {
        check_node_id(id).unwrap_err().to_string()
    }

    #[test]
    fn limit_leaves_room_for_the_longest_metric_key() {
        assert_eq!(MAX_NODE_ID_LEN, 233);
        let id = "a".repeat(MAX_NODE_ID_LEN);
        assert_eq!(format!("node_{id}_duration_ms").len(), 250);
        assert_eq!(check_node_id(&id), Ok(()));
        assert_eq!(
            check_node_id(&"a".repeat(MAX_NODE_ID_LEN + 1)),
            Err(NodeIdError::TooLong { len: 234 })
        );
        assert_eq!(
            message(&"a".repeat(234)),
            "the node id is 234 characters long; the limit is 233, so that the metric key \
             `node_{id}_duration_ms` fits MLflow's 250-character limit: shorten the id"
        );
    }

    #[test]
    fn accepted_characters() {
        for id in [
            "retrieve",
            "a",
            "Node_1",
            "llm.call-2",
            "agents/planner",
            "A-z_0.9/",
        ] {
            assert_eq!(check_node_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn empty_id_is_rejected() {
        assert_eq!(check_node_id(""), Err(NodeIdError::Empty));
        assert_eq!(message(""), "the node id is empty: name the node");
    }

    #[test]
    fn forbidden_characters_are_named_and_replaced_in_the_suggestion() {
        assert_eq!(
            message("my node"),
            "the node id contains a space, which is not allowed: use only ASCII letters, \
             digits, `_`, `-`, `.` and `/`, as in `\"my_node\"`"
        );
        assert_eq!(
            check_node_id("a:b!c:"),
            Err(NodeIdError::ForbiddenChars {
                chars: vec![':', '!'],
                suggestion: "a_b_c_".into()
            })
        );
        let err = message("a:b!c:?");
        assert!(
            err.contains("':', '!' and '?', which are not allowed"),
            "{err}"
        );
        assert!(message("tab\there").contains("'\\t' (U+0009)"));
        assert!(message("café").contains("'é'"));
        // Every non-ASCII character becomes one `_`, whatever its UTF-8 length.
        assert!(message("résumé:v2").contains("\"r_sum__v2\""));
    }

    #[test]
    fn forbidden_characters_are_reported_before_length() {
        let long_and_bad = format!("{} x", "a".repeat(300));
        assert!(message(&long_and_bad).contains("space"));
        // A long id of multi-byte characters is about its characters, not its bytes.
        assert!(message(&"é".repeat(200)).contains("'é'"));
    }
}
