//! The entry point: parse, validate, then expand, or fall back with every error.

use proc_macro2::TokenStream;
use syn::Item;

use crate::ast::Errors;
use crate::{expand, fallback, params, parse, validate};

/// `#[tableflip::main]`: parse, validate, then expand, or fall back with every error.
pub(crate) fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = parse::options(args, &mut errors);
    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => return fallback::not_a_function(other, errors),
        Err(e) => return fallback::unparsed(item, e, errors),
    };
    let main = params::function(func, &mut errors);
    validate::check(&options, &main, &mut errors);
    if errors.is_empty() {
        expand::expand(&options, &main)
    } else {
        fallback::expand(&options, &main, &errors)
    }
}
