//! The declared listeners, acquired at start-up (inherited, activated by systemd, or bound),
//! for the body to take by parameter name.

use std::os::fd::OwnedFd;

use crate::addr::Network;
use crate::error::Error;
use crate::fds::{FdKind, FromFd};
use crate::spec::ListenerSpec;
use crate::upgrader::Upgrader;

/// The declared listeners, acquired, for the body to take by parameter name.
#[derive(Debug, Default)]
pub struct Listeners {
    entries: Vec<(String, FdKind, Network, OwnedFd)>,
}

impl Listeners {
    pub(crate) fn push(&mut self, entry: (String, FdKind, Network, OwnedFd)) {
        self.entries.push(entry);
    }

    /// Takes the listener declared for `param` as a `T` (tokio types need a runtime).
    pub fn take<T: FromFd>(&mut self, param: &str) -> Result<T, Error> {
        let pos = self
            .entries
            .iter()
            .position(|(p, ..)| p == param)
            .ok_or_else(|| {
                Error::io(
                    format!("no listener declared for `{param}`"),
                    std::io::ErrorKind::NotFound.into(),
                )
            })?;
        let (param, kind, network, fd) = self.entries.swap_remove(pos);
        if !T::fits(kind, network) {
            return Err(Error::WrongType {
                ty: T::NAME,
                kind: kind.as_str(),
                network: network.to_string(),
            });
        }
        T::from_fd(fd)
            .map_err(|e| Error::io(format!("can't use listener `{param}` as {}", T::NAME), e))
    }
}

/// Acquires a declared listener: inherited by key, else activated by systemd (by name, else
/// by address and socket type), else bound.
pub(crate) fn acquire(
    upgrader: &Upgrader,
    spec: &ListenerSpec,
) -> Result<(String, FdKind, Network, OwnedFd), Error> {
    let endpoint = spec.endpoint()?;
    let network = endpoint.network();
    let kind = if network.is_packet() {
        FdKind::Packet
    } else {
        FdKind::Listener
    };
    let fd = upgrader
        .fds()
        .claim_or_bind::<OwnedFd>(&endpoint, spec.name.as_deref())
        .map_err(|e| Error::Listener {
            param: spec.param.clone(),
            network: spec.network.clone(),
            addr: endpoint.as_str().to_owned(),
            source: Box::new(e),
        })?;
    Ok((spec.param.clone(), kind, network, fd))
}
