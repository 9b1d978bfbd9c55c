//! How long before an open-loop send the worker wakes from its timer, to spin the rest of the
//! way: the wake-up lateness this machine actually shows, learned from the worker's own wake-ups.
//!
//! A thread that sleeps until the intended send time sends late by however long the OS takes to
//! run it again (tens of µs on the reference VM, with a tail near 1 ms), and in open loop every
//! µs of that is charged to the server. So the worker sleeps until `margin` before the send and
//! spins (polling its sockets with a zero timeout) the rest. The margin is a high quantile of
//! the recent wake-up lateness plus a guard, measured at start ([`calibrate`]) and after every
//! timer wake during the run ([`Margin::woke`]), and bounded by [`MAX`] so that a loaded machine,
//! whose wake-ups are late by milliseconds, does not turn the generator into a full-time spinner:
//! it sends late instead, and the saturation rule says so.
//!
//! Deliberately not here: the timer itself ([`crate::timer`]) and what the worker does while it
//! spins. Allocation-free after [`Margin::new`] (one fixed array of 1 µs buckets, made at setup).

use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::worker::TIMER;
use crate::timer::Timer;

/// The smallest margin: a wake-up is never assumed to be faster than this.
pub(super) const MIN: Duration = Duration::from_micros(20);
/// The largest margin: beyond it the generator would spin most of every gap at moderate rates;
/// a machine this slow to wake a thread makes the run late, and the result says so.
pub(super) const MAX: Duration = Duration::from_micros(500);
/// The margin is capped at half the thread's mean gap between sends, but never below this: at
/// gaps under 200 µs the thread is busy most of the time anyway, and a wake-up (≈ 50 µs typical
/// on the reference VM) would make every send late.
pub(super) const HALF_GAP_FLOOR: Duration = Duration::from_micros(100);
/// Added to the learned quantile: the spin needs a few µs to notice the time and send.
const GUARD: Duration = Duration::from_micros(10);
/// The quantile of wake-up lateness the margin covers. p99.9, not p99: with a margin at the
/// p99, one timer wake-up in a hundred is later than the margin by construction, and the send
/// lag's p99 sat right at the edge (measured, 50 × 64 B against `serve epoll`, interleaved: at
/// 1,000 req/s send lag p99 8–64 µs with the p99 margin, 3 µs with the p99.9 one, for 14 % →
/// 48 % of a core).
const QUANTILE: f64 = 0.999;
/// Lateness buckets of 1 µs; the last one holds everything from `BUCKETS - 1` µs up.
const BUCKETS: usize = 1024;
/// The margin is recomputed after this many wake-ups.
const UPDATE_EVERY: u32 = 32;
/// Wake-ups per window. The margin is the quantile over the current window and the one before
/// it (2,048 to 4,096 wake-ups: a few in the p99.9), so a spell of load is forgotten after at
/// most two windows (halving every bucket instead kept a loaded spell's tail above the p99.9
/// for eight halvings, ≈ 16,000 wake-ups: 16 s at 1,000 req/s).
const WINDOW: u32 = 2048;

/// The learned margin and the recent wake-up lateness it comes from.
pub(super) struct Margin {
    /// Lateness counts of the window being filled, and of the one before it.
    current: Box<[u32; BUCKETS]>,
    previous: Box<[u32; BUCKETS]>,
    in_current: u32,
    in_previous: u32,
    since_update: u32,
    margin: Duration,
}

impl Margin {
    /// No samples yet: the largest margin until some arrive.
    pub(super) fn new() -> Self {
        Self {
            current: Box::new([0; BUCKETS]),
            previous: Box::new([0; BUCKETS]),
            in_current: 0,
            in_previous: 0,
            since_update: 0,
            margin: MAX,
        }
    }

    /// How long before a send to wake, for a thread whose mean gap between sends is `gap`:
    /// never more than half of it (above [`HALF_GAP_FLOOR`]). A thread that never sleeps is a
    /// CPU hog to the scheduler and, on a shared core, is preempted for whole slices (ms): the
    /// very lateness the spin is for. This also bounds the spin's CPU to about half a core.
    pub(super) fn for_gap(&self, gap: Duration) -> Duration {
        self.margin.min((gap / 2).max(HALF_GAP_FLOOR))
    }

    /// A timer armed for `deadline` woke the thread at `now`.
    pub(super) fn woke(&mut self, deadline: Instant, now: Instant) {
        let late = now.saturating_duration_since(deadline).as_micros();
        let b = usize::try_from(late).unwrap_or(usize::MAX).min(BUCKETS - 1);
        self.current[b] += 1;
        self.in_current += 1;
        self.since_update += 1;
        if self.since_update >= UPDATE_EVERY {
            self.update();
        }
        if self.in_current >= WINDOW {
            // The oldest window goes; no allocation (the two arrays swap, one is cleared).
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.fill(0);
            self.in_previous = self.in_current;
            self.in_current = 0;
        }
    }

    /// Recompute the margin from the two windows.
    fn update(&mut self) {
        self.since_update = 0;
        let count = self.in_current + self.in_previous;
        if count == 0 {
            return;
        }
        let want = (f64::from(count) * QUANTILE).ceil() as u32;
        let mut seen = 0;
        let mut at = BUCKETS - 1;
        for (i, (a, b)) in self.current.iter().zip(self.previous.iter()).enumerate() {
            seen += a + b;
            if seen >= want {
                at = i;
                break;
            }
        }
        // The bucket's upper edge: a sample in bucket i was late by less than i + 1 µs.
        let q = Duration::from_micros(at as u64 + 1);
        self.margin = (q + GUARD).clamp(MIN, MAX);
    }
}

/// What an open-loop worker with a precise timer does until its next send.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Poll the sockets without sleeping: the send is within the margin.
    Spin,
    /// Arm the timer this far ahead, then sleep in the poll.
    Timer(Duration),
}

/// The next send is `until_send` away, the margin is `margin`, and the loop's own next deadline
/// (its tick, the interval's end, the run's end) is `timeout` away. The timer is armed for the
/// earlier of the two deadlines, never the poll's own timeout: `epoll_wait` counts whole
/// milliseconds and rounds up, so a 300 µs timeout sleeps 1 ms, and leaving the loop's deadline
/// to it made about one send in a hundred 500–700 µs late at 2,000 req/s (the loop ticks every
/// 10 ms; measured on the reference VM: send lag p99 671 µs before, 2–3 µs after).
pub(super) fn wait(until_send: Duration, margin: Duration, timeout: Duration) -> Wait {
    if until_send <= margin {
        Wait::Spin
    } else {
        Wait::Timer((until_send - margin).min(timeout))
    }
}

/// How long an open-loop worker's next poll may sleep when its next send is `until_send` away
/// (at `now`) and its loop's own next deadline `timeout` away, and whether to yield the CPU if
/// that poll returns nothing. With a precise `timer`: sleep until the margin before the send,
/// then spin (polling the sockets with a zero timeout, so echoes are read on time too) the rest
/// of the way; the margin is at most half the `gap` ([`Margin::for_gap`] says why). Without
/// one: sleep whole milliseconds only (poll rounds up), then spin, yielding when a poll found
/// nothing. The spin before a timed send does not yield: handing the core to another thread
/// there is exactly how a send comes out a scheduler slice late. Shared by the TCP and the UDP
/// worker, so both keep the schedule the same way.
pub(super) fn sleep_before_send(
    until_send: Duration,
    now: Instant,
    timeout: Duration,
    timer: Option<&mut Timer>,
    margin: &Margin,
    gap: Duration,
) -> (Duration, bool) {
    if let Some(t) = timer {
        match wait(until_send, margin.for_gap(gap), timeout) {
            Wait::Spin => return (Duration::ZERO, false),
            Wait::Timer(after) => {
                if t.arm(now + after, after) {
                    return (timeout, false);
                }
            }
        }
    }
    if until_send < timeout {
        let ms = Duration::from_millis(until_send.as_millis() as u64);
        return (ms, ms.is_zero());
    }
    (timeout, false)
}

/// A worker's send timer and margin, made at set-up: with a positive `rate` (req/s) and no
/// `busy_poll`, a precise timer registered on `poll` under [`TIMER`] (`None` where this OS has
/// none) and a margin [`calibrate`]d on this thread; otherwise no timer and [`Margin::new`]'s.
/// A busy-polling worker never sleeps, so it needs neither: it polls with a zero timeout and
/// checks the schedule on every turn. Called after pinning and the timer slack, so the
/// calibration measures the wake-ups the run will have. Shared by the TCP and the UDP worker.
pub(super) fn send_timer(
    poll: &Poll,
    rate: Option<f64>,
    busy_poll: bool,
) -> (Option<Timer>, Margin) {
    let timer = match rate {
        Some(r) if r > 0.0 && !busy_poll => Timer::new(poll.registry(), TIMER),
        _ => None,
    };
    let margin = match timer {
        Some(_) => calibrate(),
        None => Margin::new(),
    };
    (timer, margin)
}

/// After a poll: if it returned because the send `timer` fired (a [`TIMER`] event among
/// `events`), teach `margin` how late that wake-up was. Nothing without a timer or with none
/// armed. Shared by the TCP and the UDP worker.
pub(super) fn after_poll(timer: Option<&Timer>, margin: &mut Margin, events: &Events) {
    if let Some(deadline) = timer.and_then(Timer::armed_for)
        && events.iter().any(|e| e.token() == TIMER)
    {
        margin.woke(deadline, Instant::now());
    }
}

/// Wake-ups measured before the run, on a scratch poller so no event of a real connection is
/// consumed: sleeps of 50–250 µs, the gaps of the rates where lateness hurts most. Enough that
/// one outlier is not the p99.9 (with 64 it was, and pinned the margin at [`MAX`]), few enough
/// to take about 0.2 s.
const CALIBRATION: u32 = 1000;

/// A margin learned from [`CALIBRATION`] timer wake-ups of this thread, or [`Margin::new`]'s if
/// there is no precise timer here (then the worker spins the last millisecond anyway).
pub(super) fn calibrate() -> Margin {
    let mut m = Margin::new();
    const TOKEN: Token = Token(0);
    let Ok(mut poll) = Poll::new() else {
        return m;
    };
    let Some(mut timer) = Timer::new(poll.registry(), TOKEN) else {
        return m;
    };
    let mut events = Events::with_capacity(4);
    for i in 0..CALIBRATION {
        let after = Duration::from_micros(50 + u64::from(i % 5) * 50);
        let deadline = Instant::now() + after;
        if !timer.arm(deadline, after) {
            return Margin::new();
        }
        // Bounded: a timer that never fires ends the calibration, not the thread.
        let mut woke = false;
        for _ in 0..20 {
            if poll
                .poll(&mut events, Some(Duration::from_millis(10)))
                .is_ok()
                && events.iter().any(|e| e.token() == TOKEN)
            {
                woke = true;
                break;
            }
        }
        if !woke {
            return Margin::new();
        }
        m.woke(deadline, Instant::now());
    }
    m.update();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(lateness_us: impl IntoIterator<Item = u64>) -> Margin {
        let mut m = Margin::new();
        let t = Instant::now();
        for l in lateness_us {
            m.woke(t, t + Duration::from_micros(l));
        }
        m.update();
        m
    }

    #[test]
    fn the_margin_covers_the_99_9th_percentile_of_wake_up_lateness_plus_a_guard() {
        // 999 wake-ups 40 µs late and one 300 µs late: p99.9 is 40 µs, margin 41 + 10.
        let m = fed(std::iter::repeat_n(40, 999).chain([300]));
        assert_eq!(m.margin, Duration::from_micros(51));
        // Two in a thousand at 300 µs: the tail is now the p99.9.
        let m = fed(std::iter::repeat_n(40, 998).chain([300, 300]));
        assert_eq!(m.margin, Duration::from_micros(311));
    }

    #[test]
    fn the_margin_is_bounded_both_ways() {
        assert_eq!(fed(std::iter::repeat_n(0, 100)).margin, MIN);
        // A loaded machine, wake-ups milliseconds late: spin at most MAX, send late, say so.
        assert_eq!(fed(std::iter::repeat_n(5_000, 100)).margin, MAX);
        assert_eq!(Margin::new().margin, MAX, "no samples: assume the worst");
    }

    #[test]
    fn the_margin_never_spins_more_than_half_the_gap_above_the_floor() {
        let m = fed(std::iter::repeat_n(5_000, 100)); // MAX
        assert_eq!(m.for_gap(Duration::from_millis(10)), MAX); // 100 req/s
        assert_eq!(
            m.for_gap(Duration::from_micros(500)),
            Duration::from_micros(250)
        );
        assert_eq!(m.for_gap(Duration::from_micros(50)), HALF_GAP_FLOOR);
        let quiet = fed(std::iter::repeat_n(30, 100));
        assert_eq!(
            quiet.for_gap(Duration::from_micros(50)),
            Duration::from_micros(41)
        );
    }

    #[test]
    fn old_wake_ups_fade_and_the_margin_follows_the_machine() {
        // A loaded spell, then quiet: the margin comes back down within two windows.
        let mut m = fed(std::iter::repeat_n(400, 1000));
        assert_eq!(m.margin, Duration::from_micros(411));
        let t = Instant::now();
        for _ in 0..WINDOW {
            m.woke(t, t + Duration::from_micros(30));
        }
        assert_eq!(
            m.margin,
            Duration::from_micros(411),
            "the spell is still in the windows"
        );
        for _ in 0..WINDOW {
            m.woke(t, t + Duration::from_micros(30));
        }
        assert_eq!(m.margin, Duration::from_micros(41));
    }

    #[test]
    fn the_timer_wakes_for_the_loops_own_deadline_too_not_the_polls_millisecond_timeout() {
        let us = Duration::from_micros;
        // The send is 400 µs away, the margin 100 µs: sleep 300 µs on the timer.
        assert_eq!(wait(us(400), us(100), us(10_000)), Wait::Timer(us(300)));
        // The loop's tick comes first (120 µs): the timer is armed for it, so the poll does
        // not sleep its own rounded-up millisecond past the send.
        assert_eq!(wait(us(400), us(100), us(120)), Wait::Timer(us(120)));
        // Within the margin: spin.
        assert_eq!(wait(us(100), us(100), us(10_000)), Wait::Spin);
        assert_eq!(wait(us(30), us(100), us(0)), Wait::Spin);
    }

    #[test]
    fn calibration_ends_with_a_margin_in_bounds() {
        // Not a speed claim: whatever this machine's wake-ups, the margin is within its bounds,
        // and calibration ends (200 sleeps of at most 250 µs, each wait bounded).
        let t = Instant::now();
        let m = calibrate();
        assert!((MIN..=MAX).contains(&m.margin), "{:?}", m.margin);
        assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    }
}
