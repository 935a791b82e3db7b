//! The key a passed descriptor is known by: its kind, network and address (or a file's
//! name), as Go tableflip writes it in the names it sends on fd 4.

use std::fmt;

/// What a passed descriptor is, in Go tableflip's vocabulary (the first string of a names entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FdKind {
    /// A listening stream socket (`"listener"`).
    Listener,
    /// A packet socket (`"packet"`).
    Packet,
    /// A connected socket (`"conn"`).
    Conn,
    /// Any other file, handed over by name (`"fd"`).
    File,
}

impl FdKind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FdKind::Listener => "listener",
            FdKind::Packet => "packet",
            FdKind::Conn => "conn",
            FdKind::File => "fd",
        }
    }

    fn parse(s: &str) -> Option<FdKind> {
        Some(match s {
            "listener" => FdKind::Listener,
            "packet" => FdKind::Packet,
            "conn" => FdKind::Conn,
            "fd" => FdKind::File,
            _ => return None,
        })
    }
}

/// A names entry: `[kind, network, address]`, or `["fd", name, ""]` for files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) kind: FdKind,
    pub(crate) network: String,
    pub(crate) addr: String,
}

impl Key {
    pub(crate) fn new(kind: FdKind, network: &str, addr: &str) -> Key {
        Key {
            kind,
            network: network.to_owned(),
            addr: addr.to_owned(),
        }
    }

    pub(crate) fn file(name: &str) -> Key {
        Key::new(FdKind::File, name, "")
    }

    pub(crate) fn from_names_entry(entry: Vec<String>) -> Result<Key, String> {
        let [kind, network, addr]: [String; 3] = entry
            .try_into()
            .map_err(|e: Vec<String>| format!("expected 3 strings, got {}", e.len()))?;
        let kind = FdKind::parse(&kind).ok_or_else(|| {
            format!("unknown kind {kind:?} (expected listener, packet, conn or fd)")
        })?;
        Ok(Key {
            kind,
            network,
            addr,
        })
    }

    pub(crate) fn to_names_entry(&self) -> Vec<String> {
        vec![
            self.kind.as_str().to_owned(),
            self.network.clone(),
            self.addr.clone(),
        ]
    }

    /// The unix socket file behind this key, if it names one (never an abstract name).
    pub(crate) fn socket_path(&self) -> Option<&str> {
        let unix = matches!(
            (self.kind, self.network.as_str()),
            (FdKind::Listener, "unix" | "unixpacket") | (FdKind::Packet, "unixgram")
        );
        (unix && !self.addr.starts_with('@') && !self.addr.is_empty()).then_some(self.addr.as_str())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind.as_str(), self.network, self.addr)
    }
}
