use std::fmt;

/// A vehicle identification number (ISO 3779), or for non-road machinery the 17-character machine
/// environmental code that HJ 1322 puts in the same slot. Stored inline (17 ASCII bytes) so that it
/// is `Copy` and hashes without allocation on the per-record path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vin([u8; 17]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VinError {
    #[error("VIN must be 17 characters, got {0}")]
    Length(usize),
    #[error("VIN has character {0:?} at position {1}: only A-Z (without I, O, Q) and 0-9 are allowed")]
    Character(char, usize),
}

impl Vin {
    /// Parses and validates a VIN. Lower-case letters are accepted and upper-cased, because some
    /// forwarding platforms lower-case them; I, O and Q are never valid in a VIN.
    pub fn parse(s: &str) -> Result<Vin, VinError> {
        Self::from_bytes(s.as_bytes())
    }

    pub fn from_bytes(b: &[u8]) -> Result<Vin, VinError> {
        if b.len() != 17 {
            return Err(VinError::Length(b.len()));
        }
        let mut out = [0u8; 17];
        for (i, (&c, o)) in b.iter().zip(out.iter_mut()).enumerate() {
            let u = c.to_ascii_uppercase();
            if !(u.is_ascii_digit() || u.is_ascii_uppercase()) || matches!(u, b'I' | b'O' | b'Q') {
                return Err(VinError::Character(char::from(c), i));
            }
            *o = u;
        }
        Ok(Vin(out))
    }

    /// The check digit this VIN should carry at position 9 (GB 16735-2019 Annex B, the same
    /// scheme as ISO 3779 / FMVSS 115): letters transliterated to numbers, weighted by position,
    /// summed modulo 11, 10 written as `X`.
    pub fn expected_check_digit(&self) -> u8 {
        const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
        let sum: u32 = self.0.iter().zip(WEIGHTS).map(|(&c, w)| transliterate(c) * w).sum();
        match sum % 11 {
            10 => b'X',
            d => b'0' + d as u8,
        }
    }

    /// Position 9 holds the right check digit.
    pub fn check_digit_ok(&self) -> bool {
        self.0[8] == self.expected_check_digit()
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored (see `from_bytes`), so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("?????????????????")
    }

    pub fn as_bytes(&self) -> &[u8; 17] {
        &self.0
    }
}

/// GB 16735 Annex B value of a VIN character (I, O, Q never occur: `from_bytes` refuses them).
fn transliterate(c: u8) -> u32 {
    match c {
        b'0'..=b'9' => u32::from(c - b'0'),
        b'A'..=b'H' => u32::from(c - b'A') + 1,
        b'J'..=b'N' => u32::from(c - b'J') + 1,
        b'P' => 7,
        b'R' => 9,
        b'S'..=b'Z' => u32::from(c - b'S') + 2,
        _ => 0,
    }
}

impl fmt::Display for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Vin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vin({})", self.as_str())
    }
}

impl std::str::FromStr for Vin {
    type Err = VinError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vin::parse(s)
    }
}

impl serde::Serialize for Vin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Vin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Vin::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_and_uppercases() {
        let v = Vin::parse("lgbh52e07hy000001").unwrap();
        assert_eq!(v.as_str(), "LGBH52E07HY000001");
    }

    #[test]
    fn rejects_bad_length_and_letters() {
        assert_eq!(Vin::parse("ABC"), Err(VinError::Length(3)));
        assert!(matches!(Vin::parse("LSGO0000000000001"), Err(VinError::Character('O', 3))));
        assert!(matches!(Vin::parse("LSGQ0000000000001"), Err(VinError::Character('Q', 3))));
        assert!(matches!(Vin::parse("LSG-0000000000001"), Err(VinError::Character('-', 3))));
        assert!(Vin::parse("LSG中000000000001").is_err());
    }

    #[test]
    fn check_digit_per_gb_16735() {
        // 1M8GDM9AXKP042788 is the usual worked example of the scheme (check digit X);
        // LSVAM4187C2184847 has a WMI of China (check digit 7).
        for ok in ["1M8GDM9AXKP042788", "LSVAM4187C2184847", "11111111111111111"] {
            assert!(Vin::parse(ok).unwrap().check_digit_ok(), "{ok}");
        }
        let bad = Vin::parse("1M8GDM9A1KP042788").unwrap();
        assert!(!bad.check_digit_ok());
        assert_eq!(bad.expected_check_digit(), b'X');
    }

    #[test]
    fn serde_round_trip() {
        let v = Vin::parse("LGBH52E07HY000001").unwrap();
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, "\"LGBH52E07HY000001\"");
        assert_eq!(serde_json::from_str::<Vin>(&j).unwrap(), v);
        assert!(serde_json::from_str::<Vin>("\"LGBH52E07HY00000I\"").is_err());
    }
}
