//! A one-input CPU autodiff operation (QuickGELU, softmax): a forward kernel, and a backward
//! from one kept tensor (the input or the output) and the output's gradient.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;

use crate::cast::AdTensor;

/// Which tensor the backward needs.
pub(crate) enum Keep {
    Input,
    Output,
}

#[derive(Debug)]
struct Unary {
    /// The input's gradient from the kept tensor and the output's gradient.
    backward: fn(&FlexTensor, &FlexTensor) -> FlexTensor,
}

impl Backward<Flex, 1> for Unary {
    /// The kept tensor.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            grads.register::<Flex>(parent.id, (self.backward)(&ops.state, &g));
        }
    }
}

/// `forward(x)` recorded on the graph with `backward(kept, grad)` as its backward.
pub(crate) fn unary(x: AdTensor, forward: fn(&FlexTensor) -> FlexTensor, backward: fn(&FlexTensor, &FlexTensor) -> FlexTensor, keep: Keep) -> AdTensor {
    match (Unary { backward }).prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive);
            let kept = match keep {
                Keep::Input => x.primitive,
                Keep::Output => y.clone(),
            };
            prep.finish(kept, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive)),
    }
}
