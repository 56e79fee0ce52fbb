/// Whether privileged tests can run here. Call it first in every test that needs a lab:
///
/// ```no_run
/// if !skiff_lab::privileged() {
///     return;
/// }
/// ```
///
/// Without root it returns `false` (the test skips, with a note on stderr) on a developer's
/// machine, and panics under `CI=true`, where a privileged test that cannot run is a failure.
pub fn privileged() -> bool {
    if crate::sys::is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true but this test is not running as root: privileged tests must run in CI");
    }
    eprintln!("skipping: this test needs root (network namespaces, cgroups, eBPF)");
    false
}
