//! A declared listener: the parameter it feeds, its network, and where its address comes
//! from (a literal, or an environment variable read at start-up).

use crate::addr::Network;
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

    /// Resolves the address, checking an environment-supplied one.
    pub(crate) fn address(&self) -> Result<String, Error> {
        let addr = match &self.addr {
            AddrSource::Literal(a) => return Ok(a.clone()),
            AddrSource::Env { var, default } => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    default.clone().ok_or_else(|| Error::Env {
                        name: var.clone(),
                        value: String::new(),
                        msg: format!("not set, and listener `{}` has no default", self.param),
                    })?
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
        let var = match &self.addr {
            AddrSource::Env { var, .. } => var,
            AddrSource::Literal(_) => unreachable!(),
        };
        let network = Network::parse(&self.network)?;
        crate::addr::parse_address(network, &addr).map_err(|e| Error::Env {
            name: var.clone(),
            value: addr.clone(),
            msg: format!(
                "not a valid {} address for listener `{}`: {e}",
                self.network, self.param
            ),
        })?;
        Ok(addr)
    }
}
