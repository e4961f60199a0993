// Shared by the build scripts of rade-schema (schemas/) and rade-window (rules/), through
// `include!`: a build script cannot call a library of the workspace without a crate of its own.

/// Writes `$OUT_DIR/<out>` as a `&[(&str, &str)]` of `(file name, include_str!(file))` for
/// every file of the workspace folder `folder` whose name ends in `suffix`, sorted by name,
/// so that a new file needs no change in the code.
fn embed_dir(folder: &str, suffix: &str, out: &str) {
    use std::fmt::Write;
    use std::path::Path;

    // The package folder as cargo gives it when the script runs, not `env!` (frozen at compile
    // time: cargo reuses a compiled script for another checkout sharing the target folder).
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("../..").join(folder);
    // A directory: cargo reruns the script when any file in it changes.
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    let mut text = String::from("&[\n");
    for name in names {
        let path = dir.join(&name);
        writeln!(text, "    ({name:?}, include_str!({:?})),", path.display().to_string())
            .expect("a String takes writes");
    }
    text.push(']');
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(out);
    std::fs::write(&target, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
}
