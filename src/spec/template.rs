//! `{{ name }}` templates in pipeline files: the run's logical date and the pipeline's params.
//!
//! Only declared names are accepted; an unknown one is an error at its position. In SQL a
//! value is rendered as a SQL literal (strings quoted and escaped), so a `--var` can never
//! inject SQL; elsewhere (paths, numbers) it is rendered as written.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};

/// The values templates can name for one run.
#[derive(Debug, Clone)]
pub struct TemplateVars {
    pub ds: NaiveDate,
    pub params: BTreeMap<String, ParamValue>,
    /// The run's logical interval when a schedule gave it one (`nightjar schedule`,
    /// `nightjar backfill`); `None` means the UTC day of `ds`.
    pub interval: Option<DataInterval>,
}

/// A run's logical interval `[start, end)`: the data it is about, not when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl DataInterval {
    /// The UTC day of `ds`: the interval of a run started with `--ds`.
    pub fn day(ds: NaiveDate) -> DataInterval {
        let start = ds.and_time(chrono::NaiveTime::MIN).and_utc();
        let end = ds.checked_add_days(Days::new(1)).unwrap_or(ds);
        DataInterval {
            start,
            end: end.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }
}

/// How interval bounds are written in templates and run state: UTC, second precision.
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A pipeline param's value: what `params:` declares and `--var` overrides.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

impl ParamValue {
    /// Parses a `--var` value with the type of the declared default.
    pub fn parse_like(&self, text: &str) -> Result<ParamValue, String> {
        match self {
            ParamValue::Bool(_) => text
                .parse()
                .map(ParamValue::Bool)
                .map_err(|_| format!("`{text}` is not a boolean")),
            ParamValue::Int(_) => text
                .parse()
                .map(ParamValue::Int)
                .map_err(|_| format!("`{text}` is not an integer")),
            ParamValue::Float(_) => text
                .parse()
                .map(ParamValue::Float)
                .map_err(|_| format!("`{text}` is not a number")),
            ParamValue::String(_) => Ok(ParamValue::String(text.to_string())),
        }
    }

    fn raw(&self) -> String {
        match self {
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => f.to_string(),
            ParamValue::String(s) => s.clone(),
        }
    }

    fn sql(&self) -> String {
        match self {
            ParamValue::String(s) => format!("'{}'", s.replace('\'', "''")),
            ParamValue::Float(f) if !f.is_finite() => "NULL".into(),
            other => other.raw(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Paths, names and numbers: values as written.
    Plain,
    /// SQL text: values as SQL literals.
    Sql,
}

pub const BUILTIN_NAMES: &[&str] = &[
    "ds",
    "ds_nodash",
    "data_interval_start",
    "data_interval_end",
];

impl TemplateVars {
    fn lookup(&self, name: &str, context: Context) -> Option<String> {
        let ds = self.ds;
        let quote = |s: String| {
            if context == Context::Sql {
                format!("'{s}'")
            } else {
                s
            }
        };
        Some(match name {
            "ds" => quote(ds.format("%Y-%m-%d").to_string()),
            "ds_nodash" => quote(ds.format("%Y%m%d").to_string()),
            "data_interval_start" => quote(format_instant(self.data_interval().start)),
            "data_interval_end" => quote(format_instant(self.data_interval().end)),
            _ => {
                let value = self.params.get(name.strip_prefix("params.")?)?;
                match context {
                    Context::Sql => value.sql(),
                    Context::Plain => value.raw(),
                }
            }
        })
    }

    pub fn data_interval(&self) -> DataInterval {
        self.interval.unwrap_or_else(|| DataInterval::day(self.ds))
    }

    fn known_names(&self) -> Vec<String> {
        BUILTIN_NAMES
            .iter()
            .map(|s| s.to_string())
            .chain(self.params.keys().map(|k| format!("params.{k}")))
            .collect()
    }
}

/// An error in a template, with the byte offset of the `{{` it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Renders every `{{ name }}` in `text`.
pub fn render(text: &str, vars: &TemplateVars, context: Context) -> Result<String, TemplateError> {
    let known = vars.known_names();
    render_with(text, &|name| vars.lookup(name, context), &known, |_| {
        "(declare params under `params:`)".to_string()
    })
}

/// Renders every `{{ name }}` in `text` with `lookup`; an unknown name is an error that lists
/// `known` (or suggests the nearest, followed by `why`).
pub fn render_with(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    known: &[String],
    why: impl Fn(&str) -> String,
) -> Result<String, TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError {
                offset: offset + start,
                message: "unclosed `{{` in template".into(),
                hint: Some("close it with `}}`".into()),
            });
        };
        let name = after[..end].trim();
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => {
                let suggestion = crate::diag::did_you_mean(name, known.iter().map(|s| s.as_str()));
                return Err(TemplateError {
                    offset: offset + start,
                    message: format!("unknown template variable `{name}`"),
                    hint: Some(match suggestion {
                        Some(s) => format!("did you mean `{s}`? {}", why(name)),
                        None => format!("known variables: {}", known.join(", ")),
                    }),
                });
            }
        }
        let consumed = start + 2 + end + 2;
        rest = &rest[consumed..];
        offset += consumed;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> TemplateVars {
        let mut params = BTreeMap::new();
        params.insert(
            "country".to_string(),
            ParamValue::String("DE' OR 1=1 --".into()),
        );
        params.insert("days".to_string(), ParamValue::Int(30));
        TemplateVars {
            ds: NaiveDate::from_ymd_opt(2025, 3, 31).unwrap(),
            params,
            interval: None,
        }
    }

    #[test]
    fn renders_dates_and_params() {
        let v = vars();
        assert_eq!(
            render("p/{{ ds_nodash }}/x", &v, Context::Plain).unwrap(),
            "p/20250331/x"
        );
        assert_eq!(
            render(
                "ts < {{data_interval_end}} and n = {{ params.days }}",
                &v,
                Context::Sql
            )
            .unwrap(),
            "ts < '2025-04-01T00:00:00Z' and n = 30"
        );
    }

    #[test]
    fn a_scheduled_interval_replaces_the_utc_day() {
        let mut v = vars();
        v.interval = Some(DataInterval {
            start: "2025-03-30T01:30:00Z".parse().unwrap(),
            end: "2025-03-31T00:30:00Z".parse().unwrap(),
        });
        assert_eq!(
            render(
                "{{ ds }} {{ data_interval_start }} {{ data_interval_end }}",
                &v,
                Context::Sql
            )
            .unwrap(),
            "'2025-03-31' '2025-03-30T01:30:00Z' '2025-03-31T00:30:00Z'"
        );
    }

    #[test]
    fn sql_strings_cannot_break_out_of_their_literal() {
        let v = vars();
        assert_eq!(
            render("country = {{ params.country }}", &v, Context::Sql).unwrap(),
            "country = 'DE'' OR 1=1 --'"
        );
    }

    #[test]
    fn unknown_names_are_errors_with_a_suggestion() {
        let err = render("x {{ params.dayz }}", &vars(), Context::Plain).unwrap_err();
        assert_eq!(err.offset, 2);
        assert_eq!(err.message, "unknown template variable `params.dayz`");
        assert!(err.hint.unwrap().contains("params.days"));
        assert!(render("{{ ds", &vars(), Context::Plain).is_err());
    }
}
