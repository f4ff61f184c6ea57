//! Locks and condition-variable waits with a deadline: what the exporter threads (MLflow
//! metrics, OTLP traces) and their handles share.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Locks `m`, also when a thread panicked while holding it (the exporters' state stays
/// usable: a panic there must not stop the workflow).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now plus `timeout`, with timeouts longer than a year taken as a year (no overflow).
pub fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(Duration::from_secs(365 * 86_400))
}

/// Waits on `cv` (with `guard`, the lock of its mutex) until `done` holds (true) or
/// `deadline` passes (false).
pub fn wait_until<T>(
    cv: &Condvar,
    mut guard: MutexGuard<'_, T>,
    deadline: Instant,
    done: impl Fn(&T) -> bool,
) -> bool {
    while !done(&guard) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        guard = cv
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}
