//! The public PyTorch golden file passes whole, models included.

mod common;

#[test]
fn public_golden_file_passes() {
    let Some(data) = common::shared_data() else { return };
    let path = data.join("golden/public.safetensors");
    let reports = specnn::golden::audit(&path).expect("the public golden file parses");
    assert!(reports.len() >= 30, "expected the whole public set, got {} cases", reports.len());
    let failed: Vec<_> = reports.iter().filter(|r| !r.passed).map(|r| format!("{}: {:?}", r.name, r.reason)).collect();
    assert!(failed.is_empty(), "failing golden cases:\n{}", failed.join("\n"));
    for op in [
        "conv2d",
        "maxpool2d",
        "linear",
        "relu",
        "selu",
        "residual_block",
        "flatten",
        "mae_loss",
        "mse_loss",
        "adam_step",
        "fold_s",
        "minmax",
        "model",
    ] {
        assert!(reports.iter().any(|r| r.op == op), "no `{op}` case was run");
    }
    assert!(reports.iter().all(|r| r.tensors >= 1), "every case compares at least one tensor");
}

/// The same file through the GPU kernels (lavapipe in CI), under the same tolerances.
#[test]
fn public_golden_file_passes_on_the_gpu() {
    let Some(data) = common::shared_data() else { return };
    let Some(gpu) = common::gpu() else { return };
    let reports = specnn::golden::audit_on(&data.join("golden/public.safetensors"), Some(&gpu))
        .expect("the public golden file parses");
    let failed: Vec<_> = reports.iter().filter(|r| !r.passed).map(|r| format!("{}: {:?}", r.name, r.reason)).collect();
    assert!(failed.is_empty(), "failing golden cases on the GPU:\n{}", failed.join("\n"));
    assert!(reports.iter().filter(|r| r.op == "model").count() >= 3, "the models ran on the GPU");
}
