//! URL text: user info hidden for messages, and percent-decoding.

use std::borrow::Cow;

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
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%3d").as_deref(), Some("a b="));
        assert_eq!(percent_decode("pa%40ss").as_deref(), Some("pa@ss"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%4").as_deref(), Some("%4"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
