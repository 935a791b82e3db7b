//! The expansion of a valid function into `Service` builder calls.

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{Ident, ItemFn, LitStr, ReturnType};

use crate::addr::Network;
use crate::ast::{AddrSource, Flavor, Listener, Main, Options, Param, Ready, Spanned};

/// The generated `fn main() -> ExitCode`.
pub(crate) fn expand(options: &Options, main: &Main) -> TokenStream {
    let root = root(options);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = &main.func;
    let (fn_token, ident) = (&sig.fn_token, &sig.ident);
    let checks = type_checks(&root, &main.params);
    let config = config(&root, options);
    let listeners = main.params.iter().filter_map(|p| match p {
        Param::Listener(l) => Some(listener_spec(&root, l)),
        Param::Handle(_) => None,
    });

    let listeners_var = Ident::new("__tf_listeners", Span::mixed_site());
    let has_listeners = main.params.iter().any(|p| matches!(p, Param::Listener(_)));
    let has_handle = main.params.iter().any(|p| matches!(p, Param::Handle(_)));
    let listeners_pat = if has_listeners {
        quote!(mut #listeners_var)
    } else {
        quote!(_)
    };
    let handle_pat = if has_handle {
        Ident::new("__tf_handle", Span::mixed_site()).into_token_stream()
    } else {
        quote!(_)
    };
    let lets = main.params.iter().map(|param| match param {
        Param::Listener(l) => {
            let b = &l.binding;
            let (attrs, mutability, ident, ty) = (&b.attrs, &b.mutability, &b.ident, &b.ty);
            let name = LitStr::new(&l.param_name(), ident.span());
            // `take::<Type>`, at the type: a type that is no socket at all then fails
            // `FromFd` where it fails the `Fits` check, which implies it, and rustc reports
            // only the `Fits` error.
            let take = quote_spanned!(ty.span()=> #listeners_var.take::<#ty>(#name)?);
            quote!(#(#attrs)* let #mutability #ident: #ty = #take;)
        }
        Param::Handle(b) => {
            let (attrs, mutability, ident, ty) = (&b.attrs, &b.mutability, &b.ident, &b.ty);
            // Located at the type, so that a `Handle` of another crate is a type mismatch
            // reported there.
            let handle = Ident::new("__tf_handle", Span::mixed_site().located_at(ty.span()));
            quote!(#(#attrs)* let #mutability #ident: #ty = #handle;)
        }
    });
    // `run` requires `R: Outcome`: spanned at the return type, a wrong one is reported there.
    let (ret, run) = match &sig.output {
        ReturnType::Default => (quote!(()), Ident::new("run", Span::call_site())),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), Ident::new("run", ty.span())),
    };

    quote! {
        #(#attrs)*
        #vis #fn_token #ident() -> ::std::process::ExitCode {
            #(#checks)*
            // SAFETY: the first thing `main` does: no other thread exists yet.
            #[allow(unsafe_code)]
            unsafe {
                #root::init_env();
            }
            #root::Service::builder()
                #config
                #(.listener(#listeners))*
                .#run(|#listeners_pat, #handle_pat| {
                    #(#lets)*
                    ::core::result::Result::Ok(
                        #root::__private::body::<#ret, _>(async move #block)
                    )
                })
        }
    }
}

/// Where the facade is: `::tableflip`, or the `crate = "..."` path.
pub(crate) fn root(options: &Options) -> TokenStream {
    match &options.krate {
        Some(path) => path.to_token_stream(),
        None => quote!(::tableflip),
    }
}

/// `assert_fits::<Family, Type>()` for each listener, spanned at its type, so that a type
/// that can't hold the socket is reported there.
pub(crate) fn type_checks(root: &TokenStream, params: &[Param]) -> Vec<TokenStream> {
    params
        .iter()
        .filter_map(|p| match p {
            Param::Listener(l) => Some(l),
            Param::Handle(_) => None,
        })
        .map(|l| {
            let ty = &l.binding.ty;
            let family = Ident::new(family(l.network), ty.span());
            quote_spanned! {ty.span()=>
                #root::__private::assert_fits::<#root::__private::#family, #ty>();
            }
        })
        .collect()
}

/// The marker type in `__private` for a network's family.
fn family(network: Network) -> &'static str {
    match network {
        Network::Tcp | Network::Tcp4 | Network::Tcp6 => "Tcp",
        Network::Unix => "Unix",
        Network::UnixPacket => "UnixPacket",
        Network::Udp | Network::Udp4 | Network::Udp6 => "Udp",
        Network::Unixgram => "Unixgram",
    }
}

/// The builder calls for the options that were given, in the docs' order.
fn config(root: &TokenStream, options: &Options) -> TokenStream {
    let mut calls = TokenStream::new();
    if let Some(path) = &options.pid_file {
        calls.extend(quote!(.pid_file(#path)));
    }
    if let Some(timeout) = options.upgrade_timeout {
        let timeout = duration(timeout);
        calls.extend(quote!(.upgrade_timeout(#timeout)));
    }
    if let Some(timeout) = options.drain_timeout {
        let timeout = duration(timeout);
        calls.extend(quote!(.drain_timeout(#timeout)));
    }
    if let Some(signal) = &options.upgrade_signal {
        calls.extend(quote!(.upgrade_signal(#root::Signal::#signal)));
    }
    if let Some(signals) = &options.stop_signals {
        calls.extend(quote!(.stop_signals([#(#root::Signal::#signals),*])));
    }
    if let Some(ready) = options.ready {
        let mode = match ready.value {
            Ready::Auto => Ident::new("Auto", ready.span),
            Ready::Manual => Ident::new("Manual", ready.span),
        };
        calls.extend(quote!(.ready(#root::ReadyMode::#mode)));
    }
    for hook in &options.on_shutdown {
        calls.extend(quote_spanned!(hook.span()=> .on_shutdown(#hook)));
    }
    if let Some(Spanned { value: false, span }) = options.subscriber {
        let method = Ident::new("without_default_subscriber", span);
        calls.extend(quote!(.#method()));
    }
    let builder = quote!(#root::__private::tokio::runtime::Builder);
    let runtime = match (options.flavor.map(|f| f.value), &options.worker_threads) {
        (None, None) => None,
        (Some(Flavor::CurrentThread), _) => Some(quote!(#builder::new_current_thread())),
        (_, Some(threads)) => {
            let b = Ident::new("builder", Span::mixed_site());
            Some(quote!({
                let mut #b = #builder::new_multi_thread();
                #b.worker_threads(#threads);
                #b
            }))
        }
        (Some(Flavor::MultiThread), None) => Some(quote!(#builder::new_multi_thread())),
    };
    if let Some(runtime) = runtime {
        calls.extend(quote!(.runtime(#runtime)));
    }
    calls
}

/// A `Duration` computed at compile time, as `from_millis` when that is exact.
fn duration(d: Spanned<std::time::Duration>) -> TokenStream {
    let nanos = d.value.as_nanos();
    let (ctor, n) = if nanos.is_multiple_of(1_000_000) {
        ("from_millis", nanos / 1_000_000)
    } else {
        ("from_nanos", nanos)
    };
    let ctor = Ident::new(ctor, d.span);
    let mut n = Literal::u64_unsuffixed(u64::try_from(n).expect("parse_duration bounds it"));
    n.set_span(d.span);
    quote!(::std::time::Duration::#ctor(#n))
}

/// `ListenerSpec::new(...)` or `::from_env(...)`, and `.name(...)`.
fn listener_spec(root: &TokenStream, l: &Listener) -> TokenStream {
    let param = LitStr::new(&l.param_name(), l.binding.ident.span());
    let network = &l.network_lit;
    let spec = match &l.addr {
        AddrSource::Literal(addr) => quote!(#root::ListenerSpec::new(#param, #network, #addr)),
        AddrSource::Env { var, default } => {
            let default = match default {
                Some(d) => quote!(::core::option::Option::Some(#d)),
                None => quote!(::core::option::Option::None),
            };
            quote!(#root::ListenerSpec::from_env(#param, #network, #var, #default))
        }
    };
    match &l.name {
        Some(name) => quote!(#spec.name(#name)),
        None => spec,
    }
}
