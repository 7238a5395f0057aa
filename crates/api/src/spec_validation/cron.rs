//! CronJob schedules as Kubernetes parses them (robfig/cron's standard
//! parser): five fields or a descriptor, with its error texts.

struct Field {
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

const FIELDS: [Field; 5] = [
    Field {
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        min: 1,
        max: 12,
        names: MONTHS,
    },
    Field {
        min: 0,
        max: 6,
        names: DAYS,
    },
];

/// Checks a schedule; the error is robfig/cron's text.
pub fn parse(spec: &str) -> Result<(), String> {
    let mut spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    for prefix in ["TZ=", "CRON_TZ="] {
        if let Some(rest) = spec.strip_prefix(prefix) {
            let (_, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            spec = rest.trim();
        }
    }
    if spec.starts_with('@') {
        return descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (f, bounds) in fields.iter().zip(FIELDS.iter()) {
        for expr in f.split(',').filter(|e| !e.is_empty()) {
            range(expr, bounds)?;
        }
    }
    Ok(())
}

fn descriptor(spec: &str) -> Result<(), String> {
    match spec {
        "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => {
            Ok(())
        }
        _ => match spec.strip_prefix("@every ") {
            Some(d) if is_duration(d) => Ok(()),
            Some(d) => Err(format!(
                "failed to parse duration {spec}: time: invalid duration \"{d}\""
            )),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// Go's time.ParseDuration syntax: `[-+]` then number-unit pairs.
fn is_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

fn int(expr: &str) -> Result<u32, String> {
    match expr.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {expr}")),
        Ok(n) => Ok(n as u32),
        Err(_) => Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax"
        )),
    }
}

fn int_or_name(expr: &str, names: &[(&str, u32)]) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    match names.iter().find(|(n, _)| *n == lower) {
        Some((_, v)) => Ok(*v),
        None => int(expr),
    }
}

fn range(expr: &str, f: &Field) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        (f.min, f.max)
    } else {
        let start = int_or_name(low_high[0], f.names)?;
        match low_high.len() {
            1 => (start, start),
            2 => (start, int_or_name(low_high[1], f.names)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = int(range_and_step[1])?;
            if low_high.len() == 1 {
                end = f.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < f.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            f.min
        ));
    }
    if end > f.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            f.max
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
    Ok(())
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
            let got = parse(spec);
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{spec}"),
                Err(e) => assert_eq!(got, Err((*e).to_owned()), "{spec}"),
            }
        }
    }
}
