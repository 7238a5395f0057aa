//! Label selectors: the string form (`app=web,tier!=db,env in (a,b),!x`)
//! and metav1.LabelSelector (`matchLabels`, `matchExpressions`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::validation;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// A conjunction of requirements. An empty selector matches everything;
/// `nothing` matches nothing (a null metav1.LabelSelector).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
    pub nothing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            Op::Equals | Op::In => v.is_some_and(|v| self.values.contains(v)),
            Op::NotEquals | Op::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Op::Exists => v.is_some(),
            Op::DoesNotExist => v.is_none(),
        }
    }
}

impl LabelSelector {
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    pub fn nothing() -> LabelSelector {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches an object's `metadata.labels` JSON (absent = no labels).
    pub fn matches_value(&self, labels: Option<&Value>) -> bool {
        let map: BTreeMap<String, String> = labels
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&map)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r.op {
                Op::Equals => format!("{}={}", r.key, r.values[0]),
                Op::NotEquals => format!("{}!={}", r.key, r.values[0]),
                Op::In => format!("{} in ({})", r.key, r.values.join(",")),
                Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    let errs = validation::is_qualified_name(key);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "key: Invalid value: {key:?}: {}",
            errs.join("; ")
        )))
    }
}

fn check_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let errs = validation::is_valid_label_value(value);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "values[0][{key}]: Invalid value: {value:?}: {}",
            errs.join("; ")
        )))
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Parses the string form of a label selector.
pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
    let mut requirements = Vec::new();
    if s.trim().is_empty() {
        return Ok(LabelSelector::everything());
    }
    for part in split_top(s) {
        let part = part.trim();
        if part.is_empty() {
            return Err(SelectorError(format!(
                "found '', expected: identifier, in selector {s:?}"
            )));
        }
        let req = if let Some(key) = part.strip_prefix('!') {
            let key = key.trim();
            check_key(key)?;
            Requirement {
                key: key.to_owned(),
                op: Op::DoesNotExist,
                values: vec![],
            }
        } else if let Some((k, v)) = part.split_once("!=") {
            let (k, v) = (k.trim(), v.trim());
            check_key(k)?;
            check_value(k, v)?;
            Requirement {
                key: k.to_owned(),
                op: Op::NotEquals,
                values: vec![v.to_owned()],
            }
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            let (k, v) = (k.trim(), v.trim());
            check_key(k)?;
            check_value(k, v)?;
            Requirement {
                key: k.to_owned(),
                op: Op::Equals,
                values: vec![v.to_owned()],
            }
        } else if let Some(open) = part.find('(') {
            let head = part[..open].trim();
            let close = part
                .rfind(')')
                .filter(|c| *c == part.len() - 1)
                .ok_or_else(|| {
                    SelectorError(format!("found '', expected: ')', in selector {s:?}"))
                })?;
            let (key, op) = match head.rsplit_once(char::is_whitespace) {
                Some((k, "in")) => (k.trim(), Op::In),
                Some((k, "notin")) => (k.trim(), Op::NotIn),
                _ => return Err(SelectorError(format!("unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt, in selector {s:?}"))),
            };
            check_key(key)?;
            let values: Vec<String> = part[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect();
            if values.is_empty() && op == Op::In {
                return Err(SelectorError(
                    "for 'in', 'notin' operators, values set can't be empty".into(),
                ));
            }
            for v in &values {
                check_value(key, v)?;
            }
            Requirement {
                key: key.to_owned(),
                op,
                values,
            }
        } else {
            if part.contains(char::is_whitespace) {
                return Err(SelectorError(format!(
                    "unable to parse requirement: found '{}', expected: in, notin, =, ==, !=",
                    part.split_whitespace().nth(1).unwrap_or("")
                )));
            }
            check_key(part)?;
            Requirement {
                key: part.to_owned(),
                op: Op::Exists,
                values: vec![],
            }
        };
        requirements.push(req);
    }
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector {
        requirements,
        nothing: false,
    })
}

/// Reads a metav1.LabelSelector. `null` selects nothing; `{}` everything.
pub fn from_label_selector_json(v: &Value) -> Result<LabelSelector, SelectorError> {
    if v.is_null() {
        return Ok(LabelSelector::nothing());
    }
    let mut requirements = Vec::new();
    if let Some(ml) = v.get("matchLabels").and_then(Value::as_object) {
        for (k, val) in ml {
            let val = val.as_str().unwrap_or("");
            check_key(k)?;
            check_value(k, val)?;
            requirements.push(Requirement {
                key: k.clone(),
                op: Op::Equals,
                values: vec![val.to_owned()],
            });
        }
    }
    for e in v
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or("");
        check_key(key)?;
        let values: Vec<String> = e["values"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let op = match e["operator"].as_str().unwrap_or("") {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            other => {
                return Err(SelectorError(format!(
                    "{other:?} is not a valid label selector operator"
                )))
            }
        };
        match op {
            Op::In | Op::NotIn if values.is_empty() => {
                return Err(SelectorError(
                    "for 'in', 'notin' operators, values set can't be empty".into(),
                ))
            }
            Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                return Err(SelectorError(
                    "values set must be empty for exists and does not exist".into(),
                ))
            }
            _ => {}
        }
        requirements.push(Requirement {
            key: key.to_owned(),
            op,
            values,
        });
    }
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector {
        requirements,
        nothing: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_and_match() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        let cases: &[(&str, bool, bool)] = &[
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("app in (web, db)", true, true),
            ("app notin (web)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier=front", true, false),
            (" app = web , !nope ", true, false),
            ("example.com/role=x", false, false),
        ];
        for (sel, want_web, want_db) in cases {
            let s = parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(
                (s.matches(&web), s.matches(&db)),
                (*want_web, *want_db),
                "{sel}"
            );
        }
        for bad in [
            "app=",
            "=x",
            "a b",
            "app in ()",
            "Bad Key=x",
            "app=has space",
            "app in (a",
        ] {
            if bad == "app=" {
                // An empty value is allowed: it matches a label with value "".
                assert!(parse(bad).is_ok());
                continue;
            }
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
        assert_eq!(
            parse("b=1,a in (x,y),!c").unwrap().to_string(),
            "a in (x,y),b=1,!c"
        );
    }

    #[test]
    fn label_selector_json() {
        let web = labels(&[("app", "web"), ("env", "prod")]);
        let s = from_label_selector_json(&json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}))
        .unwrap();
        assert!(s.matches(&web));
        assert!(from_label_selector_json(&json!({})).unwrap().matches(&web));
        assert!(!from_label_selector_json(&Value::Null)
            .unwrap()
            .matches(&web));
        assert!(from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
        )
        .is_err());
        assert!(from_label_selector_json(
            &json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
        )
        .is_err());
    }
}
