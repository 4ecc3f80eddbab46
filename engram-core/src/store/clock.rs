//! The clock that decides when an episode's time to live has run out and stamps recorded
//! accesses. It counts in the caller's timestamp units: Unix microseconds by default.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in the units of episode timestamps.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicI64, Ordering};
/// use engram_core::Clock;
/// let t = Arc::new(AtomicI64::new(100));
/// let clock = Clock::new({ let t = t.clone(); move || t.load(Ordering::Relaxed) });
/// assert_eq!(clock.now(), 100);
/// t.store(250, Ordering::Relaxed);
/// assert_eq!(clock.now(), 250);
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// A clock reading `now`.
    pub fn new(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// Wall-clock time in Unix microseconds (the default).
    pub fn unix_micros() -> Self {
        Clock::new(|| {
            match SystemTime::now().duration_since(UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
                // A system clock set before 1970 reads as negative time.
                Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
            }
        })
    }

    /// The current time, clamped to `i64::MIN + 1 ..= i64::MAX - 1`: the two extremes are
    /// the store's sentinels for "never expires" and "never accessed" (`docs/format.md`).
    /// Unclamped, a clock reading `i64::MAX` hid every episode, expiring or not.
    pub fn now(&self) -> i64 {
        (self.0)().clamp(i64::MIN + 1, i64::MAX - 1)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::unix_micros()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock(now = {})", self.now())
    }
}
