//! Card issuing countries from a BIN list file (`[risk] bin_list_path`): CSV, one entry a
//! line, a BIN prefix of 6 to 8 digits and an ISO 3166-1 alpha-2 country (`411111,US`); a
//! first line `bin,country` is a header, `#` starts a comment. The longest prefix matching a
//! card wins. Refreshed without a restart like the IP list ([`super::list_file`]).

use std::collections::HashMap;

use super::list_file::{parse_lines, ListFile};

/// The shortest and longest BIN prefix an entry may give.
const PREFIX_DIGITS: std::ops::RangeInclusive<usize> = 6..=8;

/// The list; `None` path: no list, and so no BIN country.
pub struct BinList {
    file: ListFile<HashMap<String, String>>,
}

impl BinList {
    /// The list at `path` (empty: none), read on first use.
    pub fn new(path: &str) -> BinList {
        BinList {
            file: ListFile::new("bin", path, parse),
        }
    }

    /// The issuing country of the card whose number starts with `digits` (at least six
    /// digits; a saved card's BIN or the first digits of a PAN), by the longest prefix
    /// listed; `None` without a list or an entry.
    pub fn country_of(&self, digits: &str) -> Option<String> {
        let entries = self.file.current()?;
        let longest = digits.len().min(*PREFIX_DIGITS.end());
        (*PREFIX_DIGITS.start()..=longest)
            .rev()
            .find_map(|length| entries.get(digits.get(..length)?).cloned())
    }
}

fn parse(text: &str) -> HashMap<String, String> {
    let body = match text.lines().next() {
        Some(first) if first.trim().eq_ignore_ascii_case("bin,country") => {
            text.split_once('\n').map_or("", |(_, rest)| rest)
        }
        _ => text,
    };
    parse_lines(body, "BIN-PREFIX,COUNTRY", parse_line)
        .into_iter()
        .collect()
}

fn parse_line(line: &str) -> Option<(String, String)> {
    let (prefix, country) = line.split_once(',')?;
    let (prefix, country) = (prefix.trim(), country.trim());
    let prefix_ok =
        PREFIX_DIGITS.contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_digit());
    let country_ok = country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase());
    (prefix_ok && country_ok).then(|| (prefix.to_string(), country.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins_and_bad_lines_are_skipped() {
        let entries = parse(
            "bin,country\n400000,MT # sandbox\n40000000,DE\n411111 ,US\n12345,FR\n555555,de\n\
             555555,GBR\nnot,a line\n",
        );
        assert_eq!(entries.len(), 3);
        let path = std::env::temp_dir().join(format!("kassa_bins_{}.csv", std::process::id()));
        std::fs::write(&path, "400000,MT\n40000000,DE\n411111,US\n").unwrap();
        let list = BinList::new(path.to_str().unwrap());
        assert_eq!(list.country_of("4000000000000002").as_deref(), Some("DE"));
        assert_eq!(list.country_of("4000001234567899").as_deref(), Some("MT"));
        assert_eq!(list.country_of("400000").as_deref(), Some("MT"));
        assert_eq!(list.country_of("4111111111111111").as_deref(), Some("US"));
        assert_eq!(list.country_of("5555555555554444"), None);
        assert_eq!(list.country_of("4111"), None);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(BinList::new("").country_of("4111111111111111"), None);
    }
}
