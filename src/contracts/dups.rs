//! Duplicate keys by hashing: one scan hashes every key, a sort finds the hashes seen twice,
//! and a second scan checks only the rows behind those hashes.
//!
//! A DataFusion GROUP BY over 10M distinct keys built a hash table of every key in two
//! phases and was most of a contract check's time (1.5 s for one Int64 key, 2.8 s for a
//! three-column key, against 0.7 s for the aggregate scan of sixteen other rules). Equal keys
//! have equal hashes, so when no hash repeats there is no duplicate, exactly; when some do,
//! the few rows behind them are grouped by their real values, so a hash collision never
//! counts as a duplicate. The hashes (8 bytes a row) and the candidate rows are held in
//! memory under a reservation from the session's memory pool; when the pool says no, `count`
//! returns `None` and the caller runs the spilling GROUP BY instead. That matters when a key
//! is mostly duplicates: then nearly every row is a candidate.

use std::collections::HashSet;

use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::sql::{ident_list, keys_not_null};

/// What `count` found: rows beyond the first of each duplicated key, and the first `sample`
/// duplicated keys in key order (one row each, the key columns only).
pub(crate) struct Duplicates {
    pub total: u64,
    pub sampled: Vec<RecordBatch>,
}

/// The query both passes run: the key columns of the rows whose key has no null (rows with
/// a null key column are not keys, as in SQL `UNIQUE`).
pub(crate) fn key_scan(table: &str, columns: &[String]) -> String {
    format!(
        "SELECT {} FROM {table} WHERE {}",
        ident_list(columns),
        keys_not_null(columns)
    )
}

/// The duplicates among the rows of `sql` (a `key_scan`), or `None` if the memory pool
/// cannot hold a hash per row.
pub(crate) async fn count(
    ctx: &SessionContext,
    sql: &str,
    sample: usize,
) -> Result<Option<Duplicates>> {
    // A fixed seed: the same data hashes the same way on every run (nothing depends on the
    // values, but a reproducible run is easier to reason about).
    let state = RandomState::default();
    let pool = ctx.runtime_env().memory_pool.clone();
    let reservation = MemoryConsumer::new("contract duplicate keys").register(&pool);

    // 1. Every key's hash, bucketed by its top bits so the buckets sort on their own threads
    //    (equal hashes land in the same bucket).
    let threads = ctx.copied_config().target_partitions().clamp(1, 8);
    let bucket_of = |h: u64| (((h >> 32) * threads as u64) >> 32) as usize;
    let mut buckets: Vec<Vec<u64>> = vec![Vec::new(); threads];
    let mut buffer: Vec<u64> = Vec::new();
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        buffer.clear();
        buffer.resize(batch.num_rows(), 0);
        create_hashes(batch.columns(), &state, &mut buffer)?;
        for &h in &buffer {
            buckets[bucket_of(h)].push(h);
        }
        // What the buckets hold, growth slack included.
        let held = buckets.iter().map(Vec::capacity).sum::<usize>() * 8;
        if reservation.try_resize(held).is_err() {
            return Ok(None);
        }
    }
    let repeated: HashSet<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = buckets
            .into_iter()
            .map(|mut bucket| {
                scope.spawn(move || {
                    bucket.sort_unstable();
                    let mut repeats: Vec<u64> = bucket
                        .windows(2)
                        .filter(|w| w[0] == w[1])
                        .map(|w| w[0])
                        .collect();
                    repeats.dedup();
                    repeats
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a hash-sorting thread panicked"))
            .collect()
    });
    reservation.free();
    if repeated.is_empty() {
        return Ok(Some(Duplicates {
            total: 0,
            sampled: Vec::new(),
        }));
    }

    // 2. The rows behind the repeated hashes, grouped by their values.
    let mut candidates: Vec<RecordBatch> = Vec::new();
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    let schema = stream.schema();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        buffer.clear();
        buffer.resize(batch.num_rows(), 0);
        create_hashes(batch.columns(), &state, &mut buffer)?;
        let keep: BooleanArray = buffer.iter().map(|h| Some(repeated.contains(h))).collect();
        let kept = filter_record_batch(&batch, &keep)?;
        if kept.num_rows() > 0 {
            // Three times the rows' size: the batches, their concatenation and row format.
            if reservation
                .try_grow(3 * kept.get_array_memory_size())
                .is_err()
            {
                return Ok(None);
            }
            candidates.push(kept);
        }
    }
    let all = concat_batches(&schema, &candidates)?;
    let converter = RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(all.columns())?;
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    // Row order is the columns' ascending order: the ORDER BY of the SQL path.
    order.sort_by(|&a, &b| rows.row(a as usize).cmp(&rows.row(b as usize)));
    let mut total = 0u64;
    let mut firsts: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && rows.row(order[j] as usize) == rows.row(order[i] as usize) {
            j += 1;
        }
        if j - i > 1 {
            total += (j - i - 1) as u64;
            if firsts.len() < sample.max(1) {
                firsts.push(order[i]);
            }
        }
        i = j;
    }
    let sampled = if firsts.is_empty() {
        Vec::new()
    } else {
        let indices = UInt32Array::from(firsts);
        vec![take_record_batch(&all, &indices)?]
    };
    Ok(Some(Duplicates { total, sampled }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::SessionConfig;

    use super::*;

    /// (id, name) rows: (1,a) three times, (2,b) twice, (3,a), (1,b), and a null name.
    fn ctx_with(pool_bytes: Option<usize>) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from(vec![2, 1, 3, 1, 2, 1, 1, 4]);
        let names = StringArray::from(vec![
            Some("b"),
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("a"),
            None,
        ]);
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)]).expect("batch");
        ctx_over(batch, pool_bytes)
    }

    /// A session with `batch` as table `t`, under a pool of `pool_bytes` (unbounded if none).
    fn ctx_over(batch: RecordBatch, pool_bytes: Option<usize>) -> SessionContext {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = pool_bytes {
            runtime = runtime.with_memory_pool(Arc::new(GreedyMemoryPool::new(bytes)));
        }
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new(),
            runtime.build_arc().expect("runtime"),
        );
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("mem table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        ctx
    }

    #[tokio::test]
    async fn counts_rows_beyond_the_first_of_each_key_and_samples_keys_in_order() {
        let ctx = ctx_with(None);
        let both = ["id".to_string(), "name".to_string()];
        let found = count(&ctx, &key_scan("t", &both), 5)
            .await
            .unwrap()
            .unwrap();
        // (1,a) ×3 → 2, (2,b) ×2 → 1; (3,a), (1,b) are single; the null name is no key.
        assert_eq!(found.total, 3);
        let keys = &found.sampled[0];
        let ids: Vec<i64> = keys.column(0).as_primitive::<Int64Type>().values().to_vec();
        let names: Vec<&str> = (0..keys.num_rows())
            .map(|i| keys.column(1).as_string::<i32>().value(i))
            .collect();
        assert_eq!((ids, names), (vec![1, 2], vec!["a", "b"]));

        // One column: id 1 ×4 → 3, id 2 ×2 → 1; a sample of one keeps the lowest key.
        let found = count(&ctx, &key_scan("t", &["id".to_string()]), 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.total, 4);
        assert_eq!(found.sampled[0].num_rows(), 1);
        assert_eq!(
            found.sampled[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .value(0),
            1
        );

        // No repeated key: nothing sampled.
        let found = count(&ctx, "SELECT DISTINCT id FROM t", 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.total, 0);
        assert!(found.sampled.is_empty() || found.sampled[0].column(0).is_empty());
    }

    /// 10,000 rows of one Int64 column `k`, under a pool of `pool_bytes`.
    fn ten_thousand(values: impl Fn(i64) -> i64, pool_bytes: usize) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let column = Int64Array::from_iter_values((0..10_000).map(values));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(column)]).expect("batch");
        ctx_over(batch, Some(pool_bytes))
    }

    #[tokio::test]
    async fn candidate_rows_count_against_the_pool_too() {
        // 200 kB holds 10,000 hashes (80 kB, 160 kB with growth slack) but not three copies
        // of 10,000 candidate rows (240 kB): a key that is all duplicates goes to the GROUP BY.
        let scan = key_scan("t", &["k".to_string()]);
        let all_same = ten_thousand(|_| 1, 200_000);
        assert!(count(&all_same, &scan, 5).await.unwrap().is_none());
        let distinct = ten_thousand(|i| i, 200_000);
        let found = count(&distinct, &scan, 5).await.unwrap().unwrap();
        assert_eq!(found.total, 0);
        // With room, the same all-duplicates key is counted here: 9,999 beyond the first.
        let roomy = ten_thousand(|_| 1, 10_000_000);
        assert_eq!(count(&roomy, &scan, 5).await.unwrap().unwrap().total, 9_999);
    }

    #[tokio::test]
    async fn a_pool_too_small_for_the_hashes_asks_for_the_group_by() {
        let ctx = ctx_with(Some(16));
        let found = count(&ctx, &key_scan("t", &["id".to_string()]), 5)
            .await
            .unwrap();
        assert!(found.is_none());
    }
}
