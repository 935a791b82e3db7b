//! A declared listener: the parameter it feeds, its network, and where its address comes
//! from (a literal, or an environment variable read at start-up).

use crate::addr::{Endpoint, Network};
use crate::error::Error;

#[derive(Clone, Debug)]
enum AddrSource {
    Literal(String),
    Env {
        var: String,
        default: Option<String>,
    },
}

/// A declared listener: the parameter it feeds, its network and where its address comes from.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    pub(crate) param: String,
    pub(crate) network: String,
    addr: AddrSource,
    pub(crate) name: Option<String>,
}

impl ListenerSpec {
    /// A listener on a fixed address, e.g. `ListenerSpec::new("http", "tcp", ":8080")`.
    pub fn new(param: &str, network: &str, addr: &str) -> ListenerSpec {
        ListenerSpec {
            param: param.to_owned(),
            network: network.to_owned(),
            addr: AddrSource::Literal(addr.to_owned()),
            name: None,
        }
    }

    /// A listener whose address is read from the environment variable `var` at start-up,
    /// falling back to `default` (if `None`, the variable is required).
    pub fn from_env(param: &str, network: &str, var: &str, default: Option<&str>) -> ListenerSpec {
        ListenerSpec {
            param: param.to_owned(),
            network: network.to_owned(),
            addr: AddrSource::Env {
                var: var.to_owned(),
                default: default.map(str::to_owned),
            },
            name: None,
        }
    }

    /// The systemd `FileDescriptorName=` this listener claims under socket activation.
    pub fn name(mut self, name: &str) -> ListenerSpec {
        self.name = Some(name.to_owned());
        self
    }

    /// The listener's network and address, parsed once, here: the address read from the
    /// environment now if it comes from there. A bad literal address is an error of this
    /// listener; a bad address from the environment names the variable.
    pub(crate) fn endpoint(&self) -> Result<Endpoint, Error> {
        let network = Network::parse(&self.network)?;
        let (var, addr) = match &self.addr {
            AddrSource::Literal(addr) => {
                return Endpoint::new(network, addr).map_err(|e| Error::Listener {
                    param: self.param.clone(),
                    network: self.network.clone(),
                    addr: addr.clone(),
                    source: Box::new(e.into()),
                });
            }
            AddrSource::Env { var, default } => match std::env::var(var) {
                Ok(v) => (var, v),
                Err(std::env::VarError::NotPresent) => {
                    let addr = default.clone().ok_or_else(|| Error::Env {
                        name: var.clone(),
                        value: String::new(),
                        msg: format!("not set, and listener `{}` has no default", self.param),
                    })?;
                    (var, addr)
                }
                Err(std::env::VarError::NotUnicode(v)) => {
                    return Err(Error::Env {
                        name: var.clone(),
                        value: v.to_string_lossy().into_owned(),
                        msg: "not valid UTF-8".into(),
                    });
                }
            },
        };
        Endpoint::new(network, &addr).map_err(|e| Error::Env {
            name: var.clone(),
            value: addr.clone(),
            msg: format!(
                "not a valid {} address for listener `{}`: {e}",
                self.network, self.param
            ),
        })
    }
}
