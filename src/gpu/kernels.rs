//! The kernels: one enum maps each to its WGSL file (in `shaders/`, loaded with `include_str!`) and entry
//! point. The three convolution kernels and `matmul` share the tiled GEMM core of `gemm_core.wgsl`,
//! appended to their own file (which says how to read A and B and where to write C); the convolutions
//! also share `conv_common.wgsl` (their geometry uniform and input indexing), prepended.

/// The tiled GEMM core (64x64 tiles, 16-deep K slices, 4x4 per thread).
const GEMM_CORE: &str = include_str!("../../shaders/gemm_core.wgsl");
/// The convolutions' geometry uniform and input indexing.
const CONV_COMMON: &str = include_str!("../../shaders/conv_common.wgsl");

/// The K slice of the GEMM core: split-K chunks are multiples of it.
pub const TILE_K: usize = 16;
/// The M and N sizes of one GEMM workgroup's tile.
pub const TILE_MN: usize = 64;
/// Threads per workgroup of the one-dimensional kernels (the `WG` override constant).
pub const WG: usize = 256;

/// Every kernel of the GPU path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul,
    Conv2dFwd,
    Conv2dBwdInput,
    Conv2dBwdWeight,
    ReluFwd,
    ReluBwd,
    SeluFwd,
    SeluBwd,
    Add,
    Scale,
    MaxPoolFwd,
    MaxPoolBwd,
    BiasGrad,
    SumSplits,
    Loss,
    Adam,
}

impl Kernel {
    /// All kernels, in the order their pipelines are stored.
    pub const ALL: [Kernel; 16] = [
        Kernel::Matmul,
        Kernel::Conv2dFwd,
        Kernel::Conv2dBwdInput,
        Kernel::Conv2dBwdWeight,
        Kernel::ReluFwd,
        Kernel::ReluBwd,
        Kernel::SeluFwd,
        Kernel::SeluBwd,
        Kernel::Add,
        Kernel::Scale,
        Kernel::MaxPoolFwd,
        Kernel::MaxPoolBwd,
        Kernel::BiasGrad,
        Kernel::SumSplits,
        Kernel::Loss,
        Kernel::Adam,
    ];

    /// The index of this kernel's pipeline.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&k| k == self).expect("every kernel is in ALL")
    }

    /// The shader file (under `shaders/`).
    pub fn file(self) -> &'static str {
        match self {
            Kernel::Matmul => "matmul.wgsl",
            Kernel::Conv2dFwd => "conv2d_fwd.wgsl",
            Kernel::Conv2dBwdInput => "conv2d_bwd_input.wgsl",
            Kernel::Conv2dBwdWeight => "conv2d_bwd_weight.wgsl",
            Kernel::ReluFwd | Kernel::ReluBwd | Kernel::SeluFwd | Kernel::SeluBwd | Kernel::Add | Kernel::Scale => {
                "elementwise.wgsl"
            }
            Kernel::MaxPoolFwd | Kernel::MaxPoolBwd => "maxpool.wgsl",
            Kernel::BiasGrad | Kernel::SumSplits => "reduce.wgsl",
            Kernel::Loss => "loss.wgsl",
            Kernel::Adam => "adam.wgsl",
        }
    }

    /// The WGSL source of the file (with the GEMM core appended where it is used).
    pub fn source(self) -> String {
        let own = match self.file() {
            "matmul.wgsl" => include_str!("../../shaders/matmul.wgsl"),
            "conv2d_fwd.wgsl" => include_str!("../../shaders/conv2d_fwd.wgsl"),
            "conv2d_bwd_input.wgsl" => include_str!("../../shaders/conv2d_bwd_input.wgsl"),
            "conv2d_bwd_weight.wgsl" => include_str!("../../shaders/conv2d_bwd_weight.wgsl"),
            "elementwise.wgsl" => include_str!("../../shaders/elementwise.wgsl"),
            "maxpool.wgsl" => include_str!("../../shaders/maxpool.wgsl"),
            "reduce.wgsl" => include_str!("../../shaders/reduce.wgsl"),
            "loss.wgsl" => include_str!("../../shaders/loss.wgsl"),
            "adam.wgsl" => include_str!("../../shaders/adam.wgsl"),
            other => unreachable!("no shader file {other}"),
        };
        match self {
            Kernel::Conv2dFwd | Kernel::Conv2dBwdInput | Kernel::Conv2dBwdWeight => {
                format!("{CONV_COMMON}\n{own}\n{GEMM_CORE}")
            }
            Kernel::Matmul => format!("{own}\n{GEMM_CORE}"),
            _ => own.to_string(),
        }
    }

    fn uses_gemm_core(self) -> bool {
        matches!(self, Kernel::Matmul | Kernel::Conv2dFwd | Kernel::Conv2dBwdInput | Kernel::Conv2dBwdWeight)
    }

    /// The entry point.
    pub fn entry(self) -> &'static str {
        match self {
            Kernel::Matmul | Kernel::Conv2dFwd | Kernel::Conv2dBwdInput | Kernel::Conv2dBwdWeight => "main",
            Kernel::ReluFwd => "relu_fwd",
            Kernel::ReluBwd => "relu_bwd",
            Kernel::SeluFwd => "selu_fwd",
            Kernel::SeluBwd => "selu_bwd",
            Kernel::Add => "add",
            Kernel::Scale => "scale",
            Kernel::MaxPoolFwd => "maxpool_fwd",
            Kernel::MaxPoolBwd => "maxpool_bwd",
            Kernel::BiasGrad => "bias_grad",
            Kernel::SumSplits => "sum_splits",
            Kernel::Loss => "loss_main",
            Kernel::Adam => "adam_step",
        }
    }

    /// The `override` constants this kernel's pipeline sets.
    pub fn constants(self) -> &'static [(&'static str, f64)] {
        if self.uses_gemm_core() {
            &[]
        } else {
            &[("WG", WG as f64)]
        }
    }
}
