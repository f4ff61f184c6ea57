//! Settings read from environment variables, the same way by every output.

/// What [`parse_bool`] accepts, for the caller's error message.
pub const BOOL_EXPECTED: &str = "one of true, false, 1, 0 (any case)";

/// A boolean variable: `true`/`1` or `false`/`0`, in any case, blanks around ignored;
/// `None` for anything else (the caller reports it with [`BOOL_EXPECTED`]).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_any_case_with_blanks() {
        for (value, want) in [
            ("true", Some(true)),
            (" TRUE ", Some(true)),
            ("1", Some(true)),
            ("False", Some(false)),
            ("0\n", Some(false)),
            ("yes", None),
            ("", None),
        ] {
            assert_eq!(parse_bool(value), want, "{value:?}");
        }
    }
}
