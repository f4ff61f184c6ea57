//! MLflow's limits on keys, values and batches, checked (and for run-time node ids repaired)
//! on the client side so that the server never sees a request it would reject.
//!
//! The limits are those of `mlflow/utils/validation.py`: keys of letters, digits and
//! `_ - . /` and spaces, at most 250 characters, that stay the same when read as a POSIX path
//! (no empty, `.` or `..` segment, no leading `/` or `..`); param values of at most 6000
//! characters and tag values of at most 8000 (longer ones are cut, as the official client
//! does); at most 1000 metrics, 100 params and 100 tags, 1000 entities in all, per
//! `log-batch`, and requests under 1 MB.

use std::borrow::Cow;
use std::fmt;

/// Longest metric, param or tag key MLflow accepts, in characters.
pub const MAX_KEY_LENGTH: usize = 250;
/// Longest param value MLflow keeps, in characters; longer values are cut to this.
pub const MAX_PARAM_VALUE_LENGTH: usize = 6000;
/// Longest tag value MLflow keeps, in characters; longer values are cut to this.
pub const MAX_TAG_VALUE_LENGTH: usize = 8000;
/// Most metrics in one `log-batch` request.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params in one `log-batch` request.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Most tags in one `log-batch` request.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Most metrics, params and tags together in one `log-batch` request.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// `log-batch` requests must be smaller than this many bytes.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;

/// Why a key cannot be sent to MLflow. Nothing is sent for it; the rest of its batch is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    Empty,
    /// The key is longer than [`MAX_KEY_LENGTH`] characters.
    TooLong {
        /// The first characters of the key.
        prefix: String,
        /// Its length, in characters.
        length: usize,
    },
    /// The key has a character MLflow rejects.
    InvalidCharacter {
        /// The key.
        key: String,
        /// The first rejected character.
        character: char,
    },
    /// The key would name another path (`a//b`, `a/./b`, `/a`, `..a`, a trailing `/`).
    NotNormalPath {
        /// The key.
        key: String,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "MLflow key is empty"),
            KeyError::TooLong { prefix, length } => write!(
                f,
                "MLflow key `{prefix}...` is {length} characters long; at most {MAX_KEY_LENGTH} \
                 are allowed (use a shorter node id)"
            ),
            KeyError::InvalidCharacter { key, character } => write!(
                f,
                "MLflow key `{key}` contains {character:?}; keys may only contain letters, \
                 digits, `_`, `-`, `.`, `/` and spaces"
            ),
            KeyError::NotNormalPath { key } => write!(
                f,
                "MLflow key `{key}` has an empty, `.` or `..` path segment (or starts with `/` \
                 or `..`); MLflow rejects keys that would resolve to another path"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// Whether MLflow accepts `c` in a key (the portable set: `[A-Za-z0-9_\-. /]`).
pub fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/')
}

/// Checks a key as MLflow would, without changing it.
///
/// ```
/// use agent_profiler_mlflow::validate_key;
///
/// assert!(validate_key("node_plan/step-1_duration_ms").is_ok());
/// assert!(validate_key("node_plan:1_duration_ms").is_err()); // `:`
/// assert!(validate_key("node_a//b_duration_ms").is_err()); // would read as `node_a/b...`
/// ```
///
/// # Errors
/// The first rule the key breaks, as a [`KeyError`].
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if let Some(character) = key.chars().find(|&c| !is_key_char(c)) {
        return Err(KeyError::InvalidCharacter {
            key: key.to_owned(),
            character,
        });
    }
    if !is_normal_path(key) {
        return Err(KeyError::NotNormalPath {
            key: key.to_owned(),
        });
    }
    let length = key.chars().count();
    if length > MAX_KEY_LENGTH {
        return Err(KeyError::TooLong {
            prefix: key.chars().take(40).collect(),
            length,
        });
    }
    Ok(())
}

/// Whether `key` equals its POSIX normal form (what `posixpath.normpath` gives) and does not
/// start with `/` or `..`: MLflow's `path_not_unique` check.
fn is_normal_path(key: &str) -> bool {
    !key.starts_with("..")
        && key
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// Makes `key` acceptable to MLflow: every character outside `[A-Za-z0-9_\-. /]` becomes `_`,
/// and path segments that MLflow would normalise away (empty, `.`, `..`) become `_` or `__`.
/// Returns the key unchanged (borrowed) when it was already valid.
///
/// ```
/// use agent_profiler_mlflow::sanitize_key;
///
/// assert_eq!(sanitize_key("node_fetch:v2 (eu)_duration_ms").unwrap(), "node_fetch_v2 _eu__duration_ms");
/// assert_eq!(sanitize_key("node_a//b_duration_ms").unwrap(), "node_a/_/b_duration_ms");
/// assert_eq!(sanitize_key("node_ünï_cost_usd").unwrap(), "node__n__cost_usd");
/// ```
///
/// # Errors
/// [`KeyError::Empty`] for an empty key and [`KeyError::TooLong`] for one over
/// [`MAX_KEY_LENGTH`] characters: those are refused, not cut, since a cut key could merge
/// two series.
pub fn sanitize_key(key: &str) -> Result<Cow<'_, str>, KeyError> {
    match validate_key(key) {
        Ok(()) => return Ok(Cow::Borrowed(key)),
        Err(e @ (KeyError::Empty | KeyError::TooLong { .. })) => return Err(e),
        Err(_) => {}
    }
    let replaced: String = key
        .chars()
        .map(|c| if is_key_char(c) { c } else { '_' })
        .collect();
    let mut fixed = replaced
        .split('/')
        .map(|segment| match segment {
            "" | "." => "_",
            ".." => "__",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/");
    if fixed.starts_with("..") {
        fixed.replace_range(0..1, "_");
    }
    validate_key(&fixed)?;
    Ok(Cow::Owned(fixed))
}

/// The metric key of a node: `node_{node_id}_{suffix}`, sanitised with [`sanitize_key`].
///
/// ```
/// use agent_profiler_mlflow::node_metric_key;
///
/// assert_eq!(node_metric_key("retrieve", "duration_ms").unwrap(), "node_retrieve_duration_ms");
/// assert_eq!(node_metric_key("tool:search", "cost_usd").unwrap(), "node_tool_search_cost_usd");
/// ```
///
/// # Errors
/// [`KeyError::TooLong`] when the key would be over [`MAX_KEY_LENGTH`] characters.
pub fn node_metric_key(node_id: &str, suffix: &str) -> Result<String, KeyError> {
    let key = format!("node_{node_id}_{suffix}");
    Ok(sanitize_key(&key)?.into_owned())
}

/// The metric key of a node whose natural key ([`node_metric_key`]) is taken by another
/// node id (`a/../b` and `a/__/b` both sanitise to `node_a/__/b_...`): `node_{id} {hash}_{suffix}`,
/// sanitised, where `hash` is 8 hex digits of a hash of the id. The space sets it apart from
/// every natural key (node ids have no spaces), so the two series stay two.
///
/// ```
/// use agent_profiler_mlflow::{node_metric_key, node_metric_key_disambiguated};
///
/// assert_eq!(node_metric_key("a/../b", "duration_ms").unwrap(), "node_a/__/b_duration_ms");
/// let own = node_metric_key_disambiguated("a/../b", "duration_ms").unwrap();
/// assert!(own.starts_with("node_a/__/b ") && own.ends_with("_duration_ms"), "{own}");
/// ```
///
/// # Errors
/// [`KeyError::TooLong`] when the key would be over [`MAX_KEY_LENGTH`] characters.
pub fn node_metric_key_disambiguated(node_id: &str, suffix: &str) -> Result<String, KeyError> {
    // FNV-1a, 64 bits: stable across runs and builds.
    let hash = node_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let key = format!("node_{node_id} {:08x}_{suffix}", hash >> 32);
    Ok(sanitize_key(&key)?.into_owned())
}

/// `value` cut to at most `max_chars` characters (on a character boundary).
pub fn truncate_chars(value: &str, max_chars: usize) -> &str {
    match value.char_indices().nth(max_chars) {
        Some((byte, _)) => &value[..byte],
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys_pass_unchanged() {
        for key in [
            "a",
            "node_x_duration_ms",
            "a/b/c",
            "with space",
            "x.y-z",
            "a..b",
            "a/.b",
        ] {
            assert_eq!(sanitize_key(key).unwrap(), key, "{key}");
            assert!(matches!(sanitize_key(key).unwrap(), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn bad_characters_and_segments_are_repaired() {
        let cases = [
            ("a:b", "a_b"),
            ("a\nb", "a_b"),
            ("é", "_"),
            ("a//b", "a/_/b"),
            ("a/./b", "a/_/b"),
            ("a/../b", "a/__/b"),
            ("/a", "_/a"),
            ("a/", "a/_"),
            ("..a", "_.a"),
            ("..", "__"),
            (".", "_"),
            ("a/🦀/b", "a/_/b"),
        ];
        for (input, want) in cases {
            let got = sanitize_key(input).unwrap();
            assert_eq!(got, want, "{input:?}");
            validate_key(&got).unwrap();
        }
    }

    #[test]
    fn too_long_and_empty_are_refused() {
        assert_eq!(sanitize_key(""), Err(KeyError::Empty));
        let long = "x".repeat(MAX_KEY_LENGTH + 1);
        assert!(matches!(
            sanitize_key(&long),
            Err(KeyError::TooLong { length: 251, .. })
        ));
        assert!(sanitize_key(&"x".repeat(MAX_KEY_LENGTH)).is_ok());
        // Lengths are in characters: 250 two-byte characters are replaced one for one.
        assert_eq!(sanitize_key(&"é".repeat(250)).unwrap().len(), 250);
    }

    #[test]
    fn disambiguated_keys_differ_from_every_natural_key() {
        let natural = node_metric_key("a/__/b", "duration_ms").unwrap();
        assert_eq!(node_metric_key("a/../b", "duration_ms").unwrap(), natural);
        let own = node_metric_key_disambiguated("a/../b", "duration_ms").unwrap();
        assert_ne!(own, natural);
        assert!(own.contains(' '), "{own}");
        validate_key(&own).unwrap();
        // Stable, and one per id.
        assert_eq!(
            own,
            node_metric_key_disambiguated("a/../b", "duration_ms").unwrap()
        );
        assert_ne!(
            own,
            node_metric_key_disambiguated("a/./b", "duration_ms").unwrap()
        );
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
        assert_eq!(truncate_chars("abc", 0), "");
    }
}
