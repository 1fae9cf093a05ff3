//! Copies served from memory without weakening revocation: the one rule
//! every cache of this server follows, written once.
//!
//! A copy may answer a request only while the event bus proves that every
//! event that could make it wrong reaches this instance:
//! - the bus is healthy (its heartbeat came back) and hears other
//!   processes (never over the in-process bus of SQLite, which a
//!   `blogql create-admin` beside the server cannot reach);
//! - the copy was loaded in the bus' current generation (every gap bumps
//!   it, so nothing loaded before one is trusted after it);
//! - no invalidation arrived while the copy was being loaded: a load takes
//!   a [`Ticket`](crate::cache::Ticket) before it reads the store, and its copy is kept only if
//!   nothing was forgotten since (an ending that crossed the read wins);
//! - it is younger than `max_age`, a bound on an event lost to a crash of
//!   the instance that had to send it.
//!
//! Bounded in entries and in bytes: a full cache drops its oldest half.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::events::Events;

/// How long a copy is trusted at most, events or not: what an event lost
/// to a crash (or a change no trigger announces, such as a session deleted
/// by hand in Redis) can cost. Each session and token is read again this
/// often: nothing, next to the requests it answers.
pub const TRUSTED_FOR: Duration = Duration::from_secs(5);

/// The bounds of one cache.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub entries: usize,
    pub bytes: usize,
    /// How long a copy is trusted at most, events or not.
    pub max_age: Duration,
}

/// Values that say how much memory they hold (roughly: their heap bytes
/// and their own size), so that a cache can be bounded in bytes.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// A cache of `V` by `K`, trusted only as this module says.
pub struct Cache<K, V> {
    events: Events,
    bounds: Bounds,
    /// Off over a bus that cannot hear other processes.
    enabled: bool,
    state: Mutex<State<K, V>>,
}

struct State<K, V> {
    entries: HashMap<K, Entry<V>>,
    bytes: usize,
    /// Bumped by every invalidation: a load that began before one keeps
    /// nothing.
    forgotten: u64,
}

struct Entry<V> {
    value: V,
    owner: i64,
    weight: usize,
    generation: u64,
    loaded_at: Instant,
}

/// Taken before a load reads the store; what it loaded is kept only if
/// nothing was forgotten and no gap happened since.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    forgotten: u64,
    generation: u64,
}

impl<K: Hash + Eq + Weigh, V: Clone + Weigh> Cache<K, V> {
    /// An empty cache whose copies `events` vouches for.
    pub fn new(events: &Events, bounds: Bounds) -> Self {
        Self {
            events: events.clone(),
            bounds,
            enabled: events.hears_other_processes(),
            state: Mutex::new(State {
                entries: HashMap::new(),
                bytes: 0,
                forgotten: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<K, V>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The copy under `key`, if one may answer now.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.enabled || !self.events.healthy() {
            return None;
        }
        let generation = self.events.generation_now();
        let state = self.state();
        let entry = state.entries.get(key)?;
        let trusted =
            entry.generation == generation && entry.loaded_at.elapsed() < self.bounds.max_age;
        trusted.then(|| entry.value.clone())
    }

    /// A ticket for a load about to read the store.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.events.generation_now(),
            forgotten: self.state().forgotten,
        }
    }

    /// Keeps `value` (of user `owner`) under `key`, unless something was
    /// forgotten or the bus had a gap since `ticket` was taken.
    pub fn put(&self, ticket: Ticket, key: K, owner: i64, value: V) {
        if !self.enabled {
            return;
        }
        let weight = key.weight() + value.weight();
        let mut state = self.state();
        if state.forgotten != ticket.forgotten
            || self.events.generation_now() != ticket.generation
            || weight > self.bounds.bytes
        {
            return;
        }
        while !state.entries.is_empty()
            && (state.entries.len() >= self.bounds.entries
                || state.bytes + weight > self.bounds.bytes)
        {
            state.drop_oldest_half();
        }
        let entry = Entry {
            value,
            owner,
            weight,
            generation: ticket.generation,
            loaded_at: Instant::now(),
        };
        state.bytes += weight;
        if let Some(old) = state.entries.insert(key, entry) {
            state.bytes -= old.weight;
        }
    }

    /// Forgets the copy under `key`.
    pub fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut state = self.state();
        state.forgotten += 1;
        if let Some(old) = state.entries.remove(key) {
            state.bytes -= old.weight;
        }
    }

    /// Forgets every copy.
    pub fn forget_all(&self) {
        let mut state = self.state();
        state.forgotten += 1;
        state.entries.clear();
        state.bytes = 0;
    }

    /// Whether copies are kept at all (not over SQLite's in-process bus).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Forgets every copy that belongs to user `owner`.
    pub fn forget_owner(&self, owner: i64) {
        let mut state = self.state();
        state.forgotten += 1;
        state.retain(|entry| entry.owner != owner);
    }
}

impl<K: Hash + Eq, V> State<K, V> {
    fn retain(&mut self, mut keep: impl FnMut(&Entry<V>) -> bool) {
        let mut freed = 0;
        self.entries.retain(|_, entry| {
            let kept = keep(entry);
            if !kept {
                freed += entry.weight;
            }
            kept
        });
        self.bytes -= freed;
    }

    /// Makes room: the older half goes (a cache this full is churning, and
    /// a copy is cheap to load again).
    fn drop_oldest_half(&mut self) {
        if self.entries.is_empty() {
            return;
        }
        let mut ages: Vec<Instant> = self.entries.values().map(|e| e.loaded_at).collect();
        let middle = ages.len() / 2;
        let (_, &mut cut, _) = ages.select_nth_unstable(middle);
        self.retain(|entry| entry.loaded_at > cut);
    }
}

impl Weigh for String {
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.capacity()
    }
}

impl<T: Weigh> Weigh for Option<T> {
    fn weight(&self) -> usize {
        self.as_ref()
            .map_or(std::mem::size_of::<Self>(), Weigh::weight)
    }
}
