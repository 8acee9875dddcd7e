//! A map bounded by the total weight of its values (bytes, fragments), the
//! oldest inserted evicted first. What each caller weighs, and what it
//! refuses to keep, is the caller's; this holds only the bookkeeping, so the
//! `/play` signed-copy cache and the VOD closed-range cache cannot drift
//! apart in it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub(crate) struct Fifo<K, V> {
    max_weight: usize,
    used: usize,
    entries: HashMap<K, (V, usize)>,
    order: VecDeque<K>,
}

impl<K: Clone + Eq + Hash, V> Fifo<K, V> {
    /// An empty map of at most `max_weight` in all.
    pub(crate) fn new(max_weight: usize) -> Fifo<K, V> {
        Fifo {
            max_weight,
            used: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn max_weight(&self) -> usize {
        self.max_weight
    }

    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Keeps `value` of `weight` under `key`, evicting the oldest entries
    /// until it fits; `false` (nothing changed) when the key is already
    /// there or the value alone outweighs the whole map.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: usize) -> bool {
        if weight > self.max_weight || self.entries.contains_key(&key) {
            return false;
        }
        while self.used + weight > self.max_weight {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.forget(&oldest);
        }
        self.used += weight;
        self.order.push_back(key.clone());
        self.entries.insert(key, (value, weight));
        true
    }

    /// Drops every entry whose key `stale` says is stale.
    pub(crate) fn drop_where(&mut self, mut stale: impl FnMut(&K) -> bool) {
        let gone: Vec<K> = self.order.iter().filter(|k| stale(k)).cloned().collect();
        if gone.is_empty() {
            return;
        }
        self.order.retain(|k| !stale(k));
        for k in &gone {
            self.forget(k);
        }
    }

    /// The weight held.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    fn forget(&mut self, key: &K) {
        if let Some((_, weight)) = self.entries.remove(key) {
            self.used -= weight;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_first_and_the_weight_stays_bounded() {
        let mut m = Fifo::new(10);
        assert!(m.insert("a", 1, 4));
        assert!(m.insert("b", 2, 4));
        assert!(!m.insert("b", 3, 1), "a key already there is kept as it is");
        assert!(!m.insert("huge", 4, 11));
        assert!(m.insert("c", 5, 4));
        assert_eq!(
            (m.get(&"a"), m.get(&"b"), m.get(&"c")),
            (None, Some(&2), Some(&5))
        );
        assert_eq!(m.used(), 8);
        m.drop_where(|k| *k == "b");
        assert_eq!((m.get(&"b"), m.used()), (None, 4));
        assert!(m.insert("b", 6, 6));
        assert_eq!(m.used(), 10);
    }
}
