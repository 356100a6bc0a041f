//! Forward throughput of an image tower (`fairvlm throughput`): images per second at a batch
//! size, on whatever backend the caller picks, to set against PyTorch on the same machine
//! (benches/peer/vit_throughput.py).

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use vlm_backbone::{Checkpoint, VisionTransformer, VisionTransformerConfig};

use crate::error::Result;

/// Seconds of each timed forward pass of `vit` on a batch of `batch` images, after `warmup`
/// untimed passes. Each pass ends by reading the pooled features back, so asynchronous
/// backends (CUDA, wgpu) are timed to completion.
///
/// ```
/// use burn::backend::Flex;
/// use vlm_backbone::VisionTransformerConfig;
///
/// let vit = VisionTransformerConfig::new(32, 8, 32, 2, 4).init::<Flex>(&Default::default());
/// let times = trainer::forward_times(&vit, 4, 1, 3, &Default::default());
/// assert_eq!(times.len(), 3);
/// ```
pub fn forward_times<B: Backend>(vit: &VisionTransformer<B>, batch: usize, warmup: usize, iters: usize, device: &B::Device) -> Vec<f64> {
    let side = vit.embeddings.position_embedding.weight.dims()[0];
    let patches = side - 1;
    let grid = (patches as f64).sqrt().round() as usize;
    let size = grid * vit.embeddings.patch_size;
    let channels = vit.embeddings.patch_embedding.weight.dims()[1];
    let images = Tensor::<B, 4>::random([batch, channels, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), device);
    let mut times = Vec::with_capacity(iters);
    for i in 0..warmup + iters {
        let start = Instant::now();
        let pooled = vit.forward(images.clone());
        let _ = pooled.into_data();
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times
}

/// The image tower to time: a checkpoint's (`weights`), else OpenAI CLIP's ViT-B/16 with
/// random weights (the same arithmetic).
pub fn throughput_model<B: Backend>(weights: Option<&Path>, device: &B::Device) -> Result<VisionTransformer<B>> {
    Ok(match weights {
        Some(dir) => Checkpoint::open(dir)?.vision_model(device)?.0,
        None => VisionTransformerConfig::vit_b16().init(device),
    })
}
