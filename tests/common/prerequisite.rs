//! What a test does when something it needs is not on the machine (a tool, a kernel feature, a
//! service endpoint).
//!
//! With `CI` set the test fails: CI installs everything the suite needs (`.ci/run`), so a
//! missing prerequisite there is a broken set-up, not a reason to pass. Elsewhere the test
//! writes `SKIPPED: <test>: <why>` straight to the process's standard output (past libtest's
//! capture, so it shows for passing tests too) and goes on without the part that needed it;
//! `scripts/test.sh` counts these lines into the `N skipped` of its summary.
//!
//! Included by path (`#[path = ".../tests/common/prerequisite.rs"] mod prerequisite;`) in each
//! test crate that needs it, unit tests in `src/` included; it has no dependencies.

use std::io::Write;

/// The marker `scripts/test.sh` counts.
pub const SKIPPED: &str = "SKIPPED: ";

/// Reports that `test` cannot check its claim because `why` (name the missing thing and how to
/// install it). Panics when `CI` is set; otherwise prints the skip line and returns, and the
/// caller leaves out what needed the prerequisite.
pub fn missing(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: a prerequisite is missing in CI (CI must provide it): {why}");
    }
    let line = format!("{SKIPPED}{test}: {why}\n");
    // One write of the whole line, so parallel tests' output does not split it.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// `CI` set to anything but the empty string (CI runs `.ci/run` with `CI=true`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}
