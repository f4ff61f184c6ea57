//! The background sender every exporter runs (MLflow metrics, OTLP traces): handles queue
//! work under one lock and return at once; one thread sends it, and nothing it does (a slow
//! or dead server, a panic) reaches the workflow.
//!
//! What is written once here:
//! - the shared state ([`Shared`]): the exporter's queue ([`Work::Queue`]) with the shutdown
//!   request, the flush requests and the stopped flag, behind one lock; one condvar that
//!   wakes the thread (work queued, a flush, shutdown) and one that wakes the callers (a
//!   flush done, stopped);
//! - the counters ([`Work::Counters`], the exporter's statistics), the retry count, the last
//!   error, and a warning the first time delivery fails ([`Shared::record_error`]), all
//!   cleaned of secrets;
//! - the thread ([`Thread`]): rounds of [`Work::cycle`] between waits, a last step at
//!   shutdown, and whatever happens (a panic too) the exporter marked stopped so that no
//!   caller waits for it;
//! - flush ([`Shared::flush`]) and shutdown with a deadline ([`Thread::stop`]), after which
//!   the thread's requests give up ([`ThreadPacer`]) and what is left is counted as lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{fmt, io};

use crate::retry::Pacer;
use crate::secret::Redactor;
use crate::wait::{deadline_after, lock, wait_until};

/// Where an exporter's warnings go instead of stderr (a logger, say).
pub type WarnSink = Arc<dyn Fn(&str) + Send + Sync>;

/// What an exporter's thread does. Implemented by the thread's own state (what it has taken
/// from the queue, its HTTP client).
pub trait Work: Send + Sized + 'static {
    /// What the handles queue for the thread, kept under the shared lock.
    type Queue: Default + Send;
    /// What a shutdown hands to the thread's last step (MLflow: the run's final status).
    type Stop: Copy + Send + 'static;
    /// The exporter's counters, its statistics, updated with [`Shared::count`].
    type Counters: Default + Clone + Send;
    /// What else the handles and the thread share, outside the lock (the configuration).
    type Context: Send + Sync;

    /// Whether the thread has something to do now; asked under the lock, before it sleeps
    /// and whenever it is woken.
    fn ready(&self, state: &State<Self>) -> bool;

    /// One round: takes what is queued and sends it. `stopping` once shutdown was asked for
    /// (the round then delivers what it can before the deadline).
    fn cycle(&mut self, shared: &Shared<Self>, stopping: bool);

    /// The last step, after the round that follows the shutdown request.
    fn finish(&mut self, shared: &Shared<Self>, stop: Self::Stop);

    /// When the thread ends, also after a panic, under the lock: counts what is still
    /// queued as lost.
    fn abandon(shared: &Shared<Self>, queue: &mut Self::Queue);

    /// How the drop of the last handle stops the thread: with what, within what time.
    fn on_drop(shared: &Shared<Self>) -> (Self::Stop, Duration);

    /// The part of a shutdown window of `timeout` kept back from the thread's requests for
    /// its last step ([`Shared::pacer`] with `reserve`). None by default.
    fn reserve(_timeout: Duration) -> Duration {
        Duration::ZERO
    }
}

/// A shutdown request.
struct Shutdown<S> {
    stop: S,
    deadline: Instant,
    reserve: Duration,
}

/// What is behind the shared lock: the exporter's queue, and the state of the thread.
pub struct State<W: Work> {
    /// The exporter's queue.
    pub queue: W::Queue,
    shutdown: Option<Shutdown<W::Stop>>,
    stopped: bool,
    flush_requested: u64,
    flush_done: u64,
}

impl<W: Work> State<W> {
    /// Whether work may still be queued: no shutdown asked for, not stopped.
    pub fn accepting(&self) -> bool {
        !self.stopped && self.shutdown.is_none()
    }

    /// Whether the thread has stopped: nothing queued from now on is sent.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// When the thread must have stopped, once shutdown was asked for.
    pub fn shutdown_deadline(&self) -> Option<Instant> {
        self.shutdown.as_ref().map(|s| s.deadline)
    }

    /// Flush requests made so far (numbered from 1).
    pub fn flush_requested(&self) -> u64 {
        self.flush_requested
    }

    /// Whether a flush request is waiting for the thread.
    pub fn flush_pending(&self) -> bool {
        self.flush_done < self.flush_requested
    }
}

/// How an exporter reports and paces itself.
pub struct Settings {
    /// What exports, for messages: `MLflow exporter`, `OTLP exporter`.
    pub name: &'static str,
    /// The thread's name.
    pub thread_name: &'static str,
    /// What fails when delivery fails, for the warning: `MLflow export to http://...`.
    pub subject: String,
    /// Where the user reads what was lost, for the warning: `MlflowTracker::stats`.
    pub stats: &'static str,
    /// Whether warnings are given at all.
    pub warnings: bool,
    /// Where they go; stderr when `None`.
    pub warn_sink: Option<WarnSink>,
    /// The secrets to keep out of errors and warnings.
    pub redactor: Redactor,
    /// How often the thread wakes to send without being asked; `None`: only when
    /// [`Work::ready`] says so.
    pub interval: Option<Duration>,
}

/// What an exporter's handles and its thread share.
pub struct Shared<W: Work> {
    /// The exporter's own shared part (its configuration...).
    pub context: W::Context,
    settings: Settings,
    state: Mutex<State<W>>,
    /// Wakes the thread: work queued, a flush, shutdown.
    wake: Condvar,
    /// Wakes callers: a flush done, stopped, or the exporter's own progress.
    progress: Condvar,
    counters: Mutex<W::Counters>,
    retries: Arc<AtomicU64>,
    last_error: Mutex<Option<String>>,
    warned: AtomicBool,
}

impl<W: Work> Shared<W> {
    /// The shared part of a new exporter.
    pub fn new(settings: Settings, context: W::Context) -> Arc<Self> {
        Arc::new(Self {
            context,
            settings,
            state: Mutex::new(State {
                queue: W::Queue::default(),
                shutdown: None,
                stopped: false,
                flush_requested: 0,
                flush_done: 0,
            }),
            wake: Condvar::new(),
            progress: Condvar::new(),
            counters: Mutex::new(W::Counters::default()),
            retries: Arc::new(AtomicU64::new(0)),
            last_error: Mutex::new(None),
            warned: AtomicBool::new(false),
        })
    }

    /// Locks the state.
    pub fn state(&self) -> MutexGuard<'_, State<W>> {
        lock(&self.state)
    }

    /// Whether the exporter takes no more work: stopped, or shutting down.
    pub fn is_stopped(&self) -> bool {
        !self.state().accepting()
    }

    /// Wakes the thread (after queueing work; `state` is released first).
    pub fn wake(&self, state: MutexGuard<'_, State<W>>) {
        drop(state);
        self.wake.notify_all();
    }

    /// Wakes the callers waiting in [`wait_for`](Self::wait_for) to look again.
    pub fn notify(&self) {
        // Taken so that a caller between its check and its wait does not miss this.
        drop(self.state());
        self.progress.notify_all();
    }

    /// Updates the counters.
    pub fn count(&self, update: impl FnOnce(&mut W::Counters)) {
        update(&mut lock(&self.counters));
    }

    /// The counters now.
    pub fn counters(&self) -> W::Counters {
        lock(&self.counters).clone()
    }

    /// The counter of retries, for the HTTP client.
    pub fn retries(&self) -> &Arc<AtomicU64> {
        &self.retries
    }

    /// Retries made so far.
    pub fn retried(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The last failure, if any (cleaned of secrets).
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// The secrets' redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.settings.redactor
    }

    /// Keeps `message` (cleaned of secrets) as the last error, and warns the first time.
    pub fn record_error(&self, message: &str) {
        let message = self.settings.redactor.clean(message);
        *lock(&self.last_error) = Some(message.clone());
        if !self.warned.swap(true, Ordering::Relaxed) {
            self.warn(&format!(
                "{} is failing: {message}. The workflow is not affected; what cannot be \
                 delivered is counted ({}).",
                self.settings.subject, self.settings.stats
            ));
        }
    }

    /// Gives a warning (cleaned of secrets), when warnings are on.
    pub fn warn(&self, message: &str) {
        if !self.settings.warnings {
            return;
        }
        let message = self.settings.redactor.clean(message);
        match &self.settings.warn_sink {
            Some(sink) => sink(&message),
            None => eprintln!("agent-profiler: {message}"),
        }
    }

    /// Asks the thread to handle everything queued so far, and waits up to `timeout`;
    /// `true` when done in time (also when the exporter has stopped).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let mut st = self.state();
        if st.stopped {
            return true;
        }
        st.flush_requested += 1;
        let mine = st.flush_requested;
        self.wake.notify_all();
        wait_until(&self.progress, st, deadline, |st| {
            st.flush_done >= mine || st.stopped
        })
    }

    /// Tells the flush requests up to `request` that they are done.
    pub fn flushed(&self, mut state: MutexGuard<'_, State<W>>, request: u64) {
        state.flush_done = state.flush_done.max(request);
        drop(state);
        self.progress.notify_all();
    }

    /// Waits up to `timeout` until `done` holds (`true`) or the exporter stops (then
    /// whether `done` holds); re-checked at each [`notify`](Self::notify).
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&State<W>) -> bool) -> bool {
        let st = self.state();
        wait_until(&self.progress, st, deadline_after(timeout), |st| {
            done(st) || st.stopped
        });
        done(&self.state())
    }

    /// Asks the thread to deliver what is queued and take its last step (with `stop`; the
    /// first request wins) by `timeout` from now, and waits until it has stopped or a little
    /// past that deadline; whether it stopped.
    pub fn shutdown(&self, stop: W::Stop, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let mut st = self.state();
        if !st.stopped && st.shutdown.is_none() {
            st.shutdown = Some(Shutdown {
                stop,
                deadline,
                reserve: W::reserve(timeout),
            });
        }
        let deadline = st.shutdown_deadline().unwrap_or(deadline);
        self.wake.notify_all();
        // A request in flight ends by the deadline (its timeout is cut to it); allow a margin
        // for the last step and for joining.
        let give_up = deadline + Duration::from_secs(2);
        wait_until(&self.progress, st, give_up, |st| st.stopped)
    }

    /// The pacer of the thread's requests; with `reserve`, their deadline comes
    /// [`Work::reserve`] before the shutdown deadline.
    pub fn pacer(&self, reserve: bool) -> ThreadPacer<'_, W> {
        ThreadPacer {
            shared: self,
            reserve,
        }
    }

    /// Waits for work: `Some` with the shutdown's value once shutdown was asked for, `None`
    /// when [`Work::ready`] holds or the interval has passed.
    fn wait_for_work(&self, work: &W) -> Option<W::Stop> {
        let until = self.settings.interval.map(deadline_after);
        let mut st = self.state();
        loop {
            if let Some(shutdown) = &st.shutdown {
                return Some(shutdown.stop);
            }
            if work.ready(&st) {
                return None;
            }
            st = match until {
                None => self.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.wake
                        .wait_timeout(st, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// The waits of the thread's requests: cut short by shutdown, after which they have a
/// deadline; failures about to be retried show in the last error at once (a warning comes
/// only if delivery fails in the end).
pub struct ThreadPacer<'a, W: Work> {
    shared: &'a Shared<W>,
    reserve: bool,
}

impl<W: Work> ThreadPacer<'_, W> {
    fn deadline_in(&self, st: &State<W>) -> Option<Instant> {
        let shutdown = st.shutdown.as_ref()?;
        Some(if self.reserve {
            shutdown
                .deadline
                .checked_sub(shutdown.reserve)
                .unwrap_or(shutdown.deadline)
        } else {
            shutdown.deadline
        })
    }
}

impl<W: Work> Pacer for ThreadPacer<'_, W> {
    fn deadline(&self) -> Option<Instant> {
        self.deadline_in(&self.shared.state())
    }

    /// Sleeps until `duration` has passed, shutdown is asked for, or the shutdown deadline
    /// (when it was asked for already).
    fn sleep(&self, duration: Duration) {
        let st = self.shared.state();
        let mut until = Instant::now() + duration;
        if let Some(deadline) = self.deadline_in(&st) {
            until = until.min(deadline);
        }
        let shutting_down = st.shutdown.is_some();
        wait_until(&self.shared.wake, st, until, |st| {
            st.shutdown.is_some() != shutting_down
        });
    }

    fn on_retry(&self, failure: &dyn fmt::Display) {
        let message = self
            .shared
            .redactor()
            .clean(&format!("{failure} (retrying)"));
        *lock(&self.shared.last_error) = Some(message);
    }
}

/// The exporter's thread, owned by its handles: stopped (within [`Work::on_drop`]'s time)
/// when dropped.
pub struct Thread<W: Work> {
    shared: Arc<Shared<W>>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl<W: Work> Thread<W> {
    /// Starts the thread, doing `work` for `shared`.
    ///
    /// # Errors
    /// When the system cannot start a thread.
    pub fn spawn(shared: Arc<Shared<W>>, work: W) -> io::Result<Self> {
        let worker = shared.clone();
        let join = std::thread::Builder::new()
            .name(shared.settings.thread_name.to_owned())
            .spawn(move || run(work, &worker))?;
        Ok(Self {
            shared,
            join: Mutex::new(Some(join)),
        })
    }

    /// What the handles and the thread share.
    pub fn shared(&self) -> &Arc<Shared<W>> {
        &self.shared
    }

    /// [`Shared::shutdown`], then joins the thread if it stopped in time; whether it did. A
    /// thread that did not is left to end by itself: the workflow goes on.
    pub fn stop(&self, stop: W::Stop, timeout: Duration) -> bool {
        let stopped = self.shared.shutdown(stop, timeout);
        let join = lock(&self.join).take();
        if stopped && let Some(join) = join {
            let _ = join.join();
        }
        stopped
    }
}

impl<W: Work> std::ops::Deref for Thread<W> {
    type Target = Shared<W>;

    fn deref(&self) -> &Shared<W> {
        &self.shared
    }
}

impl<W: Work> Drop for Thread<W> {
    fn drop(&mut self) {
        let (stop, timeout) = W::on_drop(&self.shared);
        self.stop(stop, timeout);
    }
}

/// The thread's body: rounds until shutdown, then the last step. A bug in the exporter must
/// not leave callers waiting: whatever happens, the exporter ends stopped.
fn run<W: Work>(mut work: W, shared: &Shared<W>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut stop = None;
        loop {
            work.cycle(shared, stop.is_some());
            if let Some(stop) = stop {
                work.finish(shared, stop);
                return;
            }
            stop = shared.wait_for_work(&work);
        }
    }));
    if outcome.is_err() {
        shared.record_error(&format!(
            "the {} thread panicked; nothing more is sent",
            shared.settings.name
        ));
    }
    let mut st = shared.state();
    W::abandon(shared, &mut st.queue);
    st.stopped = true;
    st.flush_done = st.flush_requested;
    drop(st);
    shared.progress.notify_all();
}

/// Writes `; last error: {error}` when there is one: the end of every exporter's statistics
/// line.
pub fn write_last_error(f: &mut fmt::Formatter<'_>, last_error: Option<&str>) -> fmt::Result {
    match last_error {
        Some(error) => write!(f, "; last error: {error}"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[derive(Clone, Debug, Default, PartialEq)]
    struct Counts {
        sent: u64,
        lost: u64,
    }

    /// What the test thread saw: the stop values of its last step, and the deadlines of its
    /// pacers (with and without reserve) once stopping.
    #[derive(Default)]
    struct Seen {
        stops: Vec<u8>,
        deadlines: Option<(Option<Instant>, Option<Instant>)>,
    }

    /// Adds up queued numbers: 0 is a failure, -1 panics, -2 sleeps a minute on its pacer.
    struct Adder;

    impl Work for Adder {
        type Queue = VecDeque<i64>;
        type Stop = u8;
        type Counters = Counts;
        type Context = Mutex<Seen>;

        fn ready(&self, st: &State<Self>) -> bool {
            !st.queue.is_empty() || st.flush_pending()
        }

        fn cycle(&mut self, shared: &Shared<Self>, stopping: bool) {
            if stopping {
                let deadlines = (
                    shared.pacer(true).deadline(),
                    shared.pacer(false).deadline(),
                );
                lock(&shared.context).deadlines = Some(deadlines);
            }
            loop {
                let mut st = shared.state();
                let Some(n) = st.queue.pop_front() else {
                    let all = st.flush_requested();
                    shared.flushed(st, all);
                    return;
                };
                drop(st);
                match n {
                    -1 => panic!("a bug"),
                    -2 => shared.pacer(false).sleep(Duration::from_secs(60)),
                    0 => shared.record_error("refused: token s3cr3t-t0ken"),
                    n => shared.count(|c| c.sent += n as u64),
                }
            }
        }

        fn finish(&mut self, shared: &Shared<Self>, stop: u8) {
            lock(&shared.context).stops.push(stop);
        }

        fn abandon(shared: &Shared<Self>, queue: &mut VecDeque<i64>) {
            let left = queue.len() as u64;
            queue.clear();
            shared.count(|c| c.lost += left);
        }

        fn on_drop(_: &Shared<Self>) -> (u8, Duration) {
            (9, Duration::from_secs(5))
        }

        fn reserve(_: Duration) -> Duration {
            Duration::from_secs(1)
        }
    }

    fn start(warnings: &Arc<Mutex<Vec<String>>>) -> Thread<Adder> {
        let sink = warnings.clone();
        let settings = Settings {
            name: "test exporter",
            thread_name: "agent-profiler-test",
            subject: "Test export".to_owned(),
            stats: "Test::stats",
            warnings: true,
            warn_sink: Some(Arc::new(move |m: &str| lock(&sink).push(m.to_owned()))),
            redactor: Redactor::new(["s3cr3t-t0ken"]),
            interval: None,
        };
        Thread::spawn(Shared::new(settings, Mutex::default()), Adder).unwrap()
    }

    fn queue(thread: &Thread<Adder>, n: i64) {
        let mut st = thread.state();
        assert!(st.accepting());
        st.queue.push_back(n);
        thread.wake(st);
    }

    #[test]
    fn flush_waits_for_what_was_queued_and_shutdown_takes_the_last_step() {
        let warnings = Arc::default();
        let thread = start(&warnings);
        assert!(thread.flush(Duration::from_secs(10)), "nothing queued");
        for n in 1..=4 {
            queue(&thread, n);
        }
        assert!(thread.flush(Duration::from_secs(10)));
        assert_eq!(thread.counters(), Counts { sent: 10, lost: 0 });
        assert!(!thread.is_stopped());
        assert!(thread.stop(7, Duration::from_secs(10)));
        assert!(thread.is_stopped() && thread.state().stopped());
        assert!(thread.flush(Duration::ZERO), "stopped: nothing to wait for");
        assert!(thread.stop(8, Duration::from_secs(10)), "stopping again");
        let seen = lock(&thread.context);
        assert_eq!(seen.stops, [7], "one last step, with the first stop value");
        let (reserved, full) = seen.deadlines.unwrap();
        assert_eq!(full.unwrap() - reserved.unwrap(), Duration::from_secs(1));
        assert!(lock(&warnings).is_empty());
    }

    #[test]
    fn errors_are_kept_cleaned_and_warned_about_once() {
        let warnings = Arc::default();
        let thread = start(&warnings);
        queue(&thread, 0);
        queue(&thread, 0);
        assert!(thread.flush(Duration::from_secs(10)));
        assert_eq!(thread.last_error().unwrap(), "refused: token ***");
        let warned = lock(&warnings).clone();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].starts_with("Test export is failing: refused: token ***."));
        assert!(
            warned[0].ends_with("counted (Test::stats)."),
            "{}",
            warned[0]
        );
        ThreadPacer {
            shared: &**thread.shared(),
            reserve: false,
        }
        .on_retry(&"timed out with s3cr3t-t0ken");
        assert_eq!(
            thread.last_error().unwrap(),
            "timed out with *** (retrying)"
        );
    }

    #[test]
    fn a_panic_stops_the_exporter_and_what_is_left_is_counted() {
        let warnings = Arc::default();
        let thread = start(&warnings);
        {
            let mut st = thread.state();
            st.queue.extend([-1, 5, 6]);
            thread.wake(st);
        }
        assert!(thread.flush(Duration::from_secs(10)));
        assert!(thread.wait_for(Duration::from_secs(10), |_| false) || thread.is_stopped());
        assert_eq!(thread.counters(), Counts { sent: 0, lost: 2 });
        let error = thread.last_error().unwrap();
        assert!(error.contains("test exporter thread panicked"), "{error}");
        let mut st = thread.state();
        assert!(!st.accepting());
        st.queue.push_back(1);
    }

    #[test]
    fn shutdown_cuts_the_threads_waits_short() {
        let warnings = Arc::default();
        // Asked for while the thread sleeps: it wakes at once.
        let thread = start(&warnings);
        queue(&thread, -2);
        queue(&thread, 3);
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        assert!(thread.stop(1, Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(thread.counters().sent, 3);
        // Asked for before: the sleep ends at the deadline.
        let thread = start(&warnings);
        {
            let mut st = thread.state();
            st.shutdown = Some(Shutdown {
                stop: 1,
                deadline: Instant::now() + Duration::from_millis(300),
                reserve: Duration::ZERO,
            });
        }
        let started = Instant::now();
        thread.pacer(false).sleep(Duration::from_secs(60));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn dropping_the_handle_stops_the_thread() {
        let warnings = Arc::default();
        let thread = start(&warnings);
        let shared = thread.shared().clone();
        queue(&thread, 2);
        drop(thread);
        assert!(shared.state().stopped());
        assert_eq!(lock(&shared.context).stops, [9]);
        assert_eq!(shared.counters().sent, 2);
    }
}
