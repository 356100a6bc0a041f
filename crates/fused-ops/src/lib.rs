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

/// Runs `f` on a thread of rayon's global pool, the pool that burn's CPU backend and these
/// kernels split their work over, and returns its result.
///
/// A parallel pass started from a thread outside the pool hands its work to the pool and puts
/// the caller to sleep until it is done: a wake-up and a sleep per pass. A training step on the
/// CPU runs hundreds of passes, each short for a small model; started from a pool thread, a
/// pass runs there and only the other threads are woken (the benchmark's CLIP step: about
/// 69 ms from the main thread, 60 ms from the pool's, on two cores). Binaries run their whole
/// command through this.
///
/// `f` holds one of the pool's threads while it runs, also while it waits (for a replica's
/// thread, a file, the network), so with a pool of one thread `f` runs on the calling thread:
/// another thread's parallel pass would otherwise wait for `f`, which waits for it.
///
/// ```
/// let in_pool = fused_ops::on_pool(|| rayon::current_thread_index().is_some());
/// assert_eq!(in_pool, rayon::current_num_threads() > 1);
/// ```
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() < 2 {
        return f();
    }
    rayon::scope(|_| f())
}
