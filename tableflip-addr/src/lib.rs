//! Network names, addresses and durations in Go's vocabulary, parsed once.
//!
//! A small crate of its own, depending on nothing but `std`, so that the `#[tableflip::main]`
//! attribute (`tableflip-macros`, which checks literal addresses and durations at compile
//! time) and the runtime (`tableflip-runtime`, which checks them from configuration and
//! environment variables) share one parser: both give the same answer and the same error
//! message. Not meant to be used directly: the `tableflip` crate re-exports what users need.
//!
//! Addresses follow Go's `net.SplitHostPort` rules, a little stricter where Go's leniency
//! would only surprise: ports must be decimal numbers (no service names such as `"http"`),
//! IPv6 literals must be bracketed, and brackets hold only IPv6 literals.

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

/// A network name in Go's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// `"tcp"`: a TCP listener on IPv4 and/or IPv6.
    Tcp,
    /// `"tcp4"`: a TCP listener on IPv4 only.
    Tcp4,
    /// `"tcp6"`: a TCP listener on IPv6 only.
    Tcp6,
    /// `"unix"`: a `SOCK_STREAM` listener on a unix socket.
    Unix,
    /// `"unixpacket"`: a `SOCK_SEQPACKET` listener on a unix socket.
    UnixPacket,
    /// `"udp"`: a UDP socket on IPv4 and/or IPv6.
    Udp,
    /// `"udp4"`: a UDP socket on IPv4 only.
    Udp4,
    /// `"udp6"`: a UDP socket on IPv6 only.
    Udp6,
    /// `"unixgram"`: a `SOCK_DGRAM` unix socket.
    Unixgram,
}

impl Network {
    /// Every network, in the order Go's documentation lists them.
    pub const ALL: [Network; 9] = [
        Network::Tcp,
        Network::Tcp4,
        Network::Tcp6,
        Network::Unix,
        Network::UnixPacket,
        Network::Udp,
        Network::Udp4,
        Network::Udp6,
        Network::Unixgram,
    ];

    /// Parses an exact, lowercase network name such as `"tcp"` or `"unixgram"`.
    ///
    /// The error lists every valid name.
    pub fn parse(s: &str) -> Result<Network, AddrError> {
        Network::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Network::ALL.iter().map(|n| n.as_str()).collect();
                AddrError::new(format!(
                    "unknown network {}: expected one of {}",
                    quote(s),
                    names.join(", ")
                ))
            })
    }

    /// The network's name as Go spells it, e.g. `"tcp6"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Tcp => "tcp",
            Network::Tcp4 => "tcp4",
            Network::Tcp6 => "tcp6",
            Network::Unix => "unix",
            Network::UnixPacket => "unixpacket",
            Network::Udp => "udp",
            Network::Udp4 => "udp4",
            Network::Udp6 => "udp6",
            Network::Unixgram => "unixgram",
        }
    }

    /// True for the stream listeners: `tcp`, `tcp4`, `tcp6`, `unix` and `unixpacket`.
    pub fn is_listener(self) -> bool {
        matches!(
            self,
            Network::Tcp | Network::Tcp4 | Network::Tcp6 | Network::Unix | Network::UnixPacket
        )
    }

    /// True for the packet networks: `udp`, `udp4`, `udp6` and `unixgram`.
    pub fn is_packet(self) -> bool {
        !self.is_listener()
    }

    /// True for the unix-domain networks: `unix`, `unixpacket` and `unixgram`.
    pub fn is_unix(self) -> bool {
        matches!(
            self,
            Network::Unix | Network::UnixPacket | Network::Unixgram
        )
    }

    /// The socket type the network uses: the one network → socket type table.
    pub fn socket_type(self) -> SocketType {
        match self {
            Network::Tcp | Network::Tcp4 | Network::Tcp6 | Network::Unix => SocketType::Stream,
            Network::UnixPacket => SocketType::SeqPacket,
            Network::Udp | Network::Udp4 | Network::Udp6 | Network::Unixgram => {
                SocketType::Datagram
            }
        }
    }

    /// Which IP family an inet network is limited to: `Some(4)`, `Some(6)`, or `None` for
    /// `tcp`/`udp` (either) and for the unix networks.
    pub fn ip_version(self) -> Option<u8> {
        match self {
            Network::Tcp4 | Network::Udp4 => Some(4),
            Network::Tcp6 | Network::Udp6 => Some(6),
            _ => None,
        }
    }

    /// An accepted address for this network, for error messages.
    fn example(self) -> &'static str {
        match self {
            Network::Tcp4 | Network::Udp4 => "\"127.0.0.1:8080\" or \":8080\"",
            Network::Tcp6 | Network::Udp6 => "\"[::1]:8080\" or \":8080\"",
            Network::Tcp | Network::Udp => "\"127.0.0.1:8080\", \"[::1]:8080\" or \":8080\"",
            Network::Unix | Network::UnixPacket | Network::Unixgram => UNIX_EXAMPLE,
        }
    }
}

/// The socket type of a [`Network`] (`SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// `SOCK_STREAM`: `tcp`, `tcp4`, `tcp6`, `unix`.
    Stream,
    /// `SOCK_DGRAM`: `udp`, `udp4`, `udp6`, `unixgram`.
    Datagram,
    /// `SOCK_SEQPACKET`: `unixpacket`.
    SeqPacket,
}

impl fmt::Display for Network {
    /// Writes the network's name, e.g. `tcp6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed address in Go's form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// An internet address.
    ///
    /// `host` is `None` for all interfaces (`":8080"`). `Some(host)` is an IP literal as
    /// written (without brackets; an IPv6 zone is kept, as in `"fe80::1%eth0"`) or a host
    /// name such as `"localhost"`.
    Inet {
        /// The host: `None` for all interfaces, else an IP literal or a host name.
        host: Option<String>,
        /// The port; 0 asks the system to choose one.
        port: u16,
    },
    /// A filesystem path (a unix socket file).
    Path(PathBuf),
    /// A Linux abstract socket name: the address was `"@name"`; this holds `"name"`
    /// (without the `'@'`).
    Abstract(String),
}

impl Address {
    /// The port of an internet address; `None` for unix addresses.
    pub fn port(&self) -> Option<u16> {
        match self {
            Address::Inet { port, .. } => Some(*port),
            Address::Path(_) | Address::Abstract(_) => None,
        }
    }
}

/// A network and an address for it, parsed once: what a listener is declared on.
///
/// The address is kept as written too (`as_str`), for keys, hooks and messages.
///
/// ```
/// use tableflip_addr::{Address, Endpoint, Network};
///
/// let ep = Endpoint::parse("tcp", ":8080").unwrap();
/// assert_eq!(ep.network(), Network::Tcp);
/// assert_eq!(ep.address(), &Address::Inet { host: None, port: 8080 });
/// assert_eq!(ep.as_str(), ":8080");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    network: Network,
    address: Address,
    text: String,
}

impl Endpoint {
    /// Parses a network name and an address for it.
    pub fn parse(network: &str, addr: &str) -> Result<Endpoint, AddrError> {
        Endpoint::new(Network::parse(network)?, addr)
    }

    /// Parses an address for `network`.
    pub fn new(network: Network, addr: &str) -> Result<Endpoint, AddrError> {
        Ok(Endpoint {
            network,
            address: parse_address(network, addr)?,
            text: addr.to_owned(),
        })
    }

    /// The network.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The parsed address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The address as written, e.g. `":8080"`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Endpoint {
    /// Writes the network and the address as written, e.g. `tcp ":8080"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.network, self.text)
    }
}

/// An invalid network name, address or duration.
///
/// Its `Display` is one line that says what was wrong and shows an example of the
/// accepted form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrError {
    /// The one-line message.
    message: String,
}

impl AddrError {
    /// An error with the given one-line message.
    fn new(message: String) -> AddrError {
        AddrError { message }
    }
}

impl fmt::Display for AddrError {
    /// Writes the one-line message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AddrError {}

/// The longest unix socket path, in bytes, that fits `sun_path` with its terminating NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAX_UNIX_PATH: usize = 107;
/// The longest unix socket path, in bytes, that fits `sun_path` with its terminating NUL.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MAX_UNIX_PATH: usize = 103;

/// Accepted unix addresses, for error messages.
#[cfg(any(target_os = "linux", target_os = "android"))]
const UNIX_EXAMPLE: &str = "\"/run/app.sock\" or \"@app\"";
/// Accepted unix addresses, for error messages.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const UNIX_EXAMPLE: &str = "\"/tmp/app.sock\"";

/// The longest piece of user input quoted back in an error message, in bytes.
const MAX_QUOTED: usize = 120;

/// Quotes user input for an error message: escaped like a Rust string literal (so control
/// characters cannot break the line) and cut short if very long.
fn quote(s: &str) -> String {
    if s.len() <= MAX_QUOTED {
        return format!("{s:?}");
    }
    let mut end = MAX_QUOTED;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", &s[..end])
}

/// Parses `addr` as an address for `network`, with Go's `net.SplitHostPort` rules.
///
/// Internet networks take `"host:port"`: the host is empty (all interfaces, `":8080"`), an
/// IPv4 literal, a bracketed IPv6 literal (`"[::1]:53"`, `"[fe80::1%eth0]:53"`), or a host
/// name of letters, digits, `'-'` and `'.'` (`"localhost:80"`). The port is a decimal
/// number from 0 to 65535; service names such as `"http"` are rejected. `tcp4`/`udp4`
/// reject IPv6 literals and `tcp6`/`udp6` reject IPv4 literals (a host name's family is
/// only known once it is resolved, when the socket is bound).
///
/// Unix networks take a non-empty path without NUL bytes that fits `sun_path` (107 bytes
/// on Linux), or `"@name"` for a Linux abstract socket (an error on other systems).
///
/// The empty string is an error for every network.
pub fn parse_address(network: Network, addr: &str) -> Result<Address, AddrError> {
    let fail = |problem: &str| {
        AddrError::new(format!(
            "invalid {network} address {}: {problem}; expected e.g. {}",
            quote(addr),
            network.example()
        ))
    };
    if addr.is_empty() {
        return Err(fail("the address is empty"));
    }
    if addr.contains('\0') {
        return Err(fail("it contains a NUL byte"));
    }
    if network.is_unix() {
        parse_unix(addr).map_err(|p| fail(&p))
    } else {
        parse_inet(network, addr).map_err(|p| fail(&p))
    }
}

/// Parses a unix address (already known to be non-empty and free of NUL bytes); the error
/// is the problem, without the address.
fn parse_unix(addr: &str) -> Result<Address, String> {
    if let Some(name) = addr.strip_prefix('@') {
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            return Err("abstract socket names (\"@name\") exist only on Linux".to_owned());
        }
        if name.is_empty() {
            return Err("the abstract socket name after '@' is empty".to_owned());
        }
        if name.len() > MAX_UNIX_PATH {
            return Err(format!(
                "the abstract socket name is {} bytes long, the limit is {MAX_UNIX_PATH}",
                name.len()
            ));
        }
        return Ok(Address::Abstract(name.to_owned()));
    }
    if addr.len() > MAX_UNIX_PATH {
        return Err(format!(
            "the path is {} bytes long, but a unix socket path can have at most \
             {MAX_UNIX_PATH} bytes (a shorter directory or a relative path helps)",
            addr.len()
        ));
    }
    Ok(Address::Path(PathBuf::from(addr)))
}

/// Parses an internet `"host:port"`; the error is the problem, without the address.
fn parse_inet(network: Network, addr: &str) -> Result<Address, String> {
    let (host, port) = split_host_port(addr)?;
    let port = parse_port(port)?;
    let host = match host {
        Host::Any => None,
        Host::V6(h) => {
            if network.ip_version() == Some(4) {
                return Err(format!(
                    "{} is an IPv6 address, but {network} is IPv4 only",
                    quote(h)
                ));
            }
            Some(h.to_owned())
        }
        Host::Plain(h) => {
            if h.parse::<Ipv4Addr>().is_ok() {
                if network.ip_version() == Some(6) {
                    return Err(format!(
                        "{} is an IPv4 address, but {network} is IPv6 only",
                        quote(h)
                    ));
                }
            } else {
                check_host_name(h)?;
            }
            Some(h.to_owned())
        }
    };
    Ok(Address::Inet { host, port })
}

/// The host part of a `"host:port"`.
enum Host<'a> {
    /// Empty: all interfaces.
    Any,
    /// A bracketed IPv6 literal, without its brackets, already checked.
    V6(&'a str),
    /// Unbracketed: an IPv4 literal or a host name, not yet checked.
    Plain(&'a str),
}

/// Splits `"host:port"` like Go's `net.SplitHostPort`, checking bracketed IPv6 literals.
fn split_host_port(addr: &str) -> Result<(Host<'_>, &str), String> {
    let Some(colon) = addr.rfind(':') else {
        return Err("the port is missing (\"host:port\")".to_owned());
    };
    let port = &addr[colon + 1..];
    if let Some(rest) = addr.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err("'[' has no matching ']'".to_owned());
        };
        let inside = &rest[..close];
        let after = &rest[close + 1..];
        if after.is_empty() {
            return Err("the port is missing after ']' (\"[host]:port\")".to_owned());
        }
        if !after.starts_with(':') || after[1..].contains(':') {
            return Err("only \":port\" may follow ']'".to_owned());
        }
        if inside.contains('[') {
            return Err("unexpected '[' inside brackets".to_owned());
        }
        if inside.is_empty() {
            return Err(
                "the brackets are empty; leave the host out for all interfaces \
                        (\":8080\")"
                    .to_owned(),
            );
        }
        check_ipv6_literal(inside)?;
        return Ok((Host::V6(inside), port));
    }
    let host = &addr[..colon];
    if host.contains(':') {
        return Err(
            "too many colons: an IPv6 address needs brackets, as in \"[::1]:8080\"".to_owned(),
        );
    }
    if host.contains('[') || host.contains(']') {
        return Err("misplaced '[' or ']'".to_owned());
    }
    if host.is_empty() {
        Ok((Host::Any, port))
    } else {
        Ok((Host::Plain(host), port))
    }
}

/// Checks an IPv6 literal with an optional zone (`"fe80::1%eth0"`, `"fe80::1%2"`).
fn check_ipv6_literal(s: &str) -> Result<(), String> {
    let (ip, zone) = match s.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (s, None),
    };
    if ip.parse::<Ipv6Addr>().is_err() {
        return Err(format!(
            "{} in brackets is not an IPv6 address (brackets are only for IPv6 literals)",
            quote(ip)
        ));
    }
    if let Some(zone) = zone {
        if zone.is_empty() {
            return Err("the IPv6 zone after '%' is empty".to_owned());
        }
        if !zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "the IPv6 zone {} is not an interface name or number",
                quote(zone)
            ));
        }
    }
    Ok(())
}

/// Checks a DNS-style host name: labels of ASCII letters, digits and `'-'`, separated by
/// dots, with an optional final dot.
fn check_host_name(h: &str) -> Result<(), String> {
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("{} is not a valid IPv4 address", quote(h)));
    }
    if let Some(bad) = h
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "the host {} has the character {bad:?}; a host is an IP address or a name of \
             letters, digits, '-' and '.'",
            quote(h)
        ));
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    if name.len() > 253 {
        return Err(format!(
            "the host name is {} bytes long, the limit is 253",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "the host name {} has an empty label (\"..\" or a leading '.')",
                quote(h)
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "the host name {} has a label longer than 63 bytes",
                quote(h)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "the host name {} has a label that starts or ends with '-'",
                quote(h)
            ));
        }
    }
    Ok(())
}

/// Parses a decimal port number from 0 to 65535.
fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() {
        return Err("the port number after ':' is missing".to_owned());
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        if p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && p.bytes().any(|b| b.is_ascii_alphabetic())
        {
            return Err(format!(
                "the port {} is not a number (service names are not supported)",
                quote(p)
            ));
        }
        return Err(format!("the port {} is not a decimal number", quote(p)));
    }
    // All ASCII digits: the only possible failure is overflow.
    p.parse::<u16>()
        .map_err(|_| format!("the port {} is out of range (0 to 65535)", quote(p)))
}

/// Formats an IP address and port in Go's form: `"127.0.0.1:80"`, `"[::1]:80"`.
///
/// This is the inverse of [`parse_address`] for canonical inputs: parsing the result for
/// `tcp` gives back `Address::Inet` with the address's canonical text as the host.
pub fn format_inet(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Parses a duration as `"500ms"`, `"30s"`, `"2m"`, `"1h"` or a sum such as `"1m30s"`.
///
/// Like Go's `time.ParseDuration`: a sequence of decimal numbers, each with an optional
/// fraction (`"1.5s"`) and a unit: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; an optional
/// leading `'+'`. Unlike Go, a number without a unit (even `"0"`) and a negative duration
/// are errors. Used for upgrade and drain timeouts, both at compile time and from
/// environment variables.
pub fn parse_duration(s: &str) -> Result<Duration, AddrError> {
    parse_duration_nanos(s)
        .and_then(|nanos| {
            u64::try_from(nanos)
                .map(Duration::from_nanos)
                .map_err(|_| "it is too long (more than 584 years)".to_owned())
        })
        .map_err(|problem| {
            AddrError::new(format!(
                "invalid duration {}: {problem}; expected e.g. \"500ms\", \"30s\", \"2m\" or \
                 \"1m30s\" (units ns, us, ms, s, m, h)",
                quote(s)
            ))
        })
}

/// The shortest upgrade or drain timeout that can work: a new process needs time to start,
/// and a drain of zero cuts every request in flight.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest: beyond a day a timeout is a typo, not a plan (and 100 years overflows
/// clocks).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Checks that an upgrade or drain timeout is between [`MIN_TIMEOUT`] and [`MAX_TIMEOUT`];
/// the error says why not, for one line after the setting's name.
pub fn check_timeout(what: &str, d: Duration) -> Result<(), String> {
    if d < MIN_TIMEOUT {
        return Err(format!(
            "{what} of {d:?} is too short: at least {MIN_TIMEOUT:?} (e.g. \"30s\")"
        ));
    }
    if d > MAX_TIMEOUT {
        return Err(format!(
            "{what} of {d:?} is absurdly long: at most 24h (e.g. \"30s\")"
        ));
    }
    Ok(())
}

/// Nanoseconds in one of each unit.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // MICRO SIGN, as Go accepts
    ("\u{3bc}s", 1_000), // GREEK SMALL LETTER MU, as Go accepts
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The total of a duration in nanoseconds, with the problem as the error.
fn parse_duration_nanos(s: &str) -> Result<u128, String> {
    /// A total beyond this is "too long" however it continues (and fits `u128` easily).
    const CAP: u128 = 1 << 100;
    if s.is_empty() {
        return Err("it is empty".to_owned());
    }
    if s.contains(char::is_whitespace) {
        return Err("it contains whitespace".to_owned());
    }
    if s.starts_with('-') {
        return Err("it is negative".to_owned());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err("there is no number".to_owned());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // The number: digits, optionally '.', digits.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_digits = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_digits = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_digits = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err("a unit has no number before it".to_owned());
        }
        // The unit: everything up to the next digit or '.'.
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err("a number has no unit".to_owned());
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit {}", quote(unit)));
        };
        let mut int: u128 = 0;
        for d in int_digits.bytes() {
            int = int * 10 + u128::from(d - b'0');
            if int > CAP {
                return Err("it is too long".to_owned());
            }
        }
        // At most 18 fraction digits count: finer than a nanosecond for every unit.
        let mut frac: u128 = 0;
        let mut frac_scale: u128 = 1;
        for d in frac_digits.bytes().take(18) {
            frac = frac * 10 + u128::from(d - b'0');
            frac_scale *= 10;
        }
        total = total
            .saturating_add(int.saturating_mul(scale))
            .saturating_add(frac * scale / frac_scale);
        if total > CAP {
            return Err("it is too long".to_owned());
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    fn inet(host: Option<&str>, port: u16) -> Address {
        Address::Inet {
            host: host.map(str::to_owned),
            port,
        }
    }

    #[test]
    fn network_names_round_trip() {
        for n in Network::ALL {
            assert_eq!(Network::parse(n.as_str()), Ok(n));
            assert_eq!(n.to_string(), n.as_str());
            assert_ne!(n.is_listener(), n.is_packet());
        }
        let unix: Vec<_> = Network::ALL.into_iter().filter(|n| n.is_unix()).collect();
        assert_eq!(
            unix,
            [Network::Unix, Network::UnixPacket, Network::Unixgram]
        );
        let listeners: Vec<_> = Network::ALL
            .into_iter()
            .filter(|n| n.is_listener())
            .collect();
        assert_eq!(
            listeners,
            [
                Network::Tcp,
                Network::Tcp4,
                Network::Tcp6,
                Network::Unix,
                Network::UnixPacket
            ]
        );
    }

    #[test]
    fn network_parse_errors_list_the_names() {
        for bad in ["", "TCP", "tcp ", "ip", "udp7", "unix\0"] {
            let e = Network::parse(bad).unwrap_err().to_string();
            assert!(e.contains("unknown network"), "{e}");
            assert!(
                e.contains("tcp, tcp4, tcp6, unix, unixpacket, udp, udp4, udp6, unixgram"),
                "{e}"
            );
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn inet_addresses() {
        use Network::*;
        let ok: &[(Network, &str, Address)] = &[
            (Tcp, ":8080", inet(None, 8080)),
            (Tcp, ":0", inet(None, 0)),
            (Tcp, ":65535", inet(None, 65535)),
            (Tcp, ":080", inet(None, 80)),
            (Tcp, "127.0.0.1:80", inet(Some("127.0.0.1"), 80)),
            (Tcp, "0.0.0.0:80", inet(Some("0.0.0.0"), 80)),
            (Tcp, "[::1]:53", inet(Some("::1"), 53)),
            (Tcp, "[::]:53", inet(Some("::"), 53)),
            (Udp, "[fe80::1%eth0]:53", inet(Some("fe80::1%eth0"), 53)),
            (Udp, "[fe80::1%2]:53", inet(Some("fe80::1%2"), 53)),
            (Tcp, "[::ffff:1.2.3.4]:1", inet(Some("::ffff:1.2.3.4"), 1)),
            (Tcp, "localhost:80", inet(Some("localhost"), 80)),
            (Tcp, "example.com.:80", inet(Some("example.com."), 80)),
            (
                Tcp,
                "my-host.example.org:443",
                inet(Some("my-host.example.org"), 443),
            ),
            (Tcp4, "127.0.0.1:1", inet(Some("127.0.0.1"), 1)),
            (Tcp4, ":1", inet(None, 1)),
            (Tcp4, "localhost:1", inet(Some("localhost"), 1)),
            (Tcp6, "[::1]:1", inet(Some("::1"), 1)),
            (Tcp6, ":1", inet(None, 1)),
            (Tcp6, "localhost:1", inet(Some("localhost"), 1)),
            (Udp4, "10.0.0.1:5353", inet(Some("10.0.0.1"), 5353)),
            (Udp6, "[2001:db8::1]:5353", inet(Some("2001:db8::1"), 5353)),
        ];
        for (net, addr, want) in ok {
            assert_eq!(
                parse_address(*net, addr).as_ref(),
                Ok(want),
                "{net} {addr:?}"
            );
        }
        assert_eq!(
            parse_address(Tcp, ":8080").map(|a| a.port()),
            Ok(Some(8080))
        );
    }

    #[test]
    fn inet_errors() {
        use Network::*;
        // (network, address, a piece of the message)
        let bad: &[(Network, &str, &str)] = &[
            (Tcp, "", "empty"),
            (Udp, "", "empty"),
            (Tcp, "8080", "port is missing"),
            (Tcp, "localhost", "port is missing"),
            (Tcp, "localhost:", "port number after ':' is missing"),
            (Tcp, ":", "port number after ':' is missing"),
            (Tcp, ":http", "service names are not supported"),
            (Tcp, "localhost:https", "service names are not supported"),
            (Tcp, ":65536", "out of range"),
            (Tcp, ":99999999999999999999999", "out of range"),
            (Tcp, ":-1", "not a decimal number"),
            (Tcp, ":+80", "not a decimal number"),
            (Tcp, ": 80", "not a decimal number"),
            (Tcp, "::1:80", "IPv6 address needs brackets"),
            (Tcp, "::1", "IPv6 address needs brackets"),
            (Tcp, "[::1]", "port is missing after ']'"),
            (Tcp, "[::1]80:", "only \":port\" may follow ']'"),
            (Tcp, "[::1]:80:80", "only \":port\" may follow ']'"),
            (Tcp, "[::1:80", "no matching ']'"),
            (Tcp, "[]:80", "brackets are empty"),
            (Tcp, "[127.0.0.1]:80", "brackets are only for IPv6"),
            (Tcp, "[localhost]:80", "brackets are only for IPv6"),
            (Tcp, "[[::1]]:80", "may follow"),
            (Tcp, "[fe80::1%]:80", "zone after '%' is empty"),
            (Tcp, "[fe80::1%a b]:80", "zone"),
            (Tcp, "a]b:80", "misplaced"),
            (Tcp, "256.0.0.1:80", "not a valid IPv4 address"),
            (Tcp, "1.2.3:80", "not a valid IPv4 address"),
            (Tcp, "01.2.3.4:80", "not a valid IPv4 address"),
            (Tcp, "127.0.0.1%eth0:80", "character '%'"),
            (Tcp, "local_host:80", "character '_'"),
            (Tcp, " localhost:80", "character ' '"),
            (Tcp, "ex..com:80", "empty label"),
            (Tcp, ".com:80", "empty label"),
            (Tcp, "-a.com:80", "starts or ends with '-'"),
            (Tcp, "héllo:80", "character 'é'"),
            (Tcp4, "[::1]:80", "IPv4 only"),
            (Udp4, "[::]:80", "IPv4 only"),
            (Tcp6, "127.0.0.1:80", "IPv6 only"),
            (Udp6, "0.0.0.0:80", "IPv6 only"),
            (Tcp, "a\0b:80", "NUL"),
        ];
        for (net, addr, piece) in bad {
            let e = parse_address(*net, addr).unwrap_err().to_string();
            assert!(e.contains(piece), "{net} {addr:?}: {e:?} lacks {piece:?}");
            assert!(e.contains("expected e.g."), "{e}");
            assert!(e.contains(":8080"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let long_label = format!("{}.com:80", "a".repeat(64));
        assert!(
            parse_address(Tcp, &long_label)
                .unwrap_err()
                .to_string()
                .contains("63")
        );
        let long_name = format!("{}:80", ["abc"; 70].join("."));
        assert!(
            parse_address(Tcp, &long_name)
                .unwrap_err()
                .to_string()
                .contains("253")
        );
    }

    #[test]
    fn unix_addresses() {
        use Network::*;
        for net in [Unix, UnixPacket, Unixgram] {
            assert_eq!(
                parse_address(net, "/run/app.sock"),
                Ok(Address::Path("/run/app.sock".into()))
            );
            assert_eq!(
                parse_address(net, "rel.sock"),
                Ok(Address::Path("rel.sock".into()))
            );
            // Go treats anything as a path, even something that looks like host:port.
            assert_eq!(parse_address(net, "a:80"), Ok(Address::Path("a:80".into())));
            assert_eq!(
                parse_address(net, "/run/app.sock").map(|a| a.port()),
                Ok(None)
            );
            let max = "x".repeat(MAX_UNIX_PATH);
            assert_eq!(
                parse_address(net, &max),
                Ok(Address::Path(Path::new(&max).into()))
            );
            let e = parse_address(net, &format!("{max}x"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("at most"), "{e}");
            let e = parse_address(net, &"y".repeat(5000))
                .unwrap_err()
                .to_string();
            assert!(e.contains("...: "), "long input is cut short: {e}");
            assert!(e.len() < 400, "{e}");
            let e = parse_address(net, "").unwrap_err().to_string();
            assert!(e.contains("empty") && e.contains("app.sock"), "{e}");
            let e = parse_address(net, "/a\0b").unwrap_err().to_string();
            assert!(e.contains("NUL") && e.contains("\\0"), "{e}");
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn abstract_addresses() {
        use Network::*;
        for net in [Unix, UnixPacket, Unixgram] {
            assert_eq!(
                parse_address(net, "@app"),
                Ok(Address::Abstract("app".into()))
            );
            assert_eq!(
                parse_address(net, "@a/b c"),
                Ok(Address::Abstract("a/b c".into()))
            );
            let max = format!("@{}", "n".repeat(MAX_UNIX_PATH));
            assert!(parse_address(net, &max).is_ok());
            let e = parse_address(net, &format!("{max}n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("limit is 107"), "{e}");
            let e = parse_address(net, "@").unwrap_err().to_string();
            assert!(e.contains("empty"), "{e}");
            assert!(parse_address(net, "@a\0").is_err());
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    #[test]
    fn abstract_addresses_are_linux_only() {
        let e = parse_address(Network::Unix, "@app")
            .unwrap_err()
            .to_string();
        assert!(e.contains("only on Linux"), "{e}");
    }

    #[test]
    fn durations() {
        let ok: &[(&str, Duration)] = &[
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("1.5s", Duration::from_millis(1500)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("0s", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1.0000000001s", Duration::from_secs(1)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("2562047h", Duration::from_secs(2_562_047 * 3600)),
        ];
        for (s, want) in ok {
            assert_eq!(parse_duration(s), Ok(*want), "{s:?}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            ("30", "no unit"),
            ("0", "no unit"),
            ("1m30", "no unit"),
            ("-5s", "negative"),
            ("+", "no number"),
            ("s", "no number"),
            (".s", "no number"),
            ("5 s", "whitespace"),
            ("5sec", "unknown unit"),
            ("5S", "unknown unit"),
            ("5d", "unknown unit"),
            (" 5s", "whitespace"),
            ("5s\n", "whitespace"),
            ("99999999999999999999999999999999999999999h", "too long"),
            ("9999999999999h", "too long"),
        ];
        for (s, piece) in bad {
            let e = parse_duration(s).unwrap_err().to_string();
            assert!(e.contains(piece), "{s:?}: {e:?} lacks {piece:?}");
            assert!(e.contains("\"30s\""), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn format_inet_examples() {
        assert_eq!(format_inet(Ipv4Addr::LOCALHOST.into(), 80), "127.0.0.1:80");
        assert_eq!(format_inet(Ipv6Addr::LOCALHOST.into(), 80), "[::1]:80");
        assert_eq!(format_inet(Ipv6Addr::UNSPECIFIED.into(), 0), "[::]:0");
    }

    proptest! {
        #[test]
        fn parse_address_never_panics(s in any::<String>()) {
            for n in Network::ALL {
                let _ = parse_address(n, &s);
            }
        }

        #[test]
        fn parse_address_never_panics_on_addressy_input(s in "[\\[\\]:%@./a-z0-9-]{0,40}") {
            for n in Network::ALL {
                if let Err(e) = parse_address(n, &s) {
                    prop_assert!(!e.to_string().contains('\n'));
                }
            }
        }

        #[test]
        fn network_parse_never_panics_and_errs_on_one_line(s in any::<String>()) {
            match Network::parse(&s) {
                Ok(n) => prop_assert_eq!(n.as_str(), s.as_str()),
                Err(e) => prop_assert!(!e.to_string().contains('\n')),
            }
        }

        #[test]
        fn parse_address_errors_are_one_line_for_any_input(s in any::<String>()) {
            for n in Network::ALL {
                if let Err(e) = parse_address(n, &s) {
                    prop_assert!(!e.to_string().contains('\n'), "{:?}", e.to_string());
                }
            }
        }

        #[test]
        fn parse_address_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let s = String::from_utf8_lossy(&bytes);
            for n in Network::ALL {
                let _ = parse_address(n, &s);
            }
        }

        #[test]
        fn parse_duration_never_panics(s in any::<String>()) {
            let _ = parse_duration(&s);
        }

        #[test]
        fn parse_duration_never_panics_on_durationy_input(s in "[+-]?[0-9.]{0,30}(ns|us|µs|ms|s|m|h|x)?([0-9.]{0,25}(ns|us|ms|s|m|h))*") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(ms in 0u64..10_000_000_000) {
            prop_assert_eq!(parse_duration(&format!("{ms}ms")), Ok(Duration::from_millis(ms)));
        }

        #[test]
        fn format_inet_round_trips(ip in any::<IpAddr>(), port in any::<u16>()) {
            let s = format_inet(ip, port);
            let want = Address::Inet { host: Some(ip.to_string()), port };
            prop_assert_eq!(parse_address(Network::Tcp, &s), Ok(want.clone()));
            prop_assert_eq!(parse_address(Network::Udp, &s), Ok(want.clone()));
            let only = if ip.is_ipv4() { [Network::Tcp4, Network::Udp4] } else { [Network::Tcp6, Network::Udp6] };
            for n in only {
                prop_assert_eq!(parse_address(n, &s), Ok(want.clone()));
            }
        }
    }
}
