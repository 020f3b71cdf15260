//! A bounded map that forgets its least recently used entries: the data structure behind every
//! cache of the server (the caches themselves, with their invalidation, are `myelin_service::cache`).
//!
//! Capacity is a budget of *weight* (an entry weighs 1 unless its insert says otherwise, e.g. a
//! list weighs its length). An insert beyond the budget evicts the least recently used entries
//! until the rest fits. Every operation is O(log n).

use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap},
    hash::Hash,
};

struct Entry<V> {
    value: V,
    weight: usize,
    /// When it was last used (a counter, not a time).
    used: u64,
}

pub struct Lru<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, K>,
    tick: u64,
    weight: usize,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map that holds entries weighing `capacity` in all (at least one entry).
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::new(), order: BTreeMap::new(), tick: 0, weight: 0, capacity: capacity.max(1) }
    }

    /// The value of `key`, which becomes the most recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(key)?;
        if let Some(stored) = self.order.remove(&entry.used) {
            self.order.insert(tick, stored);
        }
        entry.used = tick;
        Some(&entry.value)
    }

    /// Stores `value` under `key` with weight 1.
    pub fn insert(&mut self, key: K, value: V) {
        self.insert_weighted(key, value, 1);
    }

    /// Stores `value` under `key`, weighing `weight` against the capacity; evicts the least
    /// recently used entries (never this one) until the rest fits.
    pub fn insert_weighted(&mut self, key: K, value: V, weight: usize) {
        self.remove(&key);
        self.tick += 1;
        let weight = weight.max(1);
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, Entry { value, weight, used: self.tick });
        self.weight += weight;
        while self.weight > self.capacity && self.entries.len() > 1 {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.weight -= entry.weight;
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entry = self.entries.remove(key)?;
        self.order.remove(&entry.used);
        self.weight -= entry.weight;
        Some(entry.value)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.weight = 0;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The weight of all entries.
    pub fn weight(&self) -> usize {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut lru = Lru::new(3);
        lru.insert("a", 1);
        lru.insert("b", 2);
        lru.insert("c", 3);
        assert_eq!(lru.get("a"), Some(&1), "a is now the most recently used");
        lru.insert("d", 4);
        assert_eq!(lru.get("b"), None, "b was the least recently used");
        assert_eq!(lru.get("a").copied(), Some(1));
        assert_eq!(lru.get("c").copied(), Some(3));
        assert_eq!(lru.get("d").copied(), Some(4));
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn weights_count_against_the_capacity() {
        let mut lru = Lru::new(10);
        lru.insert_weighted(1, "small", 2);
        lru.insert_weighted(2, "big", 7);
        lru.insert_weighted(3, "medium", 4);
        assert_eq!(lru.get(&1), None, "evicted to make room");
        assert_eq!(lru.get(&2), None, "evicted too: 7 + 4 > 10");
        assert_eq!(lru.get(&3), Some(&"medium"));
        assert_eq!(lru.weight(), 4);
        // An entry heavier than the whole budget is kept alone.
        lru.insert_weighted(4, "huge", 50);
        assert_eq!((lru.len(), lru.weight()), (1, 50));
    }

    #[test]
    fn replacing_and_removing_keep_the_accounts_right() {
        let mut lru = Lru::new(5);
        lru.insert_weighted("k", 1, 3);
        lru.insert_weighted("k", 2, 4);
        assert_eq!((lru.len(), lru.weight()), (1, 4));
        assert_eq!(lru.get("k"), Some(&2));
        assert_eq!(lru.remove("k"), Some(2));
        assert_eq!((lru.len(), lru.weight()), (0, 0));
        lru.insert("x", 9);
        lru.clear();
        assert!(lru.is_empty() && lru.weight() == 0);
    }
}
