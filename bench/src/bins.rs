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
    pub(crate) floor: PathBuf,
    pub(crate) many_listeners: PathBuf,
    pub(crate) plain_hello: PathBuf,
    pub(crate) shellflip_hello: PathBuf,
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
        floor: find(&own, "floor")?,
        many_listeners: find(&own, "many_listeners")?,
        plain_hello: find(&own, "plain_hello")?,
        shellflip_hello: find(&own, "shellflip_hello")?,
        examples_profile: if release_examples { "release" } else { "dev" },
    })
}

/// Runs `cargo <args> --message-format=json-render-diagnostics` in `dir`; returns the
/// executables it built, by target name. Diagnostics go to our stderr.
fn cargo(dir: &Path, args: &[&str]) -> Result<HashMap<String, PathBuf>, String> {
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&program)
        .args(args)
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
