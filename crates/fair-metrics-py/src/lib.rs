//! `fair_metrics._native`: the Rust engine of the `fair_metrics` Python package. The package's
//! Python layer (`python/fair_metrics/`) turns what users pass (numpy arrays, pandas objects,
//! lists, dicts) into the arrays this module reads in place: labels and predictions as `bool`,
//! scores and weights as `float64`, each sensitive feature as `uint32` codes with the name of
//! each code. The report is computed with the GIL released and returned as the JSON that the
//! `fair-metrics` command line tool writes.

use fair_metrics::{Attribute, Bootstrap, Format, Predictions, Report, ReportOptions, UndefinedAuc};
use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A numpy array's values; an array that is not contiguous (a strided view) is copied once.
fn values<T: numpy::Element + Copy>(a: &PyReadonlyArray1<'_, T>) -> Vec<T> {
    match a.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => a.as_array().iter().copied().collect(),
    }
}

/// One sensitive feature: its name, one code per row and the label of each code.
type Feature<'py> = (String, PyReadonlyArray1<'py, u32>, Vec<String>);

/// Computes the report. The Python layer has checked the arguments and named the faulty one;
/// the engine checks lengths and values again, so a direct call cannot go wrong silently.
#[pyfunction]
#[pyo3(signature = (y_true, y_score, y_pred, sample_weight, features, threshold, alpha, undefined_auc, intersect, bootstrap, seed, quantiles))]
#[allow(clippy::too_many_arguments)] // one per keyword of `fair_metrics.report`
fn report(
    py: Python<'_>,
    y_true: PyReadonlyArray1<'_, bool>,
    y_score: PyReadonlyArray1<'_, f64>,
    y_pred: Option<PyReadonlyArray1<'_, bool>>,
    sample_weight: Option<PyReadonlyArray1<'_, f64>>,
    features: Vec<Feature<'_>>,
    threshold: f64,
    alpha: f64,
    undefined_auc: &str,
    intersect: bool,
    bootstrap: usize,
    seed: u64,
    quantiles: (f64, f64),
) -> PyResult<String> {
    let (labels, scores) = (values(&y_true), values(&y_score));
    let preds = y_pred.as_ref().map(values);
    let weights = sample_weight.as_ref().map(values);
    let columns: Vec<_> = features.iter().map(|(name, codes, levels)| (name.clone(), values(codes), levels.clone())).collect();
    let undefined = match undefined_auc {
        "skip" => UndefinedAuc::Skip,
        "null" => UndefinedAuc::Null,
        other => return Err(PyValueError::new_err(format!("undefined_auc='{other}': expected 'skip' or 'null'"))),
    };
    // The computation runs without the GIL: other Python threads go on meanwhile.
    py.detach(move || -> Result<String, fair_metrics::Error> {
        let mut p = Predictions::new(labels, scores)?;
        if let Some(preds) = preds {
            p = p.with_preds(preds)?;
        }
        if let Some(w) = weights {
            p = p.with_weights(w)?;
        }
        let attrs = columns.into_iter().map(|(name, codes, levels)| Attribute::from_codes(name, codes, levels)).collect::<Result<Vec<_>, _>>()?;
        let attrs = if intersect { Attribute::with_intersection(attrs)? } else { attrs };
        let mut opts = ReportOptions::default().with_threshold(threshold).with_alpha(alpha).with_undefined_auc(undefined);
        if bootstrap > 0 {
            opts = opts.with_bootstrap(Bootstrap::new(bootstrap, seed).with_quantiles(quantiles.0, quantiles.1));
        }
        Ok(Report::compute(&p, &attrs, &opts)?.render(Format::Json))
    })
    .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Codes for the records of a fixed-width buffer (a numpy `U` or `S` array viewed as bytes,
/// `itemsize` bytes per row): equal records get the same code, numbered in order of first
/// appearance; also returns each code's first row. Hashing the raw records is what makes a
/// string feature of a million rows cost milliseconds instead of the half second a Python-level
/// factorisation takes.
#[pyfunction]
fn factorize_fixed<'py>(py: Python<'py>, buffer: PyReadonlyArray1<'py, u8>, itemsize: usize) -> PyResult<(Bound<'py, numpy::PyArray1<u32>>, Vec<usize>)> {
    let bytes = buffer.as_slice().map_err(|e| PyValueError::new_err(format!("the feature's buffer: {e}")))?;
    if itemsize == 0 || bytes.len() % itemsize != 0 {
        return Err(PyValueError::new_err(format!("a buffer of {} bytes is not a whole number of {itemsize}-byte records", bytes.len())));
    }
    let (codes, firsts) = py.detach(|| {
        // A sensitive feature has few groups: a scan of the records seen so far beats hashing
        // a long record until there are many of them.
        let mut levels: Vec<&[u8]> = Vec::new();
        let mut index: rustc_hash::FxHashMap<&[u8], u32> = Default::default();
        let mut firsts = Vec::new();
        let codes: Vec<u32> = bytes
            .chunks_exact(itemsize)
            .enumerate()
            .map(|(row, record)| {
                if levels.len() <= 16 {
                    if let Some(k) = levels.iter().position(|l| *l == record) {
                        return k as u32;
                    }
                } else if let Some(&k) = index.get(record) {
                    return k;
                }
                let k = levels.len() as u32;
                levels.push(record);
                index.insert(record, k);
                firsts.push(row);
                k
            })
            .collect();
        (codes, firsts)
    });
    Ok((numpy::PyArray1::from_vec(py, codes), firsts))
}

/// The module `fair_metrics._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(report, m)?)?;
    m.add_function(wrap_pyfunction!(factorize_fixed, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
