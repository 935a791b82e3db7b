//! Go tableflip peers (the programs in `tests/go/`), built at run time with the Debian Go
//! toolchain and Debian's tableflip source, offline, in GOPATH mode, into the target
//! directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Where Debian's `golang-github-cloudflare-tableflip-dev` puts the library source.
const GOCODE: &str = "/usr/share/gocode";

/// Builds (once per test process) the Go peer in `tests/go/<name>` and returns its path,
/// or `None` after printing one line that says why Go peers cannot be built here (no `go`,
/// or no tableflip source). A failing build panics with the compiler's output.
pub fn go_peer(name: &str) -> Option<PathBuf> {
    static BUILT: Mutex<Option<HashMap<String, Option<PathBuf>>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(missing) = missing_toolchain() {
        eprintln!("skipped: Go tableflip interop needs {missing}");
        return None;
    }
    if let Some(done) = built.get(name) {
        return done.clone();
    }
    let out = build(name);
    built.insert(name.to_owned(), out.clone());
    out
}

fn build(name: &str) -> Option<PathBuf> {
    let root = go_dir();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("create the Go peers' directory");
    let exe = bin.join(name);
    // Built beside the final name, then renamed over it: a peer another test process runs
    // keeps its inode, and nobody ever executes a half-written file.
    let tmp = bin.join(format!(".{name}.{}", std::process::id()));
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("go")
        .join(name);
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&src)
        .envs(go_env(&root))
        .stdin(Stdio::null())
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build of tests/go/{name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &exe).expect("move the Go peer into place");
    Some(exe)
}

/// What is missing to build Go tableflip peers, if anything (asked once per test process).
fn missing_toolchain() -> Option<&'static str> {
    static MISSING: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *MISSING.get_or_init(find_missing)
}

fn find_missing() -> Option<&'static str> {
    let go = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !go.is_ok_and(|s| s.success()) {
        return Some("`go` (apt-get install golang-go)");
    }
    let lib = Path::new(GOCODE).join("src/github.com/cloudflare/tableflip/upgrader.go");
    if !lib.exists() {
        return Some(
            "Go tableflip's source (apt-get install golang-github-cloudflare-tableflip-dev)",
        );
    }
    None
}

/// `<target>/go-peers`: the test binary is `<target>/<profile>/deps/<test>`.
fn go_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .expect("the target directory")
        .join("go-peers")
}

/// GOPATH mode, offline, pure Go (no C compiler needed), every cache under `root`.
fn go_env(root: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GO111MODULE", "off".into()),
        (
            "GOPATH",
            format!("{}:{GOCODE}", root.join("gopath").display()),
        ),
        ("GOCACHE", root.join("cache").display().to_string()),
        ("GOFLAGS", String::new()),
        ("GOPROXY", "off".into()),
        ("CGO_ENABLED", "0".into()),
    ]
}
