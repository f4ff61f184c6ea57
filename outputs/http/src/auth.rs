//! How requests authenticate: the `Authorization` header of a bearer token or of HTTP basic
//! credentials, and header values marked sensitive.

use base64::Engine as _;
use reqwest::header::HeaderValue;

use crate::secret::{Redactor, Secret};

/// How requests authenticate: basic when a username and a password are given, else a bearer
/// token, else nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP basic: `Authorization: Basic <base64 of username:password>`.
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password.
        password: Secret,
    },
}

impl Auth {
    /// The `Authorization` header value, if any: `Bearer <token>` or `Basic <base64>`
    /// (standard alphabet, padded). A secret.
    pub fn header_value(&self) -> Option<Secret> {
        match self {
            Auth::None => None,
            Auth::Bearer(token) => Some(bearer(token)),
            Auth::Basic { username, password } => Some(Secret::new(format!(
                "Basic {}",
                basic_credentials(username, password)
            ))),
        }
    }

    /// A redactor of everything that gives these credentials away: the token or the
    /// password, and the encoded form of basic credentials.
    pub fn redactor(&self) -> Redactor {
        match self {
            Auth::None => Redactor::default(),
            Auth::Bearer(token) => Redactor::new([token.expose()]),
            Auth::Basic { username, password } => Redactor::new([
                password.expose().to_owned(),
                basic_credentials(username, password),
            ]),
        }
    }
}

/// `Bearer <token>`, the `Authorization` header value of a token (a secret).
pub fn bearer(token: &Secret) -> Secret {
    Secret::new(format!("Bearer {}", token.expose()))
}

/// `username:password` in base64, as a basic `Authorization` header carries them.
fn basic_credentials(username: &str, password: &Secret) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()))
}

/// `value` as a header value marked sensitive (never in reqwest's `Debug`, never indexed by
/// HTTP/2 compression); `None` when it has characters a header cannot carry.
pub fn sensitive_header(value: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(username: &str, password: &str) -> Auth {
        Auth::Basic {
            username: username.to_owned(),
            password: Secret::new(password),
        }
    }

    #[test]
    fn header_values() {
        assert_eq!(Auth::None.header_value(), None);
        let bearer = Auth::Bearer(Secret::new("tok")).header_value().unwrap();
        assert_eq!(bearer.expose(), "Bearer tok");
        let header = basic("user", "pw").header_value().unwrap();
        assert_eq!(header.expose(), "Basic dXNlcjpwdw==");
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (password, want) in [
            ("", "dTo="),
            ("f", "dTpm"),
            ("fo", "dTpmbw=="),
            ("foo", "dTpmb28="),
            ("foob", "dTpmb29i"),
        ] {
            assert_eq!(basic_credentials("u", &Secret::new(password)), want);
        }
    }

    #[test]
    fn secrets_are_redacted_with_their_basic_form() {
        let auth = basic("u", "hunter2");
        let header = auth.header_value().unwrap();
        let cleaned = auth
            .redactor()
            .clean(&format!("echo hunter2 and {}", header.expose()));
        assert_eq!(cleaned, "echo *** and Basic ***");
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn sensitive_headers() {
        assert!(sensitive_header("Bearer x").unwrap().is_sensitive());
        assert!(sensitive_header("bad\nvalue").is_none());
    }
}
