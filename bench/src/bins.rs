//! The programs the bench starts: the product's examples, built with cargo in the product
//! workspace, and the bench's own helper binaries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every program the bench starts.
#[derive(Debug)]
pub(crate) struct Bins {
    pub(crate) hello: PathBuf,
    pub(crate) http: PathBuf,
    pub(crate) http_naive: PathBuf,
    pub(crate) floor: PathBuf,
    pub(crate) many_listeners: PathBuf,
    pub(crate) plain_hello: PathBuf,
    pub(crate) shellflip_hello: PathBuf,
    pub(crate) ecdysis_hello: PathBuf,
    pub(crate) ecdysis_http: PathBuf,
    /// `hello` and the floor statically linked (`-C target-feature=+crt-static`), as the
    /// README's fast-upgrade build; or why not (not built by `--quick`).
    pub(crate) static_builds: Result<StaticBuilds, String>,
    /// The Go tableflip peers (`tests/go/hello`, `tests/go/http`), or why there are none.
    pub(crate) go: Result<GoPeers, String>,
    /// The cargo profile the examples were built with.
    pub(crate) examples_profile: &'static str,
}

/// The product workspace: the parent of the bench's directory.
pub(crate) fn product_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_owned()
}

/// Builds the examples (`release` or the dev profile) and the bench's helpers (release),
/// and returns where they are. Must run before [`crate::procs::Reaper`] starts (it waits
/// for cargo).
pub(crate) fn build(release_examples: bool) -> Result<Bins, String> {
    let product = product_dir();
    let mut examples = vec!["build", "--examples"];
    if release_examples {
        examples.push("--release");
    }
    let ex = cargo(&product, &examples)?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let manifest = manifest.to_str().ok_or("non-UTF-8 path")?;
    let own = cargo(
        &product,
        &["build", "--release", "--bins", "--manifest-path", manifest],
    )?;
    let find = |map: &HashMap<String, PathBuf>, name: &str| {
        map.get(name)
            .cloned()
            .ok_or_else(|| format!("cargo built no `{name}`"))
    };
    Ok(Bins {
        hello: find(&ex, "hello")?,
        http: find(&ex, "http")?,
        http_naive: find(&ex, "http_naive")?,
        floor: find(&own, "floor")?,
        many_listeners: find(&own, "many_listeners")?,
        plain_hello: find(&own, "plain_hello")?,
        shellflip_hello: find(&own, "shellflip_hello")?,
        ecdysis_hello: find(&own, "ecdysis_hello")?,
        ecdysis_http: find(&own, "ecdysis_http")?,
        static_builds: if release_examples {
            static_builds(&product)
        } else {
            Err("skipped: built only for full runs (and `--release-examples`)".into())
        },
        go: go_peers(),
        examples_profile: if release_examples { "release" } else { "dev" },
    })
}

/// Statically linked builds.
#[derive(Debug)]
pub(crate) struct StaticBuilds {
    /// `-C target-feature=+crt-static`: a static PIE (the code still at a random address).
    pub(crate) hello: PathBuf,
    /// The same, `-C relocation-model=static` too: not position-independent, as Go links.
    pub(crate) hello_nopie: PathBuf,
    /// The floor's program, static and not position-independent.
    pub(crate) floor: PathBuf,
}

/// The README's fast-upgrade builds of `hello` (release, `RUSTFLAGS` as below, an explicit
/// `--target` so that proc-macros still build as usual) into `target/static*`, and the floor
/// with `rustc` (it uses std only).
fn static_builds(product: &Path) -> Result<StaticBuilds, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("can't run {rustc}: {e}"))?;
    let host = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or("rustc -vV names no host")?;
    let build = |dir: &str, flags: &str| -> Result<PathBuf, String> {
        let dir = product.join("target").join(dir);
        let dir = dir.to_str().ok_or("non-UTF-8 path")?;
        let args = [
            "build",
            "--release",
            "--example",
            "hello",
            "--target",
            &host,
            "--target-dir",
            dir,
        ];
        cargo_env(product, &args, &[("RUSTFLAGS", flags)])?
            .remove("hello")
            .ok_or_else(|| format!("cargo built no `hello` with {flags}"))
    };
    let hello = build("static", "-C target-feature=+crt-static")?;
    let hello_nopie = build(
        "static-nopie",
        "-C target-feature=+crt-static -C relocation-model=static",
    )?;
    let floor = product.join("target").join("static-nopie").join("floor");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/floor.rs");
    let status = Command::new(&rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["-C", "relocation-model=static", "-o"])
        .arg(&floor)
        .arg(&src)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("can't run {rustc}: {e}"))?;
    if !status.success() {
        return Err(format!("rustc of the static floor failed: {status}"));
    }
    Ok(StaticBuilds {
        hello,
        hello_nopie,
        floor,
    })
}

/// The Go tableflip peers.
#[derive(Debug)]
pub(crate) struct GoPeers {
    pub(crate) hello: PathBuf,
    pub(crate) http: PathBuf,
    /// `go version`'s answer.
    pub(crate) version: String,
}

/// Where Debian's `golang-github-cloudflare-tableflip-dev` puts the library source.
const GOCODE: &str = "/usr/share/gocode";

/// Builds the Go tableflip peers of the product's `tests/go/` with Debian's Go and Debian's
/// tableflip (1.2.1+git20200514, the wire protocol of v1.2.3), offline, in GOPATH mode, into
/// `bench/target/go-peers`. An error says what is missing.
fn go_peers() -> Result<GoPeers, String> {
    let version = Command::new("go")
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .ok_or("skipped: no `go` (apt-get install golang-go)")?;
    if !Path::new(GOCODE)
        .join("src/github.com/cloudflare/tableflip/upgrader.go")
        .exists()
    {
        return Err("skipped: no Go tableflip source \
                    (apt-get install golang-github-cloudflare-tableflip-dev)"
            .into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("go-peers");
    let build = |name: &str| -> Result<PathBuf, String> {
        let exe = root.join("bin").join(name);
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&exe)
            .arg(".")
            .current_dir(product_dir().join("tests").join("go").join(name))
            .env("GO111MODULE", "off")
            .env(
                "GOPATH",
                format!("{}:{GOCODE}", root.join("gopath").display()),
            )
            .env("GOCACHE", root.join("cache"))
            .env("GOFLAGS", "")
            .env("GOPROXY", "off")
            .env("CGO_ENABLED", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("can't run go build: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "go build of tests/go/{name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(exe)
    };
    Ok(GoPeers {
        hello: build("hello")?,
        http: build("http")?,
        version,
    })
}

/// Runs `cargo <args> --message-format=json-render-diagnostics` in `dir`; returns the
/// executables it built, by target name. Diagnostics go to our stderr.
fn cargo(dir: &Path, args: &[&str]) -> Result<HashMap<String, PathBuf>, String> {
    cargo_env(dir, args, &[])
}

/// [`cargo`] with more environment variables.
fn cargo_env(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<HashMap<String, PathBuf>, String> {
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&program)
        .args(args)
        .envs(env.iter().copied())
        .arg("--message-format=json-render-diagnostics")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("can't run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("`cargo {}` failed: {}", args.join(" "), out.status));
    }
    let mut found = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            found.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    Ok(found)
}
