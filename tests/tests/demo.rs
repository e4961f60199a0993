//! `rade demo` runs to completion with no broker and no configuration, as the README says.

use std::process::Command;

use rade_integration_tests::*;

#[test]
fn the_demo_runs_to_completion_and_explains_what_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("demo-lake");
    let out = Command::new(rade_bin())
        .current_dir(schemas_dir().parent().expect("repo root"))
        .args(["demo", "--records", "5000", "--lake", lake.to_str().expect("utf-8")])
        .output()
        .expect("rade demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "== what came in ==",
        "== what was rejected, and why",
        "== where it is ==",
        "== try next ==",
    ] {
        assert!(stdout.contains(section), "missing {section}:\n{stdout}");
    }
    assert!(stdout.contains("consumed 5000"), "{stdout}");
    assert!(
        stdout.contains("out_of_range") && stdout.contains("rade query --lake"),
        "{stdout}"
    );
    let rows = read_lake(&lake);
    assert!(rows.len() > 4500 && rows.len() < 5000, "{} rows", rows.len());
}
