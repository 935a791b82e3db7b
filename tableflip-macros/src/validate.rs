//! Checks that involve more than one option or parameter: duplicates, the upgrade signal
//! among the stop signals, `worker_threads` with the flavor, manual readiness without a
//! Handle.

use std::collections::{HashMap, HashSet};

use crate::addr::{Network, parse_address};
use crate::ast::{AddrSource, Errors, Flavor, Main, Options, Param, Ready};

/// Records every cross-cutting problem.
pub(crate) fn check(options: &Options, main: &Main, errors: &mut Errors) {
    params(main, errors);
    signals(options, errors);
    runtime(options, errors);
    if let Some(ready) = options.ready {
        let has_handle = main.params.iter().any(|p| matches!(p, Param::Handle(_)));
        if ready.value == Ready::Manual && !has_handle {
            errors.at(
                ready.span,
                "with `ready = \"manual\"` the body must call `tf.ready()`: add a \
                 `tf: tableflip::Handle` parameter",
            );
        }
    }
}

/// Duplicate names, Handles, listeners and systemd names.
fn params(main: &Main, errors: &mut Errors) {
    let mut names = HashSet::new();
    let mut handle = None;
    let mut sockets: HashMap<(Network, String), String> = HashMap::new();
    let mut fd_names: HashMap<String, String> = HashMap::new();
    for param in &main.params {
        let binding = match param {
            Param::Listener(l) => &l.binding,
            Param::Handle(b) => b,
        };
        let name = binding.name();
        if !names.insert(name.clone()) {
            errors.at(
                binding.ident.span(),
                format!("there is already a parameter named `{name}`"),
            );
        }
        let listener = match param {
            Param::Handle(b) => {
                if let Some(first) = handle.replace(b.name()) {
                    errors.spanned(
                        &b.ty,
                        format!(
                            "only one Handle parameter: `{first}` is one already; clone it in \
                             the body if you need another"
                        ),
                    );
                }
                continue;
            }
            Param::Listener(l) => l,
        };
        let network = listener.network;
        let (key, lit) = match &listener.addr {
            AddrSource::Literal(lit) => (lit.value(), lit),
            AddrSource::Env { var, .. } => (format!("${}", var.value()), var),
        };
        if let Some(first) = sockets.insert((network, key), name.clone()) {
            let message = match &listener.addr {
                AddrSource::Literal(addr) => {
                    let addr = addr.value();
                    let port = parse_address(network, &addr).ok().and_then(|a| a.port());
                    if port == Some(0) {
                        format!(
                            "duplicate listener: `{first}` already listens on {network} {addr:?}; \
                             two port-0 listeners on one host could not be told apart when they \
                             are handed to the next process: give one a fixed port or another \
                             host"
                        )
                    } else {
                        format!(
                            "duplicate listener: `{first}` already listens on {network} {addr:?}; \
                             declare each socket once"
                        )
                    }
                }
                AddrSource::Env { var, .. } => format!(
                    "duplicate listener: `{first}` already reads its {network} address from \
                     ${}, so both would listen on the same address",
                    var.value()
                ),
            };
            errors.at(lit.span(), message);
        }
        if let Some(lit) = &listener.name
            && let Some(first) = fd_names.insert(lit.value(), name.clone())
        {
            errors.at(
                lit.span(),
                format!(
                    "duplicate listener name: `{first}` already has name = {:?}",
                    lit.value()
                ),
            );
        }
    }
}

/// The upgrade signal (given or the default SIGHUP) can't also stop the service.
fn signals(options: &Options, errors: &mut Errors) {
    let Some(stops) = &options.stop_signals else {
        return;
    };
    let (upgrade, given) = match &options.upgrade_signal {
        Some(sig) => (sig.to_string(), true),
        None => ("SIGHUP".to_owned(), false),
    };
    for stop in stops.iter().filter(|s| *s == upgrade.as_str()) {
        let why = if given {
            "the upgrade signal"
        } else {
            "the upgrade signal (the default `upgrade_signal`)"
        };
        errors.at(
            stop.span(),
            format!(
                "{upgrade} is {why}, so it can't also stop the service: remove it from \
                 `stop_signals`, or choose another `upgrade_signal`"
            ),
        );
    }
}

/// `worker_threads` needs the multi-threaded runtime.
fn runtime(options: &Options, errors: &mut Errors) {
    if let (Some(flavor), Some(threads)) = (options.flavor, &options.worker_threads)
        && flavor.value == Flavor::CurrentThread
    {
        errors.at(
            threads.span(),
            "the `worker_threads` option requires the `multi_thread` runtime flavor: use \
                 `flavor = \"multi_thread\"` or remove `worker_threads`",
        );
    }
}
