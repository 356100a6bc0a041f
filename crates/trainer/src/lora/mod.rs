//! Fairness-aware LoRA with a privacy-preserving auditor (arXiv 2503.05684 and its follow-up;
//! the concrete forms are papers.md 5.2): a model developer fine-tunes LoRA adapters on a
//! frozen pretrained ViT with task labels; a fairness auditor holds the sensitive labels. Only
//! adapters (and, for Adv, Ent and the ascent reading of Unl, gradients with respect to the
//! developer's adapters) travel between them.
//!
//! - Erm: plain LoRA fine-tuning.
//! - Unl: the auditor trains a sensitive adapter and sends it; the developer subtracts
//!   `β·ΔW_S` from the base weights and fine-tunes on the result (`negate`, default), or the
//!   auditor returns the gradient of `−λ·CE(h_S(f(x′)), s)` each step (`ascent`).
//! - Adv: the auditor trains an adversary on the developer's features and returns the gradient
//!   of `−λ·CE(h_adv(f(x′)), s)` (`alternate`), or one gradient-reversal step per round
//!   (`reversal`, the single-process form).
//! - Orth: `λ·Σ_l ‖A_T A_Sᵀ‖² + ‖B_Tᵀ B_S‖²` against the auditor's sensitive adapter.
//! - Ent: the auditor returns the gradient of `−λ·H(softmax(h_S(f(x′))))`.
//!
//! The developer talks to the auditor through an [`AuditorLink`]: [`LocalAuditor`] in one
//! process, [`FileLink`] / [`serve_files`] across two processes that share only a folder.
//! One module per role: [`config`](LoraExperiment), the frozen model and its adapters,
//! the auditor, the developer, the file exchange and the audit; the parties' data files are
//! written by fair-data ([`fair_data::prepare_fundus`] and its siblings).
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::module::AutodiffModule;
//! use fair_data::LabelledImages;
//! use trainer::lora::{self, Auditor, LocalAuditor, LoraExperiment};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! // 16 images of 8 x 8 with a task and a sensitive label.
//! let labels = |f: fn(i64) -> i64| (0..16).map(f).collect::<Vec<i64>>();
//! let set = LabelledImages { size: 8, images: (0..16 * 3 * 64).map(|i| (i % 251) as u8).collect(),
//!     labels: [("task".into(), labels(|i| i % 2)), ("sensitive".into(), labels(|i| (i / 2) % 2))].into() };
//! let exp = LoraExperiment::from_toml_str_with("method = \"orth\"\n[model]\npatch_size = 4\nwidth = 16\nlayers = 1\nheads = 2\n[optim]\nbatch_size = 8\nepochs = 1\n[fair]\nsensitive_epochs = 1", "inline", &[])?;
//! let base = lora::pretrain::<B>(&exp, &set, "task", 1, &device)?; // the stand-in for a pretrained ViT
//! let mut auditor = Auditor::new(&exp, base.clone(), set.with_labels(&[("sensitive", "sensitive")])?, "sensitive", &device)?;
//! let developer_data = set.with_labels(&[("task", "task")])?;
//! let (model, log, _) = lora::train_developer::<B>(&exp, &base, &developer_data, "task", &mut LocalAuditor(&mut auditor), &device)?;
//! assert_eq!(log.orth_penalty.len(), 1);
//! let audit = lora::audit(&lora::scores(&model.valid(), &set, &device), set.label("task")?, set.label("sensitive")?)?;
//! assert_eq!(audit.n, 16);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod audit;
mod auditor;
mod config;
mod developer;
mod exchange;
mod model;

pub use audit::{audit, audit_csv, audit_markdown, scores, scores_multiclass, LoraAudit};
pub use auditor::{AdapterGrads, Auditor, AuditorLink, LocalAuditor};
pub use config::{AdvMode, FairLora, LoraExperiment, LoraMethod, LoraModel, LoraOptim, LoraSettings, UnlMode};
pub use developer::{train_developer, DeveloperLog};
pub use exchange::{serve_files, FileLink};
pub use model::{
    adapter_values, classes_of, image_batch, load_adapter_values, load_base, load_developer, negated_base, pretrain, save_adapter_values, save_base, save_developer, Adapters,
    BaseInfo, Fit,
};
