//! Fair-MoE's Fairness-Oriented Loss (FOL) on routing weights: the distribution of each MoE's
//! routing weights over a batch should not differ between the whole population and each
//! protected group. Two forms (docs/methods.md): the paper's sum of squared per-expert
//! variance differences, and the released code's expert-averaged variances with a reward on
//! routing variance.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which FOL formula. In TOML: `"code"` or `"paper"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolForm {
    /// `FairMoEfinetune.py`: `−λ·V + Σ_g λ·(V_g − V)²` with `V = mean_j Var_i(W[i, j])`. The
    /// default.
    #[default]
    Code,
    /// The paper: `Σ_g Σ_j (Var_i(W[i, j]) − Var_i(W_g[i, j]))²`.
    Paper,
}

/// Unbiased variance of each column of routing weights `[rows, experts]` (`torch.var(dim=0)`).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let w = Tensor::<Flex, 2>::from_floats([[0.2, 0.8], [0.6, 0.4], [0.4, 0.6]], &Default::default());
/// let v = fair_losses::routing_variance(w).unwrap().into_data().to_vec::<f32>().unwrap();
/// assert!((v[0] - 0.04).abs() < 1e-6 && (v[1] - 0.04).abs() < 1e-6);
/// ```
pub fn routing_variance<B: Backend>(weights: Tensor<B, 2>) -> Result<Tensor<B, 1>> {
    let [n, m] = weights.dims();
    if n < 2 {
        return Err(Error::Shape(format!("routing weights [{n}, {m}]: the variance needs at least 2 rows")));
    }
    Ok(weights.var(0).reshape([m]))
}

/// FOL's term for one MoE, from the routing weights of the batch (`[rows, experts]`, with
/// gradient) and of one batch per protected group (as the code, pass these detached: they
/// come from a forward without gradients).
///
/// - [`FolForm::Paper`]: `Σ_g Σ_j (Var(batch[:, j]) − Var(group_g[:, j]))²`.
/// - [`FolForm::Code`]: `−λ·V + Σ_g λ·(V_g − V)²`, `V = mean_j Var(batch[:, j])`, with
///   `lambda` the code's `λ_moe` (1e-4). `lambda` is ignored by the paper form, whose weight
///   the paper does not give (it is 1).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use fair_losses::{fol_term, FolForm};
/// let d = Default::default();
/// let batch = Tensor::<Flex, 2>::from_floats([[0.2, 0.8], [0.6, 0.4], [0.4, 0.6]], &d); // var 0.04, 0.04
/// let group = Tensor::<Flex, 2>::from_floats([[0.5, 0.5], [0.5, 0.5]], &d);              // var 0, 0
/// let paper = fol_term(batch.clone(), &[group.clone()], FolForm::Paper, 1.0).unwrap().into_scalar();
/// assert!((paper - 2.0 * 0.04f32.powi(2)).abs() < 1e-7);
/// let code = fol_term(batch, &[group], FolForm::Code, 1.0).unwrap().into_scalar();
/// assert!((code - (-0.04 + 0.04f32.powi(2))).abs() < 1e-7);
/// ```
pub fn fol_term<B: Backend>(batch: Tensor<B, 2>, groups: &[Tensor<B, 2>], form: FolForm, lambda: f64) -> Result<Tensor<B, 1>> {
    let m = batch.dims()[1];
    for g in groups {
        if g.dims()[1] != m {
            return Err(Error::Shape(format!("group routing weights have {} experts, the batch's {m}", g.dims()[1])));
        }
    }
    let v = routing_variance(batch)?;
    match form {
        FolForm::Paper => {
            let mut total = v.zeros_like().sum();
            for g in groups {
                let d = v.clone() - routing_variance(g.clone())?;
                total = total + d.powf_scalar(2.0).sum();
            }
            Ok(total)
        }
        FolForm::Code => {
            let mean = v.mean();
            let mut total = mean.clone() * (-lambda);
            for g in groups {
                let d = routing_variance(g.clone())?.mean() - mean.clone();
                total = total + d.powf_scalar(2.0) * lambda;
            }
            Ok(total)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FolForm;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fol {
        form: FolForm,
    }

    #[test]
    fn the_forms_are_spelled_in_kebab_case() {
        let read = |text: &str| toml::from_str::<Fol>(text).map(|f| f.form);
        assert_eq!(read("form = \"code\"").unwrap(), FolForm::Code);
        assert_eq!(read("form = \"paper\"").unwrap(), FolForm::Paper);
        assert_eq!(FolForm::default(), FolForm::Code);
        for bad in ["form = \"Code\"", "form = \"exact\"", "form = \"code\"\nlambda = 1"] {
            assert!(read(bad).is_err(), "{bad}");
        }
        assert_eq!(toml::Value::try_from(FolForm::Paper).unwrap().as_str(), Some("paper"));
    }
}
