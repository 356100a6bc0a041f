//! The run-time choice of kernel: a tensor of a generic backend is taken as a tensor of the CPU
//! backend when that is what it is.

use std::any::Any;

use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorPrimitive};

/// The CPU backend's tensor under autodiff (burn's `AutodiffTensor<Flex>`: the primitive and
/// its graph node).
pub(crate) type AdTensor = FloatTensor<Autodiff<Flex>>;

/// `t` as a `U` when `T` is `U`, else `t` back.
fn cast<T: 'static, U: 'static>(t: T) -> Result<U, T> {
    let mut slot = Some(t);
    let taken = (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>().and_then(Option::take);
    match (taken, slot) {
        (Some(u), _) => Ok(u),
        (None, Some(t)) => Err(t),
        (None, None) => unreachable!("a value is either taken or left in its slot"),
    }
}

/// A tensor of backend `B`, seen as what the kernels run on.
pub(crate) enum Cpu<B: Backend, const D: usize> {
    /// The CPU backend under autodiff: the primitive carries the graph node.
    Autodiff(AdTensor),
    /// The CPU backend, no autodiff.
    Plain(FlexTensor),
    /// Any other backend, or not f32: burn's composition runs.
    Other(Tensor<B, D>),
}

impl<B: Backend, const D: usize> Cpu<B, D> {
    /// Back to a tensor of `B`.
    pub(crate) fn into_tensor(self) -> Tensor<B, D> {
        match self {
            Cpu::Autodiff(t) => from_autodiff(t),
            Cpu::Plain(t) => from_plain(t),
            Cpu::Other(t) => t,
        }
    }
}

/// A boolean tensor of the CPU backend (with or without autodiff, which share it) as a
/// contiguous one, else the tensor back.
pub(crate) fn mask_of<B: Backend, const D: usize>(m: Tensor<B, D, Bool>) -> Result<FlexTensor, Tensor<B, D, Bool>> {
    let m = match cast::<Tensor<B, D, Bool>, Tensor<Autodiff<Flex>, D, Bool>>(m) {
        Ok(m) => m.into_primitive(),
        Err(m) => cast::<Tensor<B, D, Bool>, Tensor<Flex, D, Bool>>(m)?.into_primitive(),
    };
    Ok(if m.layout().is_contiguous() && m.layout().start_offset() == 0 { m } else { m.to_contiguous() })
}

/// Which kind of tensor `x` is.
pub(crate) fn classify<B: Backend, const D: usize>(x: Tensor<B, D>) -> Cpu<B, D> {
    if x.dtype() != DType::F32 {
        return Cpu::Other(x);
    }
    let x = match cast::<Tensor<B, D>, Tensor<Autodiff<Flex>, D>>(x) {
        Ok(t) => return Cpu::Autodiff(t.into_primitive().tensor()),
        Err(x) => x,
    };
    match cast::<Tensor<B, D>, Tensor<Flex, D>>(x) {
        Ok(t) => Cpu::Plain(t.into_primitive().tensor()),
        Err(x) => Cpu::Other(x),
    }
}

/// An autodiff CPU result as a tensor of `B` (which it is: `classify` said so).
pub(crate) fn from_autodiff<B: Backend, const D: usize>(t: AdTensor) -> Tensor<B, D> {
    match cast::<Tensor<Autodiff<Flex>, D>, Tensor<B, D>>(Tensor::from_primitive(TensorPrimitive::Float(t))) {
        Ok(t) => t,
        Err(_) => unreachable!("B is Autodiff<Flex>: the input was one"),
    }
}

/// A plain CPU result as a tensor of `B` (which it is: `classify` said so).
pub(crate) fn from_plain<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    match cast::<Tensor<Flex, D>, Tensor<B, D>>(Tensor::from_primitive(TensorPrimitive::Float(t))) {
        Ok(t) => t,
        Err(_) => unreachable!("B is Flex: the input was one"),
    }
}
