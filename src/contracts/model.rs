//! The contract as nightjar understands it: objects, their properties, and every rule to check
//! (written quality rules, the rules implied by `required`/`unique`/`primaryKey`/
//! `logicalTypeOptions`, and the freshness SLA), each with a stable id and a source position.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::spec::yaml::Pos;

/// One ODCS v3 data contract file.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The file as the user should read it (relative to the project directory).
    pub file: PathBuf,
    pub id: String,
    pub name: Option<String>,
    /// The contract's own version (`version:`), kept as written.
    pub version: String,
    pub status: String,
    /// The ODCS version the file is written in, e.g. `v3.1.0`.
    pub api_version: String,
    pub domain: Option<String>,
    pub description: Option<ContractDescription>,
    pub team: Option<Team>,
    /// sha256 of the file's bytes, hex: check reports name the exact contract text they used.
    pub text_sha256: String,
    pub objects: Vec<ContractObject>,
}

impl Contract {
    pub fn object(&self, name: &str) -> Option<&ContractObject> {
        self.objects.iter().find(|o| o.name == name)
    }

    /// Who answers for the data: the team member whose role is `owner`, else the team's name.
    pub fn owner(&self) -> Option<&str> {
        let team = self.team.as_ref()?;
        team.members
            .iter()
            .find(|m| {
                m.role
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case("owner"))
            })
            .map(|m| m.username.as_str())
            .or(team.name.as_deref())
    }
}

/// ODCS v3 `description:` is a mapping, not a string.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContractDescription {
    pub purpose: Option<String>,
    pub usage: Option<String>,
    pub limitations: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Team {
    pub name: Option<String>,
    pub members: Vec<TeamMember>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamMember {
    pub username: String,
    pub name: Option<String>,
    pub role: Option<String>,
}

/// One `schema[]` entry: a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractObject {
    pub name: String,
    pub id: Option<String>,
    pub physical_name: Option<String>,
    pub description: Option<String>,
    pub properties: Vec<Property>,
    /// Every rule on this object, in file order: implied rules of a property come before its
    /// written rules; schema-level rules, the primary key and freshness come last.
    pub rules: Vec<Rule>,
    pub pos: Pos,
}

impl ContractObject {
    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    /// The property stored in the table column `column`.
    pub fn property_by_column(&self, column: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.column() == column)
    }
}

/// One `properties[]` entry: a column.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub id: Option<String>,
    /// The column's name in the table when it differs from `name`.
    pub physical_name: Option<String>,
    pub logical_type: Option<LogicalType>,
    /// As written, e.g. `varchar(18)`.
    pub physical_type: Option<String>,
    pub required: bool,
    pub unique: bool,
    pub primary_key: bool,
    pub primary_key_position: Option<i64>,
    pub classification: Option<String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub pos: Pos,
}

/// Classifications that make a column personal or secret data: its values are masked in
/// example rows.
const PII_CLASSIFICATIONS: [&str; 4] = ["pii", "restricted", "confidential", "sensitive"];

impl Property {
    /// The column in the table: `physicalName` if given, else `name`.
    pub fn column(&self) -> &str {
        self.physical_name.as_deref().unwrap_or(&self.name)
    }

    /// Personal or secret data: a PII-like classification, or a `pii` tag.
    pub fn is_pii(&self) -> bool {
        self.classification.as_deref().is_some_and(|c| {
            PII_CLASSIFICATIONS
                .iter()
                .any(|p| c.trim().eq_ignore_ascii_case(p))
        }) || self
            .tags
            .iter()
            .any(|t| t.trim().eq_ignore_ascii_case("pii"))
    }
}

/// ODCS `logicalType` of a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogicalType {
    String,
    Date,
    Timestamp,
    Time,
    Number,
    Integer,
    Object,
    Array,
    Boolean,
}

impl LogicalType {
    pub const ALL: [LogicalType; 9] = [
        LogicalType::String,
        LogicalType::Date,
        LogicalType::Timestamp,
        LogicalType::Time,
        LogicalType::Number,
        LogicalType::Integer,
        LogicalType::Object,
        LogicalType::Array,
        LogicalType::Boolean,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LogicalType::String => "string",
            LogicalType::Date => "date",
            LogicalType::Timestamp => "timestamp",
            LogicalType::Time => "time",
            LogicalType::Number => "number",
            LogicalType::Integer => "integer",
            LogicalType::Object => "object",
            LogicalType::Array => "array",
            LogicalType::Boolean => "boolean",
        }
    }

    pub fn parse(text: &str) -> Option<LogicalType> {
        LogicalType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Where a rule comes from: written in `quality:`, or implied by another key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RuleOrigin {
    Quality,
    Required,
    Unique,
    PrimaryKey,
    LogicalTypeOptions,
    Sla,
}

/// One check. `column` is the property's name (for people); the `RuleKind` holds the table
/// column(s) the SQL reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The ODCS `id` if given, else `<object>.<property>.<metric>` (`<object>.<metric>` for
    /// schema-level rules), with `.2`, `.3`, … appended to repeats.
    pub id: String,
    pub object: String,
    pub column: Option<String>,
    pub kind: RuleKind,
    pub op: Comparison,
    pub unit: Unit,
    pub severity: Severity,
    pub origin: RuleOrigin,
    pub description: Option<String>,
    pub pos: Pos,
}

/// What a rule measures. Column names here are table columns (`Property::column`).
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Rows where the column is null.
    NullValues {
        column: String,
    },
    /// Rows where the column is null or one of `missing` (compared as text); with no list,
    /// null or an empty/whitespace-only string.
    MissingValues {
        column: String,
        missing: Vec<String>,
    },
    /// Non-null rows outside `valid_values` (compared as text) or not matching `pattern`.
    InvalidValues {
        column: String,
        valid_values: Option<Vec<String>>,
        pattern: Option<String>,
    },
    /// Non-null rows outside `logicalTypeOptions` minimum/maximum (and their exclusive forms).
    Range {
        column: String,
        min: Option<Bound>,
        max: Option<Bound>,
    },
    /// Non-null rows whose text is shorter than `min` or longer than `max` characters.
    Length {
        column: String,
        min: Option<u64>,
        max: Option<u64>,
    },
    /// Non-null rows that are not a multiple of `factor`.
    MultipleOf {
        column: String,
        factor: f64,
    },
    /// Rows beyond the first of each distinct key (rows with a null key column are not keys).
    DuplicateValues {
        columns: Vec<String>,
    },
    RowCount,
    /// A query returning one number; `{object}` stands for the table.
    Sql {
        query: String,
    },
    /// Age of the newest value of a date/timestamp column at the end of the run's `ds` day.
    Freshness {
        column: String,
    },
}

impl RuleKind {
    /// The metric's name in reports.
    pub fn metric(&self) -> &'static str {
        match self {
            RuleKind::NullValues { .. } => "nullValues",
            RuleKind::MissingValues { .. } => "missingValues",
            RuleKind::InvalidValues { .. } => "invalidValues",
            RuleKind::Range { .. } => "range",
            RuleKind::Length { .. } => "length",
            RuleKind::MultipleOf { .. } => "multipleOf",
            RuleKind::DuplicateValues { .. } => "duplicateValues",
            RuleKind::RowCount => "rowCount",
            RuleKind::Sql { .. } => "sql",
            RuleKind::Freshness { .. } => "freshness",
        }
    }

    /// The table columns the rule reads (empty for `rowCount` and `sql`).
    pub fn columns(&self) -> Vec<&str> {
        match self {
            RuleKind::NullValues { column }
            | RuleKind::MissingValues { column, .. }
            | RuleKind::InvalidValues { column, .. }
            | RuleKind::Range { column, .. }
            | RuleKind::Length { column, .. }
            | RuleKind::MultipleOf { column, .. }
            | RuleKind::Freshness { column } => vec![column.as_str()],
            RuleKind::DuplicateValues { columns } => columns.iter().map(String::as_str).collect(),
            RuleKind::RowCount | RuleKind::Sql { .. } => Vec::new(),
        }
    }

    /// A rule decided row by row: its failing rows can be counted in the one aggregate scan
    /// and routed to quarantine.
    pub fn is_row_level(&self) -> bool {
        matches!(
            self,
            RuleKind::NullValues { .. }
                | RuleKind::MissingValues { .. }
                | RuleKind::InvalidValues { .. }
                | RuleKind::Range { .. }
                | RuleKind::Length { .. }
                | RuleKind::MultipleOf { .. }
        )
    }
}

/// One end of a value range.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub value: BoundValue,
    /// `minimum`/`maximum` include the value; `exclusiveMinimum`/`exclusiveMaximum` do not.
    pub inclusive: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BoundValue {
    Number(f64),
    /// `YYYY-MM-DD`, checked at load time.
    Date(String),
    /// An ISO 8601 date-time, checked at load time.
    Timestamp(String),
    /// `HH:MM:SS`, checked at load time.
    Time(String),
}

/// An ODCS operator and its value(s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Comparison {
    /// `mustBe`
    Eq(f64),
    /// `mustNotBe`
    Ne(f64),
    /// `mustBeGreaterThan`
    Gt(f64),
    /// `mustBeGreaterOrEqualTo`
    Ge(f64),
    /// `mustBeLessThan`
    Lt(f64),
    /// `mustBeLessOrEqualTo`
    Le(f64),
    /// `mustBeBetween`, both ends included
    Between(f64, f64),
    /// `mustNotBeBetween`, both ends excluded from the passing range
    NotBetween(f64, f64),
}

impl Comparison {
    pub const OPERATORS: [&'static str; 8] = [
        "mustBe",
        "mustNotBe",
        "mustBeGreaterThan",
        "mustBeGreaterOrEqualTo",
        "mustBeLessThan",
        "mustBeLessOrEqualTo",
        "mustBeBetween",
        "mustNotBeBetween",
    ];

    /// Whether an observed value passes. NaN (nothing could be measured) never passes.
    pub fn passes(&self, observed: f64) -> bool {
        if observed.is_nan() {
            return false;
        }
        match *self {
            Comparison::Eq(v) => observed == v,
            Comparison::Ne(v) => observed != v,
            Comparison::Gt(v) => observed > v,
            Comparison::Ge(v) => observed >= v,
            Comparison::Lt(v) => observed < v,
            Comparison::Le(v) => observed <= v,
            Comparison::Between(lo, hi) => lo <= observed && observed <= hi,
            Comparison::NotBetween(lo, hi) => observed < lo || observed > hi,
        }
    }

    /// The threshold for people: `= 0`, `<= 1%`, `between 100 and 200`, `<= 4 days`.
    pub fn describe(&self, unit: Unit) -> String {
        let v = |x: f64| format!("{}{}", fmt_number(x), unit.suffix());
        match *self {
            Comparison::Eq(x) => format!("= {}", v(x)),
            Comparison::Ne(x) => format!("!= {}", v(x)),
            Comparison::Gt(x) => format!("> {}", v(x)),
            Comparison::Ge(x) => format!(">= {}", v(x)),
            Comparison::Lt(x) => format!("< {}", v(x)),
            Comparison::Le(x) => format!("<= {}", v(x)),
            Comparison::Between(lo, hi) => format!("between {} and {}", v(lo), v(hi)),
            Comparison::NotBetween(lo, hi) => format!("not between {} and {}", v(lo), v(hi)),
        }
    }
}

/// `1` rather than `1.0`, `0.5` as is.
pub(crate) fn fmt_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// What an observed value counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// A number of rows (or, for `sql` rules, whatever number the query returns).
    Rows,
    /// 100 × rows / all rows.
    Percent,
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl Unit {
    fn suffix(self) -> &'static str {
        match self {
            Unit::Rows => "",
            Unit::Percent => "%",
            Unit::Seconds => " seconds",
            Unit::Minutes => " minutes",
            Unit::Hours => " hours",
            Unit::Days => " days",
        }
    }

    /// Seconds in one unit of a duration (`None` for counts).
    pub fn seconds(self) -> Option<f64> {
        match self {
            Unit::Rows | Unit::Percent => None,
            Unit::Seconds => Some(1.0),
            Unit::Minutes => Some(60.0),
            Unit::Hours => Some(3600.0),
            Unit::Days => Some(86_400.0),
        }
    }
}

/// ODCS `severity`: `error` blocks the data (default), `warning` and `info` are reported only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn is_blocking(self) -> bool {
        self == Severity::Error
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}
