//! Parses the attribute's options, `#[tableflip::main(key = value, ...)]`, into [`Options`].
//!
//! Each value is checked on its own here (its kind, a duration, a signal name); checks that
//! involve several options or the parameters are in `validate.rs`.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Expr, ExprLit, ExprPath, Ident, Lit, LitInt, LitStr, Path, Token};

use crate::addr::{check_timeout, parse_duration};
use crate::ast::{Errors, Flavor, Options, Ready, Spanned};

/// Every option, in the order the docs list them.
const OPTIONS: &[&str] = &[
    "pid_file",
    "upgrade_timeout",
    "drain_timeout",
    "upgrade_signal",
    "stop_signals",
    "ready",
    "on_shutdown",
    "flavor",
    "worker_threads",
    "subscriber",
    "crate",
];

/// The signals `tableflip::Signal` names, on any platform; one missing on the target is
/// reported by rustc at the literal.
const SIGNALS: &[&str] = &[
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// One `key = value`.
struct Arg {
    key: Ident,
    value: Expr,
}

/// The whole argument list: `key = value`, comma-separated, trailing comma allowed.
struct Args(Vec<Arg>);

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Vec::new();
        while !input.is_empty() {
            if !input.peek(Ident::peek_any) {
                return Err(input.error(format!(
                    "expected an option as `key = value`, e.g. `pid_file = \"/run/app.pid\"`; \
                     the options are {}",
                    list(OPTIONS)
                )));
            }
            let key = input.call(Ident::parse_any)?;
            if !input.peek(Token![=]) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("expected `{key} = value`: every option is written `key = value`"),
                ));
            }
            input.parse::<Token![=]>()?;
            let value = input.parse()?;
            args.push(Arg { key, value });
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(Args(args))
    }
}

/// Parses the options. A syntax error stops here (and leaves every option out); a bad value
/// is recorded and that option is left out.
pub(crate) fn options(args: TokenStream, errors: &mut Errors) -> Options {
    let mut options = Options::default();
    let args = match Parser::parse2(Args::parse, args) {
        Ok(Args(args)) => args,
        Err(e) => {
            errors.push(e);
            return options;
        }
    };
    let mut seen = HashSet::new();
    for Arg { key, value } in args {
        let name = key.to_string();
        if !OPTIONS.contains(&name.as_str()) {
            errors.at(
                key.span(),
                format!("unknown option `{name}`; the options are {}", list(OPTIONS)),
            );
            continue;
        }
        if !seen.insert(name.clone()) {
            errors.at(key.span(), format!("`{name}` is given more than once"));
            continue;
        }
        let value = ungroup(value);
        match name.as_str() {
            "pid_file" => options.pid_file = pid_file(&value, errors),
            "upgrade_timeout" => options.upgrade_timeout = duration(&name, &value, errors),
            "drain_timeout" => options.drain_timeout = duration(&name, &value, errors),
            "upgrade_signal" => {
                options.upgrade_signal = signal_lit(&name, &value, "\"SIGHUP\"", errors)
                    .and_then(|lit| signal(&lit, errors));
            }
            "stop_signals" => options.stop_signals = stop_signals(&value, errors),
            "ready" => options.ready = ready(&value, errors),
            "on_shutdown" => options.on_shutdown = on_shutdown(&value, errors),
            "flavor" => options.flavor = flavor(&value, errors),
            "worker_threads" => options.worker_threads = worker_threads(&value, errors),
            "subscriber" => options.subscriber = subscriber(&value, errors),
            "crate" => {
                options.krate = krate(&value, errors);
                options.bad_krate = options.krate.is_none();
            }
            _ => unreachable!("every option in OPTIONS is handled"),
        }
    }
    options
}

/// `a`, `b` or `c`, each in backticks.
pub(crate) fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(|i| format!("`{i}`")).collect();
            format!("{} or `{last}`", rest.join(", "))
        }
    }
}

/// Looks through the invisible groups `macro_rules!` wraps `$e:expr` fragments in.
fn ungroup(expr: Expr) -> Expr {
    match expr {
        Expr::Group(g) => ungroup(*g.expr),
        other => other,
    }
}

/// The value as a string literal, or an error that shows `key = example`.
fn lit_str(key: &str, value: &Expr, example: &str, errors: &mut Errors) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit.clone()),
        _ => {
            errors.spanned(
                value,
                format!("`{key}` takes a string literal, e.g. `{key} = {example}`"),
            );
            None
        }
    }
}

fn pid_file(value: &Expr, errors: &mut Errors) -> Option<LitStr> {
    let lit = lit_str("pid_file", value, "\"/run/app.pid\"", errors)?;
    let path = lit.value();
    if path.is_empty() || path.contains('\0') {
        errors.at(
            lit.span(),
            "the pid file path must be non-empty and free of NUL bytes, e.g. \"/run/app.pid\"",
        );
        return None;
    }
    Some(lit)
}

/// A duration, parsed with the runtime's own parser.
fn duration(key: &str, value: &Expr, errors: &mut Errors) -> Option<Spanned<std::time::Duration>> {
    let lit = lit_str(key, value, "\"30s\"", errors)?;
    // Zero and absurd values are refused as the runtime refuses them from the environment.
    let what = key.replace('_', " ");
    match parse_duration(&lit.value()) {
        Ok(value) => match check_timeout(&what, value) {
            Ok(()) => Some(Spanned {
                value,
                span: lit.span(),
            }),
            Err(msg) => {
                errors.at(lit.span(), msg);
                None
            }
        },
        Err(e) => {
            errors.at(lit.span(), e);
            None
        }
    }
}

/// A signal name's literal; `SIGTERM` or `Signal::SIGTERM` written as a path gets a hint.
fn signal_lit(key: &str, value: &Expr, example: &str, errors: &mut Errors) -> Option<LitStr> {
    if let Expr::Path(path) = value
        && let Some(last) = path.path.segments.last()
    {
        errors.spanned(
            value,
            format!(
                "`{key}` takes signal names as strings: write \"{}\"",
                last.ident
            ),
        );
        return None;
    }
    lit_str(key, value, example, errors)
}

/// A signal name as the `tableflip::Signal` variant it names, spanned at the literal.
fn signal(lit: &LitStr, errors: &mut Errors) -> Option<Ident> {
    let name = lit.value();
    if !SIGNALS.contains(&name.as_str()) {
        let upper = name.to_ascii_uppercase();
        let prefixed = format!("SIG{upper}");
        let hint = [upper.as_str(), prefixed.as_str()]
            .into_iter()
            .find(|n| SIGNALS.contains(n))
            .map(|n| format!("did you mean \"{n}\"? "))
            .unwrap_or_default();
        errors.at(
            lit.span(),
            format!(
                "unknown signal {name:?}: {hint}signals are named as in \
                 `tableflip::Signal`, e.g. \"SIGHUP\", \"SIGUSR1\", \"SIGUSR2\", \
                 \"SIGTERM\" or \"SIGINT\""
            ),
        );
        return None;
    }
    let why = match name.as_str() {
        "SIGKILL" | "SIGSTOP" => Some("it can't be caught"),
        "SIGILL" | "SIGFPE" | "SIGSEGV" => {
            Some("it reports a fault, and tokio refuses to install a handler for it")
        }
        _ => None,
    };
    if let Some(why) = why {
        errors.at(
            lit.span(),
            format!(
                "{name} can't be used here: {why}; use e.g. \"SIGHUP\", \"SIGUSR2\" or \"SIGTERM\""
            ),
        );
        return None;
    }
    Some(Ident::new(&name, lit.span()))
}

fn stop_signals(value: &Expr, errors: &mut Errors) -> Option<Vec<Ident>> {
    let Expr::Array(array) = value else {
        errors.spanned(
            value,
            "`stop_signals` takes an array of signal names, e.g. \
             `stop_signals = [\"SIGTERM\", \"SIGINT\"]`",
        );
        return None;
    };
    let mut signals: Vec<Ident> = Vec::new();
    let mut ok = true;
    for elem in &array.elems {
        let elem = ungroup(elem.clone());
        let Some(lit) = signal_lit("stop_signals", &elem, "[\"SIGTERM\", \"SIGINT\"]", errors)
        else {
            ok = false;
            continue;
        };
        match signal(&lit, errors) {
            Some(sig) if signals.contains(&sig) => {
                errors.at(lit.span(), format!("{sig} is listed twice"));
                ok = false;
            }
            Some(sig) => signals.push(sig),
            None => ok = false,
        }
    }
    ok.then_some(signals)
}

fn ready(value: &Expr, errors: &mut Errors) -> Option<Spanned<Ready>> {
    let lit = lit_str("ready", value, "\"manual\"", errors)?;
    let value = match lit.value().as_str() {
        "auto" => Ready::Auto,
        "manual" => Ready::Manual,
        other => {
            errors.at(
                lit.span(),
                format!(
                    "unknown ready mode {other:?}: expected \"auto\" (ready once every listener \
                     is held) or \"manual\" (the body calls `tf.ready()`)"
                ),
            );
            return None;
        }
    };
    Some(Spanned {
        value,
        span: lit.span(),
    })
}

fn on_shutdown(value: &Expr, errors: &mut Errors) -> Vec<ExprPath> {
    const HELP: &str = "`on_shutdown` takes the path of an async fn, or an array of them, e.g. \
                        `on_shutdown = [flush_logs, close_db]`";
    let elems: Vec<Expr> = match value {
        Expr::Array(array) => array.elems.iter().cloned().map(ungroup).collect(),
        other => vec![other.clone()],
    };
    let mut hooks = Vec::new();
    for elem in elems {
        match elem {
            Expr::Path(path) if path.attrs.is_empty() => hooks.push(path),
            other => errors.spanned(other, HELP),
        }
    }
    hooks
}

fn flavor(value: &Expr, errors: &mut Errors) -> Option<Spanned<Flavor>> {
    let lit = lit_str("flavor", value, "\"current_thread\"", errors)?;
    let value = match lit.value().as_str() {
        "multi_thread" => Flavor::MultiThread,
        "current_thread" => Flavor::CurrentThread,
        other => {
            errors.at(
                lit.span(),
                format!(
                    "unknown runtime flavor {other:?}: expected \"multi_thread\" or \
                     \"current_thread\""
                ),
            );
            return None;
        }
    };
    Some(Spanned {
        value,
        span: lit.span(),
    })
}

fn worker_threads(value: &Expr, errors: &mut Errors) -> Option<LitInt> {
    let Expr::Lit(ExprLit {
        lit: Lit::Int(lit), ..
    }) = value
    else {
        errors.spanned(
            value,
            "`worker_threads` takes an integer literal, e.g. `worker_threads = 4`",
        );
        return None;
    };
    match lit.base10_parse::<usize>() {
        Ok(0) => errors.at(
            lit.span(),
            "`worker_threads` must be at least 1 (leave it out for one per CPU core)",
        ),
        Ok(_) => return Some(lit.clone()),
        Err(e) => errors.at(lit.span(), format!("`worker_threads`: {e}")),
    }
    None
}

fn subscriber(value: &Expr, errors: &mut Errors) -> Option<Spanned<bool>> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(lit),
            ..
        }) => Some(Spanned {
            value: lit.value,
            span: lit.span,
        }),
        _ => {
            errors.spanned(
                value,
                "`subscriber` takes `true` (install the default `tracing` subscriber, unless \
                 one is set) or `false` (install none), e.g. `subscriber = false`",
            );
            None
        }
    }
}

fn krate(value: &Expr, errors: &mut Errors) -> Option<Path> {
    let lit = lit_str("crate", value, "\"my_tableflip\"", errors)?;
    match lit.parse_with(Path::parse_mod_style) {
        Ok(path) => Some(path),
        Err(_) => {
            errors.at(
                lit.span(),
                format!(
                    "`crate` takes the path the tableflip facade is reachable at, e.g. \
                     `crate = \"my_tableflip\"`; {:?} is not a path",
                    lit.value()
                ),
            );
            None
        }
    }
}
