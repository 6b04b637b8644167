//! Resource slots: a map from slot name (`cpu`, `mem`, `cuda.device`, ...) to a decimal amount.

use crate::error::Error;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Amounts per slot name. A slot that is missing counts as zero.
///
/// `a <= b` holds when no slot of `a` exceeds the same slot of `b`; the order is partial, so two maps can be
/// incomparable (`partial_cmp` answers `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSlots(BTreeMap<String, Decimal>);

impl ResourceSlots {
    /// An empty map (every slot zero).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds slots from pairs; each amount is parsed like a request's (`"1g"`, `"0.5"`, `"2"`).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, Error> {
        let mut slots = Self::new();
        for (k, v) in pairs {
            slots.set(k, parse_amount(v)?);
        }
        Ok(slots)
    }

    /// The amount of one slot (zero when missing).
    pub fn get(&self, slot: &str) -> Decimal {
        self.0.get(slot).copied().unwrap_or_default()
    }

    /// Sets one slot.
    pub fn set(&mut self, slot: impl Into<String>, amount: Decimal) {
        self.0.insert(slot.into(), amount);
    }

    /// Slot names and amounts, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Decimal)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Slot names present in the map.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// True when every slot is zero.
    pub fn is_zero(&self) -> bool {
        self.0.values().all(Decimal::is_zero)
    }

    /// True when no slot of `self` exceeds the same slot of `other` (missing = 0).
    pub fn fits_in(&self, other: &Self) -> bool {
        self.0.iter().all(|(k, v)| *v <= other.get(k))
    }

    /// `self - other`, or `None` when a slot would go negative.
    pub fn checked_sub(&self, other: &Self) -> Option<Self> {
        other.fits_in(self).then(|| self.clone() - other.clone())
    }

    /// Multiplies every amount (used for N kernels of the same size).
    pub fn scaled(&self, factor: u32) -> Self {
        Self(self.0.iter().map(|(k, v)| (k.clone(), *v * Decimal::from(factor))).collect())
    }

    /// The share of `capacity` that `self` takes on its most demanded slot (dominant share), in `[0, ∞)`.
    pub fn dominant_share(&self, capacity: &Self) -> Decimal {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let cap = capacity.get(k);
                (!cap.is_zero()).then(|| *v / cap)
            })
            .max()
            .unwrap_or_default()
    }

    fn normalized(mut self) -> Self {
        for v in self.0.values_mut() {
            *v = v.normalize();
        }
        self
    }
}

impl std::ops::Add for ResourceSlots {
    type Output = Self;
    fn add(mut self, rhs: Self) -> Self {
        for (k, v) in rhs.0 {
            *self.0.entry(k).or_default() += v;
        }
        self.normalized()
    }
}

impl std::ops::Sub for ResourceSlots {
    type Output = Self;
    fn sub(mut self, rhs: Self) -> Self {
        for (k, v) in rhs.0 {
            *self.0.entry(k).or_default() -= v;
        }
        self.normalized()
    }
}

impl PartialOrd for ResourceSlots {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self.fits_in(other), other.fits_in(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }
}

impl fmt::Display for ResourceSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={}", v.normalize())).collect();
        f.write_str(&parts.join(","))
    }
}

impl<const N: usize> From<[(&str, Decimal); N]> for ResourceSlots {
    fn from(pairs: [(&str, Decimal); N]) -> Self {
        Self(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
}

/// Parses one amount: a decimal number with an optional binary-size suffix (`k`, `m`, `g`, `t`, `p`, case-insensitive,
/// optionally followed by `b` or `ib`), as Backend.AI requests write memory. Negative amounts are refused.
pub fn parse_amount(text: &str) -> Result<Decimal, Error> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let stripped = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (number, shift) = match stripped.chars().last() {
        Some('k') => (&stripped[..stripped.len() - 1], 10),
        Some('m') => (&stripped[..stripped.len() - 1], 20),
        Some('g') => (&stripped[..stripped.len() - 1], 30),
        Some('t') => (&stripped[..stripped.len() - 1], 40),
        Some('p') => (&stripped[..stripped.len() - 1], 50),
        _ => (stripped, 0),
    };
    let bad = || Error::InvalidParams { msg: format!("invalid resource amount {text:?}") };
    let value = Decimal::from_str(number.trim()).map_err(|_| bad())?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(Error::InvalidParams { msg: format!("negative resource amount {text:?}") });
    }
    let scaled = value.checked_mul(Decimal::from(1u64 << shift)).ok_or_else(bad)?;
    Ok(if shift > 0 { scaled.floor() } else { scaled }.normalize())
}

impl Serialize for ResourceSlots {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Backend.AI writes amounts as strings so that large byte counts keep their precision.
        let map: BTreeMap<&str, String> = self.0.iter().map(|(k, v)| (k.as_str(), v.normalize().to_string())).collect();
        map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ResourceSlots {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: BTreeMap<String, serde_json::Value> = BTreeMap::deserialize(d)?;
        let mut slots = ResourceSlots::new();
        for (k, v) in raw {
            let amount = match &v {
                serde_json::Value::String(s) => parse_amount(s),
                serde_json::Value::Number(n) => parse_amount(&n.to_string()),
                serde_json::Value::Null => continue,
                other => Err(Error::InvalidParams { msg: format!("invalid amount for slot {k:?}: {other}") }),
            }
            .map_err(serde::de::Error::custom)?;
            slots.set(k, amount);
        }
        Ok(slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn slots(pairs: &[(&str, &str)]) -> ResourceSlots {
        ResourceSlots::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn parses_binary_sizes() {
        assert_eq!(parse_amount("1g").unwrap(), Decimal::from(1u64 << 30));
        assert_eq!(parse_amount("512m").unwrap(), Decimal::from(512u64 << 20));
        assert_eq!(parse_amount("1.5G").unwrap(), Decimal::from(3u64 << 29));
        assert_eq!(parse_amount("2GiB").unwrap(), Decimal::from(2u64 << 30));
        assert_eq!(parse_amount("0.5").unwrap(), Decimal::new(5, 1));
        assert!(parse_amount("-1").is_err());
        assert!(parse_amount("lots").is_err());
        assert!(parse_amount("").is_err());
    }

    #[test]
    fn order_is_partial_and_missing_is_zero() {
        let a = slots(&[("cpu", "1"), ("mem", "1g")]);
        let b = slots(&[("cpu", "2"), ("mem", "2g")]);
        let c = slots(&[("cpu", "4")]);
        assert!(a <= b);
        assert!(a < b);
        assert!(b.partial_cmp(&a) == Some(Ordering::Greater));
        assert_eq!(a.partial_cmp(&c), None);
        assert!(ResourceSlots::new() <= a);
        assert!(slots(&[("cuda.device", "0")]) <= ResourceSlots::new());
    }

    #[test]
    fn arithmetic_and_json() {
        let a = slots(&[("cpu", "1"), ("mem", "1g")]);
        let b = slots(&[("cpu", "0.5")]);
        let sum = a.clone() + b.clone();
        assert_eq!(sum.get("cpu"), Decimal::new(15, 1));
        assert_eq!(sum - b.clone(), a);
        assert!(b.checked_sub(&a).is_none());
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json, serde_json::json!({"cpu": "1", "mem": "1073741824"}));
        let back: ResourceSlots = serde_json::from_value(serde_json::json!({"cpu": 1, "mem": "1g"})).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_value::<ResourceSlots>(serde_json::json!({"cpu": -2})).is_err());
        assert!(serde_json::from_value::<ResourceSlots>(serde_json::json!({"cpu": [1]})).is_err());
    }

    proptest! {
        #[test]
        fn add_then_sub_round_trips(a in 0u32..10_000, b in 0u32..10_000, c in 0u32..10_000) {
            let x = ResourceSlots::from([("cpu", Decimal::from(a)), ("mem", Decimal::from(b))]);
            let y = ResourceSlots::from([("cpu", Decimal::from(c))]);
            prop_assert_eq!((x.clone() + y.clone()) - y.clone(), x.clone());
            prop_assert!(x.clone() <= x.clone() + y.clone());
            prop_assert_eq!(x.checked_sub(&y).is_some(), y <= x);
        }
    }
}
