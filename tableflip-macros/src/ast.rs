//! The small AST the attribute is parsed into, and the error accumulator every stage shares.

use std::fmt::Display;
use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::{Attribute, ExprPath, Ident, ItemFn, LitInt, LitStr, Path, Token, Type};

use crate::addr::Network;

/// The options of `#[tableflip::main(...)]`, each as given (an option that was not given is
/// `None`: the runtime's builder holds the defaults).
#[derive(Default)]
pub(crate) struct Options {
    /// `pid_file = "path"`.
    pub(crate) pid_file: Option<LitStr>,
    /// `upgrade_timeout = "60s"`.
    pub(crate) upgrade_timeout: Option<Spanned<Duration>>,
    /// `drain_timeout = "30s"`.
    pub(crate) drain_timeout: Option<Spanned<Duration>>,
    /// `upgrade_signal = "SIGHUP"`.
    pub(crate) upgrade_signal: Option<Ident>,
    /// `stop_signals = ["SIGTERM", "SIGINT"]`.
    pub(crate) stop_signals: Option<Vec<Ident>>,
    /// `ready = "auto"` or `"manual"`.
    pub(crate) ready: Option<Spanned<Ready>>,
    /// `on_shutdown = path` or `[path, ...]`, in order.
    pub(crate) on_shutdown: Vec<ExprPath>,
    /// `flavor = "multi_thread"` or `"current_thread"`.
    pub(crate) flavor: Option<Spanned<Flavor>>,
    /// `worker_threads = N`.
    pub(crate) worker_threads: Option<LitInt>,
    /// `subscriber = false`: install no `tracing` subscriber.
    pub(crate) subscriber: Option<Spanned<bool>>,
    /// `crate = "path"`: where the facade lives.
    pub(crate) krate: Option<Path>,
    /// `crate = ...` was given but could not be used: the fallback then leaves out the
    /// type checks, which would only add errors about the path.
    pub(crate) bad_krate: bool,
}

/// A value with the span of the literal it was parsed from.
#[derive(Clone, Copy)]
pub(crate) struct Spanned<T> {
    /// The value.
    pub(crate) value: T,
    /// Where it was written.
    pub(crate) span: Span,
}

/// `ready = "..."`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// `"auto"`.
    Auto,
    /// `"manual"`.
    Manual,
}

/// `flavor = "..."`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `"multi_thread"`.
    MultiThread,
    /// `"current_thread"`.
    CurrentThread,
}

/// The annotated function, taken apart.
pub(crate) struct Main {
    /// The function as written, with the attribute's own helper attributes (`#[listener]`,
    /// and the rejected `#[cfg]`, `#[cfg_attr]` and runtime attributes) taken off: what the
    /// fallback keeps so that IDEs still see the body.
    pub(crate) func: ItemFn,
    /// The parameters that were understood, in order.
    pub(crate) params: Vec<Param>,
}

/// A parameter of the annotated function.
pub(crate) enum Param {
    /// `#[listener(...)] name: Type`.
    Listener(Listener),
    /// `name: tableflip::Handle`.
    Handle(Binding),
}

/// A parameter's binding: `#[lint attrs] mut? name: Type`.
pub(crate) struct Binding {
    /// Lint attributes (`#[allow(...)]` and friends), moved onto the generated `let`.
    pub(crate) attrs: Vec<Attribute>,
    /// `mut`, if written.
    pub(crate) mutability: Option<Token![mut]>,
    /// The name.
    pub(crate) ident: Ident,
    /// The type, as written.
    pub(crate) ty: Box<Type>,
}

/// A `#[listener(...)]` parameter.
pub(crate) struct Listener {
    /// The parameter it feeds.
    pub(crate) binding: Binding,
    /// The network, parsed, and its literal.
    pub(crate) network: Network,
    /// The network as written.
    pub(crate) network_lit: LitStr,
    /// Where the address comes from.
    pub(crate) addr: AddrSource,
    /// `name = "..."`: the systemd `FileDescriptorName=`.
    pub(crate) name: Option<LitStr>,
}

/// Where a listener's address comes from.
pub(crate) enum AddrSource {
    /// A literal address, checked at compile time.
    Literal(LitStr),
    /// `env = "VAR"`, with an optional `default = "..."` (checked at compile time).
    Env {
        /// The variable's name.
        var: LitStr,
        /// The fallback when the variable is not set.
        default: Option<LitStr>,
    },
}

impl Listener {
    /// The parameter's name, the key `Listeners::take` finds it by (`r#` stripped).
    pub(crate) fn param_name(&self) -> String {
        self.binding.name()
    }
}

impl Binding {
    /// The name as a string, `r#` stripped.
    pub(crate) fn name(&self) -> String {
        use syn::ext::IdentExt;
        self.ident.unraw().to_string()
    }
}

/// Accumulates errors, so that one compile reports every mistake at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records `message` at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records `message` over all of `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Has anything been recorded?
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The recorded errors as `compile_error!` invocations, each at its span.
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.0
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }
}
