//! The arguments of `#[profile_node(...)]`: parsing, and the node id checked against the
//! rules every entry point shares (`node_id.rs` of the runtime, compiled into this crate).
//!
//! Every mistake becomes one `syn::Error` at the span of the offending tokens, with a message
//! that says what to write instead. Parsing stops at the first mistake: later arguments may
//! only look wrong because of it, and a cascade of guesses helps nobody.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Lit, LitStr, Path, Token};

use crate::node_id::{NodeIdError, check_node_id};

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

/// Checks a node id against the shared rules ([`check_node_id`]) and returns the message for
/// the first rule broken: the shared wording, which for an empty id also shows the attribute
/// written out, since here the fix is in the attribute.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    check_node_id(id).map_err(|e| match e {
        NodeIdError::Empty => format!("{e}, as in `#[profile_node(\"retrieve\")]`"),
        _ => e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::{Args, check_id};
    use crate::node_id::{MAX_NODE_ID_LEN, check_node_id};
    use quote::quote;

    #[test]
    fn id_messages_are_the_shared_ones() {
        // The rules and their tests live in `node_id.rs`; here, only what the macro adds.
        assert_eq!(
            check_id(""),
            Err(
                "the node id is empty: name the node, as in `#[profile_node(\"retrieve\")]`".into()
            )
        );
        assert_eq!(check_id("agents/planner.v2"), Ok(()));
        let err = check_id("fetch docs").unwrap_err();
        assert_eq!(err, check_node_id("fetch docs").unwrap_err().to_string());
        assert!(err.contains("as in `\"fetch_docs\"`"), "{err}");
        let long = "a".repeat(MAX_NODE_ID_LEN + 1);
        assert!(check_id(&long).unwrap_err().contains("limit is 233"));
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
