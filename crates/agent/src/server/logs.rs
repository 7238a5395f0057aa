//! Container logs as the kubelet serves them: CRI log files
//! (`<rfc3339nano> <stdout|stderr> <F|P> <msg>`, one record a line,
//! partial records joined into one line) filtered by the
//! `PodLogOptions` of `GET /containerLogs/...`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The query of a log request (`PodLogOptions` as the kubelet reads it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    /// Only lines at or after this time (from sinceSeconds or sinceTime).
    pub since: Option<DateTime<Utc>>,
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?}")),
    }
}

fn positive(name: &str, v: &str, min: i64) -> Result<u64, String> {
    let n: i64 = v
        .parse()
        .map_err(|_| format!("{name}: invalid value {v:?}"))?;
    if n < min {
        return Err(format!(
            "{name}: Invalid value: {n}: must be greater than {}",
            min - 1
        ));
    }
    Ok(n as u64)
}

impl LogOptions {
    /// Reads the query string; `now` turns sinceSeconds into a time.
    pub fn parse(query: Option<&str>, now: DateTime<Utc>) -> Result<LogOptions, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| e.to_string())?;
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (k, v) in &pairs {
            match k.as_str() {
                "follow" => o.follow = flag(v)?,
                "previous" => o.previous = flag(v)?,
                "timestamps" => o.timestamps = flag(v)?,
                "tailLines" => o.tail_lines = Some(positive("tailLines", v, 0)?),
                "limitBytes" => o.limit_bytes = Some(positive("limitBytes", v, 1)?),
                "sinceSeconds" => since_seconds = Some(positive("sinceSeconds", v, 1)?),
                "sinceTime" => {
                    since_time = Some(
                        DateTime::parse_from_rfc3339(v)
                            .map_err(|_| format!("sinceTime: invalid time {v:?}"))?
                            .with_timezone(&Utc),
                    )
                }
                _ => {}
            }
        }
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        o.since = since_time.or_else(|| since_seconds.map(|s| now - Duration::from_secs(s)));
        Ok(o)
    }
}

/// One CRI log record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub msg: &'a [u8],
}

/// Parses one line of a CRI log file (without its newline).
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let tag = parts.next()?;
    let partial = match tag {
        b"P" => true,
        b"F" => false,
        // Tags may carry more flags after ':'; only P/F matter.
        t if t.starts_with(b"P:") => true,
        t if t.starts_with(b"F:") => false,
        _ => return None,
    };
    Some(Record {
        time,
        stream,
        partial,
        msg: parts.next().unwrap_or(b""),
    })
}

/// One log line as served: its first record's time and the joined text
/// (with its newline).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub time: String,
    pub text: Vec<u8>,
}

/// Turns CRI log bytes into lines, record by record, keeping what is
/// not complete yet (an unterminated file line, or partial records
/// waiting for their final one) for the next `push`.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    /// Partial records of the line being assembled, per stream.
    partial: Option<Line>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Line>) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl;
            if let Some(r) = parse_record(&self.pending[start..end]) {
                let line = self.partial.get_or_insert_with(|| Line {
                    time: r.time.to_owned(),
                    text: Vec::new(),
                });
                line.text.extend_from_slice(r.msg);
                if !r.partial {
                    let mut line = self.partial.take().expect("just set");
                    line.text.push(b'\n');
                    out.push(line);
                }
            }
            start = end + 1;
        }
        self.pending.drain(..start);
    }
}

/// Parses a log time (RFC 3339 with nanoseconds).
pub fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Writes lines as the kubelet does, honouring since, timestamps and the
/// byte limit. Returns false once the byte limit is reached.
#[derive(Debug)]
pub struct Writer {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    left: Option<u64>,
}

impl Writer {
    pub fn new(o: &LogOptions) -> Writer {
        Writer {
            since: o.since,
            timestamps: o.timestamps,
            left: o.limit_bytes,
        }
    }

    /// Whether `line` passes the since filter.
    pub fn wanted(&self, line: &Line) -> bool {
        match (self.since, parse_time(&line.time)) {
            (Some(since), Some(t)) => t >= since,
            _ => true,
        }
    }

    /// Appends `line` to `out`; false when the byte limit is used up.
    pub fn write(&mut self, line: &Line, out: &mut Vec<u8>) -> bool {
        if !self.wanted(line) {
            return true;
        }
        let mut bytes = Vec::with_capacity(line.text.len() + 32);
        if self.timestamps {
            bytes.extend_from_slice(line.time.as_bytes());
            bytes.push(b' ');
        }
        bytes.extend_from_slice(&line.text);
        if let Some(left) = &mut self.left {
            let n = (*left).min(bytes.len() as u64) as usize;
            out.extend_from_slice(&bytes[..n]);
            *left -= n as u64;
            return *left > 0;
        }
        out.extend_from_slice(&bytes);
        true
    }

    pub fn exhausted(&self) -> bool {
        self.left == Some(0)
    }
}

/// The lines of a whole file's worth of bytes: the last `tail` of them
/// when given, then those the since filter keeps (the kubelet's order).
pub fn initial_lines(
    decoder: &mut Decoder,
    bytes: &[u8],
    writer: &Writer,
    tail: Option<u64>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    decoder.push(bytes, &mut lines);
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n as usize);
        lines.drain(..skip);
    }
    lines.retain(|l| writer.wanted(l));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F one\n\
2026-01-01T00:00:02.5Z stderr F two\n\
2026-01-01T00:00:03Z stdout P thr\n\
2026-01-01T00:00:03.1Z stdout P e\n\
2026-01-01T00:00:03.2Z stdout F e\n\
garbage line\n\
2026-01-01T00:00:04Z stdout F \n\
2026-01-01T00:00:05Z stdout F five\n";

    fn now() -> DateTime<Utc> {
        parse_time("2026-01-01T00:00:06Z").unwrap()
    }

    fn render(query: &str) -> String {
        let o = LogOptions::parse(Some(query), now()).unwrap();
        let mut w = Writer::new(&o);
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for l in initial_lines(&mut d, LOG.as_bytes(), &w, o.tail_lines) {
            if !w.write(&l, &mut out) {
                break;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn options() {
        let cases: &[(&str, Result<LogOptions, &str>)] = &[
            ("", Ok(LogOptions::default())),
            (
                "follow=true&previous=1&timestamps=true&tailLines=3&limitBytes=10",
                Ok(LogOptions {
                    follow: true,
                    previous: true,
                    timestamps: true,
                    tail_lines: Some(3),
                    limit_bytes: Some(10),
                    since: None,
                }),
            ),
            (
                "sinceSeconds=2",
                Ok(LogOptions {
                    since: parse_time("2026-01-01T00:00:04Z"),
                    ..Default::default()
                }),
            ),
            (
                "sinceTime=2026-01-01T00:00:03Z",
                Ok(LogOptions {
                    since: parse_time("2026-01-01T00:00:03Z"),
                    ..Default::default()
                }),
            ),
            (
                "tailLines=-1",
                Err("tailLines: Invalid value: -1: must be greater than -1"),
            ),
            (
                "limitBytes=0",
                Err("limitBytes: Invalid value: 0: must be greater than 0"),
            ),
            ("follow=maybe", Err("invalid boolean value \"maybe\"")),
            (
                "sinceSeconds=1&sinceTime=2026-01-01T00:00:03Z",
                Err("at most one of sinceTime or sinceSeconds may be specified"),
            ),
        ];
        for (q, want) in cases {
            let got = LogOptions::parse(Some(q), now());
            assert_eq!(got, want.clone().map_err(|e| e.to_owned()), "{q}");
        }
    }

    #[test]
    fn records() {
        type Want = Option<(&'static str, &'static str, bool, &'static str)>;
        let cases: &[(&str, Want)] = &[
            (
                "2026-01-01T00:00:01Z stdout F hi there",
                Some(("2026-01-01T00:00:01Z", "stdout", false, "hi there")),
            ),
            (
                "2026-01-01T00:00:01Z stderr P part",
                Some(("2026-01-01T00:00:01Z", "stderr", true, "part")),
            ),
            (
                "2026-01-01T00:00:01Z stdout F",
                Some(("2026-01-01T00:00:01Z", "stdout", false, "")),
            ),
            (
                "2026-01-01T00:00:01Z stdout F:x y",
                Some(("2026-01-01T00:00:01Z", "stdout", false, "y")),
            ),
            ("2026-01-01T00:00:01Z stdin F x", None),
            ("2026-01-01T00:00:01Z stdout X x", None),
            ("nonsense", None),
        ];
        for (line, want) in cases {
            let got = parse_record(line.as_bytes()).map(|r| {
                (
                    r.time,
                    r.stream,
                    r.partial,
                    std::str::from_utf8(r.msg).unwrap(),
                )
            });
            assert_eq!(got, *want, "{line}");
        }
    }

    #[test]
    fn rendering() {
        let cases = [
            ("", "one\ntwo\nthree\n\nfive\n"),
            ("tailLines=2", "\nfive\n"),
            ("tailLines=0", ""),
            ("tailLines=100", "one\ntwo\nthree\n\nfive\n"),
            (
                "timestamps=true&tailLines=3",
                "2026-01-01T00:00:03Z three\n2026-01-01T00:00:04Z \n2026-01-01T00:00:05Z five\n",
            ),
            ("sinceSeconds=3", "three\n\nfive\n"),
            ("sinceTime=2026-01-01T00:00:02Z", "two\nthree\n\nfive\n"),
            ("sinceTime=2026-01-01T00:00:02Z&tailLines=1", "five\n"),
            ("sinceTime=2026-01-01T00:00:05Z&tailLines=3", "five\n"),
            ("limitBytes=6", "one\ntw"),
            ("limitBytes=4", "one\n"),
        ];
        for (q, want) in cases {
            assert_eq!(render(q), want, "{q}");
        }
    }

    #[test]
    fn decoder_keeps_incomplete_input() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let chunks = [
            "2026-01-01T00:00:01Z stdout F o",
            "ne\n2026-01-01T00:00:02Z stdout P a",
            "\n",
            "2026-01-01T00:00:03Z stdout F b\n2026",
        ];
        let mut seen = Vec::new();
        for c in chunks {
            d.push(c.as_bytes(), &mut out);
            seen.push(out.len());
        }
        assert_eq!(seen, [0, 1, 1, 2]);
        assert_eq!(out[1].text, b"ab\n");
        assert_eq!(out[1].time, "2026-01-01T00:00:02Z");
    }
}
