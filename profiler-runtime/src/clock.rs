//! The clock of the call path: raw ticks, converted to time only when read.
//!
//! Where the kernel itself trusts the CPU's time-stamp counter (clocksource `tsc`, with
//! constant and non-stop TSC), a tick is one TSC increment and reading it is a single
//! `rdtsc`, about half the price of `Instant::now()`. Elsewhere a tick is a nanosecond of
//! `Instant`. Durations are stored in ticks and converted when a summary is built, with a
//! rate measured against `Instant` over the whole life of the process so far.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SOURCE_UNSET: u8 = 0;
const SOURCE_TSC: u8 = 1;
const SOURCE_INSTANT: u8 = 2;

static SOURCE: AtomicU8 = AtomicU8::new(SOURCE_UNSET);
static ANCHOR: OnceLock<Anchor> = OnceLock::new();
/// The TSC rate, fixed once enough time has passed for it to be precise.
static SETTLED_NS_PER_TICK: OnceLock<f64> = OnceLock::new();

/// The same instant seen by the three clocks, taken once per process.
struct Anchor {
    instant: Instant,
    ticks: u64,
    unix_ns: u64,
}

/// The clock the call path uses, chosen once per process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSource {
    /// The CPU's time-stamp counter, read with `rdtsc`.
    Tsc,
    /// `std::time::Instant` (the fallback where the TSC is not trustworthy).
    Instant,
}

impl ClockSource {
    /// `"tsc"` or `"instant"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClockSource::Tsc => "tsc",
            ClockSource::Instant => "instant",
        }
    }
}

/// Chooses the clock source and takes the anchor. Idempotent; called when the first analyzer
/// is created, which is before any tick can be read on the call path.
///
/// `AGENT_PROFILER_CLOCK=instant` forces the `Instant` fallback.
#[cold]
pub(crate) fn init() {
    ANCHOR.get_or_init(|| {
        let forced_instant = std::env::var("AGENT_PROFILER_CLOCK").is_ok_and(|v| v == "instant");
        let source = if !forced_instant && tsc_is_reliable() {
            SOURCE_TSC
        } else {
            SOURCE_INSTANT
        };
        SOURCE.store(source, Ordering::Relaxed);
        let instant = Instant::now();
        let ticks = if source == SOURCE_TSC { read_tsc() } else { 0 };
        Anchor {
            instant,
            ticks,
            unix_ns: unix_now_ns(),
        }
    });
}

/// The clock source in use (initialising it if nothing has yet).
pub fn source() -> ClockSource {
    init();
    if SOURCE.load(Ordering::Relaxed) == SOURCE_TSC {
        ClockSource::Tsc
    } else {
        ClockSource::Instant
    }
}

/// The current tick. Only meaningful after [`init`].
#[inline(always)]
pub(crate) fn now() -> u64 {
    if SOURCE.load(Ordering::Relaxed) == SOURCE_TSC {
        read_tsc()
    } else {
        instant_ticks()
    }
}

#[inline(always)]
fn read_tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions; `tsc_is_reliable` only returns true on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        instant_ticks()
    }
}

#[inline(never)]
fn instant_ticks() -> u64 {
    match ANCHOR.get() {
        Some(anchor) => saturating_nanos(anchor.instant.elapsed()),
        None => 0,
    }
}

fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, saturating_nanos)
}

/// The kernel only keeps `tsc` as its clocksource when the counter is synchronised across
/// CPUs and runs at a constant rate; that is the condition this clock relies on too.
fn tsc_is_reliable() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let clocksource =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    clocksource.trim() == "tsc" && cpu_flags_allow_tsc(&cpuinfo)
}

fn cpu_flags_allow_tsc(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("flags"))
        .is_some_and(|line| {
            let has = |flag: &str| line.split_whitespace().any(|w| w == flag);
            has("constant_tsc") && has("nonstop_tsc")
        })
}

/// Converts ticks to nanoseconds and to Unix time; taken once per summary so that every
/// figure in one summary uses the same rate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conversion {
    ns_per_tick: f64,
    anchor_ticks: u64,
    anchor_unix_ns: u64,
}

impl Conversion {
    /// The conversion in force now. In TSC mode this may wait up to 2 ms the first time,
    /// so that the rate is measured over a span long enough to be precise.
    pub(crate) fn current() -> Self {
        init();
        let anchor = ANCHOR.get().expect("init sets the anchor");
        let ns_per_tick = if SOURCE.load(Ordering::Relaxed) == SOURCE_TSC {
            tsc_ns_per_tick(anchor)
        } else {
            1.0
        };
        Self {
            ns_per_tick,
            anchor_ticks: anchor.ticks,
            anchor_unix_ns: anchor.unix_ns,
        }
    }

    /// A conversion for tests: `ns_per_tick` nanoseconds per tick, tick 0 at `anchor_unix_ns`.
    #[cfg(test)]
    pub(crate) fn fixed(ns_per_tick: f64, anchor_unix_ns: u64) -> Self {
        Self {
            ns_per_tick,
            anchor_ticks: 0,
            anchor_unix_ns,
        }
    }

    /// Ticks as whole nanoseconds.
    pub(crate) fn ticks_to_ns(&self, ticks: u64) -> u64 {
        if self.ns_per_tick == 1.0 {
            return ticks;
        }
        (ticks as f64 * self.ns_per_tick).round() as u64
    }

    /// Nanoseconds as whole ticks (saturating).
    pub(crate) fn ns_to_ticks(&self, ns: u128) -> u64 {
        let ticks = ns as f64 / self.ns_per_tick;
        if ticks >= u64::MAX as f64 {
            u64::MAX
        } else {
            ticks.round() as u64
        }
    }

    /// A tick reading as nanoseconds since the Unix epoch.
    pub(crate) fn tick_to_unix_ns(&self, tick: u64) -> u64 {
        let since_anchor = tick.wrapping_sub(self.anchor_ticks) as i64 as f64 * self.ns_per_tick;
        // The offset is rounded on its own and added as an integer: the sum in `f64` would
        // round every timestamp to 256 ns (the spacing of doubles near 1.8e18).
        self.anchor_unix_ns
            .saturating_add_signed(since_anchor.round() as i64)
    }
}

fn tsc_ns_per_tick(anchor: &Anchor) -> f64 {
    if let Some(settled) = SETTLED_NS_PER_TICK.get() {
        return *settled;
    }
    // Instant's jitter is tens of nanoseconds; over 2 ms that is a relative error near 1e-5.
    const MIN_SPAN: Duration = Duration::from_millis(2);
    const SETTLE_SPAN: Duration = Duration::from_millis(100);
    let waited = anchor.instant.elapsed();
    if waited < MIN_SPAN {
        std::thread::sleep(MIN_SPAN - waited);
    }
    let ticks = read_tsc();
    let elapsed = anchor.instant.elapsed();
    let rate = elapsed.as_nanos() as f64 / ticks.wrapping_sub(anchor.ticks).max(1) as f64;
    if elapsed >= SETTLE_SPAN {
        return *SETTLED_NS_PER_TICK.get_or_init(|| rate);
    }
    rate
}

/// Wall-clock time now, seconds since the Unix epoch (0 before 1970): the timestamps of
/// records (cost history, run records). Not for measuring calls: they use ticks.
pub fn now_unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_advance_with_real_time() {
        init();
        let conv_before = Conversion::current();
        let a = now();
        std::thread::sleep(Duration::from_millis(10));
        let b = now();
        let conv = Conversion::current();
        let ns = conv.ticks_to_ns(b - a);
        assert!(ns >= 10_000_000, "10 ms sleep measured as {ns} ns");
        assert!(ns < 5_000_000_000, "10 ms sleep measured as {ns} ns");
        assert!(conv_before.ns_per_tick > 0.0);
    }

    #[test]
    fn unix_time_of_a_tick_is_close_to_the_system_clock() {
        let conv = Conversion::current();
        let unix = conv.tick_to_unix_ns(now());
        let system = unix_now_ns();
        assert!(unix.abs_diff(system) < 1_000_000_000, "{unix} vs {system}");
    }

    #[test]
    fn fixed_conversion_scales_and_offsets() {
        let conv = Conversion::fixed(0.5, 1_000);
        assert_eq!(conv.ticks_to_ns(10), 5);
        assert_eq!(conv.tick_to_unix_ns(10), 1_005);
        let identity = Conversion::fixed(1.0, 0);
        assert_eq!(identity.ticks_to_ns(u64::MAX), u64::MAX);
    }

    #[test]
    fn cpu_flags_need_constant_and_nonstop_tsc() {
        assert!(cpu_flags_allow_tsc(
            "flags\t\t: fpu tsc constant_tsc nonstop_tsc\n"
        ));
        assert!(!cpu_flags_allow_tsc("flags\t\t: fpu tsc constant_tsc\n"));
        assert!(!cpu_flags_allow_tsc("model name: x\n"));
    }

    #[test]
    fn source_has_a_name() {
        assert!(matches!(source().as_str(), "tsc" | "instant"));
    }
}
