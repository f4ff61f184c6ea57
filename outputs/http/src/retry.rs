//! The one retry policy of every exporter: which failures are tried again (no answer, 408,
//! 429, 500, 502, 503, 504, and a 413 that says when to come back), how long to wait
//! (exponential backoff with jitter, or what `Retry-After` says), and the loop that sends,
//! waits and gives up at the caller's deadline.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// HTTP statuses retried with backoff: those MLflow's official client (urllib3) and the
/// OpenTelemetry exporters retry.
pub const RETRY_STATUS_CODES: [u16; 6] = [408, 429, 500, 502, 503, 504];
/// Statuses whose `Retry-After` header sets the wait (urllib3's `RETRY_AFTER_STATUS_CODES`);
/// a 413 is retried only when it has one.
pub const RETRY_AFTER_STATUS_CODES: [u16; 3] = [413, 429, 503];
/// Longest wait between two attempts (urllib3's `DEFAULT_BACKOFF_MAX`), also the cap on
/// `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// Retries of a refused connection ([`Answer::Refused`]: nothing listens), at most, whatever
/// the policy's `max_retries`: a server that is not there is not waited for.
pub const REFUSED_RETRIES: u32 = 2;
/// The wait before the `n`-th retry of a refused connection is `n` times this (no jitter).
pub const REFUSED_WAIT: Duration = Duration::from_millis(100);

/// How a request waits between attempts and when it must give up. An exporter thread's pacer
/// is woken early at shutdown and then has a deadline.
pub trait Pacer {
    /// When to give up, if ever.
    fn deadline(&self) -> Option<Instant>;
    /// Waits `duration` (or less, when woken).
    fn sleep(&self, duration: Duration);
    /// Told of each failure that is about to be retried.
    fn on_retry(&self, _failure: &dyn fmt::Display) {}
}

/// Plain blocking waits, no deadline: for requests made by hand.
#[derive(Clone, Copy, Debug, Default)]
pub struct Patient;

impl Pacer for Patient {
    fn deadline(&self) -> Option<Instant> {
        None
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The random part added to a backoff wait.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// Up to this much (urllib3's `backoff_jitter`).
    UpTo(Duration),
    /// Up to as much again as the wait itself.
    AsMuchAgain,
}

/// Exponential backoff: the wait after `n` failed attempts is `base * 2^(n-1)` plus jitter,
/// at most [`MAX_BACKOFF`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure (before jitter).
    pub base: Duration,
    /// Whether the first retry goes at once (urllib3's way: waits of 0, 2b, 4b...).
    pub first_retry_at_once: bool,
    /// The random part.
    pub jitter: Jitter,
}

impl Backoff {
    /// The wait after `failures` consecutive failed attempts.
    pub fn wait(&self, failures: u32) -> Duration {
        if self.first_retry_at_once && failures <= 1 {
            return Duration::ZERO;
        }
        let exp = 2f64.powi(failures.clamp(1, 60) as i32 - 1);
        let secs = self.base.as_secs_f64() * exp;
        let jitter = match self.jitter {
            Jitter::UpTo(most) => most.as_secs_f64(),
            Jitter::AsMuchAgain => secs,
        };
        let secs = if jitter > 0.0 {
            secs + random_unit() * jitter
        } else {
            secs
        };
        Duration::from_secs_f64(secs.clamp(0.0, MAX_BACKOFF.as_secs_f64()))
    }
}

/// A number in [0, 1), for jitter.
fn random_unit() -> f64 {
    (agent_profiler_runtime::trace::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// How a failed attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// No HTTP answer (reset, timed out): retried.
    None,
    /// The connection was refused (nothing listens there, yet) or the host or network is
    /// unreachable. Retried at most
    /// [`REFUSED_RETRIES`] times, after short waits, and not at all once the pacer has a
    /// deadline (an exporter shutting down): an absent server must not hold a run's end.
    Refused,
    /// An answer with this status: retried for [`RETRY_STATUS_CODES`].
    Status(u16),
    /// A failure that trying again cannot mend (a refused certificate, an answer that is
    /// not what the protocol sends): never retried.
    Final,
}

/// One failed attempt: the caller's error, how it ended, and the answer's `Retry-After`.
#[derive(Debug)]
pub struct Failure<E> {
    /// The caller's error.
    pub error: E,
    /// How the attempt ended.
    pub answer: Answer,
    /// The `Retry-After` of the answer ([`retry_after`]), if it had one.
    pub retry_after: Option<Duration>,
}

impl<E> Failure<E> {
    /// A failure without an answer.
    pub fn no_answer(error: E) -> Self {
        Self {
            error,
            answer: Answer::None,
            retry_after: None,
        }
    }

    /// A connection refused ([`Answer::Refused`]).
    pub fn refused(error: E) -> Self {
        Self {
            error,
            answer: Answer::Refused,
            retry_after: None,
        }
    }

    /// No answer: [`Answer::Refused`] when `cause` (a transport error and its sources) says
    /// the connection was refused, else [`Answer::None`].
    pub fn without_answer(error: E, cause: &(dyn std::error::Error + 'static)) -> Self {
        if crate::client::connection_refused(cause) {
            Self::refused(error)
        } else {
            Self::no_answer(error)
        }
    }

    /// An error answer with this status and `Retry-After` (read with [`retry_after`]
    /// before the body).
    pub fn answered(error: E, status: u16, retry_after: Option<Duration>) -> Self {
        Self {
            error,
            answer: Answer::Status(status),
            retry_after,
        }
    }

    /// A failure never retried.
    pub fn fatal(error: E) -> Self {
        Self {
            error,
            answer: Answer::Final,
            retry_after: None,
        }
    }
}

/// Why [`Policy::run`] gave up.
#[derive(Debug, PartialEq)]
pub enum GaveUp<E> {
    /// The last attempt failed for good: not retryable, or the retries are used up.
    Failed(E),
    /// The pacer's deadline came first; the last failure, if there was an attempt.
    Deadline(Option<E>),
}

/// The retry policy: how many retries, the backoff, and whether `Retry-After` is obeyed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Waits when the answer does not say.
    pub backoff: Backoff,
    /// Whether a 413, 429 or 503 answer's `Retry-After` sets the wait.
    pub respect_retry_after: bool,
}

impl Policy {
    /// The wait before retrying after `failure`, the `attempts`-th in a row; `None` when it
    /// is not retried.
    pub fn wait_before_retry<E>(&self, failure: &Failure<E>, attempts: u32) -> Option<Duration> {
        let status = match failure.answer {
            Answer::None => None,
            Answer::Refused => {
                return (attempts <= self.max_retries.min(REFUSED_RETRIES))
                    .then(|| REFUSED_WAIT * attempts);
            }
            Answer::Status(status) => Some(status),
            Answer::Final => return None,
        };
        let retry_after = failure
            .retry_after
            .filter(|wait| {
                self.respect_retry_after
                    && !wait.is_zero()
                    && status.is_some_and(|s| RETRY_AFTER_STATUS_CODES.contains(&s))
            })
            .map(|wait| wait.min(MAX_BACKOFF));
        let retryable = match status {
            None => true,
            Some(413) => retry_after.is_some(),
            Some(status) => RETRY_STATUS_CODES.contains(&status),
        };
        if !retryable || attempts > self.max_retries {
            return None;
        }
        Some(retry_after.unwrap_or_else(|| self.backoff.wait(attempts)))
    }

    /// Makes attempts until one succeeds, one fails for good, or the pacer's deadline would
    /// pass before the next. `attempt` gets the time it may take (`timeout`, cut to the
    /// deadline) and its number (1, 2, ...); each retry is counted in `retries` and told to
    /// the pacer.
    ///
    /// # Errors
    /// Why it gave up, with the last failure.
    pub fn run<T, E: fmt::Display>(
        &self,
        timeout: Duration,
        pacer: &dyn Pacer,
        retries: &AtomicU64,
        mut attempt: impl FnMut(Duration, u32) -> Result<T, Failure<E>>,
    ) -> Result<T, GaveUp<E>> {
        let mut attempts = 0u32;
        let mut last: Option<E> = None;
        loop {
            let mut limit = timeout;
            if let Some(deadline) = pacer.deadline() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(GaveUp::Deadline(last));
                }
                limit = limit.min(left);
            }
            attempts += 1;
            let failure = match attempt(limit, attempts) {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            // Shutting down (a deadline): a refused connection is not tried again.
            let refused_at_the_end =
                failure.answer == Answer::Refused && pacer.deadline().is_some();
            let wait = match self.wait_before_retry(&failure, attempts) {
                Some(wait) if !refused_at_the_end => wait,
                _ => return Err(GaveUp::Failed(failure.error)),
            };
            if let Some(deadline) = pacer.deadline()
                && Instant::now() + wait >= deadline
            {
                return Err(GaveUp::Deadline(Some(failure.error)));
            }
            pacer.on_retry(&failure.error);
            last = Some(failure.error);
            retries.fetch_add(1, Ordering::Relaxed);
            if !wait.is_zero() {
                pacer.sleep(wait);
            }
        }
    }
}

/// The wait a `Retry-After` header asks for: a number of seconds, or an HTTP date (a date
/// in the past is no wait); `None` without one, or for anything else.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?)
}

/// A `Retry-After` value: seconds, or an HTTP date (IMF-fixdate, RFC 850 or asctime).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::{Cell, RefCell};

    const URLLIB3: Backoff = Backoff {
        base: Duration::from_secs(2),
        first_retry_at_once: true,
        jitter: Jitter::UpTo(Duration::ZERO),
    };

    #[test]
    fn backoff_follows_urllib3() {
        let waits: Vec<u64> = (1..=8).map(|n| URLLIB3.wait(n).as_secs()).collect();
        assert_eq!(waits, [0, 4, 8, 16, 32, 64, 120, 120]);
        let jittered = Backoff {
            jitter: Jitter::UpTo(Duration::from_secs(1)),
            ..URLLIB3
        };
        for _ in 0..100 {
            let w = jittered.wait(2).as_secs_f64();
            assert!((4.0..5.0).contains(&w), "{w}");
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let doubling = |base| Backoff {
            base,
            first_retry_at_once: false,
            jitter: Jitter::AsMuchAgain,
        };
        for failures in 1..6 {
            let base = 0.1 * 2f64.powi(failures as i32 - 1);
            let wait = doubling(Duration::from_millis(100))
                .wait(failures)
                .as_secs_f64();
            assert!(
                wait >= base - 1e-9 && wait <= 2.0 * base + 1e-9,
                "{failures}: {wait}"
            );
        }
        assert_eq!(doubling(Duration::from_secs(10)).wait(40), MAX_BACKOFF);
        assert_eq!(doubling(Duration::ZERO).wait(3), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let soon = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT").unwrap();
        assert!(soon > Duration::from_secs(365 * 86_400));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("-1"), None);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }

    fn policy(max_retries: u32) -> Policy {
        Policy {
            max_retries,
            backoff: Backoff {
                base: Duration::from_millis(1),
                first_retry_at_once: false,
                jitter: Jitter::UpTo(Duration::ZERO),
            },
            respect_retry_after: true,
        }
    }

    fn answered(status: u16, retry_after: Option<u64>) -> Failure<&'static str> {
        Failure::answered("e", status, retry_after.map(Duration::from_secs))
    }

    #[test]
    fn which_failures_are_retried() {
        let p = policy(3);
        for status in RETRY_STATUS_CODES {
            assert!(p.wait_before_retry(&answered(status, None), 1).is_some());
        }
        for status in [400, 401, 404, 413, 501] {
            assert_eq!(p.wait_before_retry(&answered(status, None), 1), None);
        }
        assert!(p.wait_before_retry(&Failure::no_answer("e"), 1).is_some());
        assert_eq!(p.wait_before_retry(&Failure::fatal("e"), 1), None);
        assert_eq!(p.wait_before_retry(&Failure::no_answer("e"), 4), None);
        // Retry-After: on 413, 429 and 503 only, capped, and not when told to ignore it.
        let wait = |p: &Policy, status, secs| p.wait_before_retry(&answered(status, secs), 1);
        assert_eq!(wait(&p, 413, Some(2)), Some(Duration::from_secs(2)));
        assert_eq!(wait(&p, 429, Some(900)), Some(MAX_BACKOFF));
        assert_eq!(wait(&p, 500, Some(2)), Some(Duration::from_millis(1)));
        assert_eq!(wait(&p, 503, Some(0)), Some(Duration::from_millis(1)));
        let deaf = Policy {
            respect_retry_after: false,
            ..p
        };
        assert_eq!(wait(&deaf, 503, Some(2)), Some(Duration::from_millis(1)));
        assert_eq!(wait(&deaf, 413, Some(2)), None);
    }

    /// Records the pacer's calls; the deadline is `left` from the first call.
    struct Recorder {
        deadline: Option<Instant>,
        slept: RefCell<Vec<Duration>>,
        told: Cell<u32>,
    }

    impl Pacer for Recorder {
        fn deadline(&self) -> Option<Instant> {
            self.deadline
        }
        fn sleep(&self, duration: Duration) {
            self.slept.borrow_mut().push(duration);
        }
        fn on_retry(&self, _failure: &dyn fmt::Display) {
            self.told.set(self.told.get() + 1);
        }
    }

    fn recorder(deadline: Option<Instant>) -> Recorder {
        Recorder {
            deadline,
            slept: RefCell::new(Vec::new()),
            told: Cell::new(0),
        }
    }

    #[test]
    fn the_loop_retries_counts_and_gives_up() {
        let retries = AtomicU64::new(0);
        let pacer = recorder(None);
        let mut numbers = Vec::new();
        let result = policy(2).run(Duration::from_secs(1), &pacer, &retries, |_, n| {
            numbers.push(n);
            Err::<(), _>(answered(503, Some(1)))
        });
        assert_eq!(result, Err(GaveUp::Failed("e")));
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(retries.load(Ordering::Relaxed), 2);
        assert_eq!(pacer.told.get(), 2);
        assert_eq!(*pacer.slept.borrow(), [Duration::from_secs(1); 2]);

        let result = policy(5).run(Duration::from_secs(1), &pacer, &retries, |_, n| {
            if n < 3 {
                Err(Failure::no_answer("e"))
            } else {
                Ok(n)
            }
        });
        assert_eq!(result, Ok(3));
    }

    #[test]
    fn the_deadline_cuts_timeouts_and_waits() {
        let retries = AtomicU64::new(0);
        let soon = recorder(Some(Instant::now() + Duration::from_secs(5)));
        let mut limits = Vec::new();
        let result = policy(5).run(Duration::from_secs(60), &soon, &retries, |limit, _| {
            limits.push(limit);
            Err::<(), _>(answered(429, Some(10)))
        });
        assert_eq!(result, Err(GaveUp::Deadline(Some("e"))));
        assert!(limits.len() == 1 && limits[0] <= Duration::from_secs(5));
        let past = recorder(Some(Instant::now()));
        let result = policy(5).run(Duration::from_secs(60), &past, &retries, |_, _| {
            Err::<(), Failure<&str>>(Failure::no_answer("e"))
        });
        assert_eq!(result, Err(GaveUp::Deadline(None)));
        assert_eq!(retries.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_refused_connection_is_retried_little_and_not_at_all_at_the_end() {
        let p = policy(7);
        let refused = Failure::refused("e");
        assert_eq!(p.wait_before_retry(&refused, 1), Some(REFUSED_WAIT));
        assert_eq!(p.wait_before_retry(&refused, 2), Some(REFUSED_WAIT * 2));
        assert_eq!(p.wait_before_retry(&refused, 3), None);
        assert_eq!(policy(0).wait_before_retry(&refused, 1), None);
        // With a deadline (shutting down): one attempt, however far the deadline.
        let retries = AtomicU64::new(0);
        let later = recorder(Some(Instant::now() + Duration::from_secs(60)));
        let mut attempts = 0;
        let result = p.run(Duration::from_secs(1), &later, &retries, |_, _| {
            attempts += 1;
            Err::<(), _>(Failure::refused("e"))
        });
        assert_eq!(result, Err(GaveUp::Failed("e")));
        assert_eq!((attempts, retries.load(Ordering::Relaxed)), (1, 0));
        // Told apart from other transport errors by the error's sources.
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::without_answer("e", &io).answer, Answer::Refused);
        let io = std::io::Error::from(std::io::ErrorKind::NetworkUnreachable);
        assert_eq!(Failure::without_answer("e", &io).answer, Answer::Refused);
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(Failure::without_answer("e", &io).answer, Answer::None);
    }
}
