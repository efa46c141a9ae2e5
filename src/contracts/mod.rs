//! Data contracts: ODCS v3 files (`contracts/*.yaml`) read into rules with stable ids, and a
//! checker that runs them on DataFusion in one aggregate scan per table.
//!
//! - `load`: `parse_contract` reads a file and reports every problem at `file:line:column`.
//! - `model`: the contract, its objects (tables), properties (columns) and rules.
//! - `sql`: rules compiled to SQL text; `row_failure_predicate` for quarantine routing.
//! - `drift`: declared columns against a table's Arrow schema.
//! - `check`: `check` runs it all and returns a `CheckReport` (data, not an error).
//!
//! API boundary: loading and compiling do no IO; `check` only queries the session it is given.
//!
//! What is checked, and the ODCS key it comes from:
//!
//! | ODCS | rule id (unless `id:` is given) | counts |
//! |---|---|---|
//! | `required: true` | `<object>.<property>.required` | nulls, must be 0 |
//! | `unique: true` | `<object>.<property>.unique` | duplicates, must be 0 |
//! | `primaryKey: true` | `<object>.primaryKey` | duplicates over all key columns, must be 0 |
//! | `logicalTypeOptions` `minimum`/`maximum`/`exclusive*` | `<object>.<property>.range` | values out of range, must be 0 |
//! | `logicalTypeOptions` `minLength`/`maxLength` | `<object>.<property>.length` | values too short/long, must be 0 |
//! | `logicalTypeOptions` `pattern` | `<object>.<property>.pattern` | values not matching, must be 0 |
//! | `logicalTypeOptions` `multipleOf` | `<object>.<property>.multipleOf` | values not a multiple, must be 0 |
//! | `quality: [{metric: nullValues …}]` | `<object>.<property>.nullValues` | as written |
//! | `missingValues`, `invalidValues`, `duplicateValues`, `rowCount` | `<object>[.<property>].<metric>` | as written |
//! | `quality: [{type: sql, query: …}]` | `<object>[.<property>].sql` | the query's number |
//! | `slaProperties: [{property: latency, element: o.p}]` | `<object>.<property>.freshness` | age at the end of `ds` |
//! | the declared properties | `<object>.schema` | added, missing, retyped columns |
//!
//! Repeated derived ids get `.2`, `.3`, … in file order; give rules an `id` to make them
//! stable across edits. `severity: error` (the default) blocks; `warning` and `info` report.
//! `type: text` rules are prose and not run; `type: custom` rules are refused at load time.
//!
//! Choices where ODCS is silent or loose (everything nightjar accepts still validates against
//! the official v3.1.0 JSON Schema, whose keys a test compares with ours):
//! - `mustBeBetween: [a, b]` includes both ends (as Soda and datacontract-cli do; the ODCS prose
//!   calls it "greater than and less than"); `mustNotBeBetween` passes outside `[a, b]`.
//! - One operator per rule (the schema's `oneOf`); `unit` is `rows` (default) or `percent`,
//!   and percent is `100 × rows / all rows` (0 for an empty table).
//! - `duplicateValues` counts rows beyond the first of each value (`count - count distinct`);
//!   rows with a null key column are not keys. `missingValues` always counts nulls; without
//!   `arguments.missingValues` it also counts empty or whitespace-only text. `validValues` and
//!   `missingValues` are compared as text; nulls are never invalid.
//! - Value ranges are `logicalTypeOptions` as ODCS defines them, checked as implied rules.
//! - Freshness is an SLA: `property: latency` (or `freshness`, free text in the schema) with
//!   `value`, `unit` (`s`, `min`, `h`, `d`, `w`, `y`) and `element: object.property` (or the
//!   deprecated `slaDefaultElement`). The age is measured from the newest value to the end of the
//!   run's `ds` day (00:00 UTC of the next day). SLAs have no severity: freshness blocks.
//! - `severity` is ODCS's own free-text field; `error`, `warning`, `info` are accepted.
//! - `sql` rules replace `{object}` with the quoted table and `{property}` with the quoted column;
//!   a query that fails fails its rule (with the engine's message) instead of the whole check.
//!
//! ```yaml
//! apiVersion: v3.1.0
//! kind: DataContract
//! id: orders
//! version: 1.0.0
//! status: active
//! schema:
//!   - name: orders
//!     properties:
//!       - name: order_id
//!         logicalType: integer
//!         primaryKey: true
//!         required: true
//!       - name: status
//!         logicalType: string
//!         quality:
//!           - metric: invalidValues
//!             arguments: { validValues: [new, shipped, returned] }
//!             mustBeLessOrEqualTo: 1
//!             unit: percent
//!             severity: warning
//!       - name: amount
//!         logicalType: number
//!         logicalTypeOptions: { minimum: 0, maximum: 10000 }
//!       - name: created_at
//!         logicalType: timestamp
//!     quality:
//!       - metric: rowCount
//!         mustBeGreaterThan: 0
//! slaProperties:
//!   - property: latency
//!     value: 1
//!     unit: d
//!     element: orders.created_at
//! ```

mod check;
mod drift;
mod dups;
mod load;
mod model;
mod sql;

#[cfg(test)]
mod tests;

pub use check::{CheckOptions, CheckReport, IssuedQuery, MASK, QueryPurpose, RuleResult, check};
pub use drift::{Drift, expected_schema_drift};
pub use load::parse_contract;
pub use model::{
    Bound, BoundValue, Comparison, Contract, ContractDescription, ContractObject, LogicalType,
    Property, Rule, RuleKind, RuleOrigin, Severity, Team, TeamMember, Unit,
};
pub use sql::{
    quote_ident, quote_literal, quote_table, row_failure_predicate, row_predicate,
    row_rule_predicates,
};
