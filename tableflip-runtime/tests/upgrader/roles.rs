//! The process side: each scenario's parent and child behaviour, on the public runtime API.
//! Every generation runs this same binary; `has_parent()` tells them apart.
#![allow(unreachable_pub, missing_docs)]

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tableflip_runtime::{Fds, Options, UpgradeError, Upgrader};

/// Appends one event line to the report file (one `write`, so lines never interleave).
pub fn report(name: &str, fields: &[(&str, String)]) {
    let mut line = format!("{}\u{1f}{name}", std::process::id());
    for (k, v) in fields {
        line.push_str(&format!("\u{1f}{k}={v}"));
    }
    line.push_str("\u{1e}\n");
    let path = std::env::var_os("TF_REPORT").expect("TF_REPORT");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open report");
    f.write_all(line.as_bytes()).expect("write report");
}

fn dir() -> PathBuf {
    PathBuf::from(std::env::var_os("TF_DIR").expect("TF_DIR"))
}

/// Waits (bounded) for the test to create a file in the scratch directory.
fn wait_file(name: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if dir().join(name).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// `Ok`, or the error's variant name.
fn outcome(r: &Result<u32, UpgradeError>) -> String {
    r.as_ref().map_or_else(kind, |_| "Ok".into())
}

fn kind(e: &UpgradeError) -> String {
    let s = format!("{e:?}");
    s.split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn inode(fd: impl AsFd) -> String {
    let st = nix::sys::stat::fstat(fd.as_fd().as_raw_fd()).expect("fstat");
    st.st_ino.to_string()
}

fn nonblocking(fd: impl AsFd) -> bool {
    let flags =
        OFlag::from_bits_truncate(fcntl(fd.as_fd().as_raw_fd(), FcntlArg::F_GETFL).unwrap());
    flags.contains(OFlag::O_NONBLOCK)
}

fn options() -> Options {
    let mut options = Options::default();
    if let Ok(ms) = std::env::var("TF_TIMEOUT_MS") {
        options = options.upgrade_timeout(Duration::from_millis(ms.parse().unwrap()));
    }
    if let Some(path) = std::env::var_os("TF_PID_FILE") {
        options = options.pid_file(PathBuf::from(path));
    }
    options
}

pub fn run(scenario: &str) -> ExitCode {
    tableflip_runtime::init();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(role(scenario)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report("error", &[("msg", e.clone())]);
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn role(scenario: &str) -> Result<(), String> {
    let upg = match scenario {
        "hook" => Upgrader::new(options().listen_hook(Arc::new(
            |network: &str, addr: &str, fd| {
                let bound = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(
                    fd.as_raw_fd(),
                )
                .map(|a| a.as_sockaddr_in().map(|s| s.port()).unwrap_or(0))
                .unwrap_or(0);
                socket2::SockRef::from(&fd).set_recv_buffer_size(200_000)?;
                report(
                    "hook",
                    &[
                        ("network", network.into()),
                        ("addr", addr.into()),
                        ("port_before_bind", bound.to_string()),
                    ],
                );
                Ok(())
            },
        ))),
        _ => Upgrader::new(options()),
    }
    .map_err(|e| e.one_line())?;
    let child = upg.has_parent();
    report("start", &[("has_parent", child.to_string())]);
    match (scenario, child) {
        ("not_ready", false) => {
            let r = upg.upgrade().await;
            report("upgrade", &[("result", outcome(&r))]);
        }
        ("networks", false) => {
            networks_parent(&upg)?;
            upgrade_and_report(&upg).await;
            let reason = upg.exit().await;
            report("exit", &[("reason", format!("{reason:?}"))]);
        }
        ("networks", true) => networks_child(&upg).await?,
        ("pid_file", false) => {
            // The pid file's bare name must resolve against the start-up directory, not the
            // working directory at the time of writing.
            std::env::set_current_dir("/").map_err(|e| e.to_string())?;
            upg.ready().map_err(|e| e.one_line())?;
            report("ready", &[]);
            wait_file("upgrade-now");
            upgrade_and_report(&upg).await;
            wait_file("release");
        }
        ("child_exit_clean" | "child_exit_error" | "timeout" | "concurrent", false) => {
            upg.ready().map_err(|e| e.one_line())?;
            report("ready", &[]);
            if scenario == "concurrent" {
                let first = {
                    let upg = upg.clone();
                    tokio::spawn(async move { upg.upgrade().await })
                };
                tokio::task::yield_now().await;
                while !dir().join("child-started").exists() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let second = upg.upgrade().await;
                report("second", &[("result", outcome(&second))]);
                std::fs::write(dir().join("go"), "").unwrap();
                let first = first.await.unwrap();
                report("upgrade", &[("result", outcome(&first))]);
            } else {
                upgrade_and_report(&upg).await;
            }
        }
        ("child_exit_clean", true) => std::process::exit(0),
        ("child_exit_error", true) => std::process::exit(3),
        ("timeout", true) | ("stop_cancels", true) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        ("concurrent", true) => {
            std::fs::write(dir().join("child-started"), "").unwrap();
            wait_file("go");
            upg.ready().map_err(|e| e.one_line())?;
        }
        ("stop_cancels", false) => {
            upg.ready().map_err(|e| e.one_line())?;
            let first = {
                let upg = upg.clone();
                tokio::spawn(async move { upg.upgrade().await })
            };
            while !dir().join("child-started").exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            upg.stop();
            let first = first.await.unwrap();
            report("upgrade", &[("result", outcome(&first))]);
            let again = upg.upgrade().await;
            report("again", &[("result", outcome(&again))]);
            report("exit", &[("reason", format!("{:?}", upg.exit().await))]);
        }
        ("hook", false) => {
            let l: std::net::TcpListener = upg
                .fds()
                .listen("tcp", "127.0.0.1:0")
                .map_err(|e| e.one_line())?;
            let rcvbuf = socket2::SockRef::from(&l).recv_buffer_size().unwrap();
            report("listening", &[("rcvbuf", rcvbuf.to_string())]);
        }
        ("pid_file", true) => {
            upg.ready().map_err(|e| e.one_line())?;
            report("ready", &[]);
            wait_file("release");
        }
        ("wait_for_parent", false) => {
            upg.ready().map_err(|e| e.one_line())?;
            upgrade_and_report(&upg).await;
            wait_file("release");
        }
        ("wait_for_parent", true) => {
            upg.ready().map_err(|e| e.one_line())?;
            report("waiting", &[]);
            let r = upg.wait_for_parent().await;
            report("parent_gone", &[("result", format!("{r:?}"))]);
        }
        ("nonblocking", false) => {
            let nb: std::net::TcpListener = upg
                .fds()
                .listen("tcp", "127.0.0.1:0")
                .map_err(|e| e.one_line())?;
            nb.set_nonblocking(true).unwrap();
            let b: std::net::UdpSocket = upg
                .fds()
                .listen_packet("udp", "127.0.0.1:0")
                .map_err(|e| e.one_line())?;
            b.set_nonblocking(false).unwrap();
            let (r, w) = nix::unistd::pipe().unwrap();
            nix::fcntl::fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
            upg.fds()
                .add_file("pipe-nb", r.as_fd())
                .map_err(|e| e.one_line())?;
            upg.fds()
                .add_file("pipe-b", w.as_fd())
                .map_err(|e| e.one_line())?;
            upg.ready().map_err(|e| e.one_line())?;
            upgrade_and_report(&upg).await;
        }
        ("nonblocking", true) => {
            let fds = upg.fds();
            let nb: OwnedFd = fds.listen("tcp", "127.0.0.1:0").map_err(|e| e.one_line())?;
            let b: OwnedFd = fds
                .listen_packet("udp", "127.0.0.1:0")
                .map_err(|e| e.one_line())?;
            let pnb = fds
                .file("pipe-nb")
                .map_err(|e| e.one_line())?
                .ok_or("no pipe-nb")?;
            let pb = fds
                .file("pipe-b")
                .map_err(|e| e.one_line())?
                .ok_or("no pipe-b")?;
            report(
                "flags",
                &[
                    ("tcp", nonblocking(&nb).to_string()),
                    ("udp", nonblocking(&b).to_string()),
                    ("pipe_nb", nonblocking(&pnb).to_string()),
                    ("pipe_b", nonblocking(&pb).to_string()),
                ],
            );
            upg.ready().map_err(|e| e.one_line())?;
        }
        ("unix_unlink", false) => {
            let d = dir();
            for name in ["a.sock", "b.sock"] {
                let l: std::os::unix::net::UnixListener = upg
                    .fds()
                    .listen("unix", d.join(name).to_str().unwrap())
                    .map_err(|e| e.one_line())?;
                drop(l);
            }
            let g: std::os::unix::net::UnixDatagram = upg
                .fds()
                .listen_packet("unixgram", d.join("g.sock").to_str().unwrap())
                .map_err(|e| e.one_line())?;
            drop(g);
            let abs = format!("@tf-unlink-{}", std::process::id());
            let a: std::os::unix::net::UnixListener =
                upg.fds().listen("unix", &abs).map_err(|e| e.one_line())?;
            drop(a);
            upg.ready().map_err(|e| e.one_line())?;
            upgrade_and_report(&upg).await;
            wait_file("release-parent");
        }
        ("unix_unlink", true) => {
            let a: std::os::unix::net::UnixListener = upg
                .fds()
                .listen("unix", dir().join("a.sock").to_str().unwrap())
                .map_err(|e| e.one_line())?;
            upg.ready().map_err(|e| e.one_line())?;
            report("ready", &[]);
            wait_file("stop-child");
            drop(a);
            upg.stop();
            // The stop is carried out by the lifecycle driver; exit() resolves once it has.
            upg.exit().await;
            report("stopped", &[]);
        }
        ("parent_dies", false) => {
            let l: std::net::TcpListener = upg
                .fds()
                .listen("tcp", "127.0.0.1:0")
                .map_err(|e| e.one_line())?;
            report(
                "listening",
                &[("addr", l.local_addr().unwrap().to_string())],
            );
            upg.ready().map_err(|e| e.one_line())?;
            upgrade_and_report(&upg).await;
        }
        ("parent_dies", true) => {
            let l: std::net::TcpListener = upg
                .fds()
                .listen("tcp", "127.0.0.1:0")
                .map_err(|e| e.one_line())?;
            report("initialising", &[]);
            wait_file("parent-killed");
            let r = upg.ready();
            report(
                "ready",
                &[("result", format!("{:?}", r.map_err(|e| e.one_line())))],
            );
            serve_stream_once(l)?;
        }
        ("go_child", true) => go_child(&upg).await?,
        (other, child) => return Err(format!("no role for scenario {other} (child: {child})")),
    }
    Ok(())
}

async fn upgrade_and_report(upg: &Upgrader) {
    let r = upg.upgrade().await;
    let fields = match &r {
        Ok(pid) => vec![("result", "Ok".to_owned()), ("child_pid", pid.to_string())],
        Err(e) => vec![("result", kind(e)), ("msg", e.to_string())],
    };
    report("upgrade", &fields);
}

fn serve_stream_once(l: std::net::TcpListener) -> Result<(), String> {
    l.set_nonblocking(false).map_err(|e| e.to_string())?;
    let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
    writeln!(s, "hello from pid {}", std::process::id()).map_err(|e| e.to_string())
}

/// Every network of DESIGN.md, plus a connection and a file.
fn network_table() -> Vec<(&'static str, &'static str, String)> {
    let d = dir();
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    let tag = std::env::var("TF_TAG").unwrap_or_default();
    let mut v = vec![
        ("listener", "tcp", "127.0.0.1:0".to_owned()),
        ("listener", "tcp4", "127.0.0.1:0".to_owned()),
        ("listener", "unix", p("stream.sock")),
        ("listener", "unixpacket", p("seqpacket.sock")),
        ("listener", "unix", format!("@tf-abs-{tag}")),
        ("packet", "udp", "127.0.0.1:0".to_owned()),
        ("packet", "udp4", "127.0.0.1:0".to_owned()),
        ("packet", "unixgram", p("dgram.sock")),
        ("packet", "unixgram", format!("@tf-absdg-{tag}")),
    ];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        v.push(("listener", "tcp6", "[::1]:0".to_owned()));
        v.push(("packet", "udp6", "[::1]:0".to_owned()));
    }
    v
}

fn claim(fds: &Fds, kind: &str, network: &str, addr: &str) -> Result<OwnedFd, String> {
    match kind {
        "listener" => fds.listen(network, addr),
        _ => fds.listen_packet(network, addr),
    }
    .map_err(|e| e.one_line())
}

fn networks_parent(upg: &Upgrader) -> Result<(), String> {
    let fds = upg.fds();
    for (kind, network, addr) in network_table() {
        let fd = claim(fds, kind, network, &addr)?;
        report(
            "fd",
            &[
                ("key", format!("{kind}:{network}:{addr}")),
                ("inode", inode(&fd)),
            ],
        );
    }
    // A connection and a file travel too.
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let conn = std::net::TcpStream::connect(l.local_addr().unwrap()).map_err(|e| e.to_string())?;
    fds.add_conn("tcp", "peer", conn.as_fd())
        .map_err(|e| e.one_line())?;
    report(
        "fd",
        &[("key", "conn:tcp:peer".into()), ("inode", inode(&conn))],
    );
    let mut file = std::fs::File::create(dir().join("state")).unwrap();
    file.write_all(b"state from the parent").unwrap();
    let file = std::fs::File::open(dir().join("state")).unwrap();
    fds.add_file("state", file.as_fd())
        .map_err(|e| e.one_line())?;
    report(
        "fd",
        &[("key", "fd:state:".into()), ("inode", inode(&file))],
    );
    upg.ready().map_err(|e| e.one_line())
}

async fn networks_child(upg: &Upgrader) -> Result<(), String> {
    let fds = upg.fds();
    let mut stream = Vec::new();
    for (kind, network, addr) in network_table() {
        let fd = claim(fds, kind, network, &addr)?;
        let local = local_name(&fd);
        report(
            "fd",
            &[
                ("key", format!("{kind}:{network}:{addr}")),
                ("inode", inode(&fd)),
                ("local", local),
            ],
        );
        stream.push((kind, network, fd));
    }
    let conn: std::net::TcpStream = fds
        .conn("tcp", "peer")
        .map_err(|e| e.one_line())?
        .ok_or("no conn")?;
    report(
        "fd",
        &[("key", "conn:tcp:peer".into()), ("inode", inode(&conn))],
    );
    let file = fds
        .file("state")
        .map_err(|e| e.one_line())?
        .ok_or("no file")?;
    let mut content = String::new();
    std::fs::File::from(file.try_clone().unwrap())
        .read_to_string(&mut content)
        .unwrap();
    report(
        "fd",
        &[
            ("key", "fd:state:".into()),
            ("inode", inode(&file)),
            ("content", content),
        ],
    );
    upg.ready().map_err(|e| e.one_line())?;
    // Serve every socket so the test can check it works.
    for (kind, network, fd) in stream {
        std::thread::spawn(move || serve_fd(kind, network, fd));
    }
    report("serving", &[]);
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

fn local_name(fd: &OwnedFd) -> String {
    use nix::sys::socket::{SockaddrLike, SockaddrStorage, getsockname};
    let Ok(addr) = getsockname::<SockaddrStorage>(fd.as_raw_fd()) else {
        return String::new();
    };
    if let Some(v4) = addr.as_sockaddr_in() {
        return v4.to_string();
    }
    if let Some(v6) = addr.as_sockaddr_in6() {
        return format!("[{}]:{}", v6.ip(), v6.port());
    }
    if let Some(un) = addr.as_unix_addr() {
        if let Some(p) = un.path() {
            return p.to_string_lossy().into_owned();
        }
        if let Some(a) = un.as_abstract() {
            return format!("@{}", String::from_utf8_lossy(a));
        }
    }
    let _ = addr.family();
    String::new()
}

/// Answers one client per stream listener with its pid, echoes datagrams with the pid.
fn serve_fd(kind: &str, _network: &str, fd: OwnedFd) {
    use nix::sys::socket::{MsgFlags, SockaddrStorage, accept, recvfrom, send, sendto};
    let raw = fd.as_raw_fd();
    nix::fcntl::fcntl(raw, FcntlArg::F_SETFL(OFlag::empty())).ok();
    let msg = format!("hello from pid {}\n", std::process::id());
    for _ in 0..100 {
        if kind == "listener" {
            let Ok(c) = accept(raw) else { return };
            let _ = send(c, msg.as_bytes(), MsgFlags::empty());
            let _ = nix::unistd::close(c);
        } else {
            let mut buf = [0u8; 512];
            let Ok((n, from)) = recvfrom::<SockaddrStorage>(raw, &mut buf) else {
                return;
            };
            let reply = format!(
                "{} {}",
                std::process::id(),
                String::from_utf8_lossy(&buf[..n])
            );
            if let Some(from) = from {
                let _ = sendto(raw, reply.as_bytes(), &from, MsgFlags::empty());
            }
        }
    }
}

/// A child of a (played) Go parent: claims what the `mixed` vector names.
async fn go_child(upg: &Upgrader) -> Result<(), String> {
    let fds = upg.fds();
    let tcp: OwnedFd = fds.listen("tcp", ":8080").map_err(|e| e.one_line())?;
    let udp: OwnedFd = fds
        .listen_packet("udp", "[::1]:5353")
        .map_err(|e| e.one_line())?;
    let unix: OwnedFd = fds
        .listen("unix", "/run/app.sock")
        .map_err(|e| e.one_line())?;
    let conn: Option<OwnedFd> = fds.conn("unixgram", "").map_err(|e| e.one_line())?;
    let state = fds
        .file("state")
        .map_err(|e| e.one_line())?
        .ok_or("no state file")?;
    report(
        "claimed",
        &[
            ("tcp", inode(&tcp)),
            ("udp", inode(&udp)),
            ("unix", inode(&unix)),
            ("conn", conn.as_ref().map(inode).unwrap_or_default()),
            ("state", inode(&state)),
        ],
    );
    upg.ready().map_err(|e| e.one_line())?;
    report("ready", &[]);
    let r = upg.wait_for_parent().await;
    report(
        "parent_gone",
        &[("result", format!("{:?}", r.map_err(|e| e.one_line())))],
    );
    Ok(())
}
