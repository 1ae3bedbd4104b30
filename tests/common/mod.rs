//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The shared data folder (`$SPECNN_DATA`, else `../shared/data` beside the checkout), if present.
/// When it is absent the calling test prints why it skips; with `SPECNN_REQUIRE_DATA=1` (set by CI) it
/// fails instead.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("SPECNN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("SPECNN_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("SPECNN_REQUIRE_DATA=1 but the shared data folder {} is missing", dir.display());
    }
    eprintln!("SKIPPED: shared data folder {} not found (set SPECNN_DATA)", dir.display());
    None
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Runs the `specnn` binary: (exit code, stdout, stderr).
pub fn specnn(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_specnn")).args(args).output().expect("run specnn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs `specnn evaluate --model M --spectra S --labels L --report R`: (exit code, stdout, stderr).
pub fn evaluate(model: &Path, spectra: &Path, labels: &Path, report: &Path) -> (i32, String, String) {
    let arg = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    let (m, sp, l, r) = (arg(model), arg(spectra), arg(labels), arg(report));
    specnn(&["evaluate", "--model", &m, "--spectra", &sp, "--labels", &l, "--report", &r])
}

/// A GPU for the GPU tests: the first adapter of any kind (lavapipe counts). Without one the calling
/// test prints why it skips; with `SPECNN_REQUIRE_GPU=1` (set by CI, which installs lavapipe) it fails.
pub fn gpu() -> Option<std::sync::Arc<specnn::gpu::Gpu>> {
    static GPU: std::sync::OnceLock<Option<std::sync::Arc<specnn::gpu::Gpu>>> = std::sync::OnceLock::new();
    let g = GPU.get_or_init(|| match specnn::gpu::Gpu::first(false) {
        Ok(Some(g)) => Some(std::sync::Arc::new(g)),
        Ok(None) => None,
        Err(e) => panic!("a GPU adapter exists but cannot be opened: {e}"),
    });
    if g.is_none() {
        if std::env::var("SPECNN_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("SPECNN_REQUIRE_GPU=1 but wgpu finds no adapter (install mesa-vulkan-drivers libvulkan1)");
        }
        eprintln!("SKIPPED: no GPU adapter (install a Vulkan driver, e.g. mesa-vulkan-drivers, to run the GPU tests)");
    }
    g.clone()
}
