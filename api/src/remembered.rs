//! A bounded memory of facts that never change once they exist, such as which account a login
//! or a device token belongs to. Requests that can go straight to the account with such a fact
//! skip a read of the read models (a round trip on PostgreSQL); whatever the account then
//! decides is unchanged, because the account itself still checks everything that can change.
//! A fact forgotten (pushed out by newer ones, or learned on another instance) costs one read.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

pub struct Remembered<K: Hash + Eq, V: Clone> {
    facts: Mutex<LruCache<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Remembered<K, V> {
    /// Keeps the `capacity` facts used most recently (at least one).
    pub fn new(capacity: usize) -> Self {
        Remembered {
            facts: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    pub fn remember(&self, key: K, value: V) {
        self.lock().put(key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<K, V>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.facts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_is_recalled_until_newer_ones_push_it_out() {
        let remembered = Remembered::new(3);
        remembered.remember("first", 1);
        assert_eq!(remembered.get(&"first"), Some(1));
        assert_eq!(remembered.get(&"unknown"), None);
        for later in ["second", "third", "fourth"] {
            remembered.remember(later, 2);
        }
        assert_eq!(remembered.get(&"first"), None);
        assert_eq!(remembered.get(&"fourth"), Some(2));
    }
}
