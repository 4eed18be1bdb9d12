//! What in-flight work holds: leases (blobs and snapshots that garbage collection must
//! not remove while a pull is making an image of them) and per-key locks (so two pulls
//! of the same blob download it once and unpack it once). Both live in memory: a crash
//! ends every pull, and what those pulls left unreferenced is garbage.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The lease table: item (digest or chain ID) -> number of holders.
#[derive(Default, Clone)]
pub(crate) struct Leases {
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl Leases {
    /// Locks the table; garbage collection holds it while it decides what goes and
    /// unlinks it.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    pub fn is_locked(&self) -> bool {
        self.held.try_lock().is_err()
    }

    /// A new lease; items added to it are held until it is dropped.
    pub fn lease(&self) -> Lease {
        Lease { leases: self.clone(), items: Mutex::new(HashSet::new()) }
    }
}

/// Items held by one pull (or import).
pub(crate) struct Lease {
    leases: Leases,
    items: Mutex<HashSet<String>>,
}

impl Lease {
    /// Holds `item` until the lease ends. Call before checking whether it exists.
    pub fn hold(&self, item: &str) {
        let mut items = self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if items.insert(item.to_string()) {
            *self.leases.lock().entry(item.to_string()).or_insert(0) += 1;
        }
    }

    /// Everything this lease holds.
    pub fn items(&self) -> HashSet<String> {
        self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let items = std::mem::take(&mut *self.items.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let mut held = self.leases.lock();
        for item in items {
            if let Some(count) = held.get_mut(&item) {
                *count -= 1;
                if *count == 0 {
                    held.remove(&item);
                }
            }
        }
    }
}

/// Async locks by key, made on demand and dropped when unused.
#[derive(Default, Clone)]
pub(crate) struct KeyedLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

pub(crate) struct KeyGuard {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    key: String,
    locks: KeyedLocks,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(key.to_string()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard { _guard: guard, key: key.to_string(), locks: self.clone() }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two references: the map's and this guard's mutex owner.
        if locks.get(&self.key).is_some_and(|mutex| Arc::strong_count(mutex) <= 2) {
            locks.remove(&self.key);
        }
    }
}
