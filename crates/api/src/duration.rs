//! Go durations (`time.ParseDuration`): `300ms`, `1h30m`, `1.5h`, `0`, as
//! Kubernetes' flags and cron's `@every` take them, with Go's error texts.

use std::time::Duration;

/// Parses a Go duration. Negative durations are refused (nothing here
/// takes one).
pub fn parse(s: &str) -> Result<Duration, String> {
    let quoted = format!("{s:?}");
    let invalid = || format!("time: invalid duration {quoted}");
    let t = s.strip_prefix('+').unwrap_or(s);
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(invalid());
    }
    let mut rest = t;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if n == 0 {
            return Err(invalid());
        }
        let num: f64 = rest[..n].parse().map_err(|_| invalid())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..u] {
            "" => return Err(format!("time: missing unit in duration {quoted}")),
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("time: unknown unit {unit:?} in duration {quoted}")),
        };
        total += num * factor;
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_as_go_does() {
        let ok = [
            ("0", 0.0),
            ("+0", 0.0),
            ("0s", 0.0),
            ("5m", 300.0),
            ("1h2m3s", 3723.0),
            ("1.5s", 1.5),
            ("1.5h", 5400.0),
            ("300ms", 0.3),
            ("2us", 0.000002),
        ];
        for (s, secs) in ok {
            assert_eq!(super::parse(s).unwrap().as_secs_f64(), secs, "{s}");
        }
        let bad = [
            ("", "time: invalid duration \"\""),
            ("5", "time: missing unit in duration \"5\""),
            ("1x", "time: unknown unit \"x\" in duration \"1x\""),
            ("1d2h", "time: unknown unit \"d\" in duration \"1d2h\""),
            ("m", "time: invalid duration \"m\""),
            ("1..2s", "time: invalid duration \"1..2s\""),
            ("-5s", "time: invalid duration \"-5s\""),
        ];
        for (s, want) in bad {
            assert_eq!(super::parse(s).unwrap_err(), want, "{s}");
        }
    }
}
