//! berthd's heap between bursts of work. glibc gives each thread that allocates an
//! arena of its own (up to eight per core) and keeps the pages freed in each; berthd's
//! threads (two workers, blocking-pool threads that come and go) allocate in bursts
//! and then sit idle. Two arenas are plenty, and the freed pages go back to the kernel
//! a few seconds after each burst. Blocks of 128 KiB or more always get pages of their
//! own (glibc would otherwise raise that threshold after the first large free and keep
//! later large buffers, an image layer's say, in the heap), so they go back when freed.
use std::time::Duration;

/// How often the heap's free pages are handed back.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Allocations this large are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// At most two malloc arenas, and a fixed mmap threshold. Call before any thread starts.
pub fn limit_arenas() {
    // SAFETY: mallopt only sets glibc's allocator parameters; no thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Hands freed heap pages back to the kernel every [`TRIM_EVERY`]. Runs for the daemon's life.
pub async fn trim_periodically() {
    let mut ticks = tokio::time::interval(TRIM_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // SAFETY: malloc_trim only walks glibc's own arenas.
        unsafe { libc::malloc_trim(0) };
    }
}
