//! What the attribute emits when something is wrong: every error as a `compile_error!` at
//! its span, plus the best expansion it can, so that rustc reports nothing else and IDEs
//! keep completing inside the body.
//!
//! The user's function is kept, with the attribute's helper attributes taken off, as a
//! never-called item inside a stub `fn main() -> ExitCode`: the body is still type-checked
//! against its parameters and return type, and the program still has its `main`.

use std::collections::HashSet;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{FnArg, Item, ItemFn, Pat, Visibility, parse_quote};

use crate::ast::{Errors, Main, Options};
use crate::expand::{root, type_checks};

/// The stub `main` with the user's function inside, and the errors.
pub(crate) fn expand(options: &Options, main: &Main, errors: &Errors) -> TokenStream {
    let errors = errors.to_compile_errors();
    let ItemFn {
        attrs, vis, sig, ..
    } = &main.func;
    let (fn_token, ident) = (&sig.fn_token, &sig.ident);

    let mut inner = main.func.clone();
    inner.attrs = vec![parse_quote!(#[allow(dead_code)])];
    inner.vis = Visibility::Inherited;
    // Without `self`, and without a second parameter of the same name (already reported):
    // either would only add rustc's errors to ours.
    let mut names = HashSet::new();
    inner.sig.inputs = inner
        .sig
        .inputs
        .into_iter()
        .filter(|arg| match arg {
            FnArg::Receiver(_) => false,
            FnArg::Typed(arg) => match &*arg.pat {
                Pat::Ident(pat) => names.insert(pat.ident.unraw()),
                _ => true,
            },
        })
        .collect();

    // The listener type checks still hold, unless the crate path itself is what's wrong.
    let checks = if options.bad_krate {
        Vec::new()
    } else {
        type_checks(&root(options), &main.params)
    };
    quote! {
        #errors
        #(#attrs)*
        #vis #fn_token #ident() -> ::std::process::ExitCode {
            #(#checks)*
            #inner
            ::std::process::ExitCode::FAILURE
        }
    }
}

/// The attribute is on something other than a function: keep the item, add the error.
pub(crate) fn not_a_function(item: Item, mut errors: Errors) -> TokenStream {
    let tokens = item.to_token_stream();
    errors.at(
        first_token_after_attrs(&tokens),
        "`#[tableflip::main]` goes on the service's `async fn main`",
    );
    let errors = errors.to_compile_errors();
    quote!(#errors #tokens)
}

/// The item did not parse: keep it as it was, add the error.
pub(crate) fn unparsed(item: TokenStream, error: syn::Error, mut errors: Errors) -> TokenStream {
    errors.push(error);
    let errors = errors.to_compile_errors();
    quote!(#errors #item)
}

/// The span of an item's keyword: past its attributes (`#` and `[...]`) and `pub(...)`.
fn first_token_after_attrs(tokens: &TokenStream) -> Span {
    let mut iter = tokens.clone().into_iter().peekable();
    while let Some(token) = iter.next() {
        match token {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                iter.next();
            }
            TokenTree::Ident(i) if i == "pub" => {
                if matches!(iter.peek(), Some(TokenTree::Group(_))) {
                    iter.next();
                }
            }
            other => return other.span(),
        }
    }
    Span::call_site()
}
