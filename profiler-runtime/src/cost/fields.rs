//! Typed reading of JSON values with errors that name the field: the provider usage shapes
//! are plain `#[derive(Deserialize)]` structs, read through [`read`], which says where a
//! count is missing or wrong (`usage.prompt_tokens_details.cached_tokens`). serde's own
//! messages name a missing field but not one of the wrong type, and this crate depends on
//! serde and serde_json only, so the deserializer here ([`At`]) keeps track of the path.

use std::fmt;

use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Unexpected, Visitor};
use serde_json::Value;

use super::CostError;

/// A token count: a non-negative integer, also written as an integral float (`12.0`, exact
/// up to 2^53). A null count is an absent one.
#[derive(Clone, Copy)]
pub(super) struct Count(pub(super) u64);

/// An optional count, zero when absent.
pub(super) fn n(count: Option<Count>) -> u64 {
    count.map_or(0, |Count(c)| c)
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = Count;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token count (a non-negative integer)")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Count, E> {
                Ok(Count(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Count, E> {
                u64::try_from(n)
                    .map(Count)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(n), &self))
            }

            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Count, E> {
                if f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0 {
                    Ok(Count(f as u64))
                } else {
                    Err(E::invalid_value(Unexpected::Float(f), &self))
                }
            }

            /// `null`: no count, which a required count reports as missing.
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Err(E::missing_field(""))
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// Reads `T` from `value`, found at `path` in the response (`""` for the response itself).
/// A required field (not an `Option`) that is absent or null is [`CostError::MissingUsage`],
/// anything else wrong [`CostError::Malformed`]; both name the field.
pub(super) fn read<'a, T: Deserialize<'a>>(value: &'a Value, path: &str) -> Result<T, CostError> {
    T::deserialize(At {
        value,
        path: path.to_owned(),
    })
    .map_err(|e| {
        let path = e.path.unwrap_or_default();
        if e.missing {
            CostError::MissingUsage {
                looked_for: format!("`{path}`"),
            }
        } else {
            CostError::Malformed {
                reason: format!("`{path}`: {}", e.message),
            }
        }
    })
}

/// A JSON value and its path in the response: a serde deserializer that puts the path of
/// the innermost field being read into each error.
struct At<'a> {
    value: &'a Value,
    path: String,
}

impl<'de> Deserializer<'de> for At<'de> {
    type Error = FieldError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        let result = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(number) => {
                if let Some(u) = number.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = number.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(number.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            // No usage field is an array (arrays of details are skipped unread).
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor)),
            Value::Object(map) => visitor.visit_map(Fields {
                entries: map.iter(),
                value: None,
                path: &self.path,
            }),
        };
        result.map_err(|e| e.at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        if self.value.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// Fields no struct names (texts, arrays of per-modality details) are skipped unread.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, FieldError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
    }
}

/// The fields of a JSON object, each read with its own path.
struct Fields<'a, 'p> {
    entries: serde_json::map::Iter<'a>,
    /// The value of the key just read.
    value: Option<(&'a str, &'a Value)>,
    path: &'p str,
}

impl<'de> MapAccess<'de> for Fields<'de, '_> {
    type Error = FieldError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FieldError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FieldError> {
        let Some((key, value)) = self.value.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        seed.deserialize(At {
            value,
            path: field_path(self.path, key),
        })
    }
}

/// An error reading a usage object, with the path of the field it is about.
#[derive(Debug)]
struct FieldError {
    /// A required count is absent or null; otherwise a value is wrong.
    missing: bool,
    /// serde's message; for a missing count, the field's name (empty when it is null).
    message: String,
    /// Where: set by the innermost [`At`] the error passes through.
    path: Option<String>,
}

impl FieldError {
    fn at(mut self, path: &str) -> Self {
        if self.path.is_none() {
            self.path = Some(if self.missing {
                field_path(path, &self.message)
            } else {
                path.to_owned()
            });
        }
        self
    }
}

impl de::Error for FieldError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        FieldError {
            missing: false,
            message: message.to_string(),
            path: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        FieldError {
            missing: true,
            message: field.to_owned(),
            path: None,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// `path.key`, or `key` at the top level (or `path` for an empty key).
fn field_path(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (_, true) => path.to_owned(),
        _ => format!("{path}.{key}"),
    }
}
