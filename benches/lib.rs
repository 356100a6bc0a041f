//! Benchmarks live in the bench targets; see `cargo bench -p fairvlm-benches`.
