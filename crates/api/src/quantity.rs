//! Resource quantities (`500m`, `1.5Gi`, `2e3`) as Kubernetes reads and
//! writes them, held exactly as thousandths of a unit (what Kubernetes'
//! MilliValue gives; finer fractions round up, as it does).

use std::fmt;

/// A quantity in thousandths of a unit, and the suffix family it was
/// written in (for printing sums the way their parts were written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity {
    pub milli: i128,
    pub binary: bool,
}

impl Quantity {
    pub fn from_milli(milli: i128) -> Quantity {
        Quantity {
            milli,
            binary: false,
        }
    }

    /// Parses a Kubernetes quantity string.
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        let (negative, digits) = match num.as_bytes().first() {
            Some(b'-') => (true, &num[1..]),
            Some(b'+') => (false, &num[1..]),
            _ => (false, num),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // The number as mantissa * 10^-scale.
        let mantissa: i128 = format!("{int}{frac}")
            .trim_start_matches('0')
            .parse()
            .unwrap_or(0);
        let scale = frac.len() as i32;
        let (binary, mult_num, exp10): (bool, i128, i32) = match suffix {
            "" => (false, 1, 0),
            "n" => (false, 1, -9),
            "u" => (false, 1, -6),
            "m" => (false, 1, -3),
            "k" => (false, 1, 3),
            "M" => (false, 1, 6),
            "G" => (false, 1, 9),
            "T" => (false, 1, 12),
            "P" => (false, 1, 15),
            "E" => (false, 1, 18),
            "Ki" => (true, 1 << 10, 0),
            "Mi" => (true, 1 << 20, 0),
            "Gi" => (true, 1 << 30, 0),
            "Ti" => (true, 1 << 40, 0),
            "Pi" => (true, 1 << 50, 0),
            "Ei" => (true, 1 << 60, 0),
            e if e.starts_with(['e', 'E']) => (false, 1, e[1..].parse().ok()?),
            _ => return None,
        };
        // milli = mantissa * mult * 10^(exp10 + 3 - scale), rounded up.
        let p = exp10 + 3 - scale;
        let base = mantissa.checked_mul(mult_num)?;
        let milli = if p >= 0 {
            base.checked_mul(10i128.checked_pow(p as u32)?)?
        } else {
            let d = 10i128.checked_pow((-p) as u32)?;
            (base + d - 1) / d
        };
        Some(Quantity {
            milli: if negative { -milli } else { milli },
            binary,
        })
    }

    /// Whole units, rounded up.
    pub fn value(&self) -> i128 {
        if self.milli >= 0 {
            (self.milli + 999) / 1000
        } else {
            self.milli / 1000
        }
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, o: Quantity) -> Quantity {
        Quantity {
            milli: self.milli + o.milli,
            binary: if self.milli == 0 {
                o.binary
            } else {
                self.binary
            },
        }
    }
}

impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::default(), |a, b| a + b)
    }
}

impl fmt::Display for Quantity {
    /// The canonical form: thousandths as `m`, whole values with the
    /// largest exact suffix of their family.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli % 1000 != 0 {
            return write!(f, "{}m", self.milli);
        }
        let v = self.milli / 1000;
        if v == 0 {
            return write!(f, "0");
        }
        if self.binary {
            for (suffix, shift) in [
                ("Ei", 60),
                ("Pi", 50),
                ("Ti", 40),
                ("Gi", 30),
                ("Mi", 20),
                ("Ki", 10),
            ] {
                let unit = 1i128 << shift;
                if v % unit == 0 {
                    return write!(f, "{}{suffix}", v / unit);
                }
            }
        } else {
            for (suffix, pow) in [
                ("E", 18),
                ("P", 15),
                ("T", 12),
                ("G", 9),
                ("M", 6),
                ("k", 3),
            ] {
                let unit = 10i128.pow(pow);
                if v % unit == 0 {
                    return write!(f, "{}{suffix}", v / unit);
                }
            }
        }
        write!(f, "{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let cases = [
            ("500m", 500, "500m"),
            ("1", 1000, "1"),
            ("1.5", 1500, "1500m"),
            ("2k", 2_000_000, "2k"),
            ("1Ki", 1_024_000, "1Ki"),
            ("128Mi", 128 * 1024 * 1024 * 1000, "128Mi"),
            ("1.5Gi", 1536 * 1024 * 1024 * 1000, "1536Mi"),
            ("1e3", 1_000_000, "1k"),
            ("100n", 1, "1m"),
            ("0", 0, "0"),
            ("-2", -2000, "-2"),
            ("1000", 1_000_000, "1k"),
        ];
        for (s, milli, printed) in cases {
            let q = Quantity::parse(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(q.milli, milli, "{s}");
            assert_eq!(q.to_string(), printed, "{s}");
        }
        for bad in ["", "abc", "1Xi", "1.2.3", "--1"] {
            assert!(Quantity::parse(bad).is_none(), "{bad}");
        }
        let sum: Quantity = ["100m", "250m", "1"]
            .iter()
            .map(|s| Quantity::parse(s).unwrap())
            .sum();
        assert_eq!(sum.to_string(), "1350m");
        let mem: Quantity = ["64Mi", "64Mi"]
            .iter()
            .map(|s| Quantity::parse(s).unwrap())
            .sum();
        assert_eq!(mem.to_string(), "128Mi");
        assert_eq!(Quantity::parse("1500m").unwrap().value(), 2);
    }
}
