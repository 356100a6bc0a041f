//! Reading a fixture's safetensors file (the tensors a Python peer stored), shared by the
//! parity tests.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

/// A stored tensor: its shape and its values (f32, or i64 for token ids).
#[derive(Debug, PartialEq)]
pub struct Stored {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

/// Every tensor of the safetensors file at `path`, by name.
pub fn read(path: &Path) -> BTreeMap<String, Stored> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let (f32, i64) = match view.dtype() {
                Dtype::F32 => (data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), vec![]),
                Dtype::I64 => (vec![], data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, Stored { shape: view.shape().to_vec(), f32, i64 })
        })
        .collect()
}
