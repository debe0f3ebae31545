//! The AML thresholds, per jurisdiction. Where the defaults come from
//! (`../shared/research/risk-aml-recon.md` §2, docs/aml.md):
//!
//! - CDD at €2,000 "in a single operation or in several operations which appear to be
//!   linked" (AMLD4 Art. 11(d)); the directive sets no window. The 24 hours are the old UK
//!   MLR 2007 reg. 10 reading the UKGC still uses; Malta (MGA/FIAU) counts a rolling 180 days.
//! - Structuring: several deposits each in [80 %·T, T) within a window.
//! - Rapid in/out: launderers often wager only 5–10 % of what they deposit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// The thresholds the scenarios read, as they apply to one jurisdiction.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmlThresholds {
    /// The CDD threshold per currency code, in minor units; a currency not listed has no
    /// CDD or structuring scenario.
    pub cdd_threshold_minor: BTreeMap<String, i64>,
    /// How far back deposits (or withdrawals) count as linked for the CDD threshold.
    pub cdd_window_hours: u32,
    /// Deposits just under the threshold that make a structuring pattern.
    pub structuring_deposits_min: u32,
    /// Within how long those deposits must fall.
    pub structuring_window_hours: u32,
    /// "Just under": at least this share of the threshold, in percent.
    pub structuring_floor_pct: u32,
    /// How far back from a withdrawal deposits count for rapid in/out.
    pub rapid_window_hours: u32,
    /// A withdrawal of at least this share of those deposits, in percent …
    pub rapid_withdrawn_pct_min: u32,
    /// … while less than this share of them was wagered, in percent.
    pub rapid_wagered_pct_max: u32,
    /// An instrument used by at least this many players (the player included) is a
    /// third-party instrument.
    pub shared_instrument_players_min: u32,
}

impl Default for AmlThresholds {
    fn default() -> AmlThresholds {
        AmlThresholds {
            cdd_threshold_minor: BTreeMap::from([("EUR".to_string(), 200_000)]),
            cdd_window_hours: 24,
            structuring_deposits_min: 3,
            structuring_window_hours: 24,
            structuring_floor_pct: 80,
            rapid_window_hours: 24,
            rapid_withdrawn_pct_min: 80,
            rapid_wagered_pct_max: 10,
            shared_instrument_players_min: 2,
        }
    }
}

impl AmlThresholds {
    /// The CDD (and structuring) threshold of `currency`, if one is set.
    pub fn threshold_minor(&self, currency: &str) -> Option<i64> {
        self.cdd_threshold_minor
            .get(currency)
            .copied()
            .filter(|t| *t > 0)
    }

    /// The longest window any scenario looks back over, in milliseconds: how much history
    /// the server has to gather.
    pub fn lookback_ms(&self) -> i64 {
        let hours = self
            .cdd_window_hours
            .max(self.structuring_window_hours)
            .max(self.rapid_window_hours);
        i64::from(hours) * HOUR_MS
    }

    fn apply(&mut self, overrides: &AmlOverrides) {
        if let Some(thresholds) = &overrides.cdd_threshold_minor {
            self.cdd_threshold_minor = thresholds.clone();
        }
        let fields = [
            (&mut self.cdd_window_hours, overrides.cdd_window_hours),
            (
                &mut self.structuring_deposits_min,
                overrides.structuring_deposits_min,
            ),
            (
                &mut self.structuring_window_hours,
                overrides.structuring_window_hours,
            ),
            (
                &mut self.structuring_floor_pct,
                overrides.structuring_floor_pct,
            ),
            (&mut self.rapid_window_hours, overrides.rapid_window_hours),
            (
                &mut self.rapid_withdrawn_pct_min,
                overrides.rapid_withdrawn_pct_min,
            ),
            (
                &mut self.rapid_wagered_pct_max,
                overrides.rapid_wagered_pct_max,
            ),
            (
                &mut self.shared_instrument_players_min,
                overrides.shared_instrument_players_min,
            ),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                *field = value;
            }
        }
    }

    /// Why these thresholds cannot work, if they cannot.
    pub fn problem(&self) -> Option<String> {
        if self.cdd_threshold_minor.values().any(|t| *t <= 0) {
            return Some("cdd_threshold_minor: every threshold must be positive".into());
        }
        let windows = [
            ("cdd_window_hours", self.cdd_window_hours),
            ("structuring_window_hours", self.structuring_window_hours),
            ("rapid_window_hours", self.rapid_window_hours),
        ];
        if let Some((name, _)) = windows.iter().find(|(_, h)| *h == 0 || *h > 24 * 366) {
            return Some(format!("{name}: between 1 and 8784 hours"));
        }
        if self.structuring_deposits_min < 2 {
            return Some("structuring_deposits_min: at least 2".into());
        }
        if self.structuring_floor_pct == 0 || self.structuring_floor_pct >= 100 {
            return Some("structuring_floor_pct: between 1 and 99".into());
        }
        if self.rapid_withdrawn_pct_min == 0 || self.rapid_wagered_pct_max == 0 {
            return Some("rapid_withdrawn_pct_min and rapid_wagered_pct_max: above 0".into());
        }
        if self.shared_instrument_players_min < 2 {
            return Some("shared_instrument_players_min: at least 2".into());
        }
        None
    }
}

/// A jurisdiction's changes to the defaults; what is absent keeps the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmlOverrides {
    pub cdd_threshold_minor: Option<BTreeMap<String, i64>>,
    pub cdd_window_hours: Option<u32>,
    pub structuring_deposits_min: Option<u32>,
    pub structuring_window_hours: Option<u32>,
    pub structuring_floor_pct: Option<u32>,
    pub rapid_window_hours: Option<u32>,
    pub rapid_withdrawn_pct_min: Option<u32>,
    pub rapid_wagered_pct_max: Option<u32>,
    pub shared_instrument_players_min: Option<u32>,
}

/// The `[aml]` thresholds: `[aml.thresholds]` and `[aml.jurisdictions.XX]` overrides.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmlSettings {
    /// What applies where no override says otherwise (the GB reading: 24 hours linked).
    pub thresholds: AmlThresholds,
    /// Overrides by jurisdiction (ISO 3166-1 alpha-2, as the player's licence).
    pub jurisdictions: BTreeMap<String, AmlOverrides>,
}

impl Default for AmlSettings {
    fn default() -> AmlSettings {
        // Malta links deposits over a rolling 180 days (research §2, [3]).
        let malta = AmlOverrides {
            cdd_window_hours: Some(180 * 24),
            ..AmlOverrides::default()
        };
        AmlSettings {
            thresholds: AmlThresholds::default(),
            jurisdictions: BTreeMap::from([("MT".to_string(), malta)]),
        }
    }
}

impl AmlSettings {
    /// The thresholds for a player licensed in `jurisdiction`.
    pub fn for_jurisdiction(&self, jurisdiction: Option<&str>) -> AmlThresholds {
        let mut thresholds = self.thresholds.clone();
        if let Some(overrides) = jurisdiction.and_then(|j| self.jurisdictions.get(j)) {
            thresholds.apply(overrides);
        }
        thresholds
    }

    /// The first problem of the defaults or of a jurisdiction's thresholds, naming its place.
    pub fn problem(&self) -> Option<String> {
        if let Some(problem) = self.thresholds.problem() {
            return Some(format!("thresholds.{problem}"));
        }
        self.jurisdictions.keys().find_map(|j| {
            self.for_jurisdiction(Some(j))
                .problem()
                .map(|p| format!("jurisdictions.{j}.{p}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malta_links_over_180_days_and_gb_over_24_hours() {
        let settings = AmlSettings::default();
        assert_eq!(
            settings.for_jurisdiction(Some("MT")).cdd_window_hours,
            4_320
        );
        assert_eq!(settings.for_jurisdiction(Some("GB")).cdd_window_hours, 24);
        assert_eq!(
            settings.for_jurisdiction(None).threshold_minor("EUR"),
            Some(200_000)
        );
        assert_eq!(settings.for_jurisdiction(None).threshold_minor("SEK"), None);
        assert_eq!(settings.problem(), None);
    }

    #[test]
    fn an_override_changes_only_what_it_names() {
        let mut settings = AmlSettings::default();
        settings.jurisdictions.insert(
            "SE".into(),
            AmlOverrides {
                structuring_deposits_min: Some(4),
                ..AmlOverrides::default()
            },
        );
        let se = settings.for_jurisdiction(Some("SE"));
        assert_eq!(se.structuring_deposits_min, 4);
        assert_eq!(se.cdd_window_hours, 24);
        settings
            .jurisdictions
            .get_mut("SE")
            .unwrap()
            .structuring_floor_pct = Some(100);
        assert_eq!(
            settings.problem().as_deref(),
            Some("jurisdictions.SE.structuring_floor_pct: between 1 and 99")
        );
    }
}
