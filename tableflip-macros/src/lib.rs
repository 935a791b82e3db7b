//! The `#[tableflip::main]` attribute. Parsing and code generation only.

use proc_macro::TokenStream;

/// Turns `async fn main` with `#[listener]` parameters into a tableflip service.
#[proc_macro_attribute]
pub fn main(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
