//! What the provider-event pipeline checks about where a delivery came from (the IP
//! allow-list of each provider account), and the faults tests inject into it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use ipnet::IpNet;

use crate::service::provider_events::ProviderEventError;

/// The networks each provider account takes deliveries from; an account without a list
/// takes them from anywhere (its signature still has to verify).
#[derive(Clone, Debug, Default)]
pub struct SourceAllowLists {
    by_account: HashMap<String, Vec<IpNet>>,
}

impl SourceAllowLists {
    /// The lists of the accounts that have one.
    pub fn new(by_account: HashMap<String, Vec<IpNet>>) -> SourceAllowLists {
        SourceAllowLists { by_account }
    }

    /// Whether `provider` takes a delivery from `address`. An account with a list refuses a
    /// delivery whose address is unknown: the list fails closed.
    pub fn permits(&self, provider: &str, address: Option<IpAddr>) -> bool {
        let Some(networks) = self.by_account.get(provider) else {
            return true;
        };
        // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
        address.is_some_and(|address| {
            let address = address.to_canonical();
            networks.iter().any(|network| network.contains(&address))
        })
    }
}

/// Faults a test arms to reach the pipeline's failure paths through real HTTP: the next
/// verified events fail as a bug would, or stall past the processing timeout. Nothing arms
/// them outside tests (there is no config key or endpoint for them).
#[derive(Debug, Default)]
pub struct InboundFaults {
    fail_next: AtomicU32,
    stall_next: AtomicU32,
    stall_ms: AtomicU64,
}

impl InboundFaults {
    /// The next `events` verified events fail with an internal error before they apply.
    pub fn fail_next(&self, events: u32) {
        self.fail_next.store(events, Ordering::SeqCst);
    }

    /// The next `events` verified events wait `stall_ms` before they apply.
    pub fn stall_next(&self, events: u32, stall_ms: u64) {
        self.stall_ms.store(stall_ms, Ordering::SeqCst);
        self.stall_next.store(events, Ordering::SeqCst);
    }

    /// Called by the pipeline before it applies a verified event.
    pub async fn before_apply(&self) -> Result<(), ProviderEventError> {
        if take_one(&self.stall_next) {
            let stall_ms = self.stall_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(stall_ms)).await;
        }
        if take_one(&self.fail_next) {
            return Err(ProviderEventError::Internal("injected fault"));
        }
        Ok(())
    }
}

/// Takes one from a counter above zero; `false` when it is zero.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(cidrs: &[&str]) -> SourceAllowLists {
        let networks = cidrs.iter().map(|c| c.parse().unwrap()).collect();
        SourceAllowLists::new(HashMap::from([("psp".to_string(), networks)]))
    }

    #[test]
    fn an_allow_list_takes_its_networks_only_and_fails_closed() {
        let lists = lists(&["10.0.0.0/8", "2001:db8::/32"]);
        let ip = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        assert!(lists.permits("psp", ip("10.1.2.3")));
        assert!(lists.permits("psp", ip("::ffff:10.1.2.3")));
        assert!(lists.permits("psp", ip("2001:db8::1")));
        assert!(!lists.permits("psp", ip("11.0.0.1")));
        assert!(!lists.permits("psp", ip("127.0.0.1")));
        assert!(!lists.permits("psp", None));
        assert!(lists.permits("other", ip("127.0.0.1")), "no list, no limit");
        assert!(lists.permits("other", None));
    }
}
