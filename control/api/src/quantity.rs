//! Resource quantities (`cpu: 250m`, `memory: 128Mi`), kept as written and read as numbers.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A quantity as the user wrote it. YAML numbers (`cpu: 1`) are accepted too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quantity(pub String);

/// `requests` and `limits`: resource name to quantity.
pub type ResourceList = BTreeMap<String, Quantity>;

impl Quantity {
    /// CPU in millicores: `250m` -> 250, `0.5` -> 500, `2` -> 2000.
    pub fn millicores(&self) -> Option<u64> {
        let s = self.0.trim();
        if let Some(m) = s.strip_suffix('m') {
            return m.parse::<u64>().ok();
        }
        let value: f64 = s.parse().ok()?;
        (value.is_finite() && value >= 0.0).then(|| (value * 1000.0).round() as u64)
    }

    /// Memory in bytes: `128Mi`, `1G`, `500k`, `1e6`, `1048576`.
    pub fn bytes(&self) -> Option<u64> {
        const SUFFIXES: &[(&str, f64)] = &[
            ("Ki", 1024.0),
            ("Mi", 1048576.0),
            ("Gi", 1073741824.0),
            ("Ti", 1099511627776.0),
            ("k", 1e3),
            ("M", 1e6),
            ("G", 1e9),
            ("T", 1e12),
        ];
        let s = self.0.trim();
        let (number, scale) = SUFFIXES
            .iter()
            .find_map(|(suffix, scale)| s.strip_suffix(suffix).map(|n| (n, *scale)))
            .unwrap_or((s, 1.0));
        let value: f64 = number.parse().ok()?;
        (value.is_finite() && value >= 0.0).then(|| (value * scale).round() as u64)
    }

    pub fn from_millicores(m: u64) -> Quantity {
        if m.is_multiple_of(1000) {
            Quantity((m / 1000).to_string())
        } else {
            Quantity(format!("{m}m"))
        }
    }

    pub fn from_bytes(b: u64) -> Quantity {
        if b > 0 && b.is_multiple_of(1048576) {
            Quantity(format!("{}Mi", b / 1048576))
        } else if b > 0 && b.is_multiple_of(1024) {
            Quantity(format!("{}Ki", b / 1024))
        } else {
            Quantity(b.to_string())
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(f64),
        }
        Ok(Quantity(match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubernetes_quantities() {
        let q = |s: &str| Quantity(s.into());
        assert_eq!(q("250m").millicores(), Some(250));
        assert_eq!(q("0.5").millicores(), Some(500));
        assert_eq!(q("2").millicores(), Some(2000));
        assert_eq!(q("128Mi").bytes(), Some(128 << 20));
        assert_eq!(q("1G").bytes(), Some(1_000_000_000));
        assert_eq!(q("1e3").bytes(), Some(1000));
        assert_eq!(q("lots").bytes(), None);
        assert_eq!(Quantity::from_millicores(1500).0, "1500m");
        assert_eq!(Quantity::from_bytes(64 << 20).0, "64Mi");
    }
}
