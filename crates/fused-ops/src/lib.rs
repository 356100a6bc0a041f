//! Fused kernels for burn: QuickGELU, softmax over the last dimension, layer norm and scaled
//! dot-product attention, each as one pass forward and one backward; and Adam and AdamW, each
//! update one pass over the parameters.
//!
//! burn's CPU backend (`Flex`) runs every element-wise operation as its own single-threaded
//! pass with a scalar `exp`, and burn composes QuickGELU (`x · σ(1.702 x)`) from several such operations (and, under
//! autodiff, softmax too), each allocating its result and each adding a step to
//! the backward graph: QuickGELU's forward and backward on a ViT-B/16 MLP activation
//! (`[8, 197, 3072]`) took 76 ms on two cores that way. With these kernels the CPU training
//! step of ViT-B/16 runs its forward and backward at PyTorch's speed (docs/benchmarks.md).
//!
//! Every function is generic over the backend. On `Flex` and `Autodiff<Flex>` (found at run
//! time by type, with safe downcasts) it runs a multithreaded (rayon, burn-flex's own pool),
//! vectorised kernel, and its backward is a burn autodiff operation (burn's `Backward`
//! extension point). On every other backend (wgpu, CUDA, …) it is burn's composition, as
//! before, so their numerics do not change.
//!
//! The kernels' `exp` is a polynomial (Cephes' `expf`, within 2 ulp of the correctly rounded
//! value over the range that matters); the results agree with the compositions to float
//! rounding (tests/agreement.rs).
//!
//! ```
//! use burn::backend::Flex;
//! use burn::prelude::*;
//! let x = Tensor::<Flex, 2>::from_floats([[-1.0, 0.0, 2.0]], &Default::default());
//! let y = fused_ops::quick_gelu(x).into_data().to_vec::<f32>().unwrap();
//! assert!((y[0] + 0.154_204).abs() < 1e-5 && y[1] == 0.0 && (y[2] - 1.935_659).abs() < 1e-5);
//! ```

mod adam;
mod attention;
mod cast;
mod kernels;
mod layer_norm;
mod quick_gelu;
mod softmax;
mod unary;

pub use adam::{Adam, AdamW};
pub use attention::attention;
pub use layer_norm::layer_norm;
pub use quick_gelu::quick_gelu;
pub use softmax::softmax;
