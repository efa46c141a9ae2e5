//! Column-level lineage from a DataFusion logical plan (pure): for each output column, the
//! table columns its value is computed from (OpenLineage DIRECT: IDENTITY when copied,
//! TRANSFORMATION when computed, AGGREGATION when aggregated), and the table columns that
//! shape the whole output without flowing into a value (INDIRECT: FILTER, JOIN, GROUP_BY,
//! SORT, WINDOW).
//!
//! It walks the plan as written (before optimization, so CTEs, aliases and projections are
//! the user's). Limits, stated rather than guessed: columns read only inside a subquery
//! expression (`WHERE x = (SELECT MAX(...))`, `IN (SELECT ...)`) are not traced, and plan
//! nodes it does not know (extensions, DML) contribute no lineage.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

/// One input column and how it is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    /// The table as the query named it (`staging.orders`).
    pub table: String,
    pub column: String,
    /// `DIRECT` or `INDIRECT`.
    pub kind: &'static str,
    /// `IDENTITY`, `TRANSFORMATION`, `AGGREGATION`, `FILTER`, `JOIN`, `GROUP_BY`, `SORT`, `WINDOW`.
    pub subtype: &'static str,
}

/// The lineage of a query's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnLineage {
    /// Output column → the input columns its values come from.
    pub fields: BTreeMap<String, BTreeSet<Source>>,
    /// Input columns that affect the whole output (filters, join keys, grouping, sorting).
    pub dataset: BTreeSet<Source>,
}

/// A table column an output column derives from, before its use is classified.
type Origin = (String, String);

/// Per output column of a plan, its origins; indirect uses are added to `indirect`.
fn walk(plan: &LogicalPlan, indirect: &mut BTreeSet<(Origin, &'static str)>) -> Vec<Derived> {
    let fields = plan.schema().fields().len();
    let input_of = |input: &LogicalPlan, indirect: &mut BTreeSet<(Origin, &'static str)>| {
        walk(input, indirect)
    };
    match plan {
        LogicalPlan::TableScan(scan) => scan
            .projected_schema
            .fields()
            .iter()
            .map(|f| Derived::identity((scan.table_name.to_string(), f.name().clone())))
            .collect(),
        LogicalPlan::Projection(p) => {
            let input = input_of(&p.input, indirect);
            p.expr
                .iter()
                .map(|e| derive(e, &p.input, &input, false))
                .collect()
        }
        LogicalPlan::Filter(f) => {
            let input = input_of(&f.input, indirect);
            note(&f.predicate, &f.input, &input, "FILTER", indirect);
            input
        }
        LogicalPlan::Sort(s) => {
            let input = input_of(&s.input, indirect);
            for e in &s.expr {
                note(&e.expr, &s.input, &input, "SORT", indirect);
            }
            input
        }
        LogicalPlan::Aggregate(a) => {
            let input = input_of(&a.input, indirect);
            for e in &a.group_expr {
                note(e, &a.input, &input, "GROUP_BY", indirect);
            }
            let mut out: Vec<Derived> = a
                .group_expr
                .iter()
                .map(|e| derive(e, &a.input, &input, false))
                .chain(
                    a.aggr_expr
                        .iter()
                        .map(|e| derive(e, &a.input, &input, true)),
                )
                .collect();
            // Grouping sets add columns of their own: they derive from every grouped column.
            out.resize_with(fields, Derived::default);
            out
        }
        LogicalPlan::Window(w) => {
            let mut out = input_of(&w.input, indirect);
            let input = out.clone();
            for e in &w.window_expr {
                note(e, &w.input, &input, "WINDOW", indirect);
                out.push(derive(e, &w.input, &input, true));
            }
            out
        }
        LogicalPlan::Join(j) => {
            let left = input_of(&j.left, indirect);
            let right = input_of(&j.right, indirect);
            for (l, r) in &j.on {
                note(l, &j.left, &left, "JOIN", indirect);
                note(r, &j.right, &right, "JOIN", indirect);
            }
            if let Some(filter) = &j.filter {
                // The filter may name either side: resolve each column against both.
                for side in [(&j.left, &left), (&j.right, &right)] {
                    note(filter, side.0, side.1, "JOIN", indirect);
                }
            }
            let mut out = match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left,
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => right,
                _ => left.into_iter().chain(right).collect(),
            };
            out.resize_with(fields, Derived::default);
            out
        }
        LogicalPlan::Union(u) => {
            let mut out = vec![Derived::default(); fields];
            for input in &u.inputs {
                for (slot, d) in out.iter_mut().zip(input_of(input, indirect)) {
                    slot.merge(d);
                }
            }
            out
        }
        // Nodes that pass their input's columns through unchanged.
        LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_))
        | LogicalPlan::Repartition(_) => {
            let inputs = plan.inputs();
            match inputs.first() {
                Some(input) => {
                    let mut out = input_of(input, indirect);
                    out.resize_with(fields, Derived::default);
                    out
                }
                None => vec![Derived::default(); fields],
            }
        }
        _ => vec![Derived::default(); fields],
    }
}

/// What an output column derives from: its origins and the strongest use among them.
#[derive(Debug, Clone, Default)]
struct Derived {
    origins: BTreeMap<Origin, &'static str>,
}

impl Derived {
    fn identity(origin: Origin) -> Derived {
        Derived {
            origins: BTreeMap::from([(origin, "IDENTITY")]),
        }
    }

    fn merge(&mut self, other: Derived) {
        for (origin, subtype) in other.origins {
            let slot = self.origins.entry(origin).or_insert(subtype);
            *slot = stronger(slot, subtype);
        }
    }
}

/// AGGREGATION > TRANSFORMATION > IDENTITY: a copy of an aggregate is still an aggregate.
fn stronger(a: &'static str, b: &'static str) -> &'static str {
    let rank = |s: &str| match s {
        "AGGREGATION" => 2,
        "TRANSFORMATION" => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// The origins of an expression over `input` (whose columns derive as `derived`).
fn derive(e: &Expr, input: &LogicalPlan, derived: &[Derived], aggregate: bool) -> Derived {
    let plain_column = matches!(unalias(e), Expr::Column(_));
    let mut out = Derived::default();
    for column in e.column_refs() {
        let Ok(idx) = input.schema().index_of_column(column) else {
            continue;
        };
        let Some(d) = derived.get(idx) else { continue };
        for (origin, subtype) in &d.origins {
            let used = if aggregate {
                "AGGREGATION"
            } else if plain_column {
                subtype
            } else {
                stronger(subtype, "TRANSFORMATION")
            };
            let slot = out.origins.entry(origin.clone()).or_insert(used);
            *slot = stronger(slot, used);
        }
    }
    out
}

/// Records the origins of `e`'s columns as an indirect use.
fn note(
    e: &Expr,
    input: &LogicalPlan,
    derived: &[Derived],
    subtype: &'static str,
    indirect: &mut BTreeSet<(Origin, &'static str)>,
) {
    for origin in derive(e, input, derived, false).origins.into_keys() {
        indirect.insert((origin, subtype));
    }
}

/// The column lineage of `plan`'s output.
pub fn column_lineage(plan: &LogicalPlan) -> ColumnLineage {
    let mut indirect = BTreeSet::new();
    let derived = walk(plan, &mut indirect);
    let mut fields = BTreeMap::new();
    for (field, d) in plan.schema().fields().iter().zip(derived) {
        let sources: BTreeSet<Source> = d
            .origins
            .into_iter()
            .map(|((table, column), subtype)| Source {
                table,
                column,
                kind: "DIRECT",
                subtype,
            })
            .collect();
        fields.insert(field.name().clone(), sources);
    }
    let dataset = indirect
        .into_iter()
        .map(|((table, column), subtype)| Source {
            table,
            column,
            kind: "INDIRECT",
            subtype,
        })
        .collect();
    ColumnLineage { fields, dataset }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    async fn lineage(sql: &str) -> ColumnLineage {
        let ctx = SessionContext::new();
        ctx.sql("CREATE SCHEMA staging").await.unwrap();
        let orders = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("order_id", DataType::Int64, false),
                Field::new("customer_id", DataType::Int64, false),
                Field::new("amount", DataType::Int64, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Int64Array::from(vec![5])),
            ],
        )
        .unwrap();
        let customers = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("customer_id", DataType::Int64, false),
                Field::new("country", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(StringArray::from(vec!["DE"])),
            ],
        )
        .unwrap();
        ctx.register_batch("staging.orders", orders).unwrap();
        ctx.register_batch("staging.customers", customers).unwrap();
        let plan = ctx.sql(sql).await.unwrap().logical_plan().clone();
        column_lineage(&plan)
    }

    fn sources(l: &ColumnLineage, field: &str) -> Vec<String> {
        l.fields[field]
            .iter()
            .map(|s| format!("{}.{} {}", s.table, s.column, s.subtype))
            .collect()
    }

    #[tokio::test]
    async fn joins_aggregates_aliases_and_ctes_trace_to_table_columns() {
        let l = lineage(
            "WITH big AS (SELECT * FROM staging.orders WHERE amount > 1)
             SELECT c.country AS market, c.customer_id, SUM(b.amount) * 2 AS revenue,
                    COUNT(*) AS n
             FROM big b JOIN staging.customers c ON b.customer_id = c.customer_id
             GROUP BY c.country, c.customer_id
             ORDER BY revenue DESC",
        )
        .await;
        assert_eq!(
            sources(&l, "market"),
            ["staging.customers.country IDENTITY"]
        );
        assert_eq!(
            sources(&l, "customer_id"),
            ["staging.customers.customer_id IDENTITY"]
        );
        assert_eq!(
            sources(&l, "revenue"),
            ["staging.orders.amount AGGREGATION"]
        );
        assert!(sources(&l, "n").is_empty(), "COUNT(*) reads no column");
        let dataset: Vec<String> = l
            .dataset
            .iter()
            .map(|s| format!("{}.{} {}", s.table, s.column, s.subtype))
            .collect();
        assert_eq!(
            dataset,
            [
                "staging.customers.country GROUP_BY",
                "staging.customers.customer_id GROUP_BY",
                "staging.customers.customer_id JOIN",
                "staging.orders.amount FILTER",
                "staging.orders.amount SORT",
                "staging.orders.customer_id JOIN",
            ]
        );
    }

    #[tokio::test]
    async fn computed_and_unioned_columns_are_transformations_of_every_input() {
        let l = lineage(
            "SELECT order_id, amount + customer_id AS mixed FROM staging.orders
             UNION ALL
             SELECT customer_id, 0 FROM staging.customers",
        )
        .await;
        assert_eq!(
            sources(&l, "order_id"),
            [
                "staging.customers.customer_id IDENTITY",
                "staging.orders.order_id IDENTITY"
            ]
        );
        assert_eq!(
            sources(&l, "mixed"),
            [
                "staging.orders.amount TRANSFORMATION",
                "staging.orders.customer_id TRANSFORMATION"
            ]
        );
        assert!(l.dataset.is_empty());
    }
}
