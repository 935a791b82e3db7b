//! Tests of `net`: real sockets on loopback, temp dirs and abstract names.
use super::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

// The functions under test take an `Endpoint` parsed at the edge; these take the network
// and the address as the callers of the crate write them, and parse them first (a bad
// address is `InvalidInput`, as binding reports it).

fn endpoint(network: Network, addr: &str) -> io::Result<Endpoint> {
    Endpoint::new(network, addr).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn bind_listener(network: Network, addr: &str, hook: Option<&ListenHook>) -> io::Result<OwnedFd> {
    super::bind_listener(&endpoint(network, addr)?, hook)
}

fn bind_packet(network: Network, addr: &str, hook: Option<&ListenHook>) -> io::Result<OwnedFd> {
    super::bind_packet(&endpoint(network, addr)?, hook)
}

fn socket_matches(fd: BorrowedFd<'_>, network: Network, addr: &str) -> bool {
    endpoint(network, addr).is_ok_and(|ep| super::socket_matches(fd, &ep))
}

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tfnet-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn sock(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique abstract name for this test process.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_name(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "@tableflip-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// True if this machine can bind ::1; prints a note when it cannot.
fn have_ipv6() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("note: skipping IPv6 checks: cannot bind [::1]: {e}");
            false
        }
    }
}

fn port_of(fd: &OwnedFd) -> u16 {
    let a = local_address(fd.as_fd()).unwrap();
    a.rsplit(':').next().unwrap().parse().unwrap()
}

fn tcp_round_trip(listener: OwnedFd, connect_to: &str) {
    let listener = TcpListener::from(listener);
    let mut client = TcpStream::connect(connect_to).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
}

fn udp_round_trip(sock: OwnedFd, send_to: &str) {
    let sock = UdpSocket::from(sock);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let bind_client = if send_to.starts_with('[') {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let client = UdpSocket::bind(bind_client).unwrap();
    client.send_to(b"ping", send_to).unwrap();
    let mut buf = [0; 8];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
}

fn is_blocking_cloexec(fd: &OwnedFd) {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    let fl = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).unwrap());
    assert!(!fl.contains(OFlag::O_NONBLOCK), "blocking");
    let fd_fl = FdFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFD).unwrap());
    assert!(fd_fl.contains(FdFlag::FD_CLOEXEC), "cloexec");
}

#[test]
fn tcp_listeners_bind_and_answer() {
    for (net, addr) in [
        (Network::Tcp, "127.0.0.1:0"),
        (Network::Tcp4, "127.0.0.1:0"),
        (Network::Tcp4, ":0"),
        (Network::Tcp, "localhost:0"),
    ] {
        let fd = bind_listener(net, addr, None).unwrap();
        is_blocking_cloexec(&fd);
        check_socket(fd.as_fd(), net).unwrap();
        let port = port_of(&fd);
        assert_ne!(port, 0);
        let local = local_address(fd.as_fd()).unwrap();
        if addr.starts_with(':') {
            assert_eq!(local, format!("0.0.0.0:{port}"));
        } else {
            assert_eq!(local, format!("127.0.0.1:{port}"), "{net} {addr}");
        }
        assert!(socket_matches(fd.as_fd(), net, &local));
        tcp_round_trip(fd, &format!("127.0.0.1:{port}"));
    }
}

#[test]
fn tcp_dual_stack_wildcard() {
    let fd = bind_listener(Network::Tcp, ":0", None).unwrap();
    let port = port_of(&fd);
    let local = local_address(fd.as_fd()).unwrap();
    if local.starts_with('[') {
        assert_eq!(local, format!("[::]:{port}"));
        assert!(!SockRef::from(&fd).only_v6().unwrap(), "dual-stack");
    } else {
        eprintln!("note: no IPv6, \"tcp\" fell back to {local}");
        assert_eq!(local, format!("0.0.0.0:{port}"));
    }
    assert!(SockRef::from(&fd).reuse_address().unwrap());
    assert!(socket_matches(
        fd.as_fd(),
        Network::Tcp,
        &format!(":{port}")
    ));
    assert!(!socket_matches(
        fd.as_fd(),
        Network::Tcp,
        &format!(":{}", port ^ 1)
    ));
    // IPv4 clients reach the dual-stack socket too.
    tcp_round_trip(fd, &format!("127.0.0.1:{port}"));
}

#[test]
fn tcp6_and_udp6() {
    if !have_ipv6() {
        return;
    }
    let fd = bind_listener(Network::Tcp6, "[::1]:0", None).unwrap();
    check_socket(fd.as_fd(), Network::Tcp6).unwrap();
    check_socket(fd.as_fd(), Network::Tcp).unwrap();
    let e = check_socket(fd.as_fd(), Network::Tcp4).unwrap_err();
    assert!(e.contains("is an AF_INET6 SOCK_STREAM socket, expected a listening AF_INET SOCK_STREAM socket for \"tcp4\""), "{e}");
    let port = port_of(&fd);
    assert_eq!(local_address(fd.as_fd()).unwrap(), format!("[::1]:{port}"));
    assert!(socket_matches(
        fd.as_fd(),
        Network::Tcp6,
        &format!("[::1]:{port}")
    ));
    assert!(socket_matches(
        fd.as_fd(),
        Network::Tcp,
        &format!("[::1]:{port}")
    ));
    assert!(!socket_matches(
        fd.as_fd(),
        Network::Tcp6,
        &format!(":{port}")
    ));
    assert!(!socket_matches(
        fd.as_fd(),
        Network::Tcp4,
        &format!("127.0.0.1:{port}")
    ));
    tcp_round_trip(fd, &format!("[::1]:{port}"));

    let fd = bind_listener(Network::Tcp6, ":0", None).unwrap();
    assert!(SockRef::from(&fd).only_v6().unwrap());
    let port = port_of(&fd);
    assert_eq!(local_address(fd.as_fd()).unwrap(), format!("[::]:{port}"));
    assert!(socket_matches(
        fd.as_fd(),
        Network::Tcp6,
        &format!(":{port}")
    ));
    assert!(socket_matches(
        fd.as_fd(),
        Network::Tcp,
        &format!(":{port}")
    ));
    assert!(!socket_matches(
        fd.as_fd(),
        Network::Tcp4,
        &format!(":{port}")
    ));
    tcp_round_trip(fd, &format!("[::1]:{port}"));

    let fd = bind_packet(Network::Udp6, "[::1]:0", None).unwrap();
    check_socket(fd.as_fd(), Network::Udp6).unwrap();
    let port = port_of(&fd);
    assert!(socket_matches(
        fd.as_fd(),
        Network::Udp6,
        &format!("[::1]:{port}")
    ));
    udp_round_trip(fd, &format!("[::1]:{port}"));

    let fd = bind_packet(Network::Udp6, ":0", None).unwrap();
    assert!(SockRef::from(&fd).only_v6().unwrap());
    let port = port_of(&fd);
    udp_round_trip(fd, &format!("[::1]:{port}"));

    // tcp4 with a host that has only IPv6 addresses: a clear error.
    let e = bind_listener(Network::Tcp4, "ip6-localhost:0", None);
    if let Err(e) = e {
        assert!(e.to_string().contains("address"), "{e}");
    }
}

#[test]
fn udp_sockets_bind_and_answer() {
    for (net, addr) in [
        (Network::Udp, "127.0.0.1:0"),
        (Network::Udp4, "127.0.0.1:0"),
        (Network::Udp4, ":0"),
        (Network::Udp, ":0"),
    ] {
        let fd = bind_packet(net, addr, None).unwrap();
        is_blocking_cloexec(&fd);
        check_socket(fd.as_fd(), net).unwrap();
        assert!(SockRef::from(&fd).broadcast().unwrap());
        assert!(!SockRef::from(&fd).reuse_address().unwrap());
        let port = port_of(&fd);
        assert_ne!(port, 0);
        let local = local_address(fd.as_fd()).unwrap();
        assert!(socket_matches(fd.as_fd(), net, &local), "{net} {local}");
        assert!(socket_matches(
            fd.as_fd(),
            net,
            &addr.replace(":0", &format!(":{port}"))
        ));
        udp_round_trip(fd, &format!("127.0.0.1:{port}"));
    }
}

#[test]
fn unix_sockets_bind_and_answer() {
    let dir = TempDir::new();

    let path = dir.sock("stream.sock");
    let fd = bind_listener(Network::Unix, &path, None).unwrap();
    is_blocking_cloexec(&fd);
    check_socket(fd.as_fd(), Network::Unix).unwrap();
    assert_eq!(local_address(fd.as_fd()).unwrap(), path);
    assert!(socket_matches(fd.as_fd(), Network::Unix, &path));
    assert!(!socket_matches(
        fd.as_fd(),
        Network::Unix,
        &dir.sock("other.sock")
    ));
    assert!(!socket_matches(fd.as_fd(), Network::UnixPacket, &path));
    let listener = UnixListener::from(fd);
    let mut client = UnixStream::connect(&path).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"hi").unwrap();
    let mut buf = [0; 2];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");

    let path = dir.sock("packet.sock");
    let fd = bind_listener(Network::UnixPacket, &path, None).unwrap();
    check_socket(fd.as_fd(), Network::UnixPacket).unwrap();
    let e = check_socket(fd.as_fd(), Network::Unix).unwrap_err();
    assert!(
        e.contains("SOCK_SEQPACKET socket, expected a listening AF_UNIX SOCK_STREAM"),
        "{e}"
    );
    assert_eq!(local_address(fd.as_fd()).unwrap(), path);
    let client = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    client.connect(&SockAddr::unix(&path).unwrap()).unwrap();
    let server = Socket::from(fd).accept().unwrap().0;
    client.send(b"one").unwrap();
    client.send(b"two").unwrap();
    let mut buf = [std::mem::MaybeUninit::new(0u8); 8];
    assert_eq!(server.recv(&mut buf).unwrap(), 3, "message boundaries kept");

    let path = dir.sock("gram.sock");
    let fd = bind_packet(Network::Unixgram, &path, None).unwrap();
    check_socket(fd.as_fd(), Network::Unixgram).unwrap();
    assert!(socket_matches(fd.as_fd(), Network::Unixgram, &path));
    let sock = UnixDatagram::from(fd);
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"dgram", &path).unwrap();
    let mut buf = [0; 8];
    assert_eq!(sock.recv(&mut buf).unwrap(), 5);
}

#[test]
fn unix_relative_and_absolute_paths_match() {
    let dir = TempDir::new();
    let path = dir.sock("m.sock");
    let fd = bind_listener(Network::Unix, &path, None).unwrap();
    // The same file through a different spelling.
    let other = format!("{}/./m.sock", dir.0.display());
    assert!(socket_matches(fd.as_fd(), Network::Unix, &other));
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn abstract_sockets_bind_and_answer() {
    let name = abstract_name("stream");
    let fd = bind_listener(Network::Unix, &name, None).unwrap();
    assert_eq!(local_address(fd.as_fd()).unwrap(), name);
    assert!(socket_matches(fd.as_fd(), Network::Unix, &name));
    assert!(!socket_matches(
        fd.as_fd(),
        Network::Unix,
        &format!("{name}x")
    ));
    // A second bind of the same name is EADDRINUSE (no stale-file removal here).
    let e = bind_listener(Network::Unix, &name, None).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(Errno::EADDRINUSE as i32));
    let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    client
        .connect(&abstract_sockaddr(&name[1..]).unwrap())
        .unwrap();
    let (server, _) = Socket::from(fd).accept().unwrap();
    client.send(b"x").unwrap();
    let mut buf = [std::mem::MaybeUninit::new(0u8); 1];
    assert_eq!(server.recv(&mut buf).unwrap(), 1);

    let name = abstract_name("seq");
    let fd = bind_listener(Network::UnixPacket, &name, None).unwrap();
    check_socket(fd.as_fd(), Network::UnixPacket).unwrap();
    assert!(socket_matches(fd.as_fd(), Network::UnixPacket, &name));

    let name = abstract_name("gram");
    let fd = bind_packet(Network::Unixgram, &name, None).unwrap();
    assert_eq!(local_address(fd.as_fd()).unwrap(), name);
    let client = Socket::new(Domain::UNIX, Type::DGRAM, None).unwrap();
    client
        .send_to(b"abc", &abstract_sockaddr(&name[1..]).unwrap())
        .unwrap();
    let mut buf = [std::mem::MaybeUninit::new(0u8); 8];
    assert_eq!(Socket::from(fd).recv(&mut buf).unwrap(), 3);
}

#[test]
fn stale_unix_socket_file_is_replaced() {
    let dir = TempDir::new();
    for (net, kind) in [
        (Network::Unix, "stream"),
        (Network::UnixPacket, "seq"),
        (Network::Unixgram, "gram"),
    ] {
        let path = dir.sock(&format!("stale-{kind}.sock"));
        // A socket file left behind: bound, then closed without unlinking.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        let fd = if net.is_listener() {
            bind_listener(net, &path, None)
        } else {
            bind_packet(net, &path, None)
        }
        .unwrap();
        check_socket(fd.as_fd(), net).unwrap();
        assert!(socket_matches(fd.as_fd(), net, &path));
    }
}

#[test]
fn live_unix_socket_is_not_replaced() {
    let dir = TempDir::new();
    for net in [Network::Unix, Network::UnixPacket, Network::Unixgram] {
        let path = dir.sock(&format!("live-{net}.sock"));
        let bind = |p: &str| {
            if net.is_listener() {
                bind_listener(net, p, None)
            } else {
                bind_packet(net, p, None)
            }
        };
        let live = bind(&path).unwrap();
        let e = bind(&path).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(Errno::EADDRINUSE as i32),
            "{net}: {e}"
        );
        // The first socket still works.
        assert!(socket_matches(live.as_fd(), net, &path));
    }
    // A live socket of another type is not replaced either.
    let path = dir.sock("live-mixed.sock");
    let _live = bind_packet(Network::Unixgram, &path, None).unwrap();
    let e = bind_listener(Network::Unix, &path, None).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(Errno::EADDRINUSE as i32));
    // A regular file is never removed.
    let path = dir.sock("regular-file");
    std::fs::write(&path, b"keep").unwrap();
    let e = bind_listener(Network::Unix, &path, None).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(Errno::EADDRINUSE as i32));
    assert_eq!(std::fs::read(&path).unwrap(), b"keep");
}

#[test]
fn a_busy_tcp_port_is_eaddrinuse() {
    let first = bind_listener(Network::Tcp4, "127.0.0.1:0", None).unwrap();
    let addr = local_address(first.as_fd()).unwrap();
    let e = bind_listener(Network::Tcp4, &addr, None).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(Errno::EADDRINUSE as i32));
}

#[test]
fn hook_runs_before_bind() {
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let hook: ListenHook = Arc::new(move |net, addr, fd| {
        let sock = SockRef::from(&fd);
        sock.set_recv_buffer_size(64 * 1024)?;
        // Not bound yet: the port is still 0.
        let local = format_sockaddr(&sock.local_addr()?)?;
        log.lock()
            .unwrap()
            .push((net.to_owned(), addr.to_owned(), local));
        Ok(())
    });
    let fd = bind_listener(Network::Tcp4, "127.0.0.1:0", Some(&hook)).unwrap();
    // Linux doubles the value it is given.
    assert!(SockRef::from(&fd).recv_buffer_size().unwrap() >= 64 * 1024);
    let fd2 = bind_packet(Network::Udp4, "127.0.0.1:0", Some(&hook)).unwrap();
    let dir = TempDir::new();
    let path = dir.sock("hook.sock");
    let _fd3 = bind_listener(Network::Unix, &path, Some(&hook)).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        [
            (
                "tcp4".to_owned(),
                "127.0.0.1:0".to_owned(),
                "0.0.0.0:0".to_owned()
            ),
            (
                "udp4".to_owned(),
                "127.0.0.1:0".to_owned(),
                "0.0.0.0:0".to_owned()
            ),
            ("unix".to_owned(), path.clone(), String::new()),
        ]
    );
    drop((fd, fd2));
}

#[test]
fn hook_error_aborts() {
    let dir = TempDir::new();
    let path = dir.sock("never.sock");
    let hook: ListenHook = Arc::new(|_, _, _| Err(io::Error::other("hook says no")));
    let e = bind_listener(Network::Tcp4, "127.0.0.1:0", Some(&hook)).unwrap_err();
    assert_eq!(e.to_string(), "hook says no");
    let e = bind_packet(Network::Udp, ":0", Some(&hook)).unwrap_err();
    assert_eq!(e.to_string(), "hook says no");
    let e = bind_listener(Network::Unix, &path, Some(&hook)).unwrap_err();
    assert_eq!(e.to_string(), "hook says no");
    assert!(!dir.path("never.sock").exists(), "nothing was bound");
}

#[test]
fn bad_requests_are_invalid_input() {
    for (net, addr, listener) in [
        (Network::Udp, ":0", true),
        (Network::Unixgram, "/tmp/x", true),
        (Network::Tcp, ":0", false),
        (Network::Unix, "/tmp/x", false),
        (Network::Tcp, "nope", true),
        (Network::Tcp, "", true),
        (Network::Udp, ":http", false),
    ] {
        let r = if listener {
            bind_listener(net, addr, None)
        } else {
            bind_packet(net, addr, None)
        };
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{net} {addr}: {e}");
    }
    let e = bind_listener(Network::Tcp, "[fe80::1%no-such-if9]:0", None).unwrap_err();
    assert!(e.to_string().contains("no-such-if9"), "{e}");
}

#[test]
fn check_socket_rejects_the_wrong_kinds() {
    // A UDP socket is not a TCP listener.
    let udp = bind_packet(Network::Udp4, "127.0.0.1:0", None).unwrap();
    let raw = udp.as_raw_fd();
    let e = check_socket(udp.as_fd(), Network::Tcp).unwrap_err();
    assert_eq!(
        e,
        format!(
            "fd {raw} is an AF_INET SOCK_DGRAM socket, expected a listening AF_INET or \
             AF_INET6 SOCK_STREAM socket for \"tcp\""
        )
    );
    let e = check_socket(udp.as_fd(), Network::Unixgram).unwrap_err();
    assert!(e.contains("is an AF_INET SOCK_DGRAM socket, expected an AF_UNIX SOCK_DGRAM socket for \"unixgram\""), "{e}");
    assert!(!socket_matches(
        udp.as_fd(),
        Network::Tcp,
        &local_address(udp.as_fd()).unwrap()
    ));

    // A TCP listener is not a UDP socket.
    let tcp = bind_listener(Network::Tcp4, "127.0.0.1:0", None).unwrap();
    let e = check_socket(tcp.as_fd(), Network::Udp).unwrap_err();
    assert!(
        e.contains(
            "SOCK_STREAM socket, expected an AF_INET or AF_INET6 SOCK_DGRAM socket for \"udp\""
        ),
        "{e}"
    );

    // A TCP socket that is not listening.
    let idle = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    idle.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .unwrap();
    let raw = idle.as_raw_fd();
    let e = check_socket(idle.as_fd(), Network::Tcp).unwrap_err();
    assert_eq!(
        e,
        format!(
            "fd {raw} is an AF_INET SOCK_STREAM socket that is not listening, expected a \
             listening AF_INET or AF_INET6 SOCK_STREAM socket for \"tcp\""
        )
    );
    let local = local_address(idle.as_fd()).unwrap();
    assert!(!socket_matches(idle.as_fd(), Network::Tcp, &local));

    // An accepted (connected) TCP stream is not a listener either.
    let listener = TcpListener::from(tcp);
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let e = check_socket(client.as_fd(), Network::Tcp4).unwrap_err();
    assert!(e.contains("not listening"), "{e}");

    // A pipe is not a socket.
    let (r, _w) = nix::unistd::pipe().unwrap();
    let raw = r.as_raw_fd();
    let e = check_socket(r.as_fd(), Network::Tcp).unwrap_err();
    assert_eq!(
        e,
        format!(
            "fd {raw} is not a socket, expected a listening AF_INET or AF_INET6 \
             SOCK_STREAM socket for \"tcp\""
        )
    );
    assert!(!socket_matches(r.as_fd(), Network::Tcp, ":80"));
    let e = local_address(r.as_fd()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(Errno::ENOTSOCK as i32));

    // A regular file is not a socket.
    let dir = TempDir::new();
    let file = std::fs::File::create(dir.path("f")).unwrap();
    assert!(
        check_socket(file.as_fd(), Network::Unix)
            .unwrap_err()
            .contains("is not a socket")
    );

    // A unix stream listener is not a unixgram socket.
    let path = dir.sock("u.sock");
    let unix = bind_listener(Network::Unix, &path, None).unwrap();
    let e = check_socket(unix.as_fd(), Network::Unixgram).unwrap_err();
    assert!(e.contains("is an AF_UNIX SOCK_STREAM socket, expected an AF_UNIX SOCK_DGRAM socket for \"unixgram\""), "{e}");
    let e = check_socket(unix.as_fd(), Network::Tcp).unwrap_err();
    assert!(e.contains("is an AF_UNIX SOCK_STREAM socket"), "{e}");
}

#[test]
fn literal_unspecified_host_means_all_interfaces() {
    let fd = bind_listener(Network::Tcp, "0.0.0.0:0", None).unwrap();
    let port = port_of(&fd);
    let local = local_address(fd.as_fd()).unwrap();
    assert!(
        local == format!("[::]:{port}") || local == format!("0.0.0.0:{port}"),
        "{local}"
    );
    assert!(socket_matches(
        fd.as_fd(),
        Network::Tcp,
        &format!("0.0.0.0:{port}")
    ));
    assert!(socket_matches(
        fd.as_fd(),
        Network::Tcp,
        &format!(":{port}")
    ));
    tcp_round_trip(fd, &format!("127.0.0.1:{port}"));

    let fd = bind_packet(Network::Udp4, "0.0.0.0:0", None).unwrap();
    let port = port_of(&fd);
    assert_eq!(
        local_address(fd.as_fd()).unwrap(),
        format!("0.0.0.0:{port}")
    );
    assert!(socket_matches(
        fd.as_fd(),
        Network::Udp,
        &format!("[::]:{port}")
    ));
    assert!(socket_matches(
        fd.as_fd(),
        Network::Udp4,
        &format!("0.0.0.0:{port}")
    ));
    udp_round_trip(fd, &format!("127.0.0.1:{port}"));

    if have_ipv6() {
        let fd = bind_listener(Network::Tcp6, "[::]:0", None).unwrap();
        assert!(SockRef::from(&fd).only_v6().unwrap());
        let fd = bind_listener(Network::Tcp, "[::]:0", None).unwrap();
        assert!(!SockRef::from(&fd).only_v6().unwrap());
    }
}

#[test]
fn socket_matches_cases() {
    let fd = bind_listener(Network::Tcp4, "127.0.0.1:0", None).unwrap();
    let port = port_of(&fd);
    let m = |net, addr: &str| socket_matches(fd.as_fd(), net, addr);
    assert!(m(Network::Tcp4, &format!("127.0.0.1:{port}")));
    assert!(m(Network::Tcp, &format!("127.0.0.1:{port}")));
    assert!(m(Network::Tcp, &format!("localhost:{port}")));
    assert!(!m(Network::Tcp6, &format!("localhost:{port}")));
    assert!(!m(Network::Tcp, &format!("127.0.0.2:{port}")));
    assert!(!m(Network::Tcp, &format!("127.0.0.1:{}", port ^ 1)));
    assert!(!m(Network::Tcp, &format!(":{port}")), "not the wildcard");
    assert!(!m(Network::Tcp, ":0"));
    assert!(!m(Network::Udp, &format!("127.0.0.1:{port}")));
    assert!(!m(Network::Unix, "/tmp/x.sock"));
    assert!(!m(Network::Tcp, "garbage"));

    let any4 = bind_listener(Network::Tcp4, ":0", None).unwrap();
    let port = port_of(&any4);
    assert!(socket_matches(
        any4.as_fd(),
        Network::Tcp4,
        &format!(":{port}")
    ));
    assert!(socket_matches(
        any4.as_fd(),
        Network::Tcp,
        &format!(":{port}")
    ));
    assert!(socket_matches(
        any4.as_fd(),
        Network::Tcp,
        &format!("0.0.0.0:{port}")
    ));
    assert!(!socket_matches(
        any4.as_fd(),
        Network::Tcp6,
        &format!(":{port}")
    ));
    assert!(!socket_matches(
        any4.as_fd(),
        Network::Tcp,
        &format!("127.0.0.1:{port}")
    ));
}

#[test]
fn local_address_of_unnamed_unix_socket_is_empty() {
    let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    assert_eq!(local_address(s.as_fd()).unwrap(), "");
}

#[test]
fn backlog_is_positive() {
    assert!(listen_backlog() > 0);
}
