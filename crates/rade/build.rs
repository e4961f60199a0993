//! Stamps the commit the binary is built from into `rade --version`.
//!
//! `RADE_BUILD_COMMIT` wins when set (a container build has no `.git`: pass
//! `--build-arg RADE_COMMIT=...`); otherwise `git rev-parse` of the checkout, with `-dirty`
//! when tracked files differ from that commit; `unknown` outside a git checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The package's folder as cargo gives it now: not `env!`, which is frozen when the script is
/// compiled, and cargo reuses a compiled script for another checkout sharing the target folder.
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    println!("cargo::rerun-if-env-changed=RADE_BUILD_COMMIT");
    let commit = match std::env::var("RADE_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => from_git().unwrap_or_else(|| "unknown".into()),
    };
    println!("cargo::rustc-env=RADE_COMMIT={commit}");
}

fn from_git() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Run again when HEAD moves (checkout, commit) or the index or the sources change, so that
    // the commit and the dirty mark stay true. The paths are relative to this package (cargo
    // reads them so): a checkout in another folder sharing the build cache watches its own
    // `.git`, not the one of the checkout that built last.
    let up = git(&["rev-parse", "--show-cdup"])?;
    let mut watched: Vec<PathBuf> = ["crates", "schemas", "rules", "Cargo.toml", "Cargo.lock"]
        .iter()
        .map(|p| Path::new(&up).join(p))
        .collect();
    let mut git_paths = vec!["HEAD".to_owned(), "index".to_owned(), "packed-refs".to_owned()];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        git_paths.push(head_ref);
    }
    // `--git-path` answers relative to the working directory, which is this package's.
    watched.extend(
        git_paths
            .iter()
            .filter_map(|p| git(&["rev-parse", "--git-path", p]).map(PathBuf::from)),
    );
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{commit}-dirty") } else { commit })
}
