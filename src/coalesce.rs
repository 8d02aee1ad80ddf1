//! Single-flight request coalescing: at most one fetch per key is in flight at a time.
//!
//! The first caller for a key becomes the *leader* and runs its fetch; callers that arrive while the
//! fetch is in flight *wait* and are woken the moment it settles (a `tokio::sync::watch` channel per
//! flight, never polling). Every way a flight can end is an [`Outcome`], following pingora's cache lock
//! checklist:
//!
//! | pingora `LockStatus` | here |
//! |---|---|
//! | done | [`Outcome::Led`] for the leader, [`Outcome::Joined`] for waiters |
//! | transient error | [`Outcome::Failed`]: waiters share the leader's error instead of stampeding |
//! | give up (not shareable) | [`Outcome::Uncacheable`]: waiters run their own fetch |
//! | dangling leader | hand-over: one waiter becomes the new leader, the others wait on it |
//! | wait timeout | [`Outcome::TimedOut`] |
//!
//! This module owns the in-flight map and nothing else: it is not a cache (a key is forgotten the
//! moment its fetch settles), it does no IO of its own, and it holds no lock across an `.await` (the
//! map is behind a `std::sync::Mutex` touched only by short synchronous sections).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// What a fetch produced: whether its value may be handed to the callers waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched<V> {
    /// The value may be shared with every caller waiting on this fetch.
    Shared(V),
    /// The value belongs to this caller only (e.g. `Cache-Control: no-store` or `private`): waiters
    /// are told to fetch on their own.
    Private(V),
}

/// How one call of [`Coalescer::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<V, E> {
    /// This call led the fetch and it succeeded with a shareable value.
    Led(V),
    /// Waited on another caller's fetch, which succeeded: the shared value, and how long the wait took.
    Joined { value: V, waited: Duration },
    /// The leading fetch failed. Waiters get the leader's error instead of fetching themselves, so a
    /// failing origin sees one request per key, not a herd. `led` tells whether this call ran the fetch.
    Failed { error: E, led: bool, waited: Duration },
    /// The leader's answer may not be shared. `fetched` is this caller's own fetch result: the leader's
    /// (`led == true`), or the one a waiter ran after being told to fetch on its own (`led == false`);
    /// `waited` is the time spent waiting before that.
    Uncacheable { fetched: Result<V, E>, led: bool, waited: Duration },
    /// Waited longer than the wait timeout for another caller's fetch: the caller answers 504. The
    /// fetch itself goes on and still serves the callers that wait on it.
    TimedOut { waited: Duration },
}

impl<V, E> Outcome<V, E> {
    /// Time this call spent waiting on other callers' fetches (zero for a leader that never waited).
    pub fn waited(&self) -> Duration {
        match self {
            Outcome::Led(_) => Duration::ZERO,
            Outcome::Joined { waited, .. }
            | Outcome::Failed { waited, .. }
            | Outcome::Uncacheable { waited, .. }
            | Outcome::TimedOut { waited } => *waited,
        }
    }
}

/// Single-flight coalescer keyed by `K` (for the proxy: resource and canonical request).
///
/// Cloning is cheap and clones share the same in-flight map.
pub struct Coalescer<K, V, E> {
    inner: Arc<Inner<K, V, E>>,
}

struct Inner<K, V, E> {
    flights: Mutex<Flights<K, V, E>>,
}

struct Flights<K, V, E> {
    map: HashMap<K, Flight<V, E>>,
    /// Tells flights of the same key apart, so that a leader only ever removes its own entry.
    next_id: u64,
}

struct Flight<V, E> {
    id: u64,
    tx: watch::Sender<State<V, E>>,
}

/// What a flight's channel carries: `Pending` until the flight settles, then exactly one final state.
enum State<V, E> {
    Pending,
    Shared(V),
    Failed(E),
    Private,
    /// The leader went away without an answer (its future was dropped, or its fetch panicked).
    Abandoned,
}

/// What a waiter learned from the flight it waited on.
enum Waited<V, E> {
    Shared(V),
    Failed(E),
    Private,
    Abandoned,
    TimedOut,
}

enum Role<K: Hash + Eq, V, E> {
    Leader(LeaderGuard<K, V, E>),
    Waiter(watch::Receiver<State<V, E>>),
}

impl<K, V, E> Coalescer<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
    E: Clone,
{
    /// An empty coalescer.
    pub fn new() -> Self {
        Coalescer {
            inner: Arc::new(Inner { flights: Mutex::new(Flights { map: HashMap::new(), next_id: 0 }) }),
        }
    }

    /// Runs `fetch` at most once per key at a time and shares its result with the callers that arrive
    /// while it is in flight.
    ///
    /// `wait_timeout` bounds the time spent waiting on *another* caller's fetch (across hand-overs); it
    /// does not bound this caller's own fetch, which the upstream client times out by itself. `fetch`
    /// is called at most once: by the leader, by a waiter that takes over from a dropped leader, or by
    /// a waiter whose leader's answer was [`Fetched::Private`].
    ///
    /// Cancel-safe: dropping the future of a waiter just stops its wait; dropping the leader's future
    /// hands the flight over to one of its waiters.
    pub async fn run<F, Fut>(&self, key: K, wait_timeout: Duration, fetch: F) -> Outcome<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched<V>, E>>,
    {
        let start = Instant::now();
        // `None` for a timeout too large to represent: wait as long as the fetch takes.
        let deadline = start.checked_add(wait_timeout);
        // Time spent waiting on other callers' fetches so far: zero unless this call takes over.
        let mut waited = Duration::ZERO;
        loop {
            let rx = match self.join_or_lead(&key) {
                Role::Leader(guard) => return lead(guard, fetch, waited).await,
                Role::Waiter(rx) => rx,
            };
            match wait(rx, deadline).await {
                Waited::Shared(value) => return Outcome::Joined { value, waited: start.elapsed() },
                Waited::Failed(error) => {
                    return Outcome::Failed { error, led: false, waited: start.elapsed() }
                }
                Waited::Private => {
                    let waited = start.elapsed();
                    let fetched = fetch().await.map(|f| match f {
                        Fetched::Shared(v) | Fetched::Private(v) => v,
                    });
                    return Outcome::Uncacheable { fetched, led: false, waited };
                }
                Waited::TimedOut => return Outcome::TimedOut { waited: start.elapsed() },
                // The leader's entry is already gone: going round again makes the first waiter to
                // get the lock the new leader and the others its waiters.
                Waited::Abandoned => waited = start.elapsed(),
            }
        }
    }

    /// Number of keys whose fetch is currently in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().map.len()
    }

    /// Number of callers currently waiting on the in-flight fetch of `key` (the leader not counted).
    pub fn waiting(&self, key: &K) -> usize {
        self.lock().map.get(key).map_or(0, |flight| flight.tx.receiver_count())
    }

    /// Joins the key's flight, or opens one and leads it. One short critical section, no `.await`.
    fn join_or_lead(&self, key: &K) -> Role<K, V, E> {
        let mut flights = self.lock();
        if let Some(flight) = flights.map.get(key) {
            return Role::Waiter(flight.tx.subscribe());
        }
        let id = flights.next_id;
        flights.next_id = flights.next_id.wrapping_add(1);
        // The initial receiver is dropped at once, so `receiver_count` counts waiters only;
        // `send_replace` works without receivers.
        let (tx, _) = watch::channel(State::Pending);
        flights.map.insert(key.clone(), Flight { id, tx });
        Role::Leader(LeaderGuard { inner: Arc::clone(&self.inner), key: key.clone(), id, settled: false })
    }

    fn lock(&self) -> MutexGuard<'_, Flights<K, V, E>> {
        self.inner.lock()
    }
}

impl<K, V, E> Inner<K, V, E> {
    fn lock(&self) -> MutexGuard<'_, Flights<K, V, E>> {
        // No critical section can leave the map half-updated, so a poisoned lock is still consistent.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the leader's fetch and publishes its result. The guard publishes `Abandoned` if this future
/// is dropped (or the fetch panics) before the fetch settles.
async fn lead<K, V, E, F, Fut>(guard: LeaderGuard<K, V, E>, fetch: F, waited: Duration) -> Outcome<V, E>
where
    K: Hash + Eq,
    V: Clone,
    E: Clone,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Fetched<V>, E>>,
{
    match fetch().await {
        Ok(Fetched::Shared(value)) => {
            guard.settle(State::Shared(value.clone()));
            Outcome::Led(value)
        }
        Ok(Fetched::Private(value)) => {
            guard.settle(State::Private);
            Outcome::Uncacheable { fetched: Ok(value), led: true, waited }
        }
        Err(error) => {
            guard.settle(State::Failed(error.clone()));
            Outcome::Failed { error, led: true, waited }
        }
    }
}

/// Waits until the flight settles or the deadline passes.
async fn wait<V: Clone, E: Clone>(
    mut rx: watch::Receiver<State<V, E>>,
    deadline: Option<Instant>,
) -> Waited<V, E> {
    let settled = rx.wait_for(|state| !matches!(state, State::Pending));
    let result = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, settled).await {
            Ok(result) => result,
            Err(_) => return Waited::TimedOut,
        },
        None => settled.await,
    };
    match result {
        // The state is cloned out at once: the borrow holds the channel's read lock.
        Ok(state) => match &*state {
            State::Shared(value) => Waited::Shared(value.clone()),
            State::Failed(error) => Waited::Failed(error.clone()),
            State::Private => Waited::Private,
            State::Pending | State::Abandoned => Waited::Abandoned,
        },
        // The sender went away without a final state; only possible if a guard was leaked. Treat it
        // like a dropped leader rather than wait for nothing.
        Err(_) => Waited::Abandoned,
    }
}

/// Owned by the leader while its fetch runs; removes the flight's entry exactly once, when the fetch
/// settles or, on drop, when the leader goes away without an answer.
struct LeaderGuard<K: Hash + Eq, V, E> {
    inner: Arc<Inner<K, V, E>>,
    key: K,
    id: u64,
    settled: bool,
}

impl<K: Hash + Eq, V, E> LeaderGuard<K, V, E> {
    fn settle(mut self, state: State<V, E>) {
        self.settled = true;
        self.publish(state);
    }

    fn publish(&self, state: State<V, E>) {
        // Remove under the lock, publish after it: a caller that subscribed before the removal gets
        // the final state (a watch keeps its latest value), one that comes after starts a new flight.
        // The id check keeps a stale leader from removing a newer flight of the same key.
        let flight = {
            let mut flights = self.inner.lock();
            match flights.map.get(&self.key) {
                Some(flight) if flight.id == self.id => flights.map.remove(&self.key),
                _ => None,
            }
        };
        if let Some(flight) = flight {
            flight.tx.send_replace(state);
        }
    }
}

impl<K: Hash + Eq, V, E> Drop for LeaderGuard<K, V, E> {
    fn drop(&mut self) {
        if !self.settled {
            self.publish(State::Abandoned);
        }
    }
}

impl<K, V, E> Clone for Coalescer<K, V, E> {
    fn clone(&self) -> Self {
        Coalescer { inner: Arc::clone(&self.inner) }
    }
}

impl<K, V, E> Default for Coalescer<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
    E: Clone,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, E> fmt::Debug for Coalescer<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer").field("in_flight", &self.inner.lock().map.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{Barrier, Notify};

    type C = Coalescer<&'static str, u32, String>;

    const LONG: Duration = Duration::from_secs(3600);

    /// Yields until `cond` holds: lets spawned tasks reach their waiting point without sleeping.
    async fn until(cond: impl Fn() -> bool) {
        while !cond() {
            tokio::task::yield_now().await;
        }
    }

    /// A leader for `key` whose fetch gives `value` once released, already in flight.
    async fn blocked_leader(
        c: &C,
        key: &'static str,
        value: u32,
    ) -> (tokio::task::JoinHandle<Outcome<u32, String>>, Arc<Notify>) {
        let release = Arc::new(Notify::new());
        let leader = {
            let (c, release) = (c.clone(), Arc::clone(&release));
            tokio::spawn(async move {
                c.run(key, LONG, || async move {
                    release.notified().await;
                    Ok(Fetched::Shared(value))
                })
                .await
            })
        };
        until(|| c.in_flight() == 1).await;
        (leader, release)
    }

    /// A caller that joins the flight of `key`, already waiting on it.
    async fn joined_waiter(c: &C, key: &'static str) -> tokio::task::JoinHandle<Outcome<u32, String>> {
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.run(key, LONG, || async { unreachable!("joins") }).await })
        };
        until(|| c.waiting(&key) == 1).await;
        waiter
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_herd_of_1000_fetches_once() {
        const N: usize = 1000;
        let c = C::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let barrier = Arc::new(Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let (c, fetches, release, barrier) =
                    (c.clone(), Arc::clone(&fetches), Arc::clone(&release), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    c.run("map", LONG, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok(Fetched::Shared(7))
                    })
                    .await
                })
            })
            .collect();
        until(|| c.waiting(&"map") == N - 1).await;
        assert_eq!(c.in_flight(), 1);
        release.notify_one();
        let (mut led, mut joined) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Outcome::Led(7) => led += 1,
                Outcome::Joined { value: 7, .. } => joined += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((led, joined), (1, N - 1));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn different_keys_fetch_concurrently() {
        let c = C::new();
        // Each fetch waits for the other to start: this only finishes if both are in flight at once.
        let both = Arc::new(Barrier::new(2));
        let run = |key, value| {
            let (c, both) = (c.clone(), Arc::clone(&both));
            tokio::spawn(async move {
                c.run(key, LONG, || async move {
                    both.wait().await;
                    Ok(Fetched::Shared(value))
                })
                .await
            })
        };
        let (a, b) = (run("a", 1), run("b", 2));
        assert_eq!(a.await.unwrap(), Outcome::Led(1));
        assert_eq!(b.await.unwrap(), Outcome::Led(2));
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_shared_not_retried_by_each_waiter() {
        let c = C::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (c, fetches, release) = (c.clone(), Arc::clone(&fetches), Arc::clone(&release));
                tokio::spawn(async move {
                    c.run("ecs", LONG, || async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Err("origin said 502".to_string())
                    })
                    .await
                })
            })
            .collect();
        until(|| c.waiting(&"ecs") == 9).await;
        release.notify_one();
        let mut leaders = 0;
        for task in tasks {
            match task.await.unwrap() {
                Outcome::Failed { error, led, .. } => {
                    assert_eq!(error, "origin said 502");
                    leaders += usize::from(led);
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!(leaders, 1);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_over_to_one_waiter() {
        let c = C::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let spawn = |value| {
            let (c, fetches, release) = (c.clone(), Arc::clone(&fetches), Arc::clone(&release));
            tokio::spawn(async move {
                c.run("map", LONG, || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok(Fetched::Shared(value))
                })
                .await
            })
        };
        let leader = spawn(0);
        until(|| c.in_flight() == 1).await;
        let waiters: Vec<_> = (1..=5).map(spawn).collect();
        until(|| c.waiting(&"map") == 5).await;

        // The client of the leader disconnects mid-fetch.
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        // One waiter took over (a second fetch), the four others wait on it.
        until(|| fetches.load(Ordering::SeqCst) == 2 && c.waiting(&"map") == 4).await;
        assert_eq!(c.in_flight(), 1);
        release.notify_one();

        let mut values = Vec::new();
        let (mut led, mut joined) = (0, 0);
        for waiter in waiters {
            match waiter.await.unwrap() {
                Outcome::Led(v) => {
                    led += 1;
                    values.push(v);
                }
                Outcome::Joined { value, .. } => {
                    joined += 1;
                    values.push(value);
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((led, joined), (1, 4));
        // Everybody got the new leader's value.
        assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_panicking_fetch_hands_over_too() {
        let c = C::new();
        let release = Arc::new(Notify::new());
        let leader = {
            let (c, release) = (c.clone(), Arc::clone(&release));
            tokio::spawn(async move {
                c.run("map", LONG, || async move {
                    release.notified().await;
                    panic!("bug in the fetch")
                })
                .await
            })
        };
        until(|| c.in_flight() == 1).await;
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.run("map", LONG, || async { Ok(Fetched::Shared(3)) }).await })
        };
        until(|| c.waiting(&"map") == 1).await;
        release.notify_one();
        assert!(leader.await.unwrap_err().is_panic());
        assert_eq!(waiter.await.unwrap(), Outcome::Led(3));
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn an_uncacheable_answer_makes_waiters_fetch_on_their_own() {
        let c = C::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let spawn = |value| {
            let (c, fetches, release) = (c.clone(), Arc::clone(&fetches), Arc::clone(&release));
            tokio::spawn(async move {
                c.run("private", LONG, || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    if value == 0 {
                        release.notified().await;
                    }
                    Ok(Fetched::Private(value))
                })
                .await
            })
        };
        let leader = spawn(0);
        until(|| c.in_flight() == 1).await;
        let waiters: Vec<_> = (1..=3).map(spawn).collect();
        until(|| c.waiting(&"private") == 3).await;
        release.notify_one();

        assert!(matches!(leader.await.unwrap(), Outcome::Uncacheable { fetched: Ok(0), led: true, .. }));
        for (value, waiter) in (1..=3).zip(waiters) {
            match waiter.await.unwrap() {
                Outcome::Uncacheable { fetched, led: false, .. } => assert_eq!(fetched, Ok(value)),
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 4);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_waiter_times_out_and_the_fetch_still_serves_the_others() {
        let c = C::new();
        let (leader, release) = blocked_leader(&c, "slow", 5).await;
        let patient = joined_waiter(&c, "slow").await;

        // The leader is blocked until released, so this waiter cannot get anything but a timeout.
        let timeout = Duration::from_millis(20);
        match c.run("slow", timeout, || async { unreachable!("joins") }).await {
            Outcome::TimedOut { waited } => assert!(waited >= timeout, "{waited:?}"),
            other => panic!("unexpected outcome {other:?}"),
        }
        assert_eq!(c.waiting(&"slow"), 1, "the timed-out waiter left");
        release.notify_one();
        assert_eq!(leader.await.unwrap(), Outcome::Led(5));
        assert!(matches!(patient.await.unwrap(), Outcome::Joined { value: 5, .. }));
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_zero_wait_timeout_never_waits() {
        let c = C::new();
        let (leader, release) = blocked_leader(&c, "k", 1).await;
        let outcome = c.run("k", Duration::ZERO, || async { unreachable!("joins") }).await;
        assert!(matches!(outcome, Outcome::TimedOut { .. }), "{outcome:?}");
        release.notify_one();
        assert_eq!(leader.await.unwrap(), Outcome::Led(1));
    }

    #[tokio::test]
    async fn it_is_not_a_cache_each_settled_key_is_fetched_again() {
        let c = C::new();
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(Fetched::Shared(u32::try_from(n).unwrap()))
        };
        assert_eq!(c.run("k", LONG, fetch).await, Outcome::Led(0));
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.run("k", LONG, fetch).await, Outcome::Led(1));
        let failed = c.run("k", LONG, || async { Err("down".to_string()) }).await;
        assert_eq!(failed, Outcome::Failed { error: "down".into(), led: true, waited: Duration::ZERO });
        assert_eq!(c.run("k", LONG, fetch).await, Outcome::Led(2));
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_without_disturbing_the_flight() {
        let c = C::new();
        let (leader, release) = blocked_leader(&c, "k", 9).await;
        let waiter = joined_waiter(&c, "k").await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(c.waiting(&"k"), 0);
        release.notify_one();
        assert_eq!(leader.await.unwrap(), Outcome::Led(9));
        assert_eq!(c.in_flight(), 0);
    }

    /// Leaders settle while new callers arrive, over and over: every call ends, each key's entry is
    /// removed exactly once (no stuck key), and every successful fetch had exactly one leader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn settling_races_with_joining_without_losing_anyone() {
        let c = Coalescer::<u8, usize, String>::new();
        let fetches = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let (c, fetches) = (c.clone(), Arc::clone(&fetches));
                tokio::spawn(async move {
                    let mut led = 0;
                    for i in 0..500 {
                        let key = u8::try_from((task + i) % 3).unwrap();
                        let outcome = c
                            .run(key, LONG, || async {
                                tokio::task::yield_now().await;
                                Ok(Fetched::Shared(fetches.fetch_add(1, Ordering::SeqCst)))
                            })
                            .await;
                        match outcome {
                            Outcome::Led(_) => led += 1,
                            Outcome::Joined { .. } => {}
                            other => panic!("unexpected outcome {other:?}"),
                        }
                    }
                    led
                })
            })
            .collect();
        let mut led = 0;
        for task in tasks {
            led += task.await.unwrap();
        }
        assert_eq!(led, fetches.load(Ordering::SeqCst));
        assert_eq!(c.in_flight(), 0);
    }
}
