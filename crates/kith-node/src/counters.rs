//! Typed event counters.
//!
//! Each part of the node declares its counters as a struct with [`counters!`]: one
//! [`Counter`] field per event, so a misspelt name is a compile error and every counter is
//! present (zero included) in `kith status --json`. Counters count since the node process
//! started; a restart begins again at zero (the status report's `uptime_secs` says since when).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// One monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Something that can list its counters by name.
pub trait CounterSet: Send + Sync {
    /// Adds every counter, by name, to `out`.
    fn snapshot_into(&self, out: &mut BTreeMap<String, u64>);
}

/// Declares a struct of [`Counter`]s that lists itself by field name.
///
/// ```ignore
/// counters! {
///     /// What the link layer counts.
///     pub struct LinkCounters {
///         /// Links that came up.
///         links_established,
///     }
/// }
/// ```
#[macro_export]
macro_rules! counters {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $crate::counters::Counter,)*
        }

        impl $crate::counters::CounterSet for $name {
            fn snapshot_into(&self, out: &mut ::std::collections::BTreeMap<String, u64>) {
                $(out.insert(stringify!($field).to_owned(), self.$field.get());)*
            }
        }
    };
}

/// Every counter of `sets`, by name.
pub fn snapshot(sets: &[&dyn CounterSet]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for set in sets {
        set.snapshot_into(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    counters! {
        /// Test counters.
        struct Sample {
            /// One.
            first,
            /// Two.
            second,
        }
    }

    #[test]
    fn every_counter_is_listed_even_at_zero() {
        let sample = Sample::default();
        sample.first.bump();
        sample.first.add(2);
        let all = snapshot(&[&sample]);
        assert_eq!(all.get("first"), Some(&3));
        assert_eq!(all.get("second"), Some(&0));
    }
}
