//! Creating and inspecting sockets: binding listeners and packet sockets the way Go's
//! `net.Listen` and `net.ListenPacket` do, reading back the address a socket is bound to,
//! and checking that an inherited descriptor is the kind of socket it claims to be.
//!
//! Every socket this module creates is blocking and close-on-exec (socket2 opens sockets
//! with `SOCK_CLOEXEC` where the system has it); callers switch it to non-blocking when they
//! hand it to an event loop.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use nix::errno::Errno;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::addr::{Address, Endpoint, Network, SocketType, format_inet};

/// Called on a fresh socket after `socket()` and before `bind()`, like Go's
/// `net.ListenConfig.Control`.
///
/// The arguments are the network name and the address exactly as the caller asked for
/// them (e.g. `"tcp"` and `":8080"`), not Go's resolved `"tcp6"` and `"[::]:8080"`, so a
/// hook can tell which declared listener it is called for; the socket's own family can be
/// read from the descriptor. The hook runs after this module's default options
/// (`SO_REUSEADDR`, `IPV6_V6ONLY`, `SO_BROADCAST`), so it can override them. An error
/// from the hook aborts the bind and is returned as it is.
pub type ListenHook = Arc<dyn Fn(&str, &str, BorrowedFd<'_>) -> io::Result<()> + Send + Sync>;

/// The backlog when `/proc/sys/net/core/somaxconn` cannot be read.
const DEFAULT_BACKLOG: i32 = 4096;

/// Binds a stream listener (`network.is_listener()`) to `addr` and calls `listen()`.
///
/// Returns a blocking, close-on-exec descriptor. Choices, following Go's `net.Listen`:
///
/// - `tcp` with an empty host (`":8080"`) binds a dual-stack `[::]` socket with
///   `IPV6_V6ONLY` off, falling back to `0.0.0.0` if the system has no IPv6
///   (`EAFNOSUPPORT`). `tcp4` binds `0.0.0.0`; `tcp6` binds `[::]` with `IPV6_V6ONLY` on.
///   As Go documents, a literal unspecified host (`"0.0.0.0:8080"`, `"[::]:8080"`) means
///   the same as an empty one: for `tcp` it too is dual-stack (use `tcp4` for IPv4 only).
///   A specific IPv6 address under `tcp` gets `IPV6_V6ONLY` off, as in Go.
/// - A host name is resolved with std's `ToSocketAddrs`, keeping only addresses of the
///   network's family for `tcp4`/`tcp6`; as in Go, `tcp` takes the first IPv4 address if
///   there is one, else the first address.
/// - `SO_REUSEADDR` is on for TCP; the backlog is `/proc/sys/net/core/somaxconn`, or 4096
///   if that cannot be read.
/// - `unix` binds a `SOCK_STREAM` socket to the path and `unixpacket` a `SOCK_SEQPACKET`
///   one; `"@name"` binds in Linux's abstract namespace. If the path is taken by a socket
///   file nobody listens on any more (connecting gives `ECONNREFUSED`: left over by a
///   crashed process), the file is removed and the bind tried once more; a live socket
///   there stays `EADDRINUSE`, and a file that is not a socket is never removed. The
///   socket file is not removed when the descriptor is closed.
///
/// Errors carry the OS error without saying what was being bound: the caller adds that.
/// A bad address or a packet network gives `ErrorKind::InvalidInput`.
pub(crate) fn bind_listener(endpoint: &Endpoint, hook: Option<&ListenHook>) -> io::Result<OwnedFd> {
    let network = endpoint.network();
    if !network.is_listener() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is a packet network, not a stream listener network",
                network.as_str()
            ),
        ));
    }
    bind(endpoint, hook)
}

/// Binds a packet socket (`network.is_packet()`) to `addr`.
///
/// Returns a blocking, close-on-exec descriptor. Host and family choices are those of
/// [`bind_listener`] (`udp` with an empty host is dual-stack `[::]`, and so on). As in Go,
/// UDP sockets get `SO_BROADCAST` and no `SO_REUSEADDR`. `unixgram` binds a `SOCK_DGRAM`
/// unix socket, with the same stale-file handling as `unix`.
pub(crate) fn bind_packet(endpoint: &Endpoint, hook: Option<&ListenHook>) -> io::Result<OwnedFd> {
    let network = endpoint.network();
    if !network.is_packet() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is a stream listener network, not a packet network",
                network.as_str()
            ),
        ));
    }
    bind(endpoint, hook)
}

/// Binds a socket of either kind; see [`bind_listener`] and [`bind_packet`].
fn bind(endpoint: &Endpoint, hook: Option<&ListenHook>) -> io::Result<OwnedFd> {
    let req = Request {
        network: endpoint.network(),
        addr: endpoint.as_str(),
        hook,
    };
    let socket = match endpoint.address() {
        Address::Inet { host, port } => req.bind_inet(host.as_deref(), *port)?,
        Address::Path(path) => {
            let sockaddr = SockAddr::unix(path)?;
            req.bind_unix(&sockaddr, Some(path))?
        }
        Address::Abstract(name) => req.bind_unix(&abstract_sockaddr(name)?, None)?,
    };
    Ok(socket.into())
}

/// What to bind, and the hook to call on the way.
struct Request<'a> {
    /// The requested network.
    network: Network,
    /// The requested address, as the caller wrote it (for the hook).
    addr: &'a str,
    /// The caller's hook, if any.
    hook: Option<&'a ListenHook>,
}

impl Request<'_> {
    /// Creates, configures and binds an internet socket, and listens if it is a listener.
    fn bind_inet(&self, host: Option<&str>, port: u16) -> io::Result<Socket> {
        let (target, v6only) = match host.filter(|h| !is_unspecified(h)) {
            None => match self.network.ip_version() {
                Some(4) => (SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false),
                Some(_) => (SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true),
                None => {
                    // Dual-stack [::], or 0.0.0.0 where the system has no IPv6 at all.
                    let dual = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
                    match self.new_inet_socket(dual) {
                        Ok(socket) => return self.finish_inet(socket, dual, false),
                        Err(e) if e.raw_os_error() == Some(Errno::EAFNOSUPPORT as i32) => {
                            (SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)
                        }
                        Err(e) => return Err(e),
                    }
                }
            },
            Some(host) => {
                let addrs = resolve(self.network, host, port)?;
                // Go's Listen prefers IPv4 among a host name's addresses for "tcp"/"udp";
                // for the 4/6 networks, `resolve` kept only the right family.
                let chosen = addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or_else(|| addrs.first())
                    .copied()
                    .ok_or_else(|| no_address(self.network, host))?;
                (chosen, self.network.ip_version() == Some(6))
            }
        };
        let socket = self.new_inet_socket(target)?;
        self.finish_inet(socket, target, v6only)
    }

    /// Opens a TCP or UDP socket (as the network says) of `target`'s family.
    fn new_inet_socket(&self, target: SocketAddr) -> io::Result<Socket> {
        let (ty, proto) = if self.network.is_listener() {
            (Type::STREAM, Protocol::TCP)
        } else {
            (Type::DGRAM, Protocol::UDP)
        };
        Socket::new(Domain::for_address(target), ty, Some(proto))
    }

    /// Sets the default options on a fresh internet socket, calls the hook, binds to
    /// `target` and, for listeners, listens.
    fn finish_inet(&self, socket: Socket, target: SocketAddr, v6only: bool) -> io::Result<Socket> {
        let stream = self.network.is_listener();
        if target.is_ipv6() {
            socket.set_only_v6(v6only)?;
        }
        if stream {
            socket.set_reuse_address(true)?;
        } else {
            socket.set_broadcast(true)?;
        }
        self.run_hook(&socket)?;
        socket.bind(&SockAddr::from(target))?;
        if stream {
            socket.listen(listen_backlog())?;
        }
        Ok(socket)
    }

    /// Creates, binds (replacing a stale socket file at `path`) and, for listeners, listens
    /// on a unix socket.
    fn bind_unix(&self, sockaddr: &SockAddr, path: Option<&Path>) -> io::Result<Socket> {
        let ty = socket_type(self.network);
        let socket = Socket::new(Domain::UNIX, ty, None)?;
        self.run_hook(&socket)?;
        match socket.bind(sockaddr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::EADDRINUSE as i32) => {
                let Some(path) = path else { return Err(e) };
                if !is_stale_socket_file(path, ty, sockaddr) {
                    return Err(e);
                }
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(gone) if gone.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => return Err(e),
                }
                socket.bind(sockaddr)?;
            }
            Err(e) => return Err(e),
        }
        if self.network.is_listener() {
            socket.listen(listen_backlog())?;
        }
        Ok(socket)
    }

    /// Calls the hook, if any, on a socket not yet bound.
    fn run_hook(&self, socket: &Socket) -> io::Result<()> {
        match self.hook {
            Some(hook) => {
                use std::os::fd::AsFd;
                hook(self.network.as_str(), self.addr, socket.as_fd())
            }
            None => Ok(()),
        }
    }
}

/// The socket2 type for `network` (the table itself is [`Network::socket_type`]).
fn socket_type(network: Network) -> Type {
    match network.socket_type() {
        SocketType::Stream => Type::STREAM,
        SocketType::Datagram => Type::DGRAM,
        SocketType::SeqPacket => Type::SEQPACKET,
    }
}

/// The listen backlog: `/proc/sys/net/core/somaxconn` if readable (as Go does on Linux),
/// else 4096.
fn listen_backlog() -> i32 {
    // Read once: a service binding a thousand listeners would read it a thousand times.
    static BACKLOG: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *BACKLOG.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&n| n > 0)
            .map_or(DEFAULT_BACKLOG, |n| i32::try_from(n).unwrap_or(i32::MAX))
    })
}

/// The socket address of a Linux abstract name (`"@name"` without the `'@'`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_sockaddr(name: &str) -> io::Result<SockAddr> {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    // socket2 treats a path that starts with a NUL byte as an abstract name.
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.push(0);
    bytes.extend_from_slice(name.as_bytes());
    SockAddr::unix(Path::new(OsStr::from_bytes(&bytes)))
}

/// Abstract names exist only on Linux; `parse_address` rejects them elsewhere.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_sockaddr(_name: &str) -> io::Result<SockAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix socket names exist only on Linux",
    ))
}

/// True if `path` is a socket file that nobody is bound to: a non-blocking connect with a
/// socket of type `ty` is refused. A live socket of another type, a full backlog (`EAGAIN`),
/// a permission error or anything else counts as not stale.
fn is_stale_socket_file(path: &Path, ty: Type, sockaddr: &SockAddr) -> bool {
    let is_socket = std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if !is_socket {
        return false;
    }
    let Ok(probe) = Socket::new(Domain::UNIX, ty, None) else {
        return false;
    };
    if probe.set_nonblocking(true).is_err() {
        return false;
    }
    matches!(probe.connect(sockaddr), Err(e) if e.raw_os_error() == Some(Errno::ECONNREFUSED as i32))
}

/// Resolves `host` (an IP literal, with an optional IPv6 zone, or a host name) to socket
/// addresses of the network's family, in resolver order.
fn resolve(network: Network, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = if host.contains(':') {
        vec![SocketAddr::V6(parse_ipv6_with_zone(host, port)?)]
    } else if let Ok(v4) = host.parse::<Ipv4Addr>() {
        vec![SocketAddr::V4(SocketAddrV4::new(v4, port))]
    } else {
        (host, port).to_socket_addrs()?.collect()
    };
    let wanted: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match network.ip_version() {
            Some(4) => a.is_ipv4(),
            Some(_) => a.is_ipv6(),
            None => true,
        })
        .collect();
    if wanted.is_empty() {
        return Err(no_address(network, host));
    }
    Ok(wanted)
}

/// True for a literal unspecified address, `"0.0.0.0"` or `"::"` (in any spelling), which
/// means all interfaces just like an empty host.
fn is_unspecified(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// The error for a host with no address of the wanted family.
fn no_address(network: Network, host: &str) -> io::Error {
    let family = match network.ip_version() {
        Some(4) => "IPv4 ",
        Some(_) => "IPv6 ",
        None => "",
    };
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no {family}address found for host {host:?}"),
    )
}

/// Parses `"fe80::1%eth0"` or `"fe80::1%2"` (or a plain IPv6 literal) into a socket
/// address, turning an interface name into its index.
fn parse_ipv6_with_zone(host: &str, port: u16) -> io::Result<SocketAddrV6> {
    let (ip, zone) = host.split_once('%').unwrap_or((host, ""));
    let ip: Ipv6Addr = ip.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ip:?} is not an IPv6 address"),
        )
    })?;
    let scope = if zone.is_empty() {
        0
    } else if let Ok(n) = zone.parse::<u32>() {
        n
    } else {
        nix::net::if_::if_nametoindex(zone).map_err(|errno| {
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("no network interface {zone:?} for the IPv6 zone: {errno}"),
            )
        })?
    };
    Ok(SocketAddrV6::new(ip, port, 0, scope))
}

/// The address a socket is bound to, in Go's form: `"127.0.0.1:8080"`, `"[::1]:53"`,
/// `"[fe80::1%eth0]:53"`, `"/run/app.sock"` or `"@name"`.
///
/// An unnamed (unbound) unix socket gives `""`. Unix paths and abstract names that are not
/// UTF-8 are converted lossily. Other address families give `ErrorKind::Unsupported`.
pub(crate) fn local_address(fd: BorrowedFd<'_>) -> io::Result<String> {
    let local = SockRef::from(&fd).local_addr()?;
    format_sockaddr(&local)
}

/// Formats a socket address in Go's form; see [`local_address`].
fn format_sockaddr(sa: &SockAddr) -> io::Result<String> {
    match sa.as_socket() {
        Some(SocketAddr::V4(v4)) => return Ok(format_inet(IpAddr::V4(*v4.ip()), v4.port())),
        Some(SocketAddr::V6(v6)) if v6.scope_id() == 0 => {
            return Ok(format_inet(IpAddr::V6(*v6.ip()), v6.port()));
        }
        Some(SocketAddr::V6(v6)) => {
            let zone = nix::net::if_::if_indextoname(v6.scope_id())
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|_| v6.scope_id().to_string());
            return Ok(format!("[{}%{zone}]:{}", v6.ip(), v6.port()));
        }
        None => {}
    }
    if sa.is_unix() {
        if let Some(name) = sa.as_abstract_namespace() {
            return Ok(format!("@{}", String::from_utf8_lossy(name)));
        }
        if let Some(path) = sa.as_pathname() {
            return Ok(path.to_string_lossy().into_owned());
        }
        return Ok(String::new());
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("unsupported address family {}", sa.family()),
    ))
}

/// What a network needs: the families it accepts, its socket type, and whether it listens.
struct Expected {
    /// The accepted address families.
    domains: &'static [Domain],
    /// The socket type.
    ty: Type,
    /// Whether the socket must be listening.
    listening: bool,
}

impl Expected {
    /// What `network` needs.
    fn of(network: Network) -> Expected {
        const INET: &[Domain] = &[Domain::IPV4, Domain::IPV6];
        const V4: &[Domain] = &[Domain::IPV4];
        const V6: &[Domain] = &[Domain::IPV6];
        const UNIX: &[Domain] = &[Domain::UNIX];
        let domains = match network {
            Network::Tcp | Network::Udp => INET,
            Network::Tcp4 | Network::Udp4 => V4,
            Network::Tcp6 | Network::Udp6 => V6,
            Network::Unix | Network::UnixPacket | Network::Unixgram => UNIX,
        };
        Expected {
            domains,
            ty: socket_type(network),
            listening: network.is_listener(),
        }
    }

    /// Describes the expected socket, e.g. "a listening AF_INET or AF_INET6 SOCK_STREAM
    /// socket".
    fn describe(&self) -> String {
        let families: Vec<String> = self.domains.iter().map(|d| domain_name(*d)).collect();
        let families = families.join(" or ");
        if self.listening {
            format!("a listening {families} {} socket", type_name(self.ty))
        } else {
            format!("an {families} {} socket", type_name(self.ty))
        }
    }
}

/// Checks that `fd` is a connection of the kind `network` carries (its family and socket
/// type, from the one table in [`Expected::of`]), and not a listening socket. A connection the
/// peer has closed or reset still passes: connections end at any time, and one that ended must
/// not fail an upgrade. The error is one line.
pub(crate) fn check_conn(fd: BorrowedFd<'_>, network: Network) -> Result<(), String> {
    let sock = SockRef::from(&fd);
    let expected = Expected::of(network);
    let want = format!("expected a connection for {:?}", network.as_str());
    let actual_ty = sock
        .r#type()
        .map_err(|e| format!("not a socket ({e}), {want}"))?;
    let domain = sock
        .local_addr()
        .map_err(|e| format!("can't read its address ({e}), {want}"))?
        .domain();
    if actual_ty != expected.ty || !expected.domains.contains(&domain) {
        return Err(format!(
            "a socket of domain {domain:?} and type {actual_ty:?}, {want}"
        ));
    }
    if expected.ty != Type::DGRAM
        && nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::AcceptConn).unwrap_or(false)
    {
        return Err(format!("a listening socket, {want}"));
    }
    Ok(())
}

/// The C name of an address family, e.g. "AF_INET6".
fn domain_name(d: Domain) -> String {
    if d == Domain::IPV4 {
        "AF_INET".to_owned()
    } else if d == Domain::IPV6 {
        "AF_INET6".to_owned()
    } else if d == Domain::UNIX {
        "AF_UNIX".to_owned()
    } else {
        format!("address family {}", i32::from(d))
    }
}

/// The C name of a socket type, e.g. "SOCK_DGRAM".
fn type_name(t: Type) -> String {
    if t == Type::STREAM {
        "SOCK_STREAM".to_owned()
    } else if t == Type::DGRAM {
        "SOCK_DGRAM".to_owned()
    } else if t == Type::SEQPACKET {
        "SOCK_SEQPACKET".to_owned()
    } else if t == Type::RAW {
        "SOCK_RAW".to_owned()
    } else {
        format!("socket type {}", i32::from(t))
    }
}

/// Checks that `fd` is a socket whose family and type fit `network` and, for listeners,
/// that it is listening (`SO_ACCEPTCONN`); on Linux, also that an internet socket's
/// protocol is TCP or UDP as the network says.
///
/// The error is one line, such as `fd 5 is an AF_INET SOCK_DGRAM socket, expected a
/// listening AF_INET or AF_INET6 SOCK_STREAM socket for "tcp"`.
pub(crate) fn check_socket(fd: BorrowedFd<'_>, network: Network) -> Result<(), String> {
    let raw = fd.as_raw_fd();
    let expected = Expected::of(network);
    // Only for an error: a successor with a thousand listeners checks a thousand sockets.
    let wanted = || {
        format!(
            "expected {} for {:?}",
            expected.describe(),
            network.as_str()
        )
    };
    let sock = SockRef::from(&fd);
    let ty = match sock.r#type() {
        Ok(ty) => ty,
        Err(e) if e.raw_os_error() == Some(Errno::ENOTSOCK as i32) => {
            return Err(format!("fd {raw} is not a socket, {}", wanted()));
        }
        Err(e) => {
            return Err(format!(
                "fd {raw}: cannot read its socket type ({e}), {}",
                wanted()
            ));
        }
    };
    let domain = match sock.local_addr() {
        Ok(local) => local.domain(),
        Err(e) => {
            return Err(format!(
                "fd {raw}: cannot read its address ({e}), {}",
                wanted()
            ));
        }
    };
    let actual = || format!("{} {}", domain_name(domain), type_name(ty));
    if ty != expected.ty || !expected.domains.contains(&domain) {
        return Err(format!("fd {raw} is an {} socket, {}", actual(), wanted()));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if !network.is_unix() {
        let proto = if network.is_listener() {
            Protocol::TCP
        } else {
            Protocol::UDP
        };
        match sock.protocol() {
            Ok(Some(p)) if p != proto => {
                return Err(format!(
                    "fd {raw} is an {} socket of protocol {}, {}",
                    actual(),
                    i32::from(p),
                    wanted()
                ));
            }
            _ => {}
        }
    }
    if expected.listening {
        match nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::AcceptConn) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "fd {raw} is an {} socket that is not listening, {}",
                    actual(),
                    wanted()
                ));
            }
            Err(e) => {
                return Err(format!(
                    "fd {raw}: cannot tell whether it is listening ({e}), {}",
                    wanted()
                ));
            }
        }
    }
    Ok(())
}

/// True if the bound socket `fd` serves `addr` on `network`; used to match
/// systemd-activated sockets against declared listeners.
///
/// The socket must pass [`check_socket`], and then:
/// - internet: the same port (a requested port 0 matches only port 0), and the same host:
///   no host, or a literal `0.0.0.0` or `::`, matches the wildcard address (`0.0.0.0` for
///   `tcp4`/`udp4`, `::` for `tcp6`/`udp6`, either for `tcp`/`udp`); an IP literal matches
///   that address (and its
///   zone, if one is given); a host name is resolved and matches any of its addresses of
///   the network's family. `IPV6_V6ONLY` is not compared.
/// - a path: the same path as written, or the same file after resolving symlinks and
///   relative paths.
/// - an abstract name: the same name.
///
/// An unparsable address never matches.
#[allow(dead_code)] // used by socket activation
pub(crate) fn socket_matches(fd: BorrowedFd<'_>, endpoint: &Endpoint) -> bool {
    let network = endpoint.network();
    if check_socket(fd, network).is_err() {
        return false;
    }
    let Ok(local) = SockRef::from(&fd).local_addr() else {
        return false;
    };
    match endpoint.address() {
        Address::Inet { host, port } => {
            let Some(bound) = local.as_socket() else {
                return false;
            };
            if bound.port() != *port {
                return false;
            }
            match host.as_deref().filter(|h| !is_unspecified(h)) {
                None => match (network.ip_version(), bound.ip()) {
                    (Some(4), IpAddr::V6(_)) | (Some(6), IpAddr::V4(_)) => false,
                    (_, ip) => ip.is_unspecified(),
                },
                Some(host) => resolve(network, host, *port)
                    .is_ok_and(|addrs| addrs.iter().any(|want| same_inet(*want, bound))),
            }
        }
        Address::Path(path) => {
            let Some(bound) = local.as_pathname() else {
                return false;
            };
            if bound == path {
                return true;
            }
            match (std::fs::canonicalize(bound), std::fs::canonicalize(path)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        Address::Abstract(name) => local.as_abstract_namespace() == Some(name.as_bytes()),
    }
}

/// True if the bound address `bound` is the wanted one: same IP, and same IPv6 zone when
/// the wanted address names one. Ports were compared already.
#[allow(dead_code)]
fn same_inet(want: SocketAddr, bound: SocketAddr) -> bool {
    match (want, bound) {
        (SocketAddr::V4(w), SocketAddr::V4(b)) => w.ip() == b.ip(),
        (SocketAddr::V6(w), SocketAddr::V6(b)) => {
            w.ip() == b.ip() && (w.scope_id() == 0 || w.scope_id() == b.scope_id())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
