//! Benchmarks live in the bench targets; see `cargo bench -p fairvlm-benches`. This library
//! holds what they share: the `fairvlm` binary's allocator (mimalloc, freed memory kept mapped),
//! counting live and peak heap bytes.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

/// mimalloc, as the `fairvlm` binary uses it, counting live and peak bytes; install it in a bench with
/// `#[global_allocator] static ALLOC: fairvlm_benches::Counting = fairvlm_benches::Counting;`.
pub struct Counting;

/// Bytes allocated and not yet freed.
pub static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most bytes live at once since the last reset ([`reset_peak`]).
pub static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to mimalloc; the counters do not affect the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// Live bytes now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the live bytes now, and returns them.
pub fn reset_peak() -> usize {
    let live = live();
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// The peak since [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// What the `fairvlm` binary sets at start: mimalloc keeps freed memory mapped for the next
/// step (`purge_delay` -1, position 15 of mimalloc v3's `mi_option_t`).
pub fn keep_freed_memory() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one of mimalloc's integer options.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
