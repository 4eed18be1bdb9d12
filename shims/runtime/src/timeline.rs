//! An instrumented build's timeline: with the `timeline` feature, `mark!("label")`
//! appends `T <microseconds, CLOCK_MONOTONIC> <pid> <label>` to
//! /run/berth-timeline.log; without it, marks compile to nothing. The log descriptor
//! is opened on the first mark of each process image and is close-on-exec, so an init
//! must mark once before it leaves the host's mount tree.

#[cfg(feature = "timeline")]
pub fn mark(label: &str) {
    use std::sync::atomic::{AtomicI32, Ordering};
    static LOG: AtomicI32 = AtomicI32::new(-1);
    let mut fd = LOG.load(Ordering::Relaxed);
    if fd < 0 {
        fd = unsafe {
            libc::open(c"/run/berth-timeline.log".as_ptr(), libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC, 0o644)
        };
        LOG.store(fd, Ordering::Relaxed);
    }
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let micros = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    let cpu = unsafe { libc::sched_getcpu() };
    let line = format!("T {micros} {} {label}\nC {micros} {} {cpu} {label}\n", std::process::id(), std::process::id());
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

/// Appends a timeline mark (the `timeline` feature only).
#[macro_export]
macro_rules! mark {
    ($label:expr) => {
        #[cfg(feature = "timeline")]
        $crate::timeline::mark($label);
    };
}
