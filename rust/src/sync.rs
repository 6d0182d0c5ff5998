//! The crate's one locking policy for `std::sync::Mutex`.
//!
//! No code of this crate panics while it holds a lock, and every value behind one is valid
//! after any single statement, so a poisoned lock (a panic elsewhere on that thread, e.g. in a
//! Python callback) still holds usable data: it is taken as is, never turned into an error or
//! a second panic.
//!
//! It also owns `Swap`: a value a config reload replaces as a whole while connections read it
//! on every frame.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, ignoring poisoning.
#[inline]
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, ignoring poisoning.
#[inline]
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, ignoring poisoning.
#[inline]
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A value replaced as a whole (by a config reload) and read on hot paths. Readers that keep
/// a `Local` copy pay one atomic load per look to see whether it changed.
#[derive(Debug)]
pub struct Swap<T> {
    generation: AtomicU64,
    value: RwLock<Arc<T>>,
}

impl<T> Swap<T> {
    pub fn new(value: T) -> Self {
        Swap {
            generation: AtomicU64::new(0),
            value: RwLock::new(Arc::new(value)),
        }
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        read(&self.value).clone()
    }

    /// Replaces the value; readers see it at their next look.
    pub fn store(&self, value: T) {
        let mut v = write(&self.value);
        *v = Arc::new(value);
        // Bumped after the value: a reader that sees the new generation loads the new value.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times the value was replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One reader's copy of a `Swap`'s value, refreshed when the swap's generation moves.
#[derive(Debug)]
pub struct Local<T> {
    source: Arc<Swap<T>>,
    generation: u64,
    value: Arc<T>,
}

impl<T> Local<T> {
    pub fn new(source: Arc<Swap<T>>) -> Self {
        // Generation first: a value stored in between is then loaded again at the next look.
        let generation = source.generation();
        let value = source.load();
        Local {
            source,
            generation,
            value,
        }
    }

    /// A copy of a value nothing will replace.
    pub fn fixed(value: T) -> Self {
        Local::new(Arc::new(Swap::new(value)))
    }

    /// Takes the source's value if it was replaced since the last look.
    #[inline]
    pub fn refresh(&mut self) {
        let g = self.source.generation();
        if g != self.generation {
            self.generation = g;
            self.value = self.source.load();
        }
    }

    /// The value as of the last `refresh`.
    #[inline]
    pub fn get(&self) -> &T {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_copy_sees_a_stored_value_at_its_next_refresh() {
        let swap = Arc::new(Swap::new(1));
        let mut local = Local::new(swap.clone());
        assert_eq!(*local.get(), 1);
        swap.store(2);
        assert_eq!(*local.get(), 1, "not before a refresh");
        local.refresh();
        assert_eq!(*local.get(), 2);
        assert_eq!(swap.generation(), 1);
        let mut fixed = Local::fixed("x");
        fixed.refresh();
        assert_eq!(*fixed.get(), "x");
    }

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        lock(&m).push(2);
        assert_eq!(*lock(&m), [1, 2]);
    }
}
