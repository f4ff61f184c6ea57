//! The arguments of `#[profile_node(...)]`: parsing, and the rules a node id must follow.
//!
//! Every mistake becomes one `syn::Error` at the span of the offending tokens, with a message
//! that says what to write instead. Parsing stops at the first mistake: later arguments may
//! only look wrong because of it, and a cascade of guesses helps nobody.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Lit, LitStr, Path, Token};

/// `MLflow` rejects metric keys longer than this many characters.
const MLFLOW_KEY_LIMIT: usize = 250;

/// The longest metric key a node gets is `node_{id}_duration_ms`; the id must leave room for
/// the prefix and the suffix. With `MLflow`'s 250 characters that is 233.
pub(crate) const MAX_ID_LEN: usize = MLFLOW_KEY_LIMIT - "node_".len() - "_duration_ms".len();

/// What a full, correct invocation looks like; quoted by the messages that list arguments.
const EXAMPLE: &str = "`#[profile_node(\"my_node\", crate = my_lib::profiler)]`";

/// The parsed arguments of one `#[profile_node(...)]`.
pub(crate) struct Args {
    /// The node id, already checked against the id rules. Re-emitted as written, so the
    /// `CallSite` in the expansion points back at the user's literal.
    pub(crate) id: LitStr,
    /// `crate = path`: how the expansion reaches the runtime. `None` means `::agent_profiler`.
    pub(crate) krate: Option<Path>,
}

impl Args {
    /// Parses the attribute's arguments. An empty argument list (a bare `#[profile_node]`)
    /// has no tokens to point at, so its error goes on the attribute itself.
    pub(crate) fn parse_tokens(args: TokenStream) -> syn::Result<Self> {
        if args.is_empty() {
            return Err(missing_id(Span::call_site()));
        }
        syn::parse2(args)
    }
}

fn missing_id(span: Span) -> syn::Error {
    syn::Error::new(
        span,
        "missing node id: name the node with a string literal, as in \
         `#[profile_node(\"retrieve\")]`",
    )
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut id: Option<LitStr> = None;
        let mut krate: Option<Path> = None;
        while !input.is_empty() {
            if input.peek(Token![crate]) {
                let (kw, path) = parse_crate_arg(input)?;
                if krate.is_some() {
                    return Err(syn::Error::new_spanned(
                        quote::quote!(#kw = #path),
                        "duplicate `crate` argument: give `crate = path` once",
                    ));
                }
                krate = Some(path);
            } else if input.peek(LitStr) {
                let lit: LitStr = input.parse()?;
                if id.is_some() {
                    return Err(syn::Error::new(
                        lit.span(),
                        "a second node id: a function is one node, so keep one string \
                         literal and remove this one",
                    ));
                }
                check_id(&lit.value()).map_err(|msg| syn::Error::new(lit.span(), msg))?;
                id = Some(lit);
            } else if input.peek(Lit) {
                let lit: Lit = input.parse()?;
                return Err(non_string_literal(&lit, id.is_some()));
            } else {
                return Err(other_argument(input, id.is_some()));
            }

            // Arguments are separated by commas; a trailing comma is fine.
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error(format!(
                    "expected `,` between arguments: separate them with commas, as in {EXAMPLE}"
                )));
            }
            input.parse::<Token![,]>()?;
        }
        match id {
            Some(id) => Ok(Args { id, krate }),
            // Only `crate = ...` was given.
            None => Err(missing_id(Span::call_site())),
        }
    }
}

/// Parses `crate = some::path`, having peeked the `crate` keyword.
fn parse_crate_arg(input: ParseStream) -> syn::Result<(Token![crate], Path)> {
    const HINT: &str = "write the path through which this crate reaches agent-profiler, as in \
                        `crate = my_lib::profiler`";
    let kw: Token![crate] = input.parse()?;
    let Some(eq) = input.parse::<Option<Token![=]>>()? else {
        return Err(syn::Error::new(
            kw.span,
            format!("`crate` needs a path after `=`: {HINT}"),
        ));
    };
    if input.is_empty() || input.peek(Token![,]) {
        return Err(syn::Error::new_spanned(
            quote::quote!(#kw #eq),
            format!("missing path after `crate =`: {HINT}"),
        ));
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`crate` takes a path, not a string: write `crate = {}` without the quotes",
                lit.value()
            ),
        ));
    }
    // `parse_mod_style`: a plain module path, no generic arguments (`crate` is allowed as
    // its first segment, for a library that profiles its own functions).
    let path = Path::parse_mod_style(input).map_err(|e| {
        syn::Error::new(e.span(), format!("expected a path after `crate =`: {HINT}"))
    })?;
    Ok((kw, path))
}

/// The error for a literal that is not a string (`42`, `b"x"`, `'x'`, `true`).
fn non_string_literal(lit: &Lit, have_id: bool) -> syn::Error {
    if have_id {
        return unexpected_argument(lit);
    }
    let text = match lit {
        Lit::ByteStr(s) => String::from_utf8_lossy(&s.value()).into_owned(),
        Lit::Char(c) => c.value().to_string(),
        other => other.to_token_stream().to_string(),
    };
    syn::Error::new(
        lit.span(),
        format!("the node id must be a string literal: write `#[profile_node({text:?})]`"),
    )
}

/// The error for an argument that is neither a literal nor `crate = ...`: an expression used
/// as the id (`NAME`, `ids::RETRIEVE`, `concat!(..)`) or an argument this macro does not have
/// (`name = "x"`, `skip(a)`, or any bare word once the id is given).
fn other_argument(input: ParseStream, have_id: bool) -> syn::Error {
    let Ok(expr) = input.parse::<Expr>() else {
        // Not even an expression (say `#[profile_node(=)]`): point at the first token.
        return input.error(format!(
            "expected a node id as a string literal, or `crate = path`, as in {EXAMPLE}"
        ));
    };
    // `key = value` and `key(...)` read as arguments this macro does not know.
    let key = match &expr {
        Expr::Assign(assign) => Some(&*assign.left),
        Expr::Call(call) => Some(&*call.func),
        Expr::Path(_) if have_id => Some(&expr),
        _ => None,
    };
    if let Some(key) = key {
        return syn::Error::new_spanned(
            &expr,
            format!("unknown argument `{}`: {ACCEPTED}", source_text(key)),
        );
    }
    if have_id {
        return unexpected_argument(&expr);
    }
    syn::Error::new_spanned(
        &expr,
        format!(
            "the node id must be a string literal, not `{}`: ids are checked at compile \
             time, so constants and expressions are not accepted; write the id itself, as \
             in `#[profile_node(\"retrieve\")]`",
            source_text(&expr)
        ),
    )
}

/// What the argument errors list: everything `#[profile_node]` accepts.
const ACCEPTED: &str = "`#[profile_node]` accepts a node id (a string literal) and \
                        `crate = path`, as in `#[profile_node(\"my_node\", crate = my_lib::profiler)]`";

fn unexpected_argument(tokens: &dyn ToTokens) -> syn::Error {
    syn::Error::new_spanned(
        tokens,
        format!("unexpected argument `{}`: {ACCEPTED}", source_text(tokens)),
    )
}

/// Tokens printed roughly as written (`a::b` rather than the token printer's `a :: b`).
fn source_text(tokens: &dyn ToTokens) -> String {
    tokens
        .to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" !", "!")
        .replace(" (", "(")
        .replace(" , ", ", ")
}

/// Checks a node id against the rules in DESIGN.md: non-empty, only ASCII letters, digits and
/// `_ - . /`, and short enough for `MLflow`'s key limit. Returns the message for the first rule
/// broken. (`MLflow` itself also accepts spaces; ids do not, so they stay usable as words in
/// logs, file names and shell commands.)
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(
            "the node id is empty: name the node, as in `#[profile_node(\"retrieve\")]`".into(),
        );
    }
    let mut bad: Vec<char> = Vec::new();
    for c in id.chars() {
        if !is_id_char(c) && !bad.contains(&c) {
            bad.push(c);
        }
    }
    if !bad.is_empty() {
        let listed: Vec<String> = bad.iter().map(|&c| describe_char(c)).collect();
        let suggestion: String = id
            .chars()
            .map(|c| if is_id_char(c) { c } else { '_' })
            .collect();
        return Err(format!(
            "the node id contains {}, which {} not allowed: use only ASCII letters, digits, \
             `_`, `-`, `.` and `/`, as in `{suggestion:?}`",
            join_and(&listed),
            if bad.len() == 1 { "is" } else { "are" }
        ));
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "the node id is {} characters long; the limit is {MAX_ID_LEN}, so that the \
             metric key `node_{{id}}_duration_ms` fits MLflow's {MLFLOW_KEY_LIMIT}-character \
             limit: shorten the id",
            id.len()
        ));
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
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
    use super::{Args, MAX_ID_LEN, check_id};
    use quote::quote;

    #[test]
    fn limit_leaves_room_for_the_longest_key() {
        assert_eq!(MAX_ID_LEN, 233);
        let id = "a".repeat(MAX_ID_LEN);
        assert_eq!(format!("node_{id}_duration_ms").len(), 250);
        assert!(check_id(&id).is_ok());
        let err = check_id(&"a".repeat(MAX_ID_LEN + 1)).unwrap_err();
        assert!(err.contains("234 characters"), "{err}");
        assert!(err.contains("limit is 233"), "{err}");
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
            assert_eq!(check_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn empty_id_is_rejected() {
        assert!(check_id("").unwrap_err().contains("empty"));
    }

    #[test]
    fn forbidden_characters_are_named_and_replaced_in_the_suggestion() {
        let err = check_id("my node").unwrap_err();
        assert!(err.contains("contains a space"), "{err}");
        assert!(err.contains("\"my_node\""), "{err}");

        let err = check_id("a:b!c:").unwrap_err();
        assert!(err.contains("':' and '!'"), "{err}");
        assert!(err.contains("\"a_b_c_\""), "{err}");

        let err = check_id("tab\there").unwrap_err();
        assert!(err.contains("'\\t' (U+0009)"), "{err}");

        let err = check_id("café").unwrap_err();
        assert!(err.contains("'é'"), "{err}");
    }

    #[test]
    fn forbidden_characters_are_reported_before_length() {
        let long_and_bad = format!("{} x", "a".repeat(300));
        assert!(check_id(&long_and_bad).unwrap_err().contains("space"));
    }

    fn parse_err(tokens: proc_macro2::TokenStream) -> String {
        match Args::parse_tokens(tokens) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn arguments_parse() {
        let args = Args::parse_tokens(quote!("x")).unwrap();
        assert_eq!(args.id.value(), "x");
        assert!(args.krate.is_none());

        let args = Args::parse_tokens(quote!("x", crate = my_lib::profiler,)).unwrap();
        let path = args.krate.unwrap();
        assert_eq!(quote!(#path).to_string(), "my_lib :: profiler");

        let args = Args::parse_tokens(quote!(crate = crate, "x")).unwrap();
        assert_eq!(args.id.value(), "x");
    }

    #[test]
    fn argument_errors() {
        assert!(parse_err(quote!()).contains("missing node id"));
        assert!(parse_err(quote!(crate = x)).contains("missing node id"));
        assert!(parse_err(quote!(NAME)).contains("not `NAME`"));
        assert!(parse_err(quote!(42)).contains("#[profile_node(\"42\")]"));
        assert!(parse_err(quote!("a", "b")).contains("second node id"));
        assert!(parse_err(quote!("a", crate = x, crate = y)).contains("duplicate `crate`"));
        assert!(parse_err(quote!("a", level = "info")).contains("unknown argument `level`"));
        assert!(parse_err(quote!("a", skip(x))).contains("unknown argument `skip`"));
        assert!(parse_err(quote!("a", flag)).contains("unknown argument `flag`"));
        assert!(parse_err(quote!("a", 5)).contains("unexpected argument `5`"));
        assert!(parse_err(quote!(ids::RETRIEVE)).contains("not `ids::RETRIEVE`"));
        let err = parse_err(quote!(concat!("a", "b")));
        assert!(err.contains("not `concat!(\"a\", \"b\")`"), "{err}");
        assert!(parse_err(quote!("a", crate =)).contains("missing path"));
        assert!(parse_err(quote!("a", crate)).contains("needs a path"));
        assert!(parse_err(quote!("a", crate = "x")).contains("without the quotes"));
        assert!(parse_err(quote!("a" crate = x)).contains("expected `,`"));
    }
}
