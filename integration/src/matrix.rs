//! Running one test body against every runtime in `runtimes()`, with a leak check after
//! each, and a per-runtime list of known reference-runtime failures (never berth-runc).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::runtime::{runtimes, Runtime};

/// A known failure of a reference runtime: (runtime name, why).
pub type Expect = (&'static str, &'static str);

/// Runs `body` for each runtime. A failure of a runtime listed in `known` is reported as
/// an expected failure; any other failure (or leak) fails the test at the end.
pub fn each_runtime(test: &str, known: &[Expect], body: impl Fn(&Runtime)) {
    assert!(
        !known.iter().any(|(n, _)| n.starts_with("berth-runc")),
        "berth-runc may never be an expected failure"
    );
    let mut failures = Vec::new();
    for rt in runtimes() {
        let result = catch_unwind(AssertUnwindSafe(|| body(&rt)));
        let leaks = rt.leaks();
        rt.untrack_all();
        let expected = known
            .iter()
            .find(|(n, _)| *n == rt.name())
            .map(|(_, why)| *why);
        let verdict = match (&result, leaks.is_empty(), expected) {
            (Ok(()), true, None) => "pass".to_string(),
            (Ok(()), true, Some(why)) => format!("XPASS (listed as known failure: {why})"),
            (Err(_), true, Some(why)) => format!("expected failure: {why}"),
            (Err(_), false, Some(why)) => {
                format!("expected failure: {why}; and it leaked {leaks:?}")
            }
            (Err(e), _, None) => {
                failures.push(format!("{}: {}", rt.name(), panic_text(e)));
                "FAIL".to_string()
            }
            (Ok(()), false, Some(why)) => format!("expected failure: {why}; it leaked {leaks:?}"),
            (Ok(()), false, None) => {
                failures.push(format!("{}: leaked {leaks:#?}", rt.name()));
                "FAIL (leak)".to_string()
            }
        };
        report(test, rt.name(), &verdict);
    }
    assert!(
        failures.is_empty(),
        "{test} failed:\n{}",
        failures.join("\n")
    );
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Prints a verdict line and appends it to `$BERTH_TEST_REPORT` when set.
fn report(test: &str, runtime: &str, verdict: &str) {
    let line = format!("RESULT {test} [{runtime}]: {verdict}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("BERTH_TEST_REPORT") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}
