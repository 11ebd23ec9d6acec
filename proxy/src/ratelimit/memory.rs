//! The in-process store: sharded, bounded, checking all of a request's counters atomically.
//!
//! Counters live in `SHARDS` hash maps keyed by a 64-bit keyed hash of (limit id, scope value),
//! each behind its own short-held `parking_lot` lock (never held across an `.await`). A request
//! locks the shards its counters live in, in ascending order (so two requests cannot deadlock),
//! evaluates every rule, and stores the new cells only when all of them pass: a rejected request
//! consumes from none.
//!
//! Memory is bounded by `max_keys`. A cell whose `expires_at` has passed decides exactly like an
//! absent one, so dropping it is free; when a shard is full its expired cells go first, and only
//! if none are expired the cell closest to expiry is evicted (counted in
//! [`MemoryStore::evictions`]) — the one whose loss changes the fewest decisions.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::algorithm::{evaluate, Cell, Rule, Verdict};

const SHARDS: usize = 64;

/// A hash map keyed by already-hashed `u64`s: hashing them again would be wasted work.
type Shard = HashMap<u64, Cell, BuildHasherDefault<IdentityHasher>>;

#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The in-process counter store.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    per_shard: usize,
    evictions: AtomicU64,
}

impl MemoryStore {
    /// A store holding at most about `max_keys` counters.
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            evictions: AtomicU64::new(0),
        }
    }

    /// The key of the counter of limit `id` for scope value `value`. Keyed SipHash: callers
    /// cannot aim collisions at each other's counters.
    pub fn key(&self, id: &str, value: &str) -> u64 {
        self.hasher.hash_one((id, value))
    }

    /// Evaluates every `(key, rule)` at `now`; stores the new cells only if all pass.
    pub fn check(&self, checks: &[(u64, Rule)], now: u64) -> Vec<Verdict> {
        let shard_of = |key: u64| (key % SHARDS as u64) as usize;
        let mut order: Vec<usize> = checks.iter().map(|(k, _)| shard_of(*k)).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            order.iter().map(|&i| (i, self.shards[i].lock())).collect();
        let guard_for = |key: u64| -> usize {
            let s = shard_of(key);
            guards.iter().position(|(i, _)| *i == s).unwrap_or(0)
        };
        let slots: Vec<usize> = checks.iter().map(|(k, _)| guard_for(*k)).collect();
        let verdicts: Vec<Verdict> = checks
            .iter()
            .zip(&slots)
            .map(|((key, rule), &g)| {
                let cell = guards[g].1.get(key).copied();
                evaluate(*rule, cell, now)
            })
            .collect();
        if verdicts.iter().all(|v| v.allowed) {
            for (((key, _), &g), v) in checks.iter().zip(&slots).zip(&verdicts) {
                self.store(&mut guards[g].1, *key, v.next, now);
            }
        }
        verdicts
    }

    fn store(&self, shard: &mut Shard, key: u64, cell: Cell, now: u64) {
        if !shard.contains_key(&key) && shard.len() >= self.per_shard {
            shard.retain(|_, c| c.expires_at > now);
            if shard.len() >= self.per_shard {
                let oldest = shard
                    .iter()
                    .min_by_key(|(_, c)| c.expires_at)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    shard.remove(&k);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        shard.insert(key, cell);
    }

    /// Counters held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live (not expired) counters evicted because the store was full.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}
