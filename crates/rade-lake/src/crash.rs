//! The crash tests' hook, compiled in only with the `crash-points` feature.

/// Test hook: with `RADE_CRASH_AT=<point>` (or `<point>:<n>`, the n-th time), the process
/// kills itself with SIGKILL when it reaches `point`, so that the crash tests hit exact
/// moments: between two files of a flush, between its files and its window state, between
/// the state and the commit, between a raw table commit and the derived files.
#[cfg(feature = "crash-points")]
pub fn crash_point(point: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        let v = std::env::var("RADE_CRASH_AT").ok()?;
        Some(match v.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    let Some((name, nth)) = at else { return };
    if name != point || HITS.fetch_add(1, Ordering::SeqCst) + 1 < *nth {
        return;
    }
    tracing::error!(point, "RADE_CRASH_AT: killing the process");
    // No unsafe code in the workspace, so no libc::kill: the kill command does the same.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

/// Test hook of the crash tests; without the `crash-points` feature (shipped builds), nothing.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}
