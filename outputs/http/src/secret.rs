//! Secrets (tokens, passwords, API keys, header values) and the one way they are hidden:
//! [`Secret`] never shows its value in `Debug`, and a [`Redactor`] replaces every secret it
//! knows by [`REDACTED`] in text that came from outside (error bodies, transport errors)
//! before that text reaches an error, a statistic or a warning.

use std::fmt;

/// What stands in for a secret wherever one would show: in `Debug` output, in messages
/// cleaned by a [`Redactor`], and for the user info of a URL
/// ([`hide_userinfo`](crate::url::hide_userinfo)).
pub const REDACTED: &str = "***";

/// A password, token, API key or header value. Its `Debug` shows [`REDACTED`]; it has no
/// `Display`, and its value is read only to be sent ([`expose`](Self::expose)).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: only for the request that carries it (a header marked sensitive).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

/// Replaces known secrets by [`REDACTED`] in text that came from outside.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another is removed whole.
    secrets: Vec<Secret>,
}

impl Redactor {
    /// A redactor of `secrets`, whatever their length: a short password is still a
    /// password, and a message garbled by its removal is better than one that gives it away.
    /// So only secrets go in, never ids that happen to travel in a header.
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Self {
        let mut secrets: Vec<Secret> = secrets
            .into_iter()
            .filter(|s| !s.as_ref().is_empty())
            .map(|s| Secret::new(s.as_ref()))
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// `text` with every occurrence of every secret replaced by [`REDACTED`].
    pub fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.expose()) {
                out = out.replace(secret.expose(), REDACTED);
            }
        }
        out
    }

    /// The start of `text` for a message (an error body, say): cleaned of secrets (before it
    /// is cut, so that no part of one is left), control characters as spaces, blanks around
    /// removed, at most `max_chars` characters, and `…` where it was cut.
    pub fn excerpt(&self, text: &str, max_chars: usize) -> String {
        let cleaned = self.clean(text);
        let printable: String = cleaned
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let printable = printable.trim();
        let mut out: String = printable.chars().take(max_chars).collect();
        if printable.chars().count() > max_chars {
            out.push('…');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn the_longest_secret_is_removed_whole_and_short_ones_too() {
        let r = Redactor::new(["s3cr3t", "s3cr3t-token", "pw", ""]);
        assert_eq!(
            r.clean("refused Bearer s3cr3t-token here, s3cr3t there, pw"),
            "refused Bearer *** here, *** there, ***"
        );
        assert_eq!(Redactor::default().clean("as is"), "as is");
    }

    #[test]
    fn excerpts_are_short_printable_and_clean() {
        let r = Redactor::default();
        assert_eq!(
            r.excerpt("  {\"detail\": \"bad\"}\n", 300),
            "{\"detail\": \"bad\"}"
        );
        let long = "x".repeat(1000);
        assert_eq!(r.excerpt(&long, 300).len(), 300 + 3);
        assert!(r.excerpt(&long, 300).ends_with('…'));
        assert_eq!(r.excerpt("\u{0}\u{1}a", 300), "a");
        // Cleaned before it is cut: no end of a secret is left at the cut.
        let r = Redactor::new(["s3cr3t-t0ken"]);
        assert_eq!(r.excerpt("key s3cr3t-t0ken", 8), "key ***");
    }
}
