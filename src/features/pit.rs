//! The point-in-time join of a training set, as one DataFusion query: for every label row and
//! every view, the newest view row of the same entity with `timestamp <= label timestamp` and
//! within the view's ttl. No view row after the label time can match, so nothing from the
//! future reaches a training row; a label row without a match keeps nulls (or the default).
//!
//! The matching is done per distinct (entity, label time) key (the newest matching
//! timestamp), then joined back to the labels and to the view row at that timestamp, so
//! duplicate label rows stay duplicated and each one gets the same features.

use std::time::Duration;

use crate::contracts::{quote_ident, quote_table};

/// One view as the join sees it.
pub struct PitView<'a> {
    /// The registered table name of the view's Delta version, e.g. `__pit_view_0`.
    pub table: &'a str,
    pub entity: &'a [String],
    pub timestamp: &'a str,
    pub ttl: Option<Duration>,
    /// (column, SQL default literal or None).
    pub features: Vec<(String, Option<String>)>,
}

/// The query: every label column, then each view's features in view order.
pub fn pit_query(labels: &str, label_ts: &str, views: &[PitView<'_>]) -> String {
    let label_time = quote_ident(label_ts);
    let mut ctes = vec![format!(
        "\"__labels\" AS (SELECT * FROM {})",
        quote_table(labels)
    )];
    let mut select = vec!["\"l\".*".to_string()];
    let mut joins = Vec::new();
    for (i, view) in views.iter().enumerate() {
        let m = format!("\"__m{i}\"");
        let j = format!("\"__j{i}\"");
        let ts = quote_ident(view.timestamp);
        let keys: Vec<String> = view.entity.iter().map(|c| quote_ident(c)).collect();
        let qualified =
            |alias: &str| -> Vec<String> { keys.iter().map(|k| format!("{alias}.{k}")).collect() };
        let equal = |a: &str, b: &str| -> Vec<String> {
            keys.iter().map(|k| format!("{a}.{k} = {b}.{k}")).collect()
        };
        let ttl = view.ttl.map_or(String::new(), |d| {
            format!(
                " AND \"v\".{ts} >= \"k\".{label_time} - INTERVAL '{} seconds'",
                d.as_secs()
            )
        });
        // The newest matching timestamp per (entity, label time): a hash aggregate over the
        // range join, cheaper than ranking every candidate row with a window. Duplicate label
        // rows only repeat candidates of the same group; a DISTINCT first would cost a pass.
        ctes.push(format!(
            "{m} AS (SELECT {k_cols}, \"k\".{label_time}, max(\"v\".{ts}) AS \"__ts\" \
             FROM (SELECT {key_list}, {label_time} FROM \"__labels\") AS \"k\" \
             JOIN {view_table} AS \"v\" ON {on_entity} AND \"v\".{ts} <= \"k\".{label_time}{ttl} \
             GROUP BY {k_cols}, \"k\".{label_time})",
            k_cols = qualified("\"k\"").join(", "),
            key_list = keys.join(", "),
            view_table = quote_ident(view.table),
            on_entity = equal("\"v\"", "\"k\"").join(" AND "),
        ));
        for (f, default) in &view.features {
            let column = format!("{j}.{}", quote_ident(f));
            select.push(match default {
                Some(d) => format!("coalesce({column}, {d}) AS {}", quote_ident(f)),
                None => format!("{column} AS {}", quote_ident(f)),
            });
        }
        let mut on_m = equal("\"l\"", &m);
        on_m.push(format!("\"l\".{label_time} = {m}.{label_time}"));
        // A view version has one row per (entity, timestamp), so this finds at most one row.
        let mut on_j = equal(&j, &m);
        on_j.push(format!("{j}.{ts} = {m}.\"__ts\""));
        joins.push(format!(
            "LEFT JOIN {m} ON {} LEFT JOIN {} AS {j} ON {}",
            on_m.join(" AND "),
            quote_ident(view.table),
            on_j.join(" AND ")
        ));
    }
    format!(
        "WITH {} SELECT {} FROM \"__labels\" AS \"l\" {}",
        ctes.join(", "),
        select.join(", "),
        joins.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use proptest::prelude::*;

    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn ts_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }

    fn register(ctx: &SessionContext, name: &str, columns: Vec<(&str, Arc<dyn Array>)>) {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("batch");
        // Two partitions, so the join and window really run in parallel pieces.
        let half = batch.num_rows() / 2;
        let parts = vec![
            vec![batch.slice(0, half)],
            vec![batch.slice(half, batch.num_rows() - half)],
        ];
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(schema, parts).expect("mem")),
        )
        .expect("register");
    }

    /// The join's answer for every label row, in label order: `(label id, feature value)`.
    fn run_join(
        labels: &[(i64, i64, i64)],
        view: &[(i64, i64, i64)],
        ttl_days: Option<i64>,
    ) -> Vec<(i64, Option<i64>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("rt");
        rt.block_on(async {
            let ctx = SessionContext::new();
            register(
                &ctx,
                "labels",
                vec![
                    (
                        "id",
                        Arc::new(Int64Array::from_iter_values(labels.iter().map(|l| l.0))),
                    ),
                    (
                        "customer_id",
                        Arc::new(Int64Array::from_iter_values(labels.iter().map(|l| l.1))),
                    ),
                    (
                        "label_ts",
                        Arc::new(
                            TimestampMicrosecondArray::from_iter_values(labels.iter().map(|l| l.2))
                                .with_timezone("UTC"),
                        ),
                    ),
                ],
            );
            register(
                &ctx,
                "view0",
                vec![
                    (
                        "customer_id",
                        Arc::new(Int64Array::from_iter_values(view.iter().map(|r| r.0))),
                    ),
                    (
                        "feature_ts",
                        Arc::new(
                            TimestampMicrosecondArray::from_iter_values(view.iter().map(|r| r.1))
                                .with_timezone("UTC"),
                        ),
                    ),
                    (
                        "value",
                        Arc::new(Int64Array::from_iter_values(view.iter().map(|r| r.2))),
                    ),
                ],
            );
            let entity = vec!["customer_id".to_string()];
            let views = [PitView {
                table: "view0",
                entity: &entity,
                timestamp: "feature_ts",
                ttl: ttl_days.map(|d| Duration::from_secs(d as u64 * 86_400)),
                features: vec![("value".into(), None)],
            }];
            let sql = format!(
                "{} ORDER BY \"id\"",
                pit_query("labels", "label_ts", &views)
            );
            let batches = ctx
                .sql(&sql)
                .await
                .expect("plans")
                .collect()
                .await
                .expect("runs");
            let mut out = Vec::new();
            for b in batches {
                assert_eq!(b.schema().field(3).data_type(), &DataType::Int64);
                assert_eq!(b.schema().field(2).data_type(), &ts_type());
                let id = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("id");
                let value = b
                    .column(3)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("value");
                for i in 0..b.num_rows() {
                    out.push((id.value(i), value.is_valid(i).then(|| value.value(i))));
                }
            }
            out
        })
    }

    /// The definition, by brute force: the newest view row of the entity at or before the
    /// label time and within ttl.
    fn reference(
        labels: &[(i64, i64, i64)],
        view: &[(i64, i64, i64)],
        ttl_days: Option<i64>,
    ) -> Vec<(i64, Option<i64>)> {
        let mut out: Vec<(i64, Option<i64>)> = labels
            .iter()
            .map(|&(id, entity, t)| {
                let best = view
                    .iter()
                    .filter(|r| {
                        r.0 == entity && r.1 <= t && ttl_days.is_none_or(|d| r.1 >= t - d * DAY)
                    })
                    .max_by_key(|r| r.1);
                (id, best.map(|r| r.2))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn newest_row_at_or_before_the_label_within_ttl() {
        // Customer 1 has snapshots on days 0, 7, 14; customer 2 only on day 30.
        let view = [
            (1, 0, 100),
            (1, 7 * DAY, 107),
            (1, 14 * DAY, 114),
            (2, 30 * DAY, 230),
        ];
        let labels = [
            (1, 1, 7 * DAY),     // exactly at a snapshot: that snapshot
            (2, 1, 7 * DAY - 1), // just before: the previous one
            (3, 1, 100 * DAY),   // long after: the last one, unless the ttl says no
            (4, 2, 29 * DAY),    // before the entity's first row: nothing
            (5, 3, 10 * DAY),    // an entity the view does not have: nothing
            (6, 1, 7 * DAY),     // a duplicate label row keeps its own row
        ];
        assert_eq!(
            run_join(&labels, &view, None),
            [
                (1, Some(107)),
                (2, Some(100)),
                (3, Some(114)),
                (4, None),
                (5, None),
                (6, Some(107))
            ]
        );
        // With an 8-day ttl the day-14 snapshot is too old for day 100.
        assert_eq!(run_join(&labels, &view, Some(8))[2], (3, None));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Planted future rows never leak: each view row's value encodes its own timestamp,
        /// and every label gets exactly the brute-force answer; in particular no value whose
        /// timestamp is after the label time ever appears.
        #[test]
        fn no_future_feature_ever_reaches_a_label(
            rows in proptest::collection::vec((1i64..6, 0i64..40), 1..60),
            labels in proptest::collection::vec((1i64..7, 0i64..40, 0i64..DAY), 1..40),
            ttl in proptest::option::of(1i64..15),
        ) {
            let mut seen = std::collections::HashSet::new();
            // One row per (entity, day) as a materialized view guarantees; value = entity*1000+day.
            let view: Vec<(i64, i64, i64)> = rows
                .into_iter()
                .filter(|r| seen.insert(*r))
                .map(|(e, d)| (e, d * DAY, e * 1000 + d))
                .collect();
            let labels: Vec<(i64, i64, i64)> = labels
                .into_iter()
                .enumerate()
                .map(|(i, (e, d, offset))| (i as i64, e, d * DAY + offset))
                .collect();
            let got = run_join(&labels, &view, ttl);
            for (id, value) in &got {
                let label = labels[*id as usize];
                if let Some(v) = value {
                    let day = v % 1000;
                    prop_assert!(day * DAY <= label.2, "label {id} at {} got a row from day {day}", label.2);
                    prop_assert_eq!(v / 1000, label.1);
                }
            }
            prop_assert_eq!(got, reference(&labels, &view, ttl));
        }
    }
}
