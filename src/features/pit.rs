//! The point-in-time join of a training set: for every label row and every view, the newest
//! view row of the same entity with `timestamp <= label timestamp` and within the view's ttl.
//! No view row after the label time can match, so nothing from the future reaches a training
//! row; a label row without a match keeps nulls (or the default). Label rows keep their
//! order and duplicates.
//!
//! `asof_join` does it over Arrow arrays (hash grouping by entity, binary search by time).
//! `pit_query`, the same join as one DataFusion query, is the independent reference the tests
//! check the operator against and the second form `benches/asof` times.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, TimestampMicrosecondArray, new_null_array,
};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, concat_batches, interleave, is_not_null};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{HashMap, ScalarValue};

use crate::contracts::{quote_ident, quote_table};

/// One view as the SQL form of the join sees it.
pub struct PitView<'a> {
    /// The registered table name of the view's Delta version, e.g. `__pit_view_0`.
    pub table: &'a str,
    pub entity: &'a [String],
    pub timestamp: &'a str,
    pub ttl: Option<Duration>,
    /// (column, SQL default literal or None).
    pub features: Vec<(String, Option<String>)>,
}

/// The same join as one DataFusion query (every label column, then each view's features):
/// the first implementation, kept as an independent reference the operator is tested
/// against. It was 1.6x DuckDB's ASOF JOIN at 10M x 50M (BENCHMARKS.md).
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

/// One view for `asof_join`: its rows (one version of the view), collected.
pub struct AsofView<'a> {
    pub batches: &'a [RecordBatch],
    pub entity: &'a [String],
    pub timestamp: &'a str,
    pub ttl: Option<Duration>,
    /// (column, default for label rows without a match).
    pub features: Vec<(String, Option<ScalarValue>)>,
}

/// The point-in-time join done directly over Arrow: every label column, then each view's
/// features. Per view, the view rows and the labels are split into partitions by a hash of
/// the entity, and the partitions are matched on `threads` threads: within one, entities get
/// dense ids (a hash map small enough to stay in cache), their rows are grouped by a counting
/// sort and sorted by timestamp, and a label takes the last row at or before its time by
/// binary search, if within the ttl. No sort of the whole history and no candidate rows are
/// materialized, which is what made the SQL form (a range join into an aggregate) slow. A
/// view version has one row per (entity, timestamp), and ties are broken by row position,
/// so the result depends neither on the thread count nor on how rows are partitioned.
pub fn asof_join(
    labels: &[RecordBatch],
    label_ts: &str,
    views: &[AsofView<'_>],
    threads: usize,
) -> Result<RecordBatch, String> {
    let Some(first) = labels.first() else {
        return Err("the label query returned no batches".into());
    };
    let labels = concat_batches(&first.schema(), labels).map_err(|e| e.to_string())?;
    let label_times = micros_of(&labels, label_ts)?;
    let mut fields: Vec<Field> = labels
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = labels.columns().to_vec();
    let threads = threads.max(1);
    for view in views {
        if view.batches.is_empty() {
            return Err("a view version with no rows cannot be joined".into());
        }
        let matches = match_rows(&labels, &label_times, view, threads)?;
        // Misses point at a one-row null array after the view's batches.
        let miss = view.batches.len();
        let indices: Vec<(usize, usize)> = matches
            .iter()
            .map(|&at| match at {
                NO_MATCH => (miss, 0),
                at => ((at >> 32) as usize, (at & 0xffff_ffff) as usize),
            })
            .collect();
        for (name, default) in &view.features {
            let mut sources: Vec<&dyn Array> = Vec::with_capacity(miss + 1);
            for batch in view.batches {
                let column = batch
                    .column_by_name(name)
                    .ok_or_else(|| format!("the view has no column `{name}`"))?;
                sources.push(column.as_ref());
            }
            let data_type = sources[0].data_type().clone();
            let null = new_null_array(&data_type, 1);
            sources.push(null.as_ref());
            let mut taken = interleave(&sources, &indices).map_err(|e| e.to_string())?;
            if let Some(value) = default {
                let value = value
                    .cast_to(&data_type)
                    .map_err(|e| format!("default for `{name}`: {e}"))?;
                let filler = value
                    .to_array_of_size(taken.len())
                    .map_err(|e| e.to_string())?;
                let present = is_not_null(&taken).map_err(|e| e.to_string())?;
                taken = zip(&present, &taken, &filler).map_err(|e| e.to_string())?;
            }
            fields.push(Field::new(name, data_type, true));
            columns.push(taken);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// A label without a matching view row.
const NO_MATCH: u64 = u64::MAX;

/// For every label row, the position of its view row as `batch << 32 | row`, or `NO_MATCH`.
fn match_rows(
    labels: &RecordBatch,
    label_times: &TimestampMicrosecondArray,
    view: &AsofView<'_>,
    threads: usize,
) -> Result<Vec<u64>, String> {
    let key_columns = |batch: &RecordBatch| -> Result<Vec<ArrayRef>, String> {
        view.entity
            .iter()
            .map(|c| {
                batch
                    .column_by_name(c)
                    .cloned()
                    .ok_or_else(|| format!("the view has no column `{c}`"))
            })
            .collect()
    };
    let first_keys = key_columns(&view.batches[0])?;
    // Label keys in the view's key types, so equal values encode to equal bytes.
    let label_keys: Vec<ArrayRef> = view
        .entity
        .iter()
        .zip(&first_keys)
        .map(|(c, v)| {
            let a = labels
                .column_by_name(c)
                .ok_or_else(|| format!("the label query returns no column `{c}`"))?;
            cast(a, v.data_type()).map_err(|e| format!("entity column `{c}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut view_times = Vec::with_capacity(view.batches.len());
    for batch in view.batches {
        view_times.push(micros_of(batch, view.timestamp)?);
    }
    let ttl = view.ttl.map(|d| d.as_micros() as i64);
    let n_rows: usize = view.batches.iter().map(|b| b.num_rows()).sum();
    let bits = partition_bits(n_rows);
    let label_ranges = ranges(labels.num_rows());
    // One integer key that widens to i64 without loss (the usual customer id): the values
    // themselves are the key. Otherwise the row format encodes any key columns into
    // comparable bytes.
    let lossless = |t: &DataType| {
        matches!(
            t,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
        )
    };
    if let [k] = first_keys.as_slice()
        && lossless(k.data_type())
    {
        let mut view_ids = Vec::with_capacity(view.batches.len());
        for batch in view.batches {
            let keys = key_columns(batch)?;
            let ids = cast(&keys[0], &DataType::Int64).map_err(|e| e.to_string())?;
            view_ids.push(ids.as_primitive::<Int64Type>().clone());
        }
        let label_ids = cast(&label_keys[0], &DataType::Int64).map_err(|e| e.to_string())?;
        let label_ids = label_ids.as_primitive::<Int64Type>();
        let rows = partition(view.batches.len(), threads, bits, |b, out| {
            let (ids, times) = (&view_ids[b], &view_times[b]);
            for i in 0..ids.len() {
                if ids.is_valid(i) && times.is_valid(i) {
                    out.push(Entry {
                        key: ids.value(i),
                        ts: times.value(i),
                        at: (b as u64) << 32 | i as u64,
                    });
                }
            }
        });
        let wanted = partition(label_ranges.len(), threads, bits, |r, out| {
            for i in label_ranges[r].clone() {
                if label_ids.is_valid(i) && label_times.is_valid(i) {
                    out.push(Entry {
                        key: label_ids.value(i),
                        ts: label_times.value(i),
                        at: i as u64,
                    });
                }
            }
        });
        return Ok(match_partitions(
            rows,
            wanted,
            labels.num_rows(),
            ttl,
            threads,
        ));
    }
    let converter = RowConverter::new(
        first_keys
            .iter()
            .map(|a| SortField::new(a.data_type().clone()))
            .collect(),
    )
    .map_err(|e| e.to_string())?;
    let valid = |keys: &[ArrayRef], i: usize| keys.iter().all(|a| a.is_valid(i));
    let mut view_keys = Vec::with_capacity(view.batches.len());
    for batch in view.batches {
        let keys = key_columns(batch)?;
        let encoded = converter
            .convert_columns(&keys)
            .map_err(|e| e.to_string())?;
        view_keys.push((keys, encoded));
    }
    let label_rows = converter
        .convert_columns(&label_keys)
        .map_err(|e| e.to_string())?;
    let rows = partition(view.batches.len(), threads, bits, |b, out| {
        let ((keys, encoded), times) = (&view_keys[b], &view_times[b]);
        for i in 0..encoded.num_rows() {
            if valid(keys, i) && times.is_valid(i) {
                out.push(Entry {
                    key: encoded.row(i).data(),
                    ts: times.value(i),
                    at: (b as u64) << 32 | i as u64,
                });
            }
        }
    });
    let wanted = partition(label_ranges.len(), threads, bits, |r, out| {
        for i in label_ranges[r].clone() {
            if valid(&label_keys, i) && label_times.is_valid(i) {
                out.push(Entry {
                    key: label_rows.row(i).data(),
                    ts: label_times.value(i),
                    at: i as u64,
                });
            }
        }
    });
    Ok(match_partitions(
        rows,
        wanted,
        labels.num_rows(),
        ttl,
        threads,
    ))
}

/// A key the matching can partition by and group on.
trait Key: Copy + Eq + std::hash::Hash + Send + Sync {
    /// A hash whose top bits choose the partition; fixed, unlike the hash map's.
    fn spread(&self) -> u64;
}

impl Key for i64 {
    fn spread(&self) -> u64 {
        // Fibonacci hashing: consecutive ids spread over every partition.
        (*self as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl Key for &[u8] {
    fn spread(&self) -> u64 {
        // FNV-1a, then a multiply so that the top bits depend on every byte.
        let h = self.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// A view row (`at` = batch << 32 | row) or a label (`at` = its index).
#[derive(Clone, Copy)]
struct Entry<K> {
    key: K,
    ts: i64,
    at: u64,
}

/// Entries by partition, each partition as the pieces the threads produced.
type Partitions<K> = Vec<Vec<Vec<Entry<K>>>>;

/// log2 of the partition count: about 16k rows per partition, so a partition's entity map
/// stays in cache; at least 4 partitions, so that small inputs exercise the split too.
fn partition_bits(rows: usize) -> u32 {
    (rows / 16_384)
        .max(4)
        .next_power_of_two()
        .trailing_zeros()
        .min(12)
}

/// `0..n` in pieces of 64k rows: the units the label side is partitioned in.
fn ranges(n: usize) -> Vec<std::ops::Range<usize>> {
    const STEP: usize = 65_536;
    (0..n).step_by(STEP).map(|s| s..(s + STEP).min(n)).collect()
}

/// Splits the entries of `sources` sources by key into `1 << bits` partitions, `threads`
/// contiguous runs of sources at a time; `fill(source, out)` appends a source's entries.
fn partition<K: Key>(
    sources: usize,
    threads: usize,
    bits: u32,
    fill: impl Fn(usize, &mut Vec<Entry<K>>) + Sync,
) -> Partitions<K> {
    let parts = 1usize << bits;
    let per_thread = sources.div_ceil(threads).max(1);
    let pieces: Vec<Vec<Vec<Entry<K>>>> = std::thread::scope(|s| {
        let fill = &fill;
        let handles: Vec<_> = (0..sources)
            .step_by(per_thread)
            .map(|start| {
                s.spawn(move || {
                    let mut out: Vec<Vec<Entry<K>>> = (0..parts).map(|_| Vec::new()).collect();
                    let mut scratch = Vec::new();
                    for source in start..(start + per_thread).min(sources) {
                        scratch.clear();
                        fill(source, &mut scratch);
                        for e in &scratch {
                            out[(e.key.spread() >> (64 - bits)) as usize].push(*e);
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a partitioning thread panicked"))
            .collect()
    });
    // Transpose to [partition][piece].
    let mut by_part: Partitions<K> = (0..parts).map(|_| Vec::new()).collect();
    for piece in pieces {
        for (p, entries) in piece.into_iter().enumerate() {
            by_part[p].push(entries);
        }
    }
    by_part
}

/// One partition's view rows and labels, until a thread takes them.
type PartitionSlot<K> = std::sync::Mutex<Option<(Vec<Vec<Entry<K>>>, Vec<Vec<Entry<K>>>)>>;

/// Matches each partition's labels against its view rows on `threads` threads; the answer
/// for label `i` is at index `i`.
fn match_partitions<K: Key>(
    rows: Partitions<K>,
    labels: Partitions<K>,
    n_labels: usize,
    ttl: Option<i64>,
    threads: usize,
) -> Vec<u64> {
    // Each partition is taken (and freed) by whichever thread gets to it first.
    let work: Vec<PartitionSlot<K>> = rows
        .into_iter()
        .zip(labels)
        .map(|pair| std::sync::Mutex::new(Some(pair)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found: Vec<Vec<(u32, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.min(work.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let p = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(slot) = work.get(p) else { break };
                        let taken = slot.lock().expect("partition lock").take();
                        if let Some((rows, labels)) = taken {
                            match_partition(&rows, &labels, ttl, &mut found);
                        }
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a matching thread panicked"))
            .collect()
    });
    let mut out = vec![NO_MATCH; n_labels];
    for (label, at) in found.into_iter().flatten() {
        out[label as usize] = at;
    }
    out
}

/// One partition: dense entity ids, the rows of each entity contiguous (a counting sort) and
/// sorted by (time, position), then a binary search per label.
fn match_partition<K: Key>(
    rows: &[Vec<Entry<K>>],
    labels: &[Vec<Entry<K>>],
    ttl: Option<i64>,
    found: &mut Vec<(u32, u64)>,
) {
    let n: usize = rows.iter().map(Vec::len).sum();
    let mut ids: HashMap<K, u32> = HashMap::default();
    let mut entity: Vec<u32> = Vec::with_capacity(n);
    for e in rows.iter().flatten() {
        let next = ids.len() as u32;
        entity.push(*ids.entry(e.key).or_insert(next));
    }
    let mut offsets = vec![0usize; ids.len() + 1];
    for &e in &entity {
        offsets[e as usize + 1] += 1;
    }
    for k in 1..offsets.len() {
        offsets[k] += offsets[k - 1];
    }
    let mut fill = offsets.clone();
    let mut sorted: Vec<(i64, u64)> = vec![(0, 0); n];
    for (e, row) in entity.iter().zip(rows.iter().flatten()) {
        let slot = &mut fill[*e as usize];
        sorted[*slot] = (row.ts, row.at);
        *slot += 1;
    }
    drop(entity);
    for k in 0..ids.len() {
        sorted[offsets[k]..offsets[k + 1]].sort_unstable();
    }
    for label in labels.iter().flatten() {
        let Some(&e) = ids.get(&label.key) else {
            continue;
        };
        let group = &sorted[offsets[e as usize]..offsets[e as usize + 1]];
        let at = group.partition_point(|(ts, _)| *ts <= label.ts);
        if let Some(&(ts, row)) = at.checked_sub(1).and_then(|i| group.get(i))
            && ttl.is_none_or(|ttl| ts >= label.ts - ttl)
        {
            found.push((label.at as u32, row));
        }
    }
}

/// The newest value of a timestamp column over `batches` (only values at or before `limit`,
/// if given), as UTC microseconds.
pub fn newest_micros(
    batches: &[RecordBatch],
    column: &str,
    limit: Option<i64>,
) -> Result<Option<i64>, String> {
    let mut newest = None;
    for batch in batches {
        let times = micros_of(batch, column)?;
        let found = match limit {
            None => arrow::compute::max(&times),
            Some(limit) => times.iter().flatten().filter(|&t| t <= limit).max(),
        };
        newest = newest.max(found);
    }
    Ok(newest)
}

/// A timestamp column as UTC microseconds.
fn micros_of(batch: &RecordBatch, column: &str) -> Result<TimestampMicrosecondArray, String> {
    let a = batch
        .column_by_name(column)
        .ok_or_else(|| format!("no column `{column}`"))?;
    let utc = cast(
        a,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )
    .map_err(|e| format!("`{column}` is not a timestamp: {e}"))?;
    Ok(utc.as_primitive::<TimestampMicrosecondType>().clone())
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

    /// The Arrow operator's answer, in label order: `(label id, feature value)`. Labels and
    /// view rows are split into several batches, as a scan would give them.
    fn run_asof(
        labels: &[(i64, i64, i64)],
        view: &[(i64, i64, i64)],
        ttl_days: Option<i64>,
    ) -> Vec<(i64, Option<i64>)> {
        let ts = |v: Vec<i64>| -> Arc<dyn Array> {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
        };
        let label_batch = RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(Int64Array::from_iter_values(labels.iter().map(|l| l.0)))
                    as Arc<dyn Array>,
            ),
            (
                "customer_id",
                Arc::new(Int64Array::from_iter_values(labels.iter().map(|l| l.1))),
            ),
            ("label_ts", ts(labels.iter().map(|l| l.2).collect())),
        ])
        .expect("labels");
        let view_batch = RecordBatch::try_from_iter(vec![
            (
                "customer_id",
                Arc::new(Int64Array::from_iter_values(view.iter().map(|r| r.0))) as Arc<dyn Array>,
            ),
            ("feature_ts", ts(view.iter().map(|r| r.1).collect())),
            (
                "value",
                Arc::new(Int64Array::from_iter_values(view.iter().map(|r| r.2))),
            ),
        ])
        .expect("view");
        let split = |b: &RecordBatch| {
            let half = b.num_rows() / 2;
            vec![b.slice(0, half), b.slice(half, b.num_rows() - half)]
        };
        let entity = vec!["customer_id".to_string()];
        let view_batches = split(&view_batch);
        let join = |threads| {
            asof_join(
                &split(&label_batch),
                "label_ts",
                &[AsofView {
                    batches: &view_batches,
                    entity: &entity,
                    timestamp: "feature_ts",
                    ttl: ttl_days.map(|d| Duration::from_secs(d as u64 * 86_400)),
                    features: vec![("value".into(), None)],
                }],
                threads,
            )
            .expect("joins")
        };
        let out = join(1);
        assert_eq!(join(3), out, "the thread count does not change the answer");
        assert_eq!(out.num_columns(), 4);
        let id = out
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("id");
        let value = out
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("value");
        let mut rows: Vec<(i64, Option<i64>)> = (0..out.num_rows())
            .map(|i| (id.value(i), value.is_valid(i).then(|| value.value(i))))
            .collect();
        assert_eq!(
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            labels.iter().map(|l| l.0).collect::<Vec<_>>(),
            "label order kept"
        );
        rows.sort();
        rows
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
        // The Arrow operator gives the same answers.
        assert_eq!(
            run_asof(&labels, &view, None),
            run_join(&labels, &view, None)
        );
        assert_eq!(
            run_asof(&labels, &view, Some(8)),
            run_join(&labels, &view, Some(8))
        );
    }

    /// Keys that are not one integer column go through the row format: a string and an
    /// integer column together here, with a null key part that must match nothing.
    #[test]
    fn composite_keys_match_on_every_part() {
        let ts = |v: Vec<i64>| -> Arc<dyn Array> {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
        };
        let view = RecordBatch::try_from_iter(vec![
            (
                "country",
                Arc::new(arrow::array::StringArray::from(vec![
                    "DE", "DE", "FR", "DE",
                ])) as Arc<dyn Array>,
            ),
            ("store", Arc::new(Int64Array::from(vec![1, 1, 1, 2]))),
            ("ts", ts(vec![0, 10 * DAY, 5 * DAY, 0])),
            ("v", Arc::new(Int64Array::from(vec![100, 110, 205, 300]))),
        ])
        .unwrap();
        let labels = RecordBatch::try_from_iter(vec![
            (
                "country",
                Arc::new(arrow::array::StringArray::from(vec![
                    Some("DE"),
                    Some("FR"),
                    Some("DE"),
                    None,
                    Some("FR"),
                ])) as Arc<dyn Array>,
            ),
            (
                "store",
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(1),
                    Some(2),
                    Some(1),
                    Some(2),
                ])),
            ),
            ("at", ts(vec![9 * DAY, 9 * DAY, 9 * DAY, 9 * DAY, 9 * DAY])),
        ])
        .unwrap();
        let entity = vec!["country".to_string(), "store".to_string()];
        let out = asof_join(
            &[labels],
            "at",
            &[AsofView {
                batches: &[view],
                entity: &entity,
                timestamp: "ts",
                ttl: None,
                features: vec![("v".into(), Some(ScalarValue::Int64(Some(-1))))],
            }],
            2,
        )
        .unwrap();
        let v = out.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(v.values().to_vec(), [100, 205, 300, -1, -1]);
    }

    /// Labels `(id, entity, time)` and view rows `(entity, time, value)` from generated
    /// tuples: one view row per (entity, day), as a materialized view guarantees, its value
    /// `entity * 1000 + day` so a match tells where it came from.
    #[allow(clippy::type_complexity)]
    fn planted(
        rows: Vec<(i64, i64)>,
        labels: Vec<(i64, i64, i64)>,
    ) -> (Vec<(i64, i64, i64)>, Vec<(i64, i64, i64)>) {
        let mut seen = std::collections::HashSet::new();
        let view = rows
            .into_iter()
            .filter(|r| seen.insert(*r))
            .map(|(e, d)| (e, d * DAY, e * 1000 + d))
            .collect();
        let labels = labels
            .into_iter()
            .enumerate()
            .map(|(i, (e, d, offset))| (i as i64, e, d * DAY + offset))
            .collect();
        (labels, view)
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
            let (labels, view) = planted(rows, labels);
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

        /// The same property for the Arrow operator the `training_set` task runs.
        #[test]
        fn the_arrow_operator_never_leaks_either(
            rows in proptest::collection::vec((1i64..6, 0i64..40), 1..80),
            labels in proptest::collection::vec((0i64..7, 0i64..40, 0i64..DAY), 1..60),
            ttl in proptest::option::of(1i64..15),
        ) {
            let (labels, view) = planted(rows, labels);
            prop_assert_eq!(run_asof(&labels, &view, ttl), reference(&labels, &view, ttl));
        }
    }
}
