//! The device companion (`spse-totp-device`) as the page tests run it: the real binary, built
//! once per test run (a no-op when it is up to date). A test crate cannot name another crate's
//! binary, so it is built with the same cargo and found beside the test's own executable.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The companion's path, built on first use.
pub fn binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps");
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "-q", "-p", "spse-totp-device", "--manifest-path"]);
        build.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building spse-totp-device");
        profile_dir.join("spse-totp-device")
    })
}
