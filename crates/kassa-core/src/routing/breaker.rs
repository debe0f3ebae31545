//! The circuit breaker of one provider account: closed (calls pass), open (calls are refused
//! at once, so a dead provider costs no timeouts and traffic goes to the next account), and
//! half-open (after a cool-down, a few probe calls test the provider; a success closes the
//! circuit, a failure opens it again). Pure: the caller passes the time and reports outcomes.

use serde::{Deserialize, Serialize};

/// When the circuit opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failures (timeouts, 5xx, connection errors) that open the circuit.
    pub failures_to_open: u32,
    /// How long an open circuit refuses calls before it lets probes through.
    pub open_for_ms: u64,
    /// Probe calls allowed at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> BreakerSettings {
        BreakerSettings {
            failures_to_open: 5,
            open_for_ms: 10_000,
            half_open_probes: 1,
        }
    }
}

/// The circuit's state, as reported (metrics, health).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls pass.
    #[default]
    Closed,
    /// Probes test the provider.
    HalfOpen,
    /// Calls are refused without reaching the provider.
    Open,
}

impl CircuitState {
    /// The value of `kassa_provider_circuit_state`: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

/// Whether a call may go to the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// The circuit is closed: call.
    Call,
    /// The circuit is half-open and this call is a probe: call, and report its outcome.
    Probe,
    /// The circuit is open (or half-open with its probes out): do not call.
    Refuse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { since_ms: u64 },
    HalfOpen { probes_out: u32 },
}

/// One provider account's breaker.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    inner: Inner,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> CircuitBreaker {
        CircuitBreaker {
            settings,
            inner: Inner::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// The state at `now_ms`: an open circuit past its cool-down reads half-open.
    pub fn state(&self, now_ms: u64) -> CircuitState {
        match self.inner {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
            Inner::Open { since_ms } if self.cooled(since_ms, now_ms) => CircuitState::HalfOpen,
            Inner::Open { .. } => CircuitState::Open,
        }
    }

    fn cooled(&self, since_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(since_ms) >= self.settings.open_for_ms
    }

    /// Asks to call the provider at `now_ms`.
    pub fn permit(&mut self, now_ms: u64) -> Permit {
        if let Inner::Open { since_ms } = self.inner {
            if !self.cooled(since_ms, now_ms) {
                return Permit::Refuse;
            }
            self.inner = Inner::HalfOpen { probes_out: 0 };
        }
        match &mut self.inner {
            Inner::Closed { .. } => Permit::Call,
            Inner::HalfOpen { probes_out } if *probes_out < self.settings.half_open_probes => {
                *probes_out += 1;
                Permit::Probe
            }
            _ => Permit::Refuse,
        }
    }

    /// A permitted call succeeded (the provider answered, whatever it answered).
    pub fn succeeded(&mut self, permit: Permit) {
        match (permit, self.inner) {
            (Permit::Probe, Inner::HalfOpen { .. }) | (Permit::Call, Inner::Closed { .. }) => {
                self.inner = Inner::Closed {
                    consecutive_failures: 0,
                };
            }
            // A call that began before the circuit opened says little about now.
            _ => {}
        }
    }

    /// A permitted call ended without an outcome that says anything of the provider (it was
    /// cancelled, or the provider refused the request itself): a probe's place is given back.
    pub fn abandoned(&mut self, permit: Permit) {
        if let (Permit::Probe, Inner::HalfOpen { probes_out }) = (permit, &mut self.inner) {
            *probes_out = probes_out.saturating_sub(1);
        }
    }

    /// A permitted call failed (timeout, 5xx, no connection) at `now_ms`.
    pub fn failed(&mut self, permit: Permit, now_ms: u64) {
        match (permit, &mut self.inner) {
            (Permit::Probe, Inner::HalfOpen { .. }) => {
                self.inner = Inner::Open { since_ms: now_ms };
            }
            (
                Permit::Call,
                Inner::Closed {
                    consecutive_failures,
                },
            ) => {
                *consecutive_failures += 1;
                if *consecutive_failures >= self.settings.failures_to_open {
                    self.inner = Inner::Open { since_ms: now_ms };
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures_to_open: 3,
            open_for_ms: 1_000,
            half_open_probes: 1,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_good_probe() {
        let mut breaker = CircuitBreaker::new(settings());
        for now in 0..2 {
            let permit = breaker.permit(now);
            assert_eq!(permit, Permit::Call);
            breaker.failed(permit, now);
        }
        let ok = breaker.permit(2);
        breaker.succeeded(ok);
        for now in 3..6 {
            let permit = breaker.permit(now);
            breaker.failed(permit, now);
        }
        assert_eq!(breaker.state(5), CircuitState::Open);
        assert_eq!(breaker.permit(999), Permit::Refuse);
        assert_eq!(breaker.state(1_005), CircuitState::HalfOpen);
        let probe = breaker.permit(1_005);
        assert_eq!(probe, Permit::Probe);
        assert_eq!(breaker.permit(1_006), Permit::Refuse, "one probe at a time");
        breaker.abandoned(probe);
        let probe = breaker.permit(1_006);
        assert_eq!(
            probe,
            Permit::Probe,
            "an abandoned probe gives its place back"
        );
        breaker.succeeded(probe);
        assert_eq!(breaker.state(1_007), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again_for_a_full_cool_down() {
        let mut breaker = CircuitBreaker::new(settings());
        for now in 0..3 {
            let permit = breaker.permit(now);
            breaker.failed(permit, now);
        }
        let probe = breaker.permit(1_002);
        breaker.failed(probe, 1_002);
        assert_eq!(breaker.state(1_500), CircuitState::Open);
        assert_eq!(breaker.state(2_002), CircuitState::HalfOpen);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Call { ok: bool, advance_ms: u64 },
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (any::<bool>(), 0u64..600).prop_map(|(ok, advance_ms)| Step::Call { ok, advance_ms }),
            0..200,
        )
    }

    proptest! {
        /// Whatever the outcomes: an open circuit refuses until its cool-down ends; no more
        /// probes are out than allowed; the circuit opens exactly when the closed circuit
        /// has seen `failures_to_open` failures in a row.
        #[test]
        fn the_breaker_keeps_its_promises(steps in steps()) {
            let settings = settings();
            let mut breaker = CircuitBreaker::new(settings);
            let mut now = 0u64;
            let mut in_a_row = 0u32;
            let mut opened_at: Option<u64> = None;
            for Step::Call { ok, advance_ms } in steps {
                now += advance_ms;
                let permit = breaker.permit(now);
                if let Some(at) = opened_at {
                    if now - at < settings.open_for_ms {
                        prop_assert_eq!(permit, Permit::Refuse);
                    }
                }
                match permit {
                    Permit::Refuse => continue,
                    Permit::Probe => {
                        prop_assert!(opened_at.is_some_and(|at| now - at >= settings.open_for_ms));
                        if ok { breaker.succeeded(permit); opened_at = None; in_a_row = 0; }
                        else { breaker.failed(permit, now); opened_at = Some(now); }
                    }
                    Permit::Call => {
                        prop_assert!(opened_at.is_none());
                        if ok { breaker.succeeded(permit); in_a_row = 0; }
                        else {
                            breaker.failed(permit, now);
                            in_a_row += 1;
                            if in_a_row >= settings.failures_to_open {
                                prop_assert_eq!(breaker.state(now), CircuitState::Open);
                                opened_at = Some(now);
                                in_a_row = 0;
                            } else {
                                prop_assert_eq!(breaker.state(now), CircuitState::Closed);
                            }
                        }
                    }
                }
            }
        }
    }
}
