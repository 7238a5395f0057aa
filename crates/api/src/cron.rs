//! Cron schedules as Kubernetes parses them (robfig/cron's standard
//! parser, with its error texts): five fields or a descriptor, an optional
//! `TZ=`/`CRON_TZ=` prefix. Used by CronJob validation and the CronJob
//! controller.

use jiff::tz::TimeZone;

/// Marks a field written as `*` (robfig's starBit: day-of-month and
/// day-of-week then combine with AND instead of OR).
pub const STAR: u64 = 1 << 63;

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// From a `TZ=`/`CRON_TZ=` prefix; None: the caller's zone.
    pub tz: Option<TimeZone>,
    pub kind: ScheduleKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleKind {
    Spec {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    /// `@every DURATION` (whole seconds, at least 1).
    Every(i64),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MONTHS: &[(&str, u32)] = &[
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];
const DAYS: &[(&str, u32)] = &[
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
];
const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: MONTHS,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: DAYS,
};

fn parse_uint(s: &str) -> Result<u32, String> {
    let n: i64 = s.parse().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    u32::try_from(n).map_err(|e| format!("failed to parse int from {s}: {e}"))
}

fn parse_int_or_name(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_uint(s)
}

fn parse_range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let mut extra = 0u64;
    let (start, mut end);
    if low_high[0] == "*" || low_high[0] == "?" {
        start = b.min;
        end = b.max;
        extra = STAR;
    } else {
        start = parse_int_or_name(low_high[0], b)?;
        end = match low_high.len() {
            1 => start,
            2 => parse_int_or_name(low_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_uint(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = 0u64;
    let mut i = start;
    while i <= end {
        bits |= 1 << i;
        i += step;
    }
    Ok(bits | extra)
}

fn parse_field(field: &str, b: &Bounds) -> Result<u64, String> {
    let mut bits = 0;
    for expr in field.split(',') {
        bits |= parse_range(expr, b)?;
    }
    Ok(bits)
}

/// Parses a schedule as robfig/cron's `ParseStandard` does.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let mut spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut tz = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap();
        let sp = spec.find(char::is_whitespace).unwrap_or(spec.len());
        let name = &spec[eq + 1..sp];
        tz = Some(load_location(name).map_err(|e| format!("provided bad location {name}: {e}"))?);
        spec = spec[sp..].trim();
    }
    if let Some(desc) = spec.strip_prefix('@') {
        let fields = match desc {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => {
                if let Some(d) = desc.strip_prefix("every ") {
                    let secs = crate::duration::parse(d.trim())
                        .map_err(|e| format!("failed to parse duration {spec}: {e}"))?
                        .as_secs() as i64;
                    return Ok(Schedule {
                        tz,
                        kind: ScheduleKind::Every(secs.max(1)),
                    });
                }
                return Err(format!("unrecognized descriptor: {spec}"));
            }
        };
        let mut s = parse(fields)?;
        s.tz = tz;
        return Ok(s);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    Ok(Schedule {
        tz,
        kind: ScheduleKind::Spec {
            minute: parse_field(fields[0], &MINUTE)?,
            hour: parse_field(fields[1], &HOUR)?,
            dom: parse_field(fields[2], &DOM)?,
            month: parse_field(fields[3], &MONTH)?,
            dow: parse_field(fields[4], &DOW)?,
        },
    })
}

/// An IANA time zone as Go's time.LoadLocation finds it ("" and "UTC" are
/// UTC, "Local" the local zone).
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        "Local" => Ok(TimeZone::system()),
        _ => TimeZone::get(name).map_err(|_| format!("unknown time zone {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn schedules() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("*/5 * * * *", Ok(())),
            ("0 0 1 jan-mar mon,WED", Ok(())),
            ("15 3 * * 1-5", Ok(())),
            ("@hourly", Ok(())),
            ("@every 1h30m", Ok(())),
            ("CRON_TZ=UTC 0 * * * *", Ok(())),
            (
                "* * * *",
                Err("expected exactly 5 fields, found 4: [* * * *]"),
            ),
            ("bad", Err("expected exactly 5 fields, found 1: [bad]")),
            (
                "61 * * * *",
                Err("end of range (61) above maximum (59): 61"),
            ),
            (
                "* * 0 * *",
                Err("beginning of range (0) below minimum (1): 0"),
            ),
            (
                "5-1 * * * *",
                Err("beginning of range (5) beyond end of range (1): 5-1"),
            ),
            (
                "x * * * *",
                Err("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ),
            (
                "*/0 * * * *",
                Err("step of range should be a positive number: */0"),
            ),
            ("@fortnightly", Err("unrecognized descriptor: @fortnightly")),
            (
                "@every soon",
                Err("failed to parse duration @every soon: time: invalid duration \"soon\""),
            ),
        ];
        for (spec, want) in cases {
            let got = parse(spec).map(|_| ());
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{spec}"),
                Err(e) => assert_eq!(got, Err((*e).to_owned()), "{spec}"),
            }
        }
    }

    #[test]
    fn parses_like_robfig() {
        let ok = [
            "* * * * *",
            "*/5 * * * *",
            "0 0 1 1 *",
            "30 6-16/4 * * 1-5",
            "0 0 * JAN,jul sun",
            "5/15 * * * ?",
            "@hourly",
            "@every 1h30m",
            "CRON_TZ=Asia/Tokyo 0 9 * * *",
            "TZ=UTC @daily",
        ];
        for s in ok {
            assert!(parse(s).is_ok(), "{s}: {:?}", parse(s));
        }
        let bad = [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            ("x * * * *", "failed to parse int from x"),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            (
                "CRON_TZ=Mars/Base 0 9 * * *",
                "provided bad location Mars/Base",
            ),
        ];
        for (s, want) in bad {
            let e = parse(s).unwrap_err();
            assert!(e.starts_with(want), "{s}: {e}");
        }
    }
}
