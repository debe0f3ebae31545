//! IP flags from a list file (`[risk] ip_list_path`): one entry a line, an address or a CIDR
//! range and a flag (`vpn`, `tor`, `hosting`), `#` starts a comment. The file is looked at
//! again at most once a second and read again when its modification time or length changed,
//! so an updated list applies without a restart. A line that does not parse is skipped and
//! logged with its number; a file that cannot be read keeps the list read before.

use std::net::IpAddr;

use ipnet::IpNet;

use super::list_file::{parse_lines, ListFile};

/// The flags a list entry may give.
pub const IP_FLAGS: [&str; 3] = ["vpn", "tor", "hosting"];

/// The list; `None` path: no list, and so no IP flags.
pub struct IpList {
    file: ListFile<Vec<(IpNet, &'static str)>>,
}

impl IpList {
    /// The list at `path` (empty: none), read on first use.
    pub fn new(path: &str) -> IpList {
        IpList {
            file: ListFile::new("ip", path, parse),
        }
    }

    /// Whether a list is configured.
    pub fn configured(&self) -> bool {
        self.file.configured()
    }

    /// The flags `ip` carries (each once), or `None` without a list or for an `ip` that is
    /// not an address.
    pub fn flags_of(&self, ip: &str) -> Option<Vec<&'static str>> {
        let entries = self.file.current()?;
        let address: IpAddr = ip.trim().parse().ok()?;
        let mut flags: Vec<&'static str> = entries
            .iter()
            .filter(|(net, _)| net.contains(&address))
            .map(|(_, flag)| *flag)
            .collect();
        flags.sort_unstable();
        flags.dedup();
        Some(flags)
    }
}

/// The entries of a list file; lines that do not parse are logged and skipped.
fn parse(text: &str) -> Vec<(IpNet, &'static str)> {
    parse_lines(text, "ADDRESS-OR-CIDR vpn|tor|hosting", parse_line)
}

fn parse_line(line: &str) -> Option<(IpNet, &'static str)> {
    let mut words = line.split_whitespace();
    let (target, flag) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let flag = IP_FLAGS.into_iter().find(|known| *known == flag)?;
    let net = match target.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(target.parse::<IpAddr>().ok()?),
    };
    Some((net, flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges_carry_their_flags_and_bad_lines_are_skipped() {
        let entries = parse(
            "# provider ranges\n10.0.0.0/8 hosting\n203.0.113.7 tor # exit\n2001:db8::/32 vpn\n\
             not-an-ip vpn\n10.1.1.1 proxy\n10.2.2.2 vpn extra\n",
        );
        assert_eq!(entries.len(), 3);
        let flags = |ip: &str| -> Vec<&str> {
            let address: IpAddr = ip.parse().unwrap();
            entries
                .iter()
                .filter(|(net, _)| net.contains(&address))
                .map(|(_, f)| *f)
                .collect()
        };
        assert_eq!(flags("10.9.8.7"), ["hosting"]);
        assert_eq!(flags("203.0.113.7"), ["tor"]);
        assert!(flags("203.0.113.8").is_empty());
        assert_eq!(flags("2001:db8::1"), ["vpn"]);
    }
}
