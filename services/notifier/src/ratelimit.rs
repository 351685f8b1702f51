//! Telegram's limits as a schedule: each message to a chat is given the earliest moment at
//! which sending it keeps every limit — one message per `per_chat_interval` to a chat,
//! `per_group_per_minute` to a group (negative chat id) in any 60 s, `overall_per_second` over
//! all chats in any second — and that moment is reserved before the caller sleeps until it,
//! so concurrent senders never overrun a limit together. A 429's `retry_after` pauses the chat
//! (and, as Telegram asks, the bot) until it has passed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use steward_config::TelegramRateLimits;
use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);
/// Windows are kept this much longer than Telegram's: a send that leaves a little after its
/// slot (the outbox write before it, the scheduler) still cannot crowd a window.
const MARGIN: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct State {
    /// Per chat: when its last message was (or will be) sent.
    last: HashMap<i64, Instant>,
    /// Per group: send times within the last minute.
    groups: HashMap<i64, VecDeque<Instant>>,
    /// All chats: send times within the last second.
    all: VecDeque<Instant>,
    /// Per chat and for the whole bot: no message before this.
    paused: HashMap<i64, Instant>,
    paused_all: Option<Instant>,
    /// What actually left: per chat the last, per group and overall the recent ones.
    sent_last: HashMap<i64, Instant>,
    sent_groups: HashMap<i64, VecDeque<Instant>>,
    sent_all: VecDeque<Instant>,
}

#[derive(Debug)]
pub struct RateLimiter {
    limits: TelegramRateLimits,
    state: Mutex<State>,
}

/// Whether one more send at `t` keeps at most `max` sends in every window of `len` that
/// contains `t`. Reservations need not come in time order (a chat's interval can push one
/// later than another chat's next), so windows on both sides of `t` are checked: the count in
/// a window only changes where a send enters or leaves it, so the windows starting just after
/// `t - len`, at each send in `(t - len, t]`, and ending at each send in `(t, t + len)` cover
/// every case.
fn fits(times: &VecDeque<Instant>, t: Instant, len: Duration, max: usize) -> bool {
    let near: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|&x| x + len > t && x < t + len)
        .collect();
    let count = |from_excl: Option<Instant>, from_incl: Option<Instant>, to: Instant| {
        near.iter()
            .filter(|&&x| {
                from_excl.is_none_or(|a| x > a) && from_incl.is_none_or(|a| x >= a) && x <= to
            })
            .count()
    };
    // (t - len, t]
    if count(t.checked_sub(len), None, t) + 1 > max {
        return false;
    }
    for &x in &near {
        let n = if x <= t {
            // [x, x + len)
            near.iter().filter(|&&y| y >= x && y < x + len).count()
        } else {
            // (x - len, x]
            count(x.checked_sub(len), None, x)
        };
        if n + 1 > max {
            return false;
        }
    }
    true
}

/// The earliest time ≥ `t` at which [`fits`] holds.
fn window_slot(times: &VecDeque<Instant>, t: Instant, len: Duration, max: usize) -> Instant {
    let mut t = t;
    loop {
        if fits(times, t, len, max) {
            return t;
        }
        // Move to the next moment a send leaves a window containing `t`.
        match times.iter().map(|&x| x + len).filter(|&y| y > t).min() {
            Some(next) => t = next,
            None => return t,
        }
    }
}

impl RateLimiter {
    pub fn new(limits: TelegramRateLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// Reserves the earliest slot for a message to `chat`; returns when it is.
    pub fn reserve(&self, chat: i64) -> Instant {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what can no longer constrain anything.
        while s.all.front().is_some_and(|&x| x + SECOND + MARGIN <= now) {
            s.all.pop_front();
        }
        if let Some(g) = s.groups.get_mut(&chat) {
            while g.front().is_some_and(|&x| x + MINUTE + MARGIN <= now) {
                g.pop_front();
            }
        }
        let mut t = now;
        if let Some(&p) = s.paused.get(&chat) {
            t = t.max(p);
        }
        if let Some(p) = s.paused_all {
            t = t.max(p);
        }
        if let Some(&last) = s.last.get(&chat) {
            t = t.max(last + self.limits.per_chat_interval);
        }
        let overall = self.limits.overall_per_second.max(1) as usize;
        let group = self.limits.per_group_per_minute.max(1) as usize;
        // Alternate until both windows agree on a time.
        loop {
            let mut next = window_slot(&s.all, t, SECOND + MARGIN, overall);
            if chat < 0 {
                let g = s.groups.entry(chat).or_default();
                next = window_slot(g, next, MINUTE + MARGIN, group);
            }
            if next == t {
                break;
            }
            t = next;
        }
        s.last.insert(chat, t);
        insert_sorted(&mut s.all, t);
        if chat < 0 {
            insert_sorted(s.groups.entry(chat).or_default(), t);
        }
        t
    }

    /// Waits for the next slot of `chat`; returns the slot, for [`RateLimiter::sending`].
    pub async fn acquire(&self, chat: i64) -> Instant {
        let at = self.reserve(chat);
        tokio::time::sleep_until(at).await;
        at
    }

    /// The last word before a message to `chat` leaves: whether sending it now keeps every
    /// limit, counting only messages that actually left (recorded by this call). The
    /// reservation spaced messages out; this catches one that left late (its outbox write
    /// waited, the scheduler was busy), which would otherwise crowd the next window. `Err`
    /// says when to ask again.
    pub fn confirm(&self, chat: i64) -> Result<(), Instant> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let overall = self.limits.overall_per_second.max(1) as usize;
        let group = self.limits.per_group_per_minute.max(1) as usize;
        while s
            .sent_all
            .front()
            .is_some_and(|&x| x + SECOND + MARGIN <= now)
        {
            s.sent_all.pop_front();
        }
        let mut not_before = now;
        if let Some(&last) = s.sent_last.get(&chat) {
            not_before = not_before.max(last + self.limits.per_chat_interval);
        }
        if let Some(p) = s
            .paused
            .get(&chat)
            .copied()
            .into_iter()
            .chain(s.paused_all)
            .max()
        {
            not_before = not_before.max(p);
        }
        if s.sent_all.len() >= overall {
            not_before = not_before.max(s.sent_all[s.sent_all.len() - overall] + SECOND + MARGIN);
        }
        if chat < 0 {
            let g = s.sent_groups.entry(chat).or_default();
            while g.front().is_some_and(|&x| x + MINUTE + MARGIN <= now) {
                g.pop_front();
            }
            if g.len() >= group {
                not_before = not_before.max(g[g.len() - group] + MINUTE + MARGIN);
            }
        }
        if not_before > now {
            return Err(not_before);
        }
        s.sent_all.push_back(now);
        s.sent_last.insert(chat, now);
        if chat < 0 {
            s.sent_groups.entry(chat).or_default().push_back(now);
        }
        Ok(())
    }

    /// Waits until [`RateLimiter::confirm`] lets a message to `chat` leave.
    pub async fn confirmed(&self, chat: i64) {
        while let Err(at) = self.confirm(chat) {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Telegram answered 429 with `retry_after`: nothing to this chat, nor from the bot,
    /// before it has passed.
    pub fn pause(&self, chat: i64, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let p = s.paused.entry(chat).or_insert(until);
        *p = (*p).max(until);
        s.paused_all = Some(s.paused_all.map_or(until, |x| x.max(until)));
        let last = s.last.entry(chat).or_insert(until);
        *last = (*last).max(until - self.limits.per_chat_interval.min(retry_after));
    }
}

fn insert_sorted(q: &mut VecDeque<Instant>, t: Instant) {
    let i = q.partition_point(|&x| x <= t);
    q.insert(i, t);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TelegramRateLimits {
        TelegramRateLimits::default()
    }

    fn max_in_window(times: &[Instant], len: Duration) -> usize {
        times
            .iter()
            .map(|&a| times.iter().filter(|&&b| b >= a && b < a + len).count())
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn one_chat_gets_one_message_per_second() {
        let r = RateLimiter::new(limits());
        let start = Instant::now();
        let slots: Vec<Instant> = (0..5).map(|_| r.reserve(7)).collect();
        for (i, s) in slots.iter().enumerate() {
            assert_eq!(*s - start, Duration::from_secs(i as u64));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overall_limit_holds_across_chats() {
        let r = RateLimiter::new(limits());
        let slots: Vec<Instant> = (0..200).map(|i| r.reserve(i)).collect();
        assert!(max_in_window(&slots, SECOND + MARGIN) <= 30);
        // 200 messages at 30 per 1.1 s: the last goes out after about 7 seconds, not later.
        let span = *slots.iter().max().unwrap() - *slots.iter().min().unwrap();
        assert!(
            span >= Duration::from_secs(6) && span < Duration::from_secs(8),
            "{span:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_gets_twenty_a_minute() {
        let r = RateLimiter::new(limits());
        let slots: Vec<Instant> = (0..45).map(|_| r.reserve(-100)).collect();
        assert!(max_in_window(&slots, MINUTE + MARGIN) <= 20);
        assert!(max_in_window(&slots, SECOND) <= 1);
        // The 21st waits for the first to leave the minute.
        assert!(slots[20] - slots[0] >= MINUTE);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_chat_and_the_bot() {
        let r = RateLimiter::new(limits());
        let start = Instant::now();
        r.reserve(1);
        r.pause(1, Duration::from_secs(5));
        assert!(r.reserve(1) - start >= Duration::from_secs(5));
        assert!(r.reserve(2) - start >= Duration::from_secs(5));
        r.acquire(3).await;
        assert!(Instant::now() - start >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn confirmation_counts_what_actually_left() {
        let r = RateLimiter::new(limits());
        let start = Instant::now();
        // 30 messages leave at once (their slots were spread, but they all left late).
        for chat in 0..30 {
            assert!(r.confirm(chat).is_ok());
        }
        // The 31st must wait until the first leaves the window, whatever its slot said.
        let at = r.confirm(30).unwrap_err();
        assert_eq!(at - start, SECOND + MARGIN);
        // The same chat twice within a second: the second waits.
        assert_eq!(r.confirm(0).unwrap_err() - start, SECOND + MARGIN);
        tokio::time::advance(SECOND + MARGIN).await;
        r.confirmed(30).await;
        assert!(
            r.confirm(0).is_ok(),
            "a window later, chat 0 may send again"
        );
    }
}
