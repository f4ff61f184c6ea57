//! URL text: user info hidden for messages, and percent-decoding.

use std::borrow::Cow;

use base64::Engine as _;

use crate::secret::REDACTED;

/// `url` with its user info (`user:password@`) replaced by [`REDACTED`], for messages.
///
/// For a URL that parses, the user info is what precedes the last `@` of the authority
/// (between `://` and the first `/`, `?` or `#`): an `@` in the path or query is left. A
/// text that does not parse may have a password with a `/` or `#` in it, so everything
/// between the scheme (`xxx://` or `xxx:`) and the last `@` is hidden.
pub fn hide_userinfo(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    if reqwest::Url::parse(url.trim()).is_ok()
        && let Some(scheme_end) = url.find("://")
    {
        let start = scheme_end + 3;
        let rest = &url[start..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        return match authority.rfind('@') {
            Some(at) => format!("{}{REDACTED}{}", &url[..start], &rest[at..]),
            None => url.to_owned(),
        };
    }
    let start = url
        .find("://")
        .map(|i| i + 3)
        .or_else(|| url.find(':').map(|i| i + 1))
        .filter(|&i| i <= at)
        .unwrap_or(0);
    format!("{}{REDACTED}{}", &url[..start], &url[at..])
}

/// The secrets in `url`'s user info, for a [`Redactor`](crate::secret::Redactor): the user
/// info as written (`user:password`), the password as written and percent-decoded, and both
/// as a basic `Authorization` header carries them (base64); user
/// info without a password (often a token) whole. The user name beside a password is no
/// secret (and a short one would garble every message). Empty without user info.
pub fn userinfo_secrets(url: &str) -> Vec<String> {
    if let Ok(parsed) = reqwest::Url::parse(url.trim())
        && let Some(password) = parsed.password()
    {
        let mut secrets = vec![
            format!("{}:{password}", parsed.username()),
            password.to_owned(),
        ];
        let decode = |s: &str| percent_decode(s).unwrap_or_else(|| s.to_owned());
        let decoded = decode(password);
        // As a basic authorization header carries them (a server may quote it back).
        let user_pass = format!("{}:{decoded}", decode(parsed.username()));
        secrets.push(base64::engine::general_purpose::STANDARD.encode(user_pass));
        secrets.push(decoded);
        secrets.retain(|s| !s.is_empty());
        return secrets;
    }
    // Not a URL with a password: whatever `hide_userinfo` hides, if anything.
    let hidden = hide_userinfo(url);
    let Some(start) = hidden.find(REDACTED) else {
        return Vec::new();
    };
    let end = url.len() - (hidden.len() - start - REDACTED.len());
    url.get(start..end)
        .filter(|s| !s.is_empty() && hidden != url)
        .map(str::to_owned)
        .into_iter()
        .collect()
}

/// Percent-decodes a URL component (`%XX` escapes; a `%` not followed by two hex digits is
/// kept as is); `None` when the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_hidden() {
        assert_eq!(
            hide_userinfo("http://u:p@h:1/v1/traces?a=b@c"),
            "http://***@h:1/v1/traces?a=b@c"
        );
        assert_eq!(hide_userinfo("http://h/x@y"), "http://h/x@y");
        assert_eq!(hide_userinfo("https://h:1"), "https://h:1");
        // Not URLs: everything up to the last `@` after the scheme goes.
        assert_eq!(hide_userinfo("u:hunter2@ bad"), "u:***@ bad");
        assert_eq!(hide_userinfo("http://u:pa#ss@h"), "http://***@h");
        assert_eq!(hide_userinfo("ftp://u:pw@x/v1"), "ftp://***@x/v1");
    }

    #[test]
    fn userinfo_secrets_are_the_password_in_every_form() {
        assert_eq!(
            userinfo_secrets("http://u:pa%40ss@h:1/v1"),
            ["u:pa%40ss", "pa%40ss", "dTpwYUBzcw==", "pa@ss"]
        );
        // User info without a password may be a token: all of it.
        assert_eq!(userinfo_secrets("http://t0ken@h/v1"), ["t0ken"]);
        assert!(userinfo_secrets("http://h/v1").is_empty());
        assert_eq!(userinfo_secrets("u:hunter2@ bad"), ["hunter2"]);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%3d").as_deref(), Some("a b="));
        assert_eq!(percent_decode("pa%40ss").as_deref(), Some("pa@ss"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%4").as_deref(), Some("%4"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
