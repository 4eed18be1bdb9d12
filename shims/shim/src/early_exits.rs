//! Exits reaped before their process was known. While an external runtime's `create`
//! or `exec` runs on a blocking thread, the process it starts can exit, and be reaped,
//! before the shim has recorded its pid. Such exits are kept while any external
//! operation is in flight and matched again at the next reaping, which the operation
//! asks for once it has recorded the pid; with nothing in flight, an exit of an
//! unknown pid is an orphan's and is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct EarlyExits {
    in_flight: AtomicUsize,
    exits: Mutex<HashMap<i32, u32>>,
}

/// One external operation in flight; see [`EarlyExits::begin`].
pub struct InFlight<'a>(&'a EarlyExits);

impl EarlyExits {
    fn exits(&self) -> MutexGuard<'_, HashMap<i32, u32>> {
        self.exits.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks an external operation in flight until the guard drops.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self)
    }

    /// Keeps the exit of a pid no process has (yet), if an operation is in flight.
    pub fn keep(&self, pid: i32, status: u32) {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            self.exits().insert(pid, status);
        }
    }

    /// Whether `pid` is known to have exited already.
    pub fn has(&self, pid: i32) -> bool {
        self.exits().contains_key(&pid)
    }

    /// Every kept exit, to be matched again.
    pub fn take_all(&self) -> Vec<(i32, u32)> {
        self.exits().drain().collect()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.exits().clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_kept_only_while_an_operation_is_in_flight() {
        let early = EarlyExits::default();
        early.keep(10, 0);
        assert!(!early.has(10), "kept with nothing in flight");
        let flight = early.begin();
        early.keep(11, 3);
        assert!(early.has(11));
        assert_eq!(early.take_all(), vec![(11, 3)]);
        early.keep(12, 1);
        drop(flight);
        assert!(!early.has(12), "not dropped when the last operation ended");
    }
}
