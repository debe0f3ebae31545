//! SSRF guard for the operator's webhook URLs: Kassa must not be made to POST into its own
//! network. A URL whose host is, or resolves to, a loopback, link-local, private or otherwise
//! non-public address is refused when the endpoint is created or changed, and again at
//! delivery time by the resolver the delivery client connects through (so a name that later
//! resolves elsewhere cannot slip past). `webhooks.allow_private_urls` turns the guard off
//! (tests on one machine).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

/// Longest URL accepted, in bytes.
pub const URL_LEN_MAX: usize = 2048;
/// How long a create or update waits for the URL's host to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Not an absolute http(s) URL with a host, or too long.
    #[error("{0}")]
    Invalid(&'static str),
    /// The host is, or resolves to, an address Kassa does not deliver to.
    #[error("the host {host} is or resolves to a non-public address ({address})")]
    NotPublic { host: String, address: String },
}

/// Parses and checks a URL's form and, unless private URLs are allowed, its host.
pub async fn check_url(text: &str, allow_private: bool) -> Result<Url, UrlRefusal> {
    let url = parse(text)?;
    if allow_private {
        return Ok(url);
    }
    let host = url.host_str().unwrap_or_default().to_string();
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(not_public(&host, &host));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port)),
    )
    .await;
    // A name that does not resolve now is accepted: delivery checks it again when it does.
    if let Ok(Ok(addresses)) = resolved {
        for address in addresses {
            if !is_public(address.ip()) {
                return Err(not_public(&host, &address.ip().to_string()));
            }
        }
    }
    Ok(url)
}

fn parse(text: &str) -> Result<Url, UrlRefusal> {
    if text.len() > URL_LEN_MAX {
        return Err(UrlRefusal::Invalid("must be at most 2048 bytes"));
    }
    let url = Url::parse(text).map_err(|_| UrlRefusal::Invalid("is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefusal::Invalid("must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlRefusal::Invalid("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Invalid("must not carry credentials"));
    }
    Ok(url)
}

fn not_public(host: &str, address: &str) -> UrlRefusal {
    UrlRefusal::NotPublic {
        host: host.to_string(),
        address: address.to_string(),
    }
}

/// Whether Kassa may deliver to `ip`: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or documentation space.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let this_network = a == 0;
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || shared
        || this_network)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || unique_local || link_local)
}

/// The delivery client's resolver: resolves as the system does and refuses any name with a
/// non-public address among its answers (unless private URLs are allowed), so the check holds
/// for the address actually connected to.
pub struct PublicOnlyResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addresses.iter().find(|a| !is_public(a.ip())) {
                if !allow_private {
                    let refusal = not_public(&host, &bad.ip().to_string());
                    return Err(Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// The delivery-time check of a URL whose host is an address literal (the resolver never
/// sees those).
pub fn check_literal_host(url: &Url, allow_private: bool) -> Result<(), UrlRefusal> {
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let Ok(ip) = host.parse::<IpAddr>() else {
        return Ok(());
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(not_public(&ip.to_string(), &ip.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(text.parse().unwrap()), "{text}");
        }
        for text in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(text.parse().unwrap()), "{text}");
        }
    }

    #[tokio::test]
    async fn urls_naming_private_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "https://169.254.169.254/latest",
            "http://[::1]/x",
            "http://localhost/x",
            "http://10.0.0.5/x",
        ] {
            assert!(
                matches!(
                    check_url(url, false).await,
                    Err(UrlRefusal::NotPublic { .. })
                ),
                "{url}"
            );
            assert!(check_url(url, true).await.is_ok(), "{url}");
        }
        for url in [
            "ftp://example.com/",
            "not a url",
            "http://user:pw@example.com/",
        ] {
            assert!(
                matches!(check_url(url, true).await, Err(UrlRefusal::Invalid(_))),
                "{url}"
            );
        }
    }
}
