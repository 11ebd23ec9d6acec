//! Concurrency caps on open streams, held as an RAII [`StreamPermit`].
//!
//! A permit is taken at admission and lives in the request context; it is released when the
//! context is dropped — however the request ended: the stream finished, the client went away,
//! the upstream died, or the drain ended it. Nothing has to remember to decrement.

use std::sync::Arc;

use dashmap::DashMap;

/// Open-stream counts per cap key (per replica).
#[derive(Debug, Default)]
pub struct StreamSlots {
    open: DashMap<String, u32>,
}

/// Which cap refused a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapReached {
    /// The cap's label (`per_principal`, `total`, `route_per_principal`, `route_total`).
    pub cap: &'static str,
}

impl StreamSlots {
    /// Takes one slot under every `(label, key, cap)`, or none if any cap is reached.
    pub fn try_acquire(
        self: &Arc<Self>,
        wanted: Vec<(&'static str, String, u32)>,
    ) -> Result<StreamPermit, CapReached> {
        let mut permit = StreamPermit {
            slots: self.clone(),
            keys: Vec::with_capacity(wanted.len()),
        };
        for (label, key, cap) in wanted {
            {
                let mut open = self.open.entry(key.clone()).or_insert(0);
                if *open >= cap {
                    drop(open);
                    // `permit` drops here and gives back what it already took.
                    self.open.remove_if(&key, |_, n| *n == 0);
                    return Err(CapReached { cap: label });
                }
                *open += 1;
            }
            permit.keys.push(key);
        }
        Ok(permit)
    }

    /// Streams open under `key` now.
    pub fn open(&self, key: &str) -> u32 {
        self.open.get(key).map_or(0, |n| *n)
    }

    /// Keys with at least one open stream.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Slots held by one request; released on drop.
#[derive(Debug)]
pub struct StreamPermit {
    slots: Arc<StreamSlots>,
    keys: Vec<String>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        for key in self.keys.drain(..) {
            if let Some(mut n) = self.slots.open.get_mut(&key) {
                *n = n.saturating_sub(1);
            }
            self.slots.open.remove_if(&key, |_, n| *n == 0);
        }
    }
}
