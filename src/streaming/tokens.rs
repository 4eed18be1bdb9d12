//! Single-use tokens: each URL the CRI hands out names one request, may be redeemed
//! once, and expires after the configured time.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StreamRequest;
use crate::core::CoreError;

/// At most this many unredeemed tokens are kept; the oldest go first.
const CAPACITY: usize = 4096;

pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (StreamRequest, Instant)>>,
}

impl TokenCache {
    pub fn new(ttl: Duration) -> TokenCache {
        TokenCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// Stores `request` under a new random token.
    pub fn insert(&self, request: StreamRequest) -> Result<String, CoreError> {
        let token = crate::core::ids::new_id()?[..32].to_string();
        let mut entries = self.entries.lock().map_err(|_| CoreError::Internal("token cache poisoned".into()))?;
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        if entries.len() >= CAPACITY {
            if let Some(oldest) = entries.iter().min_by_key(|(_, (_, expires))| *expires).map(|(key, _)| key.clone()) {
                entries.remove(&oldest);
            }
        }
        entries.insert(token.clone(), (request, now + self.ttl));
        Ok(token)
    }

    /// The request behind `token`, once: the token is gone afterwards.
    pub fn redeem(&self, token: &str) -> Option<StreamRequest> {
        let (request, expires) = self.entries.lock().ok()?.remove(token)?;
        (expires > Instant::now()).then_some(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> StreamRequest {
        StreamRequest::PortForward { pod_id: "p".into() }
    }

    #[test]
    fn a_token_works_once() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let token = cache.insert(request()).expect("token");
        assert_eq!(token.len(), 32);
        assert!(cache.redeem(&token).is_some());
        assert!(cache.redeem(&token).is_none());
        assert!(cache.redeem("unknown").is_none());
    }

    #[test]
    fn a_token_expires() {
        let cache = TokenCache::new(Duration::from_millis(10));
        let token = cache.insert(request()).expect("token");
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.redeem(&token).is_none());
    }
}
