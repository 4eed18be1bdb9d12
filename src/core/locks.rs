//! Locks by key: one async mutex per pod (or any other key), made on first use and
//! dropped with its last holder, so operations on one pod stay ordered while
//! independent pods proceed at once.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type KeyMutex = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
pub struct KeyedLocks {
    held: Arc<Mutex<HashMap<String, KeyMutex>>>,
}

/// Holds the lock of one key; releasing it forgets the key when no one waits for it.
pub struct KeyGuard {
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    held: Arc<Mutex<HashMap<String, KeyMutex>>>,
}

impl KeyedLocks {
    /// Waits for the lock of `key`.
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            held.entry(key.to_string()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard { key: key.to_string(), guard: Some(guard), held: self.held.clone() }
    }

    /// How many keys have a lock (held or awaited).
    pub fn len(&self) -> usize {
        self.held.lock().map(|held| held.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Only the map's own reference left: no holder, no waiter (they clone under
        // this same lock before waiting).
        if held.get(&self.key).is_some_and(|mutex| Arc::strong_count(mutex) == 1) {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_is_exclusive_and_others_are_free() {
        let locks = KeyedLocks::default();
        let first = locks.lock("a").await;
        let other = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("b")).await;
        assert!(other.is_ok(), "another key waited");
        drop(other);
        let same = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("a")).await;
        assert!(same.is_err(), "the same key was taken twice");
        drop(first);
        let again = tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock("a")).await;
        assert!(again.is_ok());
        drop(again);
        assert!(locks.is_empty(), "released keys are forgotten");
    }
}
