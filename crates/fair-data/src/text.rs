//! Text to token ids, framed CLIP style (`<|startoftext|> tokens <|endoftext|>`) or BERT style
//! (`[CLS] tokens [SEP]`), truncated and padded to a fixed context length. Tokenizers trained
//! here give the end token the largest id, so that the text tower can pool at `argmax(ids)`
//! (OpenAI CLIP's convention).

use std::path::Path;

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::{Lowercase, Sequence, Strip, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::error::{Error, Result};

/// Start-of-text token (CLIP's spelling).
pub const START: &str = "<|startoftext|>";
/// End-of-text token (CLIP's spelling).
pub const END: &str = "<|endoftext|>";
/// Padding token of tokenizers trained here (id 0).
pub const PAD: &str = "<pad>";
/// BERT's start, end and padding tokens.
const BERT: [&str; 3] = ["[CLS]", "[SEP]", "[PAD]"];

/// A `tokenizers` tokenizer with CLIP's framing.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    context_length: usize,
    start: u32,
    end: u32,
    pad: u32,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("vocab_size", &self.vocab_size()).field("context_length", &self.context_length).finish()
    }
}

fn tk_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{what}: {e}"))
}

impl TextTokenizer {
    /// Loads a `tokenizer.json` (CLIP's BPE or BERT's WordPiece from Hugging Face, or one saved
    /// by [`TextTokenizer::save`]). It must know `<|startoftext|>` and `<|endoftext|>` (CLIP
    /// framing; padding `<pad>` if known, else id 0, as OpenAI CLIP does) or `[CLS]` and
    /// `[SEP]` (BERT framing; padding `[PAD]`). Padding and truncation stored in the file are
    /// switched off: the context length given here rules.
    pub fn from_file(path: &Path, context_length: usize) -> Result<Self> {
        let inner = Tokenizer::from_file(path).map_err(|e| tk_err(&path.display().to_string(), e))?;
        Self::wrap(inner, context_length).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    fn wrap(inner: Tokenizer, context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(Error::Invalid(format!("context length {context_length}: at least 2 (start and end tokens)")));
        }
        let mut inner = inner;
        // MiniLM's tokenizer.json pads and cuts every text to 128 tokens by itself.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| tk_err("switching truncation off", e))?;
        let id = |t: &str| inner.token_to_id(t);
        let (start, end, pad) = match (id(START), id(END), id(BERT[0]), id(BERT[1])) {
            (Some(s), Some(e), _, _) => (s, e, id(PAD).unwrap_or(0)),
            (_, _, Some(s), Some(e)) => (s, e, id(BERT[2]).unwrap_or(0)),
            _ => return Err(Error::Invalid(format!("tokenizer has neither '{START}' and '{END}' (CLIP) nor '[CLS]' and '[SEP]' (BERT)"))),
        };
        Ok(Self { inner, context_length, start, end, pad })
    }

    /// Trains a byte-level BPE tokenizer (lower-cased, NFC) on a corpus of notes, so that no
    /// download is ever needed. `<pad>` gets id 0; `<|startoftext|>` and `<|endoftext|>` are
    /// added last, so the end token has the largest id.
    ///
    /// ```
    /// use fair_data::TextTokenizer;
    /// let notes = ["glaucoma suspected, cup-to-disc ratio 0.7", "healthy optic nerve"];
    /// let tok = TextTokenizer::train(&notes, 300, 16)?;
    /// let ids = tok.encode_batch(&["glaucoma suspected"])?;
    /// assert_eq!(ids.len(), 16);
    /// assert_eq!(ids[0] as u32, tok.start_id());
    /// # Ok::<(), fair_data::Error>(())
    /// ```
    pub fn train<S: AsRef<str>>(corpus: &[S], vocab_size: usize, context_length: usize) -> Result<Self> {
        let mut trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(2)
            .special_tokens(vec![AddedToken::from(PAD, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut tokenizer = TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(Some(Sequence::new(vec![Strip::new(true, true).into(), NFC.into(), Lowercase.into()])))
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_post_processor(Some(ByteLevel::default()))
            .with_decoder(Some(ByteLevel::default()))
            .build()
            .map_err(|e| tk_err("building the tokenizer", e))?;
        let texts: Vec<String> = corpus.iter().map(|s| s.as_ref().to_owned()).collect();
        tokenizer.train(&mut trainer, texts.into_iter()).map_err(|e| tk_err("training the tokenizer", e))?;
        let mut inner: Tokenizer = tokenizer.into();
        inner.add_special_tokens([AddedToken::from(START, true), AddedToken::from(END, true)]).map_err(|e| tk_err("adding the start and end tokens", e))?;
        Self::wrap(inner, context_length)
    }

    /// Saves as `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(|e| tk_err(&path.display().to_string(), e))
    }

    /// Token ids of each text, framed and padded: `[start, ids.., end, pad..]`, `context_length`
    /// per text, row-major. Long texts are cut so that the end token stays (as `clip.tokenize`
    /// with `truncate=True`).
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<i64>> {
        let mut out = Vec::with_capacity(texts.len() * self.context_length);
        for t in texts {
            let enc = self.inner.encode(t.as_ref(), false).map_err(|e| tk_err("encoding", e))?;
            let body = enc.get_ids();
            let keep = body.len().min(self.context_length - 2);
            out.push(self.start as i64);
            out.extend(body[..keep].iter().map(|&i| i as i64));
            out.push(self.end as i64);
            out.extend(std::iter::repeat_n(self.pad as i64, self.context_length - 2 - keep));
        }
        Ok(out)
    }

    /// Tokens per text.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Vocabulary size including added tokens (the text tower's embedding size).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of the start token (`<|startoftext|>` or `[CLS]`).
    pub fn start_id(&self) -> u32 {
        self.start
    }

    /// Id of the end token (`<|endoftext|>` or `[SEP]`).
    pub fn end_id(&self) -> u32 {
        self.end
    }

    /// Id of padding.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }
}
