//! Helpers shared by the integration tests: f64 parameters and finite-difference checks.

use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};

type B = Autodiff<Flex>;
const D: FlexDevice = FlexDevice;

fn values<const N: usize>(t: Tensor<Flex, N>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().expect("data")
}

/// Casts every parameter to f64 (for finite-difference checks).
pub struct ToF64;
impl<Bk: Backend> ModuleMapper<Bk> for ToF64 {
    fn map_float<const N: usize>(&mut self, param: Param<Tensor<Bk, N>>) -> Param<Tensor<Bk, N>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(DType::F64), mapper)
    }
}

/// Central differences of `sum(f(x) * w)` with respect to the input, in f64.
pub fn grad_check(name: &str, shape: [usize; 3], f: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>) {
    let n: usize = shape.iter().product();
    let x0: Vec<f64> = (0..n).map(|i| ((i * 7919) % 97) as f64 / 48.5 - 1.0).collect();
    let w: Vec<f64> = (0..n).map(|i| ((i * 104_729) % 89) as f64 / 44.5 - 1.0).collect();
    let make = |v: Vec<f64>| Tensor::<B, 3>::from_data(TensorData::new(v, shape), (&D, DType::F64));
    let weights = make(w);
    let value = |x: Tensor<B, 3>| -> f64 { values((f(x) * weights.clone()).sum().inner())[0] };
    let x = make(x0.clone()).require_grad();
    let g = values(x.grad(&(f(x.clone()) * weights.clone()).sum().backward()).expect("grad"));
    let h = 1e-6;
    let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 0..n {
        let (mut p, mut m) = (x0.clone(), x0.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (value(make(p)) - value(make(m))) / (2.0 * h);
        assert!((g[i] - fd).abs() <= 1e-6 * scale.max(1.0), "{name}[{i}]: autodiff {} vs finite difference {fd}", g[i]);
    }
}
