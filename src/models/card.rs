//! Model cards: the card of a registered model version (`card.json` and `card.md`), built from
//! the version's `metadata.json` value and the model's alias history records. Pure: no IO, no
//! clock, no hash-map iteration, so the same inputs give the same bytes.
//!
//! `card.json` follows Google's Model Card Toolkit (MCT) JSON schema v0.0.2
//! (`schema_version` "0.0.2"). The schema forbids unknown keys only at the top level, but MCT's
//! own loader (protobuf JSON) rejects unknown keys everywhere, so the card uses declared MCT
//! fields only and maps nightjar content onto the closest one:
//!
//! | nightjar (metadata.json)                         | MCT v0.0.2 field |
//! |--------------------------------------------------|------------------|
//! | model, description                               | `model_details.name`, `.overview` |
//! | card.owner                                       | `model_details.owners[0].name` |
//! | version, created_at (date part)                  | `model_details.version.name`, `.date` |
//! | algorithm, code, run_id, pipeline.task, target, promotion gate + inputs + verdict, alias history | `model_details.documentation` (one line each) |
//! | artefact.path                                    | `model_details.path` |
//! | card.references; lineage (run, tables read, upstream, code, files + sha256) | `model_details.references` (lineage as `nightjar:` URIs, see below) |
//! | algorithm + params + seed                        | `model_parameters.model_architecture` |
//! | training table, tables read, upstream, holdout table (rows, split, time range, label) | `model_parameters.data[]` (`name`, `description`) |
//! | features (signature order) with type + importance | `model_parameters.input_format_map` (key = feature) |
//! | target / entity / timestamp                      | `model_parameters.output_format(_map)`, `.input_format` |
//! | scalar metrics (holdout)                         | `quantitative_analysis.performance_metrics` without `slice` |
//! | calibration bins, deciles                        | `performance_metrics` with `slice` "calibration bin L-U" / "decile N" |
//! | segments and their largest gap                   | `performance_metrics` with `slice` "column=value"; gap as type `"<metric> largest gap"`; also `considerations.tradeoffs` |
//! | card.intended_use, card.out_of_scope             | `considerations.use_cases` ("Intended use: …", "Out of scope: …") |
//! | card.risk_category, card.human_oversight (EU AI Act) | `considerations.ethical_considerations[0]` (`name` = risk category, `mitigation_strategy` = human oversight) |
//! | card.limitations, card.caveats                   | `considerations.limitations` (caveats prefixed "Caveat: ") |
//!
//! Metric values are strings (the schema says so) holding exactly serde_json's rendering of the
//! metadata number, so they parse back to the same f64 the caller parsed (serde_json without its
//! `float_roundtrip` feature may read a 17-digit literal one ULP off, so compare parsed values,
//! not the file's text). Promotion and alias history have no MCT field and go to
//! `documentation` as text; the history kept is the records whose `version` is this version or
//! whose `previous_version` is (an alias moved away), sorted by time. Lineage URIs are
//! `nightjar:run:<id>`, `nightjar:table:<name>?delta_version=<v>`,
//! `nightjar:dataset:<name>?delta_version=<v>&run_id=<id>`, `nightjar:code:nightjar?version=…&git_commit=…`
//! and `nightjar:file:<path>?sha256=<hex>&bytes=<n>`, percent-encoded so they are valid URIs.
//!
//! Nothing is invented: a card field (`card.*`, `description`) that is null or absent is shown
//! as "_Not declared_" in Markdown and as "not declared" in JSON; a recorded field that is
//! missing is "_Not recorded_" / left out; a list declared empty is "_None listed_". The Markdown lists features in signature order
//! (importance rank beside each), formats floats with at most 4 decimals (scientific below
//! 0.001) and integers as integers, and escapes `|` and newlines in table cells.

use serde_json::{Map, Value, json};
use std::fmt::Write as _;

const NOT_DECLARED: &str = "not declared";
const NOT_RECORDED: &str = "not recorded";
const MD_NOT_DECLARED: &str = "_Not declared_";
const MD_NOT_RECORDED: &str = "_Not recorded_";

/// The MCT v0.0.2 model card of a version, from its metadata.json value and its alias history records
/// (the records whose `version` is this version or which moved an alias away from it; pass all of the model's).
pub fn card_json(metadata: &serde_json::Value, history: &[serde_json::Value]) -> serde_json::Value {
    let m = metadata;
    let mut card = Map::new();
    card.insert("schema_version".into(), json!("0.0.2"));
    card.insert("model_details".into(), json_model_details(m, history));
    card.insert("model_parameters".into(), json_model_parameters(m));
    card.insert(
        "quantitative_analysis".into(),
        json!({ "performance_metrics": json_performance_metrics(m) }),
    );
    card.insert("considerations".into(), json_considerations(m));
    Value::Object(card)
}

/// The same card as Markdown.
pub fn card_markdown(metadata: &serde_json::Value, history: &[serde_json::Value]) -> String {
    let m = metadata;
    let mut out = String::new();
    let name = s_at(m, &["model"]).unwrap_or_else(|| NOT_RECORDED.into());
    let version = s_at(m, &["version"]).map_or_else(String::new, |v| format!(" v{v}"));
    let _ = writeln!(out, "# Model card: {}{}\n", esc(&name), esc(&version));
    out.push_str("_Generated by nightjar from the version's metadata.json; the JSON twin (card.json) follows the Model Card Toolkit schema v0.0.2._\n");
    md_model_details(&mut out, m);
    md_intended_use(&mut out, m);
    md_risk(&mut out, m);
    md_training_data(&mut out, m);
    md_features(&mut out, m);
    md_metrics(&mut out, m);
    md_segments(&mut out, m);
    md_limitations(&mut out, m);
    md_lineage(&mut out, m);
    md_promotion(&mut out, m, history);
    out
}

// ---------------------------------------------------------------------------------------------
// Access helpers: every field may be missing or of an unexpected type, and null means absent.

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

/// A scalar as text; empty strings count as absent (a blank declaration declares nothing).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn s_at(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path).and_then(text)
}

/// A declared list: `None` when null/absent, `Some(empty)` when declared empty. A lone string
/// counts as a one-item list rather than being dropped.
fn list_at(v: &Value, path: &[&str]) -> Option<Vec<String>> {
    match at(v, path)? {
        Value::Array(items) => Some(items.iter().filter_map(text).collect()),
        other => text(other).map(|s| vec![s]),
    }
}

fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// An object's entries sorted by key, so output never depends on serde_json's map flavour
/// (`preserve_order` may be switched on by another crate in the build).
fn sorted_entries(v: Option<&Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = v
        .and_then(Value::as_object)
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// The value string for JSON: exactly serde_json's rendering of the number (round-trips).
fn raw(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Markdown formatting helpers.

/// Escapes text for a table cell (and inline text): `|` would split the cell, a newline the row.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            _ => out.push(c),
        }
    }
    out
}

/// Compact, stable number format: integers as integers, floats with at most 4 decimals
/// (trailing zeros dropped), tiny magnitudes in scientific notation with 4 significant digits.
fn fmt_f64(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() < 1e-3 {
        return format!("{x:.3e}");
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// A value for a Markdown cell.
fn fmt_val(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "_n/a_".into(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(Value::Number(n)) => n.as_f64().map_or_else(|| n.to_string(), fmt_f64),
        Some(Value::String(s)) => esc(s),
        Some(Value::Bool(b)) => b.to_string(),
        Some(other) => esc(&other.to_string()),
    }
}

fn or_declared(v: Option<String>) -> String {
    v.map_or_else(|| MD_NOT_DECLARED.into(), |s| esc(&s))
}

fn or_recorded(v: Option<String>) -> String {
    v.map_or_else(|| MD_NOT_RECORDED.into(), |s| esc(&s))
}

/// Inline code for identifiers and expressions; plain escaped text if it holds a backtick.
fn code(s: &str) -> String {
    if s.contains('`') {
        esc(s)
    } else {
        format!("`{}`", esc(s))
    }
}

/// A GitHub table; cells must already be escaped.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    out.push('\n');
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

fn heading(out: &mut String, level: usize, title: &str) {
    let _ = write!(out, "\n{} {}\n", "#".repeat(level), title);
}

fn para(out: &mut String, s: &str) {
    let _ = write!(out, "\n{s}\n");
}

fn bullets(out: &mut String, items: &[String]) {
    out.push('\n');
    for item in items {
        let _ = writeln!(out, "- {}", esc(item));
    }
}

// ---------------------------------------------------------------------------------------------
// Shared derivations (one place, so JSON and Markdown agree).

fn pipeline_task(m: &Value) -> Option<String> {
    match (s_at(m, &["pipeline"]), s_at(m, &["task"])) {
        (Some(p), Some(t)) => Some(format!("{p}.{t}")),
        (Some(p), None) => Some(p),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    }
}

fn code_version(m: &Value) -> String {
    let nv = s_at(m, &["code", "nightjar_version"]).map_or_else(
        || format!("nightjar version {NOT_RECORDED}"),
        |v| format!("nightjar {v}"),
    );
    let git = s_at(m, &["code", "git_commit"]).map_or_else(
        || format!("git commit {NOT_RECORDED}"),
        |g| format!("git commit {g}"),
    );
    format!("{nv}, {git}")
}

fn params_text(m: &Value) -> Option<String> {
    let entries = sorted_entries(at(m, &["params"]));
    if entries.is_empty() {
        return None;
    }
    let parts: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{k}={}", raw(v).unwrap_or_else(|| v.to_string())))
        .collect();
    Some(parts.join(", "))
}

fn kv_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Object(_) => {
            let parts: Vec<String> = sorted_entries(v)
                .iter()
                .map(|(k, x)| format!("{k}: {}", raw(x).unwrap_or_else(|| x.to_string())))
                .collect();
            if parts.is_empty() {
                None
            } else {
                Some(parts.join(", "))
            }
        }
        other => text(other),
    }
}

fn time_range(m: &Value) -> Option<String> {
    let tr = at(m, &["training", "time_range"])?;
    let col = s_at(tr, &["column"]);
    let (min, max) = (s_at(tr, &["min"]), s_at(tr, &["max"]));
    if min.is_none() && max.is_none() {
        return None;
    }
    let span = format!(
        "{} to {}",
        min.unwrap_or_else(|| NOT_RECORDED.into()),
        max.unwrap_or_else(|| NOT_RECORDED.into())
    );
    Some(match col {
        Some(c) => format!("{c} from {span}"),
        None => span,
    })
}

fn holdout_from(m: &Value) -> Option<String> {
    s_at(m, &["training", "time_range", "holdout_from"])
        .or_else(|| s_at(m, &["training", "holdout_from"]))
}

fn tables_read(m: &Value) -> Vec<(String, Option<String>)> {
    arr_at(m, &["training", "read"])
        .iter()
        .filter_map(|r| Some((s_at(r, &["table"])?, s_at(r, &["delta_version"]))))
        .collect()
}

fn with_delta(name: &str, v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{name} (Delta v{v})"),
        None => format!("{name} (Delta version {NOT_RECORDED})"),
    }
}

/// Features in signature order with type and importance; importance-only names are appended.
/// Each row: (name, type, importance value, rank in the importance list, 1-based).
/// (name, type, importance, 1-based rank in the importance list).
type FeatureRow<'a> = (String, Option<String>, Option<&'a Value>, Option<usize>);

fn feature_rows(m: &Value) -> Vec<FeatureRow<'_>> {
    let importance: Vec<(String, Option<&Value>)> = arr_at(m, &["importance"])
        .iter()
        .filter_map(|i| Some((s_at(i, &["feature"])?, at(i, &["importance"]))))
        .collect();
    let lookup = |name: &str| {
        importance
            .iter()
            .position(|(f, _)| f == name)
            .map(|p| (importance[p].1, p + 1))
    };
    let mut rows = Vec::new();
    for f in arr_at(m, &["features"]) {
        let Some(name) = s_at(f, &["name"]) else {
            continue;
        };
        let (imp, rank) = lookup(&name).map_or((None, None), |(v, r)| (v, Some(r)));
        rows.push((name, s_at(f, &["type"]), imp, rank));
    }
    for (rank, (name, imp)) in importance.iter().enumerate() {
        if !rows.iter().any(|r| &r.0 == name) {
            rows.push((name.clone(), None, *imp, Some(rank + 1)));
        }
    }
    rows
}

const METRIC_ORDER: &[&str] = &[
    "auc",
    "average_precision",
    "precision",
    "recall",
    "f1",
    "threshold",
    "log_loss",
    "brier",
    "ece",
    "base_rate",
    "rmse",
    "mae",
    "r2",
    "mean_actual",
    "rows",
    "positives",
];

fn metric_order(a: &str, b: &str) -> std::cmp::Ordering {
    let rank = |k: &str| {
        METRIC_ORDER
            .iter()
            .position(|x| *x == k)
            .unwrap_or(METRIC_ORDER.len())
    };
    (rank(a), a).cmp(&(rank(b), b))
}

/// Scalar holdout metrics (nested objects flattened one level as `a.b`), in a fixed order.
fn scalar_metrics(m: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for (k, v) in sorted_entries(at(m, &["metrics"])) {
        match v {
            Value::Array(_) | Value::Null => {}
            Value::Object(_) => {
                for (k2, v2) in sorted_entries(Some(v)) {
                    if !v2.is_array() && !v2.is_object() && !v2.is_null() {
                        out.push((format!("{k}.{k2}"), v2));
                    }
                }
            }
            _ => out.push((k.clone(), v)),
        }
    }
    out.sort_by(|a, b| metric_order(&a.0, &b.0));
    out
}

/// Tabular metrics (arrays of objects such as `calibration` and `deciles`), by key.
fn table_metrics(m: &Value) -> Vec<(String, &[Value])> {
    sorted_entries(at(m, &["metrics"]))
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_array()
                .filter(|a| a.iter().any(Value::is_object))
                .map(|a| (k.clone(), a.as_slice()))
        })
        .collect()
}

const COLUMN_ORDER: &[&str] = &[
    "decile",
    "lower",
    "upper",
    "rows",
    "positives",
    "rate",
    "lift",
    "cumulative_gain",
    "mean_predicted",
    "observed_rate",
    "mean_actual",
];

fn columns(rows: &[Value]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for (k, _) in sorted_entries(Some(r)) {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let rank = |k: &str| {
        COLUMN_ORDER
            .iter()
            .position(|x| *x == k)
            .unwrap_or(COLUMN_ORDER.len())
    };
    cols.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    cols
}

fn table_title(name: &str, rows: &[Value]) -> String {
    match name {
        "calibration" => "Calibration (by predicted-score bin)".into(),
        "deciles" if rows.iter().any(|r| r.get("lift").is_some()) => "Lift by decile".into(),
        "deciles" => "Deciles: mean predicted vs mean actual".into(),
        other => other.to_string(),
    }
}

/// The slice name of one row of a tabular metric, and the keys that only name the row.
fn row_slice(name: &str, row: &Value, index: usize) -> (String, &'static [&'static str]) {
    if let Some(d) = at(row, &["decile"]).and_then(raw) {
        return (format!("decile {d}"), &["decile"]);
    }
    if let (Some(lo), Some(hi)) = (
        at(row, &["lower"]).and_then(raw),
        at(row, &["upper"]).and_then(raw),
    ) {
        return (format!("{name} bin {lo}-{hi}"), &["lower", "upper"]);
    }
    (format!("{name} row {}", index + 1), &[])
}

struct Gap {
    metric: Option<String>,
    best: Option<String>,
    worst: Option<String>,
    gap: Option<Value>,
}

fn segment_gap(seg: &Value) -> Option<Gap> {
    let g = at(seg, &["largest_gap"])?;
    Some(Gap {
        metric: s_at(g, &["metric"]),
        best: s_at(g, &["best"]),
        worst: s_at(g, &["worst"]),
        gap: at(g, &["gap"]).cloned(),
    })
}

fn gap_sentence(column: &str, seg_metric: Option<&str>, g: &Gap) -> String {
    let metric = g.metric.as_deref().or(seg_metric).unwrap_or("metric");
    format!(
        "Largest {metric} gap across {column}: {} between {} (best) and {} (worst)",
        g.gap
            .as_ref()
            .and_then(raw)
            .unwrap_or_else(|| NOT_RECORDED.into()),
        g.best.as_deref().unwrap_or(NOT_RECORDED),
        g.worst.as_deref().unwrap_or(NOT_RECORDED),
    )
}

/// The history records about this version, oldest first (by time, alias, generation) so the
/// order never depends on how the caller collected them.
fn relevant_history<'a>(m: &Value, history: &'a [Value]) -> Vec<&'a Value> {
    let Some(this) = s_at(m, &["version"]) else {
        return Vec::new();
    };
    let mut recs: Vec<&Value> = history
        .iter()
        .filter(|r| {
            s_at(r, &["version"]).as_deref() == Some(this.as_str())
                || s_at(r, &["previous_version"]).as_deref() == Some(this.as_str())
        })
        .collect();
    recs.sort_by(|a, b| {
        let key = |r: &Value| {
            (
                s_at(r, &["at"]).unwrap_or_default(),
                s_at(r, &["alias"]).unwrap_or_default(),
                at(r, &["generation"])
                    .and_then(Value::as_f64)
                    .unwrap_or(f64::MIN),
            )
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.cmp(&kb.1))
            .then(ka.2.total_cmp(&kb.2))
    });
    recs
}

fn history_change(m: &Value, r: &Value) -> String {
    let this = s_at(m, &["version"]).unwrap_or_default();
    let to = s_at(r, &["version"]);
    let from = s_at(r, &["previous_version"]);
    let v = |x: &Option<String>| {
        x.as_ref()
            .map_or_else(|| "none".to_string(), |s| format!("v{s}"))
    };
    if to.as_deref() == Some(this.as_str()) && from.as_deref() != Some(this.as_str()) {
        format!("assigned to v{this} (previously {})", v(&from))
    } else if from.as_deref() == Some(this.as_str()) && to.as_deref() != Some(this.as_str()) {
        format!("moved from v{this} to {}", v(&to))
    } else {
        format!("re-assigned to v{this}")
    }
}

fn history_gate(r: &Value) -> Option<String> {
    let g = at(r, &["gate"])?;
    let when = s_at(g, &["when"]).unwrap_or_else(|| format!("expression {NOT_RECORDED}"));
    let verdict = s_at(g, &["verdict"]).unwrap_or_else(|| format!("verdict {NOT_RECORDED}"));
    Some(format!("{when} => {verdict}"))
}

fn promotion_inputs(p: &Value) -> Vec<(&String, &Value)> {
    sorted_entries(at(p, &["inputs"]))
}

// ---------------------------------------------------------------------------------------------
// card.json

fn pct(s: &str) -> String {
    // Keep unreserved characters and the path delimiters we use; encode the rest (including
    // non-ASCII, e.g. a placeholder "…" digest) so every lineage reference is a valid URI.
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@:/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn lineage_uris(m: &Value) -> Vec<String> {
    let mut uris = Vec::new();
    if let Some(run) = s_at(m, &["run_id"]) {
        uris.push(format!("nightjar:run:{}", pct(&run)));
    }
    for (table, v) in tables_read(m) {
        let q = v.map_or_else(String::new, |v| format!("?delta_version={}", pct(&v)));
        uris.push(format!("nightjar:table:{}{q}", pct(&table)));
    }
    for u in arr_at(m, &["upstream"]) {
        let Some(name) = s_at(u, &["name"]) else {
            continue;
        };
        let mut q = Vec::new();
        if let Some(v) = s_at(u, &["delta_version"]) {
            q.push(format!("delta_version={}", pct(&v)));
        }
        if let Some(r) = s_at(u, &["run_id"]) {
            q.push(format!("run_id={}", pct(&r)));
        }
        let q = if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        };
        uris.push(format!("nightjar:dataset:{}{q}", pct(&name)));
    }
    if at(m, &["code"]).is_some() {
        let mut q = Vec::new();
        if let Some(v) = s_at(m, &["code", "nightjar_version"]) {
            q.push(format!("version={}", pct(&v)));
        }
        if let Some(g) = s_at(m, &["code", "git_commit"]) {
            q.push(format!("git_commit={}", pct(&g)));
        }
        if !q.is_empty() {
            uris.push(format!("nightjar:code:nightjar?{}", q.join("&")));
        }
    }
    for f in arr_at(m, &["files"]) {
        let Some(path) = s_at(f, &["path"]) else {
            continue;
        };
        let mut q = Vec::new();
        if let Some(h) = s_at(f, &["sha256"]) {
            q.push(format!("sha256={}", pct(&h)));
        }
        if let Some(b) = s_at(f, &["bytes"]) {
            q.push(format!("bytes={}", pct(&b)));
        }
        let q = if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        };
        uris.push(format!("nightjar:file:{}{q}", pct(&path)));
    }
    uris
}

/// `YYYY-MM-DD` from an RFC 3339 timestamp, only if it really is one (the schema's `date`).
fn date_part(ts: &str) -> Option<String> {
    let d = ts.get(..10)?;
    let ok = d.bytes().enumerate().all(|(i, b)| {
        if i == 4 || i == 7 {
            b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    ok.then(|| d.to_string())
}

fn documentation(m: &Value, history: &[Value]) -> String {
    let mut lines = Vec::new();
    lines.push(format!(
        "Algorithm: {}",
        s_at(m, &["algorithm"]).unwrap_or_else(|| NOT_RECORDED.into())
    ));
    lines.push(format!(
        "Created: {}",
        s_at(m, &["created_at"]).unwrap_or_else(|| NOT_RECORDED.into())
    ));
    lines.push(format!("Code version: {}", code_version(m)));
    lines.push(format!(
        "Run id: {}",
        s_at(m, &["run_id"]).unwrap_or_else(|| NOT_RECORDED.into())
    ));
    lines.push(format!(
        "Pipeline task: {}",
        pipeline_task(m).unwrap_or_else(|| NOT_RECORDED.into())
    ));
    lines.push(format!(
        "Target: {}",
        s_at(m, &["target"]).unwrap_or_else(|| NOT_RECORDED.into())
    ));
    lines.push(format!(
        "Label definition: {}",
        s_at(m, &["card", "label"]).unwrap_or_else(|| NOT_DECLARED.into())
    ));
    match at(m, &["promotion"]) {
        None => lines.push(format!("Promotion: {NOT_RECORDED}")),
        Some(p) => {
            let inputs: Vec<String> = promotion_inputs(p)
                .iter()
                .map(|(k, v)| format!("{k}={}", raw(v).unwrap_or_else(|| "null".into())))
                .collect();
            lines.push(format!(
                "Promotion: alias {}; gate: {}; inputs: {}; champion version: {}; verdict: {}; reason: {}",
                s_at(p, &["alias"]).unwrap_or_else(|| NOT_RECORDED.into()),
                s_at(p, &["when"]).unwrap_or_else(|| NOT_RECORDED.into()),
                if inputs.is_empty() { NOT_RECORDED.into() } else { inputs.join(", ") },
                s_at(p, &["champion_version"]).unwrap_or_else(|| "none".into()),
                s_at(p, &["verdict"]).unwrap_or_else(|| NOT_RECORDED.into()),
                s_at(p, &["reason"]).unwrap_or_else(|| NOT_RECORDED.into()),
            ));
        }
    }
    for r in relevant_history(m, history) {
        lines.push(format!(
            "Alias history: {} {} generation {}: {} by {}; reason: {}; gate: {}",
            s_at(r, &["at"]).unwrap_or_else(|| NOT_RECORDED.into()),
            s_at(r, &["alias"]).unwrap_or_else(|| NOT_RECORDED.into()),
            s_at(r, &["generation"]).unwrap_or_else(|| NOT_RECORDED.into()),
            history_change(m, r),
            s_at(r, &["by"]).unwrap_or_else(|| NOT_RECORDED.into()),
            s_at(r, &["reason"]).unwrap_or_else(|| NOT_RECORDED.into()),
            history_gate(r).unwrap_or_else(|| "none".into()),
        ));
    }
    lines.join("\n")
}

fn json_model_details(m: &Value, history: &[Value]) -> Value {
    let mut d = Map::new();
    d.insert(
        "name".into(),
        json!(s_at(m, &["model"]).unwrap_or_else(|| NOT_RECORDED.into())),
    );
    d.insert(
        "overview".into(),
        json!(s_at(m, &["description"]).unwrap_or_else(|| NOT_DECLARED.into())),
    );
    d.insert("documentation".into(), json!(documentation(m, history)));
    d.insert(
        "owners".into(),
        json!([{ "name": s_at(m, &["card", "owner"]).unwrap_or_else(|| NOT_DECLARED.into()) }]),
    );
    let mut version = Map::new();
    if let Some(v) = s_at(m, &["version"]) {
        version.insert("name".into(), json!(v));
    }
    if let Some(date) = s_at(m, &["created_at"]).as_deref().and_then(date_part) {
        version.insert("date".into(), json!(date));
    }
    if !version.is_empty() {
        d.insert("version".into(), Value::Object(version));
    }
    let mut refs: Vec<Value> = list_at(m, &["card", "references"])
        .unwrap_or_default()
        .into_iter()
        .map(|r| json!({ "reference": r }))
        .collect();
    refs.extend(
        lineage_uris(m)
            .into_iter()
            .map(|r| json!({ "reference": r })),
    );
    if !refs.is_empty() {
        d.insert("references".into(), Value::Array(refs));
    }
    if let Some(p) = s_at(m, &["artefact", "path"]) {
        d.insert("path".into(), json!(p));
    }
    Value::Object(d)
}

fn training_description(m: &Value) -> String {
    let mut parts = vec!["Training data".to_string()];
    let read: Vec<String> = tables_read(m)
        .iter()
        .map(|(t, v)| with_delta(t, v))
        .collect();
    if !read.is_empty() {
        parts.push(format!("tables read: {}", read.join(", ")));
    }
    let rows = |k: &str| s_at(m, &["training", k]).unwrap_or_else(|| NOT_RECORDED.into());
    parts.push(format!(
        "rows: {} (train {}, holdout {})",
        rows("rows"),
        rows("train_rows"),
        rows("holdout_rows")
    ));
    if let Some(split) = kv_text(at(m, &["training", "split"])) {
        parts.push(format!("split: {split}"));
    }
    if let Some(tr) = time_range(m) {
        parts.push(format!("time range: {tr}"));
    }
    if let Some(h) = holdout_from(m) {
        parts.push(format!("holdout from: {h}"));
    }
    parts.push(format!(
        "label: {}",
        s_at(m, &["card", "label"]).unwrap_or_else(|| NOT_DECLARED.into())
    ));
    parts.join("; ")
}

fn json_model_parameters(m: &Value) -> Value {
    let mut p = Map::new();
    let mut arch = s_at(m, &["algorithm"]).unwrap_or_else(|| format!("algorithm {NOT_RECORDED}"));
    if let Some(params) = params_text(m) {
        let _ = write!(arch, "; params: {params}");
    }
    if let Some(seed) = s_at(m, &["seed"]) {
        let _ = write!(arch, "; seed: {seed}");
    }
    if let Some(weights) = kv_text(at(m, &["class_weights"])) {
        let _ = write!(arch, "; class weights: {weights}");
    }
    p.insert("model_architecture".into(), json!(arch));

    let mut data = Vec::new();
    data.push(json!({
        "name": s_at(m, &["training", "table"]).unwrap_or_else(|| NOT_RECORDED.into()),
        "description": training_description(m),
    }));
    for u in arr_at(m, &["upstream"]) {
        let Some(name) = s_at(u, &["name"]) else {
            continue;
        };
        data.push(json!({
            "name": name,
            "description": format!(
                "Upstream dataset; Delta version {}; run id {}",
                s_at(u, &["delta_version"]).unwrap_or_else(|| NOT_RECORDED.into()),
                s_at(u, &["run_id"]).unwrap_or_else(|| NOT_RECORDED.into()),
            ),
        }));
    }
    if let Some(h) = s_at(m, &["holdout_table"]) {
        let rows = s_at(m, &["training", "holdout_rows"]).or_else(|| s_at(m, &["metrics", "rows"]));
        data.push(json!({
            "name": h,
            "description": format!("Holdout (evaluation) table; rows: {}", rows.unwrap_or_else(|| NOT_RECORDED.into())),
        }));
    }
    p.insert("data".into(), Value::Array(data));

    let features = feature_rows(m);
    let mut input = format!(
        "{} feature columns, in signature order in input_format_map (value: type; importance; rank by importance)",
        features.len()
    );
    if let Some(e) = s_at(m, &["entity"]) {
        let _ = write!(input, "; entity: {e}");
    }
    if let Some(t) = s_at(m, &["timestamp"]) {
        let _ = write!(input, "; timestamp: {t}");
    }
    p.insert("input_format".into(), json!(input));
    let map: Vec<Value> = features
        .iter()
        .map(|(name, ty, imp, rank)| {
            let value = format!(
                "type: {}; importance: {}; rank: {}",
                ty.clone().unwrap_or_else(|| NOT_RECORDED.into()),
                imp.and_then(raw).unwrap_or_else(|| NOT_RECORDED.into()),
                rank.map_or_else(|| NOT_RECORDED.into(), |r| r.to_string()),
            );
            json!({ "key": name, "value": value })
        })
        .collect();
    if !map.is_empty() {
        p.insert("input_format_map".into(), Value::Array(map));
    }
    let target = s_at(m, &["target"]);
    p.insert(
        "output_format".into(),
        json!(target.as_ref().map_or_else(
            || format!("target {NOT_RECORDED}"),
            |t| format!("prediction of {t}")
        )),
    );
    let mut out_map = Vec::new();
    for key in ["target", "entity", "timestamp"] {
        if let Some(v) = s_at(m, &[key]) {
            out_map.push(json!({ "key": key, "value": v }));
        }
    }
    if !out_map.is_empty() {
        p.insert("output_format_map".into(), Value::Array(out_map));
    }
    Value::Object(p)
}

fn pm(kind: &str, value: &Value, slice: Option<&str>) -> Option<Value> {
    let mut o = Map::new();
    o.insert("type".into(), json!(kind));
    o.insert("value".into(), json!(raw(value)?));
    if let Some(s) = slice {
        o.insert("slice".into(), json!(s));
    }
    Some(Value::Object(o))
}

fn json_performance_metrics(m: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = scalar_metrics(m)
        .iter()
        .filter_map(|(k, v)| pm(k, v, None))
        .collect();
    for (name, rows) in table_metrics(m) {
        for (i, row) in rows.iter().enumerate() {
            let (slice, label_keys) = row_slice(&name, row, i);
            for (k, v) in sorted_entries(Some(row)) {
                if !label_keys.contains(&k.as_str()) {
                    out.extend(pm(k, v, Some(&slice)));
                }
            }
        }
    }
    for seg in arr_at(m, &["segments"]) {
        let column = s_at(seg, &["column"]).unwrap_or_else(|| "segment".into());
        for g in arr_at(seg, &["groups"]) {
            let slice = format!(
                "{column}={}",
                s_at(g, &["value"]).unwrap_or_else(|| "null".into())
            );
            if let Some(rows) = at(g, &["rows"]) {
                out.extend(pm("rows", rows, Some(&slice)));
            }
            for (k, v) in sorted_entries(at(g, &["metrics"])) {
                out.extend(pm(k, v, Some(&slice)));
            }
        }
        if let Some(gap) = segment_gap(seg) {
            let metric = gap
                .metric
                .clone()
                .or_else(|| s_at(seg, &["metric"]))
                .unwrap_or_else(|| "metric".into());
            let slice = format!(
                "{column} (best {}, worst {})",
                gap.best.as_deref().unwrap_or(NOT_RECORDED),
                gap.worst.as_deref().unwrap_or(NOT_RECORDED)
            );
            if let Some(v) = &gap.gap {
                out.extend(pm(&format!("{metric} largest gap"), v, Some(&slice)));
            }
        }
    }
    out
}

fn json_considerations(m: &Value) -> Value {
    let desc = |s: String| json!({ "description": s });
    let mut use_cases = vec![desc(format!(
        "Intended use: {}",
        s_at(m, &["card", "intended_use"]).unwrap_or_else(|| NOT_DECLARED.into())
    ))];
    match list_at(m, &["card", "out_of_scope"]) {
        None => use_cases.push(desc(format!("Out of scope: {NOT_DECLARED}"))),
        Some(v) if v.is_empty() => use_cases.push(desc("Out of scope: none listed".into())),
        Some(v) => use_cases.extend(v.into_iter().map(|s| desc(format!("Out of scope: {s}")))),
    }
    let mut limitations = Vec::new();
    match list_at(m, &["card", "limitations"]) {
        None => limitations.push(desc(format!("Limitations: {NOT_DECLARED}"))),
        Some(v) if v.is_empty() => limitations.push(desc("Limitations: none listed".into())),
        Some(v) => limitations.extend(v.into_iter().map(desc)),
    }
    match list_at(m, &["card", "caveats"]) {
        None => limitations.push(desc(format!("Caveats: {NOT_DECLARED}"))),
        Some(v) if v.is_empty() => limitations.push(desc("Caveats: none listed".into())),
        Some(v) => limitations.extend(v.into_iter().map(|s| desc(format!("Caveat: {s}")))),
    }
    let tradeoffs: Vec<Value> = arr_at(m, &["segments"])
        .iter()
        .filter_map(|seg| {
            let column = s_at(seg, &["column"]).unwrap_or_else(|| "segment".into());
            segment_gap(seg)
                .map(|g| desc(gap_sentence(&column, s_at(seg, &["metric"]).as_deref(), &g)))
        })
        .collect();
    let risk = json!({
        "name": format!("EU AI Act risk category: {}", s_at(m, &["card", "risk_category"]).unwrap_or_else(|| NOT_DECLARED.into())),
        "mitigation_strategy": format!("Human oversight: {}", s_at(m, &["card", "human_oversight"]).unwrap_or_else(|| NOT_DECLARED.into())),
    });
    let mut c = Map::new();
    c.insert("use_cases".into(), Value::Array(use_cases));
    c.insert("limitations".into(), Value::Array(limitations));
    if !tradeoffs.is_empty() {
        c.insert("tradeoffs".into(), Value::Array(tradeoffs));
    }
    c.insert("ethical_considerations".into(), json!([risk]));
    Value::Object(c)
}

// ---------------------------------------------------------------------------------------------
// card.md sections

fn md_model_details(out: &mut String, m: &Value) {
    heading(out, 2, "Model details");
    let rows = vec![
        vec!["Name".into(), or_recorded(s_at(m, &["model"]))],
        vec!["Version".into(), or_recorded(s_at(m, &["version"]))],
        vec!["Description".into(), or_declared(s_at(m, &["description"]))],
        vec!["Owner".into(), or_declared(s_at(m, &["card", "owner"]))],
        vec!["Algorithm".into(), or_recorded(s_at(m, &["algorithm"]))],
        vec!["Parameters".into(), or_recorded(params_text(m))],
        vec!["Seed".into(), or_recorded(s_at(m, &["seed"]))],
        vec![
            "Class weights".into(),
            esc(&kv_text(at(m, &["class_weights"]))
                .unwrap_or_else(|| "none (every row weighs 1)".into())),
        ],
        vec!["Created".into(), or_recorded(s_at(m, &["created_at"]))],
        vec!["Code version".into(), esc(&code_version(m))],
        vec!["Run id".into(), or_recorded(s_at(m, &["run_id"]))],
        vec!["Pipeline task".into(), or_recorded(pipeline_task(m))],
        vec!["Target".into(), or_recorded(s_at(m, &["target"]))],
        vec!["Entity".into(), or_recorded(s_at(m, &["entity"]))],
        vec![
            "Timestamp column".into(),
            or_recorded(s_at(m, &["timestamp"])),
        ],
    ];
    table(out, &["Field", "Value"], &rows);
}

fn md_list_or(out: &mut String, items: Option<Vec<String>>) {
    match items {
        None => para(out, MD_NOT_DECLARED),
        Some(v) if v.is_empty() => para(out, "_None listed_"),
        Some(v) => bullets(out, &v),
    }
}

fn md_intended_use(out: &mut String, m: &Value) {
    heading(out, 2, "Intended use");
    para(out, &or_declared(s_at(m, &["card", "intended_use"])));
    heading(out, 3, "Out-of-scope uses");
    md_list_or(out, list_at(m, &["card", "out_of_scope"]));
}

fn md_risk(out: &mut String, m: &Value) {
    heading(out, 2, "Risk and human oversight");
    let rows = vec![
        vec![
            "Risk category (EU AI Act)".into(),
            or_declared(s_at(m, &["card", "risk_category"])),
        ],
        vec![
            "Human oversight".into(),
            or_declared(s_at(m, &["card", "human_oversight"])),
        ],
    ];
    table(out, &["Field", "Value"], &rows);
}

fn md_training_data(out: &mut String, m: &Value) {
    heading(out, 2, "Training data");
    let read: Vec<String> = tables_read(m)
        .iter()
        .map(|(t, v)| with_delta(t, v))
        .collect();
    let upstream: Vec<String> = arr_at(m, &["upstream"])
        .iter()
        .filter_map(|u| {
            Some(with_delta(
                &s_at(u, &["name"])?,
                &s_at(u, &["delta_version"]),
            ))
        })
        .collect();
    let join = |v: Vec<String>| {
        if v.is_empty() {
            None
        } else {
            Some(v.join(", "))
        }
    };
    let mut rows = vec![
        vec![
            "Training table".into(),
            or_recorded(s_at(m, &["training", "table"])),
        ],
        vec![
            "Tables read (Delta versions)".into(),
            or_recorded(join(read)),
        ],
        vec!["Upstream datasets".into(), or_recorded(join(upstream))],
    ];
    // A training set's point-in-time join: the view versions scoring from `entities` reuses.
    let views: Vec<String> = arr_at(m, &["training", "point_in_time", "views"])
        .iter()
        .filter_map(|v| {
            let ttl = at(v, &["ttl_micros"]).and_then(Value::as_u64).map_or_else(
                || "no ttl".to_string(),
                |t| format!("ttl {}s", t / 1_000_000),
            );
            Some(format!(
                "{}@{} ({ttl})",
                s_at(v, &["view"])?,
                s_at(v, &["version"])?
            ))
        })
        .collect();
    if !views.is_empty() {
        rows.push(vec![
            "Feature view versions (scoring rebuilds features from these)".into(),
            esc(&views.join(", ")),
        ]);
    }
    rows.extend(vec![
        vec!["Rows".into(), fmt_val(at(m, &["training", "rows"]))],
        vec![
            "Training rows".into(),
            fmt_val(at(m, &["training", "train_rows"])),
        ],
        vec![
            "Holdout rows".into(),
            fmt_val(at(m, &["training", "holdout_rows"])),
        ],
        vec![
            "Split".into(),
            or_recorded(kv_text(at(m, &["training", "split"]))),
        ],
        vec!["Time range".into(), or_recorded(time_range(m))],
        vec!["Holdout from".into(), or_recorded(holdout_from(m))],
        vec![
            "Holdout table".into(),
            or_recorded(s_at(m, &["holdout_table"])),
        ],
        vec![
            "Label definition".into(),
            or_declared(s_at(m, &["card", "label"])),
        ],
    ]);
    table(out, &["Field", "Value"], &rows);
}

fn md_features(out: &mut String, m: &Value) {
    heading(out, 2, "Features");
    let rows = feature_rows(m);
    if rows.is_empty() {
        para(out, MD_NOT_RECORDED);
        return;
    }
    para(
        out,
        "In signature order (the model's input order); rank 1 is the most important feature.",
    );
    let cells: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, (name, ty, imp, rank))| {
            vec![
                (i + 1).to_string(),
                code(name),
                or_recorded(ty.clone()),
                fmt_val(*imp),
                rank.map_or_else(|| "_n/a_".into(), |r| r.to_string()),
            ]
        })
        .collect();
    table(out, &["#", "Feature", "Type", "Importance", "Rank"], &cells);
}

fn md_metrics(out: &mut String, m: &Value) {
    heading(out, 2, "Evaluation metrics");
    let scalars = scalar_metrics(m);
    let tables = table_metrics(m);
    if scalars.is_empty() && tables.is_empty() {
        para(out, MD_NOT_RECORDED);
        return;
    }
    para(
        out,
        &format!(
            "On the holdout ({} rows).",
            fmt_val(at(m, &["metrics", "rows"]).or_else(|| at(m, &["training", "holdout_rows"])))
        ),
    );
    let rows: Vec<Vec<String>> = scalars
        .iter()
        .map(|(k, v)| vec![code(k), fmt_val(Some(v))])
        .collect();
    table(out, &["Metric", "Value"], &rows);
    for (name, data) in tables {
        heading(out, 3, &esc(&table_title(&name, data)));
        let cols = columns(data);
        let header: Vec<&str> = cols.iter().map(String::as_str).collect();
        let rows: Vec<Vec<String>> = data
            .iter()
            .map(|r| cols.iter().map(|c| fmt_val(r.get(c.as_str()))).collect())
            .collect();
        table(out, &header, &rows);
    }
}

fn md_segments(out: &mut String, m: &Value) {
    heading(out, 2, "Metrics by segment");
    let segs = arr_at(m, &["segments"]);
    if segs.is_empty() {
        para(out, "_No segments declared_");
        return;
    }
    for seg in segs {
        let column = s_at(seg, &["column"]).unwrap_or_else(|| "segment".into());
        let metric = s_at(seg, &["metric"]);
        heading(
            out,
            3,
            &format!(
                "By {}{}",
                esc(&column),
                metric
                    .as_ref()
                    .map_or_else(String::new, |mm| format!(" ({})", esc(mm)))
            ),
        );
        let groups = arr_at(seg, &["groups"]);
        let gap = segment_gap(seg);
        // The declared metric first, then any other metric the groups carry.
        let mut cols: Vec<String> = metric.iter().cloned().collect();
        for g in groups {
            for (k, _) in sorted_entries(at(g, &["metrics"])) {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        let mut header = vec!["Value", "Rows"];
        header.extend(cols.iter().map(String::as_str));
        header.push("Gap");
        let rows: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                let value = s_at(g, &["value"]);
                let mut row = vec![or_recorded(value.clone()), fmt_val(at(g, &["rows"]))];
                row.extend(cols.iter().map(|c| fmt_val(at(g, &["metrics", c]))));
                let flag = match (&gap, &value) {
                    (Some(gp), Some(v)) if gp.best.as_ref() == Some(v) => "**best**",
                    (Some(gp), Some(v)) if gp.worst.as_ref() == Some(v) => "**worst**",
                    _ => "",
                };
                row.push(flag.into());
                row
            })
            .collect();
        table(out, &header, &rows);
        match &gap {
            Some(g) => {
                let metric = g
                    .metric
                    .clone()
                    .or_else(|| metric.clone())
                    .unwrap_or_else(|| "metric".into());
                para(
                    out,
                    &format!(
                        "**Largest gap:** {} {} between {} (best) and {} (worst).",
                        esc(&metric),
                        fmt_val(g.gap.as_ref()),
                        or_recorded(g.best.clone()),
                        or_recorded(g.worst.clone()),
                    ),
                );
            }
            None => para(out, &format!("**Largest gap:** {MD_NOT_RECORDED}")),
        }
    }
}

fn md_limitations(out: &mut String, m: &Value) {
    heading(out, 2, "Limitations and caveats");
    heading(out, 3, "Limitations");
    md_list_or(out, list_at(m, &["card", "limitations"]));
    heading(out, 3, "Caveats");
    md_list_or(out, list_at(m, &["card", "caveats"]));
    heading(out, 3, "References");
    md_list_or(out, list_at(m, &["card", "references"]));
}

fn md_lineage(out: &mut String, m: &Value) {
    heading(out, 2, "Lineage");
    let rows = vec![
        vec!["Run id".into(), or_recorded(s_at(m, &["run_id"]))],
        vec!["Pipeline task".into(), or_recorded(pipeline_task(m))],
        vec!["Code version".into(), esc(&code_version(m))],
    ];
    table(out, &["Field", "Value"], &rows);
    heading(out, 3, "Upstream datasets");
    let up = arr_at(m, &["upstream"]);
    if up.is_empty() {
        para(out, MD_NOT_RECORDED);
    } else {
        let rows: Vec<Vec<String>> = up
            .iter()
            .map(|u| {
                vec![
                    or_recorded(s_at(u, &["name"])),
                    fmt_val(at(u, &["delta_version"])),
                    or_recorded(s_at(u, &["run_id"])),
                ]
            })
            .collect();
        table(out, &["Dataset", "Delta version", "Run id"], &rows);
    }
    heading(out, 3, "Files");
    let files = arr_at(m, &["files"]);
    if files.is_empty() {
        para(out, MD_NOT_RECORDED);
    } else {
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|f| {
                vec![
                    s_at(f, &["path"]).map_or_else(|| MD_NOT_RECORDED.into(), |p| code(&p)),
                    s_at(f, &["sha256"]).map_or_else(|| MD_NOT_RECORDED.into(), |h| code(&h)),
                    fmt_val(at(f, &["bytes"])),
                ]
            })
            .collect();
        table(out, &["Path", "SHA-256", "Bytes"], &rows);
    }
}

fn md_promotion(out: &mut String, m: &Value, history: &[Value]) {
    heading(out, 2, "Promotion");
    match at(m, &["promotion"]) {
        None => para(out, &format!("Promotion gate: {MD_NOT_RECORDED}")),
        Some(p) => {
            let rows = vec![
                vec!["Alias".into(), or_recorded(s_at(p, &["alias"]))],
                vec![
                    "Gate".into(),
                    s_at(p, &["when"]).map_or_else(|| MD_NOT_RECORDED.into(), |w| code(&w)),
                ],
                vec![
                    "Champion version at the time".into(),
                    s_at(p, &["champion_version"]).map_or_else(|| "none".into(), |v| esc(&v)),
                ],
                vec![
                    "Verdict".into(),
                    s_at(p, &["verdict"])
                        .map_or_else(|| MD_NOT_RECORDED.into(), |v| format!("**{}**", esc(&v))),
                ],
                vec!["Reason".into(), or_recorded(s_at(p, &["reason"]))],
            ];
            table(out, &["Field", "Value"], &rows);
            heading(out, 3, "Gate inputs");
            let inputs = promotion_inputs(p);
            if inputs.is_empty() {
                para(out, MD_NOT_RECORDED);
            } else {
                let rows: Vec<Vec<String>> = inputs
                    .iter()
                    .map(|(k, v)| vec![code(k), fmt_val(Some(v))])
                    .collect();
                table(out, &["Input", "Value"], &rows);
            }
        }
    }
    heading(out, 3, "Alias history");
    let recs = relevant_history(m, history);
    if recs.is_empty() {
        para(out, "_No alias history for this version_");
        return;
    }
    let rows: Vec<Vec<String>> = recs
        .iter()
        .map(|r| {
            vec![
                or_recorded(s_at(r, &["at"])),
                or_recorded(s_at(r, &["alias"])),
                fmt_val(at(r, &["generation"])),
                esc(&history_change(m, r)),
                or_recorded(s_at(r, &["by"])),
                or_recorded(s_at(r, &["reason"])),
                history_gate(r).map_or_else(|| "none".into(), |g| esc(&g)),
            ]
        })
        .collect();
    table(
        out,
        &[
            "At",
            "Alias",
            "Generation",
            "Change",
            "By",
            "Reason",
            "Gate",
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHURN: &str = include_str!("../../tests/fixtures/model-card/churn.metadata.json");
    const LTV: &str = include_str!("../../tests/fixtures/model-card/ltv.metadata.json");
    const HISTORY: &str = include_str!("../../tests/fixtures/model-card/history.json");
    const SCHEMA: &str =
        include_str!("../../tests/fixtures/model-card/model_card.schema.v0.0.2.json");

    fn load(s: &str) -> Value {
        serde_json::from_str(s).expect("fixture parses")
    }

    fn history() -> Vec<Value> {
        load(HISTORY)
            .as_array()
            .cloned()
            .expect("history is an array")
    }

    const SECTIONS: &[&str] = &[
        "\n## Model details\n",
        "\n## Intended use\n",
        "\n### Out-of-scope uses\n",
        "\n## Risk and human oversight\n",
        "\n## Training data\n",
        "\n## Features\n",
        "\n## Evaluation metrics\n",
        "\n## Metrics by segment\n",
        "\n## Limitations and caveats\n",
        "\n## Lineage\n",
        "\n## Promotion\n",
        "\n### Alias history\n",
    ];

    #[test]
    fn markdown_has_every_section_in_order() {
        for (fixture, hist) in [
            (load(CHURN), history()),
            (load(LTV), vec![]),
            (json!({}), vec![]),
        ] {
            let md = card_markdown(&fixture, &hist);
            let mut from = 0;
            for s in SECTIONS {
                let pos = md[from..]
                    .find(s)
                    .unwrap_or_else(|| panic!("section {s:?} missing or out of order in:\n{md}"));
                from += pos + s.len();
            }
        }
    }

    #[test]
    fn markdown_has_the_type_specific_tables() {
        let churn = card_markdown(&load(CHURN), &history());
        assert!(churn.contains("### Calibration (by predicted-score bin)"));
        assert!(churn.contains("### Lift by decile"));
        assert!(
            churn.contains("| lower | upper | rows | mean_predicted | observed_rate |"),
            "{churn}"
        );
        let ltv = card_markdown(&load(LTV), &[]);
        assert!(ltv.contains("### Deciles: mean predicted vs mean actual"));
        assert!(
            ltv.contains("| decile | rows | mean_predicted | mean_actual |"),
            "{ltv}"
        );
        assert!(!ltv.contains("Calibration"));
    }

    #[test]
    fn json_metric_values_equal_metadata() {
        for fixture in [load(CHURN), load(LTV)] {
            let card = card_json(&fixture, &history());
            let pms = card["quantitative_analysis"]["performance_metrics"]
                .as_array()
                .unwrap();
            let overall = |kind: &str| {
                pms.iter()
                    .find(|p| p["type"] == kind && p.get("slice").is_none())
                    .map(|p| p["value"].as_str().unwrap().to_string())
            };
            let metrics = fixture["metrics"].as_object().unwrap();
            let mut checked = 0;
            for (k, v) in metrics {
                if let Some(x) = v.as_f64() {
                    let got = overall(k).unwrap_or_else(|| panic!("metric {k} missing"));
                    assert_eq!(got.parse::<f64>().unwrap(), x, "{k}");
                    assert_eq!(got, v.to_string(), "{k}");
                    checked += 1;
                }
            }
            assert!(checked >= 5);
        }
        let card = card_json(&load(CHURN), &[]);
        let pms = card["quantitative_analysis"]["performance_metrics"]
            .as_array()
            .unwrap();
        let auc = pms
            .iter()
            .find(|p| p["type"] == "auc" && p.get("slice").is_none())
            .unwrap();
        assert_eq!(
            auc["value"].as_str().unwrap().parse::<f64>().unwrap(),
            0.8984547198832913
        );
        // A decile and a calibration bin come through unchanged too.
        let lift1 = pms
            .iter()
            .find(|p| p["type"] == "lift" && p["slice"] == "decile 1")
            .unwrap();
        assert_eq!(lift1["value"], "2.016317016317016");
        // Compared with the parsed metadata value: serde_json without `float_roundtrip` may read
        // a long literal one ULP off, and the card must agree with what the caller parsed.
        let obs = pms
            .iter()
            .find(|p| p["type"] == "observed_rate" && p["slice"] == "calibration bin 0.9-1.0")
            .unwrap();
        let want = load(CHURN)["metrics"]["calibration"][9]["observed_rate"]
            .as_f64()
            .unwrap();
        assert_eq!(obs["value"].as_str().unwrap().parse::<f64>().unwrap(), want);
    }

    #[test]
    fn markdown_metric_values_equal_metadata() {
        let churn = load(CHURN);
        let md = card_markdown(&churn, &history());
        for k in [
            "auc",
            "average_precision",
            "brier",
            "ece",
            "f1",
            "log_loss",
            "precision",
            "recall",
            "base_rate",
            "threshold",
        ] {
            let x = churn["metrics"][k].as_f64().unwrap();
            let row = format!("| `{k}` | {} |", fmt_f64(x));
            assert!(md.contains(&row), "missing {row}");
            assert!(
                (fmt_f64(x).parse::<f64>().unwrap() - x).abs() < 5e-5,
                "{k} rounds to 4 decimals"
            );
        }
        assert!(md.contains("| `auc` | 0.8985 |"));
        assert!(md.contains("| `rows` | 1740 |"));
        assert!(md.contains("| `positives` | 858 |"));
        assert!(md.contains("| Training rows | 5075 |"));
        let ltv = card_markdown(&load(LTV), &[]);
        assert!(ltv.contains("| `rmse` | 186.1436 |"), "{ltv}");
        assert!(ltv.contains("| `r2` | 0.6299 |"));
    }

    #[test]
    fn number_format_is_compact() {
        assert_eq!(fmt_f64(0.0), "0");
        assert_eq!(fmt_f64(1.0), "1");
        assert_eq!(fmt_f64(0.04), "0.04");
        assert_eq!(fmt_f64(-0.00001), "-1.000e-5");
        assert_eq!(fmt_f64(13289.15488722722), "13289.1549");
        assert_eq!(fmt_f64(-0.00004999), "-4.999e-5");
        assert_eq!(fmt_val(Some(&json!(1740))), "1740");
        assert_eq!(fmt_val(Some(&json!(null))), "_n/a_");
    }

    #[test]
    fn missing_declarations_are_shown_as_missing() {
        let ltv = load(LTV);
        let md = card_markdown(&ltv, &[]);
        // intended_use, human_oversight and caveats are null in ltv.metadata.json.
        assert!(md.contains("## Intended use\n\n_Not declared_\n"), "{md}");
        assert!(md.contains("| Human oversight | _Not declared_ |"));
        assert!(md.contains("### Caveats\n\n_Not declared_\n"));
        assert!(md.contains("| Risk category (EU AI Act) | minimal |"));
        assert!(md.contains("Promotion gate: _Not recorded_"));
        assert!(
            !md.contains("Rank existing customers"),
            "nothing borrowed from another card"
        );

        let card = card_json(&ltv, &[]);
        let uses = card["considerations"]["use_cases"].as_array().unwrap();
        assert_eq!(uses[0]["description"], "Intended use: not declared");
        let risk = &card["considerations"]["ethical_considerations"][0];
        assert_eq!(risk["name"], "EU AI Act risk category: minimal");
        assert_eq!(risk["mitigation_strategy"], "Human oversight: not declared");
        let lims: Vec<&str> = card["considerations"]["limitations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["description"].as_str().unwrap())
            .collect();
        assert!(lims.contains(&"Caveats: not declared"));
        assert!(lims.contains(&"Trained on synthetic data in the demo"));
        assert!(
            card["model_details"]["documentation"]
                .as_str()
                .unwrap()
                .contains("Promotion: not recorded")
        );

        // Absent card and nothing else: every declared field is marked, nothing panics.
        let md = card_markdown(&json!({ "model": "x", "version": 3 }), &[]);
        assert!(md.contains("| Owner | _Not declared_ |"));
        assert!(md.contains("| Description | _Not declared_ |"));
        assert!(md.contains("| Label definition | _Not declared_ |"));
        assert!(md.contains("| Risk category (EU AI Act) | _Not declared_ |"));
        assert!(md.contains("### Out-of-scope uses\n\n_Not declared_\n"));
        assert!(md.contains("### Limitations\n\n_Not declared_\n"));
        let card = card_json(&json!({ "model": "x", "version": 3 }), &[]);
        assert_eq!(card["model_details"]["owners"][0]["name"], "not declared");
        assert_eq!(card["model_details"]["overview"], "not declared");
        assert_eq!(
            card["considerations"]["ethical_considerations"][0]["name"],
            "EU AI Act risk category: not declared"
        );
        // An empty list is a declaration of nothing, not a missing one.
        let md = card_markdown(&load(CHURN), &[]);
        assert!(md.contains("### References\n\n_None listed_\n"));
    }

    #[test]
    fn wrong_types_and_garbage_do_not_panic() {
        for v in [
            json!(null),
            json!([1, 2]),
            json!("x"),
            json!({ "card": "oops", "metrics": [1], "features": {"a": 1}, "segments": [null, {"groups": "x", "largest_gap": 3}],
                    "promotion": {"inputs": [1]}, "files": [{}], "training": {"read": [{"table": null}]}, "importance": [{"importance": 1}] }),
        ] {
            let _ = card_markdown(&v, &[json!(null), json!({"version": null})]);
            let _ = card_json(&v, &[json!(1)]);
        }
    }

    #[test]
    fn largest_segment_gap_is_flagged() {
        let md = card_markdown(&load(CHURN), &[]);
        assert!(md.contains("### By country (auc)"));
        assert!(md.contains("| Value | Rows | auc | Gap |"), "{md}");
        assert!(md.contains("| DE | 600 | 0.91 | **best** |"));
        assert!(md.contains("| FR | 500 | 0.87 | **worst** |"));
        assert!(md.contains("| US | 640 | 0.9 |  |"));
        assert!(md.contains("**Largest gap:** auc 0.04 between DE (best) and FR (worst)."));
        let card = card_json(&load(CHURN), &[]);
        let pms = card["quantitative_analysis"]["performance_metrics"]
            .as_array()
            .unwrap();
        let gap = pms.iter().find(|p| p["type"] == "auc largest gap").unwrap();
        assert_eq!(gap["value"], "0.04");
        assert_eq!(gap["slice"], "country (best DE, worst FR)");
        assert!(
            pms.iter()
                .any(|p| p["type"] == "auc" && p["slice"] == "country=FR" && p["value"] == "0.87")
        );
        assert_eq!(
            card["considerations"]["tradeoffs"][0]["description"],
            "Largest auc gap across country: 0.04 between DE (best) and FR (worst)"
        );
        let ltv = card_markdown(&load(LTV), &[]);
        assert!(ltv.contains("**Largest gap:** rmse 19.6 between DE (best) and FR (worst)."));
    }

    #[test]
    fn output_is_deterministic() {
        let h = history();
        let mut reversed = h.clone();
        reversed.reverse();
        for s in [CHURN, LTV] {
            let m = load(s);
            let a = card_markdown(&m, &h);
            assert_eq!(a, card_markdown(&m, &h));
            assert_eq!(
                a,
                card_markdown(&m, &reversed),
                "history order does not matter"
            );
            let ja = serde_json::to_string_pretty(&card_json(&m, &h)).unwrap();
            assert_eq!(
                ja,
                serde_json::to_string_pretty(&card_json(&m, &h)).unwrap()
            );
            assert_eq!(
                ja,
                serde_json::to_string_pretty(&card_json(&m, &reversed)).unwrap()
            );
        }
    }

    #[test]
    fn features_in_signature_order_with_type_and_importance() {
        let md = card_markdown(&load(CHURN), &[]);
        assert!(
            md.contains("| 1 | `tenure_days` | Float64 | 1760.9102 | 4 |"),
            "{md}"
        );
        assert!(md.contains("| 10 | `sessions_28d` | Int64 | 13289.1549 | 1 |"));
        assert!(md.contains("| 18 | `campaigns_30d` | Int64 | 0 | 18 |"));
        let card = card_json(&load(CHURN), &[]);
        let map = card["model_parameters"]["input_format_map"]
            .as_array()
            .unwrap();
        assert_eq!(map.len(), 19);
        assert_eq!(map[0]["key"], "tenure_days");
        assert_eq!(
            map[9]["value"],
            "type: Int64; importance: 13289.15488722722; rank: 1"
        );
    }

    #[test]
    fn promotion_and_alias_history() {
        let md = card_markdown(&load(CHURN), &history());
        assert!(
            md.contains("| Gate | `auc >= 0.70 and auc >= champion.auc - 0.005` |"),
            "{md}"
        );
        assert!(md.contains("| Verdict | **promoted** |"));
        assert!(md.contains("| `auc` | 0.8985 |"));
        assert!(md.contains("| `champion.auc` | _n/a_ |"));
        assert!(md.contains(
            "| 2026-11-23T14:23:25.100Z | champion | 1 | assigned to v1 (previously none) | run 20261123T142318Z-6694eeaf (marketing_nightly.churn_model) | promotion gate passed: auc >= 0.70 and auc >= champion.auc - 0.005 | auc >= 0.70 => promoted |"
        ));
        assert!(md.contains("| 2026-11-24T02:10:00.000Z | champion | 2 | moved from v1 to v2 | user alice | manual promotion after review | none |"));
        // Records about other versions only are left out.
        let other = json!({ "alias": "staging", "generation": 5, "version": 7, "previous_version": 6, "at": "2026-12-01T00:00:00Z" });
        let mut h = history();
        h.push(other);
        assert!(!card_markdown(&load(CHURN), &h).contains("staging"));
        let doc = card_json(&load(CHURN), &history())["model_details"]["documentation"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(doc.contains("Promotion: alias champion; gate: auc >= 0.70 and auc >= champion.auc - 0.005; inputs: auc=0.8984547198832913, champion.auc=null; champion version: none; verdict: promoted"));
        assert!(doc.contains("moved from v1 to v2 by user alice"));
    }

    #[test]
    fn lineage_lists_upstream_and_files() {
        let md = card_markdown(&load(CHURN), &[]);
        assert!(md.contains("| features.customer_rfm@3f2a9c1d | 4 | 20261123T142318Z-6694eeaf |"));
        assert!(md.contains("| `model.json` | `4cc8c8415a725e321702058ab18bf296fa556e9f3ff4604aa40c0507f79dbc37` | 1011906 |"));
        assert!(md.contains(
            "| Code version | nightjar 0.1.0, git commit 1a9d07b0c2f5e3d9a1b7c4e8f6a2d3b1c5e7f9a0 |"
        ));
        let card = card_json(&load(CHURN), &[]);
        let refs: Vec<&str> = card["model_details"]["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["reference"].as_str().unwrap())
            .collect();
        assert!(refs.contains(&"nightjar:run:20261123T142318Z-6694eeaf"));
        assert!(refs.contains(&"nightjar:dataset:features.customer_rfm@3f2a9c1d?delta_version=4&run_id=20261123T142318Z-6694eeaf"));
        assert!(refs.contains(&"nightjar:file:model.json?sha256=4cc8c8415a725e321702058ab18bf296fa556e9f3ff4604aa40c0507f79dbc37&bytes=1011906"));
        assert!(refs.contains(&"nightjar:file:MLmodel?sha256=%E2%80%A6&bytes=500"));
        let mut m = load(CHURN);
        m["code"]["git_commit"] = Value::Null;
        assert!(
            card_markdown(&m, &[])
                .contains("| Code version | nightjar 0.1.0, git commit not recorded |")
        );
    }

    #[test]
    fn table_cells_escape_pipes_and_newlines() {
        let mut m = load(CHURN);
        m["card"]["human_oversight"] = json!("a | b\nc");
        m["description"] = json!("x|y");
        let md = card_markdown(&m, &[]);
        assert!(md.contains("| Human oversight | a \\| b<br>c |"));
        assert!(md.contains("| Description | x\\|y |"));
    }

    /// Validates both sample cards against the MCT v0.0.2 schema with Python's `jsonschema`
    /// (format checks on, `uri` checked by a minimal RFC 3986 test), and again against a strict
    /// copy that forbids unknown keys in every object, as MCT's protobuf loader does.
    #[test]
    fn card_json_validates_against_mct_schema() {
        let dir = std::env::temp_dir().join(format!("nightjar-card-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let schema = dir.join("model_card.schema.json");
        std::fs::write(&schema, SCHEMA).unwrap();
        let mut args = vec![schema.display().to_string()];
        for (name, s) in [("churn", CHURN), ("ltv", LTV)] {
            let path = dir.join(format!("{name}.card.json"));
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&card_json(&load(s), &history())).unwrap(),
            )
            .unwrap();
            args.push(path.display().to_string());
        }
        const SCRIPT: &str = r#"
import copy, json, re, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
fc = jsonschema.Draft7Validator.FORMAT_CHECKER
uri = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
@fc.checks("uri")
def is_uri(v):
    return not isinstance(v, str) or bool(uri.match(v))
def strict(node):
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
strict_schema = copy.deepcopy(schema)
strict(strict_schema)
failed = False
for path in sys.argv[2:]:
    card = json.load(open(path))
    assert card["schema_version"] == "0.0.2", path
    for s in (schema, strict_schema):
        for e in jsonschema.Draft7Validator(s, format_checker=fc).iter_errors(card):
            failed = True
            print(path, list(e.absolute_path), e.message)
print("validated", len(sys.argv) - 2)
sys.exit(1 if failed else 0)
"#;
        let out = std::process::Command::new("python3").arg("-c").arg(SCRIPT).args(&args).output().unwrap_or_else(|e| {
            panic!("schema validation needs python3 with the jsonschema package (python3 -m pip install jsonschema): {e}")
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success(),
            "card.json is not valid MCT v0.0.2 (or python3 -m pip install jsonschema is missing):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("validated 2"));
    }
}
