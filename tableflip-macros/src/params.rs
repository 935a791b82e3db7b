//! Parses the annotated function: its signature, and each parameter into a [`Param`].
//!
//! Helper attributes come off the parameters as rstest does it (`mem::take` the attributes,
//! then sort them), so that the function kept by the fallback no longer carries them.

use std::mem;

use syn::parse::{ParseStream, Parser};
use syn::{
    Attribute, FnArg, Ident, ItemFn, LitStr, Meta, Pat, PatIdent, PatType, ReturnType, Token, Type,
};

use crate::addr::{Address, Network, parse_address};
use crate::ast::{AddrSource, Binding, Errors, Listener, Main, Param};
use crate::parse::list;

/// The keys `#[listener(...)]` takes after the network and address.
const LISTENER_KEYS: &[&str] = &["env", "default", "name"];

/// Takes the function apart, recording every problem with it.
pub(crate) fn function(mut func: ItemFn, errors: &mut Errors) -> Main {
    signature(&mut func, errors);
    let mut params = Vec::new();
    for arg in &mut func.sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => errors.spanned(
                &*receiver,
                "`#[tableflip::main]` goes on a free function, not a method: remove `self`",
            ),
            FnArg::Typed(arg) => {
                if let Some(param) = param(arg, errors) {
                    params.push(param);
                }
            }
        }
    }
    Main { func, params }
}

/// Checks the signature and the function's own attributes.
fn signature(func: &mut ItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            "`#[tableflip::main]` goes on an `async fn`: write `async fn`",
        );
    }
    if let Some(constness) = &sig.constness {
        errors.at(constness.span, "the service's main can't be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(unsafety.span, "the service's main can't be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(abi, "the service's main can't have an ABI; remove `extern`");
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "the service's main can't be generic: name the concrete types, or move the generic \
             code into a function the body calls",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(
            where_clause,
            "the service's main can't have a `where` clause: name the concrete types",
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output
        && matches!(**ty, Type::ImplTrait(_) | Type::Never(_))
    {
        errors.spanned(
            ty,
            "the service's main returns `()` or `Result<(), E>` with `E: Debug`; name the \
                 type",
        );
    }
    func.attrs.retain(|attr| {
        let Some(last) = attr.path().segments.last() else {
            return true;
        };
        if last.ident != "main" && last.ident != "test" {
            return true;
        }
        let path = attr.path();
        let shown = quote::quote!(#path).to_string().replace(' ', "");
        errors.spanned(
            attr,
            format!(
                "`#[{shown}]` can't be combined with `#[tableflip::main]`, which builds the tokio \
                 runtime itself: remove `#[{shown}]` (set the runtime with `flavor` and \
                 `worker_threads`)"
            ),
        );
        false
    });
}

/// One parameter: a listener, the Handle, or an error.
fn param(arg: &mut PatType, errors: &mut Errors) -> Option<Param> {
    let mut listener_attrs = Vec::new();
    let mut kept = Vec::new();
    let mut has_cfg = false;
    for attr in mem::take(&mut arg.attrs) {
        let path = attr.path();
        if path.is_ident("listener") {
            listener_attrs.push(attr);
        } else if path.is_ident("cfg") || path.is_ident("cfg_attr") {
            errors.spanned(
                &attr,
                "`#[cfg]` and `#[cfg_attr]` can't be used on a parameter of `#[tableflip::main]`: \
                 the macro sees them unevaluated. Declare the parameter unconditionally, or put \
                 `#[cfg]` on two versions of the whole function",
            );
            has_cfg = true;
        } else {
            kept.push(attr);
        }
    }
    // The fallback keeps the function with the remaining attributes (lints and the like).
    arg.attrs = kept.clone();

    let mut listener_attrs = listener_attrs.into_iter();
    let first = listener_attrs.next();
    for extra in listener_attrs {
        errors.spanned(
            &extra,
            "a parameter takes one `#[listener(...)]`; declare another parameter for another \
             socket",
        );
    }
    let handle = first.is_none() && is_handle(&arg.ty);
    if first.is_none() && !handle {
        // A `#[cfg_attr(..., listener(...))]` was reported already.
        if has_cfg {
            return None;
        }
        let message = match &*arg.ty {
            Type::Reference(r) if is_handle(&r.elem) => {
                "take the Handle by value, as `tf: tableflip::Handle` (it is cheap to clone)"
            }
            _ => {
                "this parameter is neither a listener nor the Handle: mark a socket with \
                 `#[listener(\"tcp\", \":8080\")]`, or take `tf: tableflip::Handle`"
            }
        };
        errors.spanned(&*arg, message);
        return None;
    }
    let binding = binding(arg, kept, errors);
    let listener = match first {
        Some(attr) => listener(&attr, errors),
        None => None,
    };
    let binding = binding?;
    if handle {
        return Some(Param::Handle(binding));
    }
    let (network, network_lit, addr, name) = listener?;
    Some(Param::Listener(Listener {
        binding,
        network,
        network_lit,
        addr,
        name,
    }))
}

/// `mut? name: Type`, or an error at a pattern that is not a plain name.
fn binding(arg: &PatType, attrs: Vec<Attribute>, errors: &mut Errors) -> Option<Binding> {
    match &*arg.pat {
        Pat::Ident(PatIdent {
            by_ref: None,
            mutability,
            ident,
            subpat: None,
            attrs: pat_attrs,
        }) if pat_attrs.is_empty() => Some(Binding {
            attrs,
            mutability: *mutability,
            ident: ident.clone(),
            ty: arg.ty.clone(),
        }),
        Pat::Wild(_) => {
            errors.spanned(
                &arg.pat,
                "this parameter needs a name, e.g. `_http` if the body doesn't use it",
            );
            None
        }
        other => {
            errors.spanned(
                other,
                "write a plain name here, e.g. `http`; destructure inside the body",
            );
            None
        }
    }
}

/// Is this `Handle`, `tableflip::Handle` or any path ending in `Handle`?
fn is_handle(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "Handle" && last.arguments.is_none()),
        Type::Group(group) => is_handle(&group.elem),
        Type::Paren(paren) => is_handle(&paren.elem),
        _ => false,
    }
}

/// What `#[listener(...)]` says, before it is checked.
#[derive(Default)]
struct RawListener {
    network: Option<LitStr>,
    addr: Option<LitStr>,
    env: Option<(Ident, LitStr)>,
    default: Option<(Ident, LitStr)>,
    name: Option<(Ident, LitStr)>,
}

type ListenerParts = (Network, LitStr, AddrSource, Option<LitStr>);

/// Parses and checks one `#[listener(...)]`.
fn listener(attr: &Attribute, errors: &mut Errors) -> Option<ListenerParts> {
    const SHAPE: &str = "write `#[listener(\"tcp\", \":8080\")]`, or \
                         `#[listener(\"tcp\", env = \"ADDR\", default = \":8080\")]`";
    let Meta::List(list) = &attr.meta else {
        errors.spanned(
            attr,
            format!("the listener's network and address are missing: {SHAPE}"),
        );
        return None;
    };
    let raw = match raw_listener.parse2(list.tokens.clone()) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    let Some(network_lit) = raw.network else {
        errors.spanned(attr, format!("the listener's network is missing: {SHAPE}"));
        return None;
    };
    let network = match Network::parse(&network_lit.value()) {
        Ok(network) => network,
        Err(e) => {
            errors.at(network_lit.span(), e);
            return None;
        }
    };
    let addr = match (raw.addr, raw.env, raw.default) {
        (Some(addr), None, None) => {
            address(network, &addr, errors).map(|()| AddrSource::Literal(addr))
        }
        (Some(_), Some((env, _)), _) => {
            errors.at(
                env.span(),
                "give either a literal address or `env = \"VAR\"`, not both: move the literal \
                 address to `default = \"...\"`",
            );
            None
        }
        (Some(addr), None, Some((default, _))) => {
            errors.at(
                default.span(),
                format!(
                    "`default` goes with `env = \"VAR\"`, but this listener has the fixed \
                     address {:?}: remove `default`, or read the address from the environment \
                     with `env = \"...\", default = {:?}`",
                    addr.value(),
                    addr.value()
                ),
            );
            None
        }
        (None, None, Some((default, lit))) => {
            errors.at(
                default.span(),
                format!(
                    "`default` is the fallback for `env = \"VAR\"`: add `env = \"...\"` before \
                     it, or write a fixed address second: `#[listener(\"{}\", {:?})]`",
                    network,
                    lit.value()
                ),
            );
            None
        }
        (None, Some((_, var)), default) => {
            let var_ok = env_var(&var, errors);
            let default_ok = match &default {
                Some((_, lit)) => address(network, lit, errors).is_some(),
                None => true,
            };
            (var_ok && default_ok).then(|| AddrSource::Env {
                var,
                default: default.map(|(_, lit)| lit),
            })
        }
        (None, None, None) => {
            errors.spanned(attr, format!("the listener's address is missing: {SHAPE}"));
            None
        }
    };
    let name = raw.name.map(|(_, lit)| lit);
    let name_ok = name.as_ref().is_none_or(|lit| fd_name(lit, errors));
    let addr = addr?;
    name_ok.then_some((network, network_lit, addr, name))
}

/// The parser for the inside of `#[listener(...)]`: `"network", "address"?, key = "value"*`.
fn raw_listener(input: ParseStream<'_>) -> syn::Result<RawListener> {
    let mut raw = RawListener::default();
    if input.is_empty() {
        return Ok(raw);
    }
    if input.peek(Ident) {
        let ident: Ident = input.fork().parse()?;
        if !input.peek2(Token![=]) {
            return Err(syn::Error::new(
                ident.span(),
                format!("the network is a string: write \"{ident}\""),
            ));
        }
    }
    let network: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected the network as a string first, e.g. \"tcp\"",
        )
    })?;
    raw.network = Some(network);
    if input.is_empty() {
        return Ok(raw);
    }
    input.parse::<Token![,]>()?;
    if input.peek(LitStr) {
        raw.addr = Some(input.parse()?);
        if input.is_empty() {
            return Ok(raw);
        }
        input.parse::<Token![,]>()?;
    }
    while !input.is_empty() {
        let key: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the address as a string, e.g. \":8080\", or `env = \"VAR\"`",
            )
        })?;
        let slot = match key.to_string().as_str() {
            "env" => &mut raw.env,
            "default" => &mut raw.default,
            "name" => &mut raw.name,
            other => {
                return Err(syn::Error::new(
                    key.span(),
                    format!(
                        "unknown listener option `{other}`; after the network and address, \
                         `#[listener]` takes {}",
                        list(LISTENER_KEYS)
                    ),
                ));
            }
        };
        if slot.is_some() {
            return Err(syn::Error::new(
                key.span(),
                format!("`{key}` is given more than once"),
            ));
        }
        input.parse::<Token![=]>()?;
        let value: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("`{key}` takes a string, e.g. `{key} = \"...\"`"),
            )
        })?;
        *slot = Some((key, value));
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(raw)
}

/// Checks a literal address with the runtime's parser, and that it fits the network.
fn address(network: Network, lit: &LitStr, errors: &mut Errors) -> Option<()> {
    let addr = lit.value();
    match parse_address(network, &addr) {
        Ok(Address::Path(_)) if parse_address(Network::Tcp, &addr).is_ok() => {
            let inet = if network == Network::Unixgram {
                "udp"
            } else {
                "tcp"
            };
            errors.at(
                lit.span(),
                format!(
                    "{addr:?} looks like a TCP/UDP address, but {network} takes a socket path \
                     such as \"/run/app.sock\" or \"@app\": use \"{inet}\" for an internet \
                     socket, or write \"./{addr}\" for a file of that name"
                ),
            );
            None
        }
        Ok(_) => Some(()),
        Err(e) => {
            let hint = if !network.is_unix() && addr.starts_with(['/', '.', '@']) {
                "; a unix socket needs network \"unix\", \"unixpacket\" or \"unixgram\""
            } else {
                ""
            };
            errors.at(lit.span(), format!("{e}{hint}"));
            None
        }
    }
}

/// Checks an environment variable name.
fn env_var(var: &LitStr, errors: &mut Errors) -> bool {
    let name = var.value();
    let ok = !name.is_empty() && !name.contains(['=', '\0']);
    if !ok {
        errors.at(
            var.span(),
            "an environment variable name is non-empty and has no '=' or NUL, e.g. \"HTTP_ADDR\"",
        );
    }
    ok
}

/// Checks a systemd `FileDescriptorName=`: 1 to 255 printable ASCII characters, no ':'.
fn fd_name(lit: &LitStr, errors: &mut Errors) -> bool {
    let name = lit.value();
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !name.contains(':');
    if !ok {
        errors.at(
            lit.span(),
            "a systemd FileDescriptorName= has 1 to 255 printable ASCII characters and no ':', \
             e.g. \"http\"",
        );
    }
    ok
}
