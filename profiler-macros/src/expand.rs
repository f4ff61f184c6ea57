//! Code generation for `#[profile_node]`: which item was annotated, and the new function body.
//!
//! Only the function's block is replaced. Attributes, visibility and signature are re-emitted
//! from the parsed tokens, which keep their spans, so errors in user code point where they
//! did before and the function's API is exactly what the user wrote. The original body is
//! kept as raw tokens (it is parsed only to look at its tail when that could be an `async`
//! block), so no syntax is lost or re-printed on the way through.
//!
//! Generated local variables use `Span::mixed_site()`, so user code cannot name them (and a
//! parameter called `__ap_ret` does not clash with ours). Generated items (the call-site
//! `static`, the runtime `use`) cannot be hidden that way; they sit in blocks that enclose no
//! user statement, or wrap the user's block so that its own items live in an inner scope.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, FnArg, GenericArgument, Item, Pat, Path, PathArguments, ReturnType,
    Signature, Stmt, Token, Type, TypeInfer, TypeParamBound, Visibility, braced, token,
};

use crate::attr::Args;

/// The entry point: validates arguments and item, then expands (or, with the `noop` feature,
/// re-emits the item untouched).
pub(crate) fn profile_node(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = Args::parse_tokens(args);
    let func = Parser::parse2(parse_fn, item.clone());
    match (args, func) {
        (Ok(args), Ok(func)) => {
            if cfg!(feature = "noop") {
                item
            } else {
                func.expand(&args)
            }
        }
        (args, func) => {
            // One error per mistake: a bad argument and a bad item are two mistakes.
            let mut errors = args.err();
            if let Err(e) = func {
                match &mut errors {
                    Some(first) => first.combine(e),
                    None => errors = Some(e),
                }
            }
            let errors = errors.map(|e| e.to_compile_error());
            // Re-emit the item as written: editors keep completing it and callers keep
            // compiling, so the only errors the user sees are ours.
            quote!(#item #errors)
        }
    }
}

/// A function with a body, split into the parts that are re-emitted and the body.
pub(crate) struct FnItem {
    outer_attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    brace: token::Brace,
    /// `#![...]` at the top of the body; they move to the top of the new body.
    inner_attrs: Vec<Attribute>,
    /// The statements of the body, as written.
    body: TokenStream,
}

/// Parses the annotated item as a function with a body, or explains why it is not one.
fn parse_fn(input: ParseStream) -> syn::Result<FnItem> {
    // Decide on a fork whether this is a function, so that anything else can be parsed from
    // the start as an `Item` and named in the error.
    let ahead = input.fork();
    ahead.call(Attribute::parse_outer)?;
    ahead.parse::<Visibility>()?;
    if ahead.parse::<Signature>().is_err() {
        return Err(not_a_function(input));
    }

    let outer_attrs = input.call(Attribute::parse_outer)?;
    let vis: Visibility = input.parse()?;
    let sig: Signature = input.parse()?;
    if let Some(constness) = sig.constness {
        return Err(syn::Error::new(
            constness.span,
            "`#[profile_node]` cannot time a `const fn`: timing reads a clock at run time, \
             which const evaluation cannot do; remove `const`, or profile the function that \
             calls this one",
        ));
    }
    if input.peek(Token![;]) {
        return Err(syn::Error::new_spanned(
            &sig,
            "`#[profile_node]` needs a function body to time, and this declaration has none: \
             put the attribute on the method in each `impl` block, or give the trait method a \
             default body here",
        ));
    }
    let content;
    let brace = braced!(content in input);
    let inner_attrs = content.call(Attribute::parse_inner)?;
    let body: TokenStream = content.parse()?;
    Ok(FnItem {
        outer_attrs,
        vis,
        sig,
        brace,
        inner_attrs,
        body,
    })
}

/// The error for an item that is not a function, naming what it is.
fn not_a_function(input: ParseStream) -> syn::Error {
    const GENERAL: &str = "put it on the functions or methods whose calls you want to time";
    let item = match input.fork().parse::<Item>() {
        Ok(item) => item,
        Err(e) => return e,
    };
    let (what, hint, tokens): (&str, &str, TokenStream) = match &item {
        Item::Struct(i) => ("a struct", GENERAL, pair(&i.struct_token, &i.ident)),
        Item::Enum(i) => ("an enum", GENERAL, pair(&i.enum_token, &i.ident)),
        Item::Union(i) => ("a union", GENERAL, pair(&i.union_token, &i.ident)),
        Item::Impl(i) => {
            let (impl_token, self_ty) = (&i.impl_token, &i.self_ty);
            (
                "an `impl` block",
                "put it on each method inside the block that you want to time",
                quote!(#impl_token #self_ty),
            )
        }
        Item::Trait(i) => (
            "a trait",
            "put it on the methods in the trait's `impl` blocks, or on default methods",
            pair(&i.trait_token, &i.ident),
        ),
        Item::Mod(i) => (
            "a module",
            "put it on the functions inside the module",
            pair(&i.mod_token, &i.ident),
        ),
        Item::Const(i) => ("a constant", GENERAL, pair(&i.const_token, &i.ident)),
        Item::Static(i) => ("a static", GENERAL, pair(&i.static_token, &i.ident)),
        Item::Type(i) => ("a type alias", GENERAL, pair(&i.type_token, &i.ident)),
        Item::Use(i) => (
            "a `use` declaration",
            GENERAL,
            i.use_token.to_token_stream(),
        ),
        other => {
            let first = other.to_token_stream().into_iter().next();
            ("this item", GENERAL, first.into_iter().collect())
        }
    };
    syn::Error::new_spanned(
        tokens,
        format!("`#[profile_node]` applies to functions only, not to {what}: {hint}"),
    )
}

/// `let _ = &a;` for each binding of the parameters (keeping their `#[cfg]`s), in reverse
/// order, at the top of the closure that runs the body. A `move` closure that mentions a whole
/// parameter captures the whole parameter, and it drops its captures in the order it first
/// mentioned them; so the parameters drop as the function's own do (reverse order of
/// declaration, each whole), instead of only the parts the body uses, in the order it uses them.
fn param_captures(sig: &Signature) -> TokenStream {
    let mut captures = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(param) = input else {
            continue;
        };
        let cfgs: Vec<&Attribute> = param
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .collect();
        let mut bindings = Vec::new();
        pattern_bindings(&param.pat, &mut bindings);
        for ident in bindings {
            captures.push(quote_spanned! {Span::mixed_site()=>
                #(#cfgs)*
                let _ = &#ident;
            });
        }
    }
    captures.into_iter().rev().collect()
}

/// The by-value bindings a parameter pattern introduces (`ref` bindings borrow the argument
/// in place and are left alone).
fn pattern_bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => out.push(p.ident.clone()),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| pattern_bindings(&f.pat, out)),
        Pat::Slice(p) => p.elems.iter().for_each(|e| pattern_bindings(e, out)),
        Pat::Reference(p) => pattern_bindings(&p.pat, out),
        Pat::Paren(p) => pattern_bindings(&p.pat, out),
        Pat::Type(p) => pattern_bindings(&p.pat, out),
        _ => {}
    }
}

/// Two tokens (or token groups) side by side, for an error span that covers both.
fn pair(a: &dyn ToTokens, b: &dyn ToTokens) -> TokenStream {
    let mut tokens = a.to_token_stream();
    b.to_tokens(&mut tokens);
    tokens
}

/// How a function's time is taken; decided from its signature and the tail of its body.
enum Shape<'a> {
    /// `async fn` returning the type (`None`: `()`): the body runs inside a `NodeFuture`,
    /// timed from first poll to completion.
    Async(Option<&'a Type>),
    /// A non-async fn whose body ends in an `async` block, possibly as `Box::pin(async ..)`
    /// (what `#[async_trait]` leaves behind): that block is wrapped in a `NodeFuture`, so the
    /// future's execution is timed, not its construction.
    AsyncTail {
        stmts: Vec<Stmt>,
        tail: Expr,
        ret: &'a Type,
    },
    /// Returns `()` or `!`: a guard at the top of the block; there is no value to classify.
    Unit,
    /// `#[track_caller]` with a value: no closure (it would report its own location instead
    /// of the caller's), so only the tail value is classified; `return` and `?` count as ok.
    TrackCaller(&'a Type),
    /// Any other sync fn: the body runs in a closure, so `return` and `?` hand their value
    /// back to the guard, which classifies it.
    Closure(&'a Type),
}

impl FnItem {
    fn expand(&self, args: &Args) -> TokenStream {
        // The user's block, with its own braces (and their span, so "expected `u32`, found
        // `()`" for a missing tail points at the body as it does without the macro).
        let mut user_block = Group::new(Delimiter::Brace, self.body.clone());
        user_block.set_span(self.brace.span.join());
        let gen_ = Gen::new(args, user_block);

        let new_body = match self.shape() {
            Shape::Async(None) => gen_.async_unit(),
            Shape::Async(Some(ty)) if is_never(ty) => gen_.async_never(),
            Shape::Async(Some(ty)) => gen_.async_value(ty),
            Shape::AsyncTail { stmts, tail, ret } => {
                let output = future_output(ret).map(|ty| infer_impl_traits(&ty));
                let tail = wrap_async_tail(tail, &gen_, output.as_ref());
                quote!(#(#stmts)* #tail)
            }
            Shape::Unit => gen_.unit(),
            Shape::TrackCaller(ty) => gen_.track_caller(ty),
            Shape::Closure(ty) => gen_.closure(ty, &param_captures(&self.sig)),
        };

        let FnItem {
            outer_attrs,
            vis,
            sig,
            inner_attrs,
            ..
        } = self;
        let mut block = Group::new(Delimiter::Brace, quote!(#(#inner_attrs)* #new_body));
        block.set_span(self.brace.span.join());
        quote!(#(#outer_attrs)* #vis #sig #block)
    }

    fn shape(&self) -> Shape<'_> {
        if self.sig.asyncness.is_some() {
            return Shape::Async(value_type(&self.sig.output));
        }
        let Some(ret) = value_type(&self.sig.output) else {
            return Shape::Unit;
        };
        if let Some((stmts, tail)) = async_tail(&self.body) {
            return Shape::AsyncTail { stmts, tail, ret };
        }
        if is_never(ret) {
            Shape::Unit
        } else if self
            .outer_attrs
            .iter()
            .any(|a| a.path().is_ident("track_caller"))
        {
            Shape::TrackCaller(ret)
        } else {
            Shape::Closure(ret)
        }
    }
}

/// Generates the new bodies. Everything here is spanned `mixed_site` unless said otherwise;
/// user tokens (the block, the return type, the id) keep their own spans.
struct Gen<'a> {
    args: &'a Args,
    /// `use PATH::__private as __ap_rt;`: the only place the runtime path appears, so that a
    /// wrong `crate = path` gives one error, not one per generated path.
    import: TokenStream,
    /// Brings both outcome probes into scope for autoref specialization.
    probe_use: TokenStream,
    /// The user's block, braces included.
    user_block: Group,
    /// The user's block where it becomes a statement of a generated block: with
    /// `#[allow(unused_braces)]` when it holds one expression (see [`lone_block`]).
    inner_block: TokenStream,
}

impl<'a> Gen<'a> {
    fn new(args: &'a Args, user_block: Group) -> Self {
        let ms = Span::mixed_site();
        let (path, at_path) = match &args.krate {
            Some(path) => (
                path.to_token_stream(),
                path.segments
                    .last()
                    .map_or_else(Span::call_site, |s| s.ident.span()),
            ),
            None => (quote!(::agent_profiler), Span::call_site()),
        };
        // Spanned like the user's path, so "no `__private` in `x`" points at `crate = x`.
        let import = quote_spanned!(at_path=> use #path::__private as __ap_rt;);
        let probe_use = quote_spanned! {ms=>
            // Only one of the two probes is picked for a given type.
            #[allow(unused_imports)]
            use __ap_rt::{ErrProbe as _, OkProbe as _};
        };
        let inner_block = lone_block(&user_block);
        Gen {
            args,
            import,
            probe_use,
            user_block,
            inner_block,
        }
    }

    /// A `&'static CallSite` for this function. The `static` sits in its own block so that it
    /// can neither clash with nor be named by anything in the user's body.
    fn site(&self, is_async: bool) -> TokenStream {
        let id = &self.args.id;
        quote_spanned! {Span::mixed_site()=>
            {
                static __AP_SITE: __ap_rt::CallSite = __ap_rt::CallSite::new(#id, #is_async);
                &__AP_SITE
            }
        }
    }

    /// `async fn` without a value: nothing to classify.
    fn async_unit(&self) -> TokenStream {
        let Gen {
            import, user_block, ..
        } = self;
        let site = self.site(true);
        quote_spanned! {Span::mixed_site()=>
            #import
            __ap_rt::NodeFuture::new(
                #site,
                async move #user_block,
                |_: &()| __ap_rt::Outcome::Ok,
            )
            .await
        }
    }

    /// `async fn .. -> !`. `!` cannot be named in a generic argument on stable; the
    /// uninhabited `Infallible` can, and `!` coerces to it.
    fn async_never(&self) -> TokenStream {
        let Gen {
            import,
            inner_block,
            ..
        } = self;
        let site = self.site(true);
        let infallible = quote!(::core::convert::Infallible);
        let fix_output = fix_output(&infallible, Span::mixed_site());
        quote_spanned! {Span::mixed_site()=>
            #import
            match __ap_rt::NodeFuture::new(
                #site,
                async move {
                    #fix_output
                    #inner_block
                },
                |_: &#infallible| __ap_rt::Outcome::Ok,
            )
            .await {}
        }
    }

    /// `async fn .. -> T`: the body runs in an `async move` block whose output is `T`,
    /// classified by the probe when it completes.
    fn async_value(&self, ret: &Type) -> TokenStream {
        let Gen {
            import,
            probe_use,
            inner_block,
            ..
        } = self;
        let site = self.site(true);
        let ty = infer_impl_traits(ret);
        // Located at the declared return type, so that "return type inferred to be `X` here"
        // points at the signature.
        let fix_output = fix_output(&ty, ret.span());
        // The user's block stays the tail (not a `let` initializer, where clippy would call a
        // diverging body a diverging sub-expression).
        quote_spanned! {Span::mixed_site()=>
            #import
            __ap_rt::NodeFuture::new(
                #site,
                async move {
                    #fix_output
                    #inner_block
                },
                |__ap_r: &#ty| {
                    #probe_use
                    __ap_r.__ap_outcome()
                },
            )
            .await
        }
    }

    /// Sync, no value (or never returns): a guard in front of the user's block, which stays a
    /// block of its own so that its items come first in their scope.
    fn unit(&self) -> TokenStream {
        let Gen {
            import,
            inner_block,
            ..
        } = self;
        let site = self.site(false);
        quote_spanned! {Span::mixed_site()=>
            #import
            let __ap_guard = __ap_rt::Guard::enter(#site);
            #inner_block
        }
    }

    /// Sync `#[track_caller]` with a value: the block runs in place, so the caller location
    /// passes through; only the tail value reaches the probe.
    fn track_caller(&self, ret: &Type) -> TokenStream {
        let Gen {
            import,
            probe_use,
            user_block,
            ..
        } = self;
        let site = self.site(false);
        let ty = infer_impl_traits(ret);
        // The block is a match arm rather than the `let` initializer itself: typed the same
        // way (the arm is coerced to the declared type), but clippy does not take a body that
        // is a single diverging call (`panic!("{x}")`) for a diverging sub-expression there.
        quote_spanned! {Span::mixed_site()=>
            #import
            let mut __ap_guard = __ap_rt::Guard::enter(#site);
            let __ap_ret: #ty = match () {
                () => #user_block,
            };
            // Unreachable when the body always returns early or diverges.
            #[allow(unreachable_code)]
            {
                #probe_use
                __ap_guard.observe((&__ap_ret).__ap_outcome());
            }
            #[allow(unreachable_code)]
            __ap_ret
        }
    }

    /// Any other sync fn: the block runs in a closure, so every way out of it (tail, `return`,
    /// `?`) gives the value to the probe.
    fn closure(&self, ret: &Type, captures: &TokenStream) -> TokenStream {
        let Gen {
            import,
            probe_use,
            inner_block,
            ..
        } = self;
        let site = self.site(false);
        let ty = infer_impl_traits(ret);
        quote_spanned! {Span::mixed_site()=>
            #import
            // Observed on every way out of the closure; not observed means it panicked.
            let mut __ap_guard = __ap_rt::Guard::enter_observed(#site);
            // `move`: the body owns the parameters as the fn did, so it can return borrows of
            // moved-in references; `call_once` makes the closure FnOnce.
            let __ap_ret: #ty = __ap_rt::call_once(move || -> #ty {
                #captures
                #inner_block
            });
            {
                #probe_use
                __ap_guard.observe((&__ap_ret).__ap_outcome());
            }
            __ap_ret
        }
    }

    /// A `NodeFuture` owning `fut`, for an async tail.
    fn node_future(&self, fut: &TokenStream, output: Option<&Type>) -> TokenStream {
        let Gen {
            import, probe_use, ..
        } = self;
        let site = self.site(true);
        // Annotated when the return type says what the future yields; otherwise the
        // closure's parameter type is inferred from the future (closure arguments are checked
        // after the others).
        let param = output.map(|ty| quote!(: &#ty));
        quote_spanned! {Span::mixed_site()=>
            {
                #import
                __ap_rt::NodeFuture::new(
                    #site,
                    #fut,
                    |__ap_r #param| {
                        #probe_use
                        __ap_r.__ap_outcome()
                    },
                )
            }
        }
    }
}

/// The user's block as a statement of a generated block. A block that holds one expression
/// and is written on one line (`fn f(x: u32) -> u32 { x + 1 }`) would, once nested in our
/// block, draw `unused_braces` ("unnecessary braces around block return value") at the
/// user's braces, which keep their span so that errors point at the body. The lint skips a
/// block that carries an attribute, so such a block gets the allow; a body with a `;` at its
/// top level is never linted, and keeps every lint of its own.
fn lone_block(block: &Group) -> TokenStream {
    let lone = block.stream().into_iter().next().is_some()
        && !block
            .stream()
            .into_iter()
            .any(|t| matches!(&t, TokenTree::Punct(p) if p.as_char() == ';'));
    if lone {
        quote_spanned!(Span::mixed_site()=> #[allow(unused_braces)] #block)
    } else {
        block.to_token_stream()
    }
}

/// Fixes an async block's output type to `ty` before the body is checked, so that `return`
/// and `?` in the body coerce and convert to the declared return type (async-trait's trick:
/// a typed `return` that never runs). `at` locates it (its hygiene stays mixed-site).
fn fix_output(ty: &dyn ToTokens, at: Span) -> TokenStream {
    quote_spanned! {at.resolved_at(Span::mixed_site())=>
        if let ::core::option::Option::Some(__ap_ret) = ::core::option::Option::None::<#ty> {
            // Unreachable when the type is uninhabited.
            #[allow(unreachable_code)]
            return __ap_ret;
        }
    }
}

/// The return type when the fn returns a value; `None` for no `->` and for `-> ()`.
fn value_type(output: &ReturnType) -> Option<&Type> {
    match output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) if is_unit(ty) => None,
        ReturnType::Type(_, ty) => Some(ty),
    }
}

fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(t) => is_unit(&t.elem),
        Type::Group(t) => is_unit(&t.elem),
        _ => false,
    }
}

fn is_never(ty: &Type) -> bool {
    match ty {
        Type::Never(_) => true,
        Type::Paren(t) => is_never(&t.elem),
        Type::Group(t) => is_never(&t.elem),
        _ => false,
    }
}

/// The body's statements and its tail, when the tail is an `async` block or
/// `Box::pin(async ..)`. The body is only parsed when an `async` token is where such a tail
/// would have it, so ordinary functions do not pay for parsing their bodies.
fn async_tail(body: &TokenStream) -> Option<(Vec<Stmt>, Expr)> {
    let has_async = |ts: &TokenStream| {
        ts.clone()
            .into_iter()
            .any(|t| matches!(&t, TokenTree::Ident(i) if i == "async"))
    };
    let candidate = body.clone().into_iter().any(|t| match &t {
        TokenTree::Ident(i) => i == "async",
        TokenTree::Group(g) => g.delimiter() == Delimiter::Parenthesis && has_async(&g.stream()),
        _ => false,
    });
    if !candidate {
        return None;
    }
    let mut stmts = Parser::parse2(Block::parse_within, body.clone()).ok()?;
    match stmts.last() {
        Some(Stmt::Expr(tail, None)) if is_async_tail(tail) => {}
        _ => return None,
    }
    let Some(Stmt::Expr(tail, None)) = stmts.pop() else {
        unreachable!("checked above")
    };
    Some((stmts, tail))
}

fn is_async_tail(expr: &Expr) -> bool {
    match expr {
        Expr::Async(_) => true,
        Expr::Group(g) => is_async_tail(&g.expr),
        Expr::Call(call) => {
            call.args.len() == 1
                && is_box_pin(&call.func)
                && matches!(call.args.first(), Some(Expr::Async(_)))
        }
        _ => false,
    }
}

/// `Box::pin`, `std::boxed::Box::pin`, `::alloc::boxed::Box::pin`, ...
fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(p) = func else { return false };
    let segs: Vec<&Ident> = p.path.segments.iter().map(|s| &s.ident).collect();
    matches!(segs.as_slice(), [.., b, pin] if *b == "Box" && *pin == "pin")
}

/// Replaces the `async` block in a tail found by [`async_tail`] with a `NodeFuture` that
/// owns it.
fn wrap_async_tail(tail: Expr, gen_: &Gen<'_>, output: Option<&Type>) -> TokenStream {
    match tail {
        Expr::Group(mut g) => {
            let inner = wrap_async_tail(*g.expr, gen_, output);
            g.expr = Box::new(Expr::Verbatim(inner));
            g.into_token_stream()
        }
        Expr::Call(mut call) => {
            let fut = call.args.pop().expect("one argument").into_value();
            let wrapped = gen_.node_future(&fut.into_token_stream(), output);
            call.args.push(Expr::Verbatim(wrapped));
            call.into_token_stream()
        }
        other => gen_.node_future(&other.into_token_stream(), output),
    }
}

/// The type with every `impl Trait` replaced by `_`: `let` and closure annotations in the new
/// body cannot name an opaque type, and the concrete type is inferred from the body instead.
pub(crate) fn infer_impl_traits(ty: &Type) -> Type {
    let mut ty = ty.clone();
    walk_type(&mut ty);
    ty
}

fn walk_type(ty: &mut Type) {
    match ty {
        Type::ImplTrait(it) => {
            *ty = Type::Infer(TypeInfer {
                underscore_token: Token![_](it.impl_token.span),
            });
        }
        Type::Array(t) => walk_type(&mut t.elem),
        Type::Group(t) => walk_type(&mut t.elem),
        Type::Paren(t) => walk_type(&mut t.elem),
        Type::Ptr(t) => walk_type(&mut t.elem),
        Type::Reference(t) => walk_type(&mut t.elem),
        Type::Slice(t) => walk_type(&mut t.elem),
        Type::Tuple(t) => t.elems.iter_mut().for_each(walk_type),
        Type::Path(t) => {
            if let Some(q) = &mut t.qself {
                walk_type(&mut q.ty);
            }
            walk_path(&mut t.path);
        }
        Type::TraitObject(t) => {
            for bound in &mut t.bounds {
                if let TypeParamBound::Trait(b) = bound {
                    walk_path(&mut b.path);
                }
            }
        }
        Type::BareFn(t) => {
            for input in &mut t.inputs {
                walk_type(&mut input.ty);
            }
            if let ReturnType::Type(_, out) = &mut t.output {
                walk_type(out);
            }
        }
        _ => {}
    }
}

fn walk_path(path: &mut Path) {
    for seg in &mut path.segments {
        match &mut seg.arguments {
            PathArguments::AngleBracketed(args) => {
                for arg in &mut args.args {
                    match arg {
                        GenericArgument::Type(t) => walk_type(t),
                        GenericArgument::AssocType(a) => walk_type(&mut a.ty),
                        _ => {}
                    }
                }
            }
            PathArguments::Parenthesized(args) => {
                args.inputs.iter_mut().for_each(walk_type);
                if let ReturnType::Type(_, out) = &mut args.output {
                    walk_type(out);
                }
            }
            PathArguments::None => {}
        }
    }
}

/// `X` in a return type of `impl Future<Output = X>` or `Pin<Box<dyn Future<Output = X> +
/// Send + 'a>>` (any nesting of generic arguments): what the returned future yields.
pub(crate) fn future_output(ty: &Type) -> Option<Type> {
    match ty {
        Type::ImplTrait(t) => output_in_bounds(t.bounds.iter()),
        Type::TraitObject(t) => output_in_bounds(t.bounds.iter()),
        Type::Group(t) => future_output(&t.elem),
        Type::Paren(t) => future_output(&t.elem),
        Type::Path(t) => t.path.segments.iter().find_map(|seg| match &seg.arguments {
            PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(t) => future_output(t),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    }
}

fn output_in_bounds<'a>(bounds: impl Iterator<Item = &'a TypeParamBound>) -> Option<Type> {
    bounds
        .filter_map(|b| match b {
            TypeParamBound::Trait(t) => t.path.segments.last(),
            _ => None,
        })
        .filter(|seg| seg.ident == "Future")
        .find_map(|seg| match &seg.arguments {
            PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                GenericArgument::AssocType(a) if a.ident == "Output" => Some(a.ty.clone()),
                _ => None,
            }),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::{async_tail, future_output, infer_impl_traits};
    use quote::{ToTokens, quote};
    use syn::Type;

    fn walk(ty: proc_macro2::TokenStream) -> String {
        let ty: Type = syn::parse2(ty).unwrap();
        infer_impl_traits(&ty).to_token_stream().to_string()
    }

    #[test]
    fn impl_traits_become_underscores_everywhere() {
        assert_eq!(walk(quote!(impl Iterator<Item = u8>)), "_");
        assert_eq!(walk(quote!(u8)), "u8");
        assert_eq!(
            walk(quote!(Result<impl Display, io::Error>)),
            "Result < _ , io :: Error >"
        );
        assert_eq!(
            walk(quote!((impl A, [impl B; 2], &impl C))),
            "(_ , [_ ; 2] , & _)"
        );
        assert_eq!(walk(quote!(&'a mut [impl A])), "& 'a mut [_]");
        assert_eq!(walk(quote!(*const (impl A + 'a))), "* const (_)");
        assert_eq!(
            walk(quote!(Box<dyn Fn(impl A) -> impl B>)),
            "Box < dyn Fn (_) -> _ >"
        );
        assert_eq!(walk(quote!(fn(impl A) -> impl B)), "fn (_) -> _");
        assert_eq!(
            walk(quote!(<Vec<impl A> as IntoIterator>::Item)),
            "< Vec < _ > as IntoIterator > :: Item"
        );
        assert_eq!(
            walk(quote!(Option<Vec<Option<impl A>>>)),
            "Option < Vec < Option < _ > > >"
        );
    }

    fn output(ty: proc_macro2::TokenStream) -> Option<String> {
        let ty: Type = syn::parse2(ty).unwrap();
        future_output(&ty).map(|t| t.to_token_stream().to_string())
    }

    #[test]
    fn future_output_is_found_in_impl_and_boxed_dyn_futures() {
        assert_eq!(
            output(quote!(impl Future<Output = u8>)).as_deref(),
            Some("u8")
        );
        assert_eq!(
            output(quote!(
                impl std::future::Future<Output = io::Result<()>> + Send + 'a
            ))
            .as_deref(),
            Some("io :: Result < () >")
        );
        assert_eq!(
            output(quote!(
                Pin<Box<dyn Future<Output = Result<u8, E>> + Send + 'async_trait>>
            ))
            .as_deref(),
            Some("Result < u8 , E >")
        );
        assert_eq!(output(quote!(impl Iterator<Item = u8>)), None);
        assert_eq!(output(quote!(BoxFuture<'a, u8>)), None);
        assert_eq!(output(quote!(u8)), None);
    }

    #[test]
    fn async_tails_are_recognized() {
        let tail = |body: proc_macro2::TokenStream| async_tail(&body).map(|(s, _)| s.len());
        assert_eq!(tail(quote!(async move { 1 })), Some(0));
        assert_eq!(tail(quote!(let a = 1; async move { a })), Some(1));
        assert_eq!(tail(quote!(Box::pin(async move { 1 }))), Some(0));
        assert_eq!(tail(quote!(std::boxed::Box::pin(async { 1 }))), Some(0));
        assert_eq!(tail(quote!(async move { 1 };)), None);
        assert_eq!(tail(quote!(Box::new(async move { 1 }))), None);
        assert_eq!(tail(quote!(let f = async { 1 }; f)), None);
        assert_eq!(tail(quote!(1 + 1)), None);
    }
}
