//! Per-feature statistics of a materialization (the drift baseline): count, nulls, min, max,
//! mean, standard deviation and quantiles for numeric columns; count, nulls and distinct
//! values for the others. Computed exactly in Rust over the Arrow batches, so the same rows
//! give the same numbers whatever the partitioning.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use serde::{Deserialize, Serialize};

/// The quantiles kept, with numpy's default (linear) interpolation.
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub name: String,
    pub data_type: String,
    /// Non-null values.
    pub count: u64,
    pub nulls: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Sample standard deviation (n - 1), as pandas and Spark report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    /// `[q, value]` pairs for `QUANTILES`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<[f64; 2]>,
    /// Distinct non-null values, for non-numeric columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<u64>,
}

impl FeatureStats {
    fn empty(name: &str, data_type: String) -> FeatureStats {
        FeatureStats {
            name: name.to_string(),
            data_type,
            count: 0,
            nulls: 0,
            min: None,
            max: None,
            mean: None,
            stddev: None,
            quantiles: vec![],
            distinct: None,
        }
    }
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

/// Statistics of `columns` over every row of `batches`.
pub fn compute(batches: &[RecordBatch], columns: &[String]) -> Result<Vec<FeatureStats>, String> {
    let mut out = Vec::with_capacity(columns.len());
    for name in columns {
        let Some(first) = batches.first() else {
            out.push(FeatureStats::empty(name, String::new()));
            continue;
        };
        let index = first
            .schema()
            .index_of(name)
            .map_err(|_| format!("column `{name}` is missing"))?;
        let data_type = first.schema().field(index).data_type().clone();
        let mut nulls = 0u64;
        let mut stats = FeatureStats::empty(name, data_type.to_string());
        if is_numeric(&data_type) {
            let mut values: Vec<f64> = Vec::new();
            for batch in batches {
                let column = batch.column(index);
                nulls += column.null_count() as u64;
                let as_f64 = cast(column, &DataType::Float64).map_err(|e| e.to_string())?;
                values.extend(as_f64.as_primitive::<Float64Type>().iter().flatten());
            }
            // NaN is not a value to summarize: counted with the nulls.
            let before = values.len();
            values.retain(|v| !v.is_nan());
            nulls += (before - values.len()) as u64;
            values.sort_by(|a, b| a.total_cmp(b));
            let n = values.len();
            stats.count = n as u64;
            if n > 0 {
                let mean = values.iter().sum::<f64>() / n as f64;
                stats.min = values.first().copied();
                stats.max = values.last().copied();
                stats.mean = Some(mean);
                if n > 1 {
                    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
                    stats.stddev = Some((ss / (n - 1) as f64).sqrt());
                }
                stats.quantiles = QUANTILES
                    .iter()
                    .map(|&q| [q, quantile(&values, q)])
                    .collect();
            }
        } else {
            let mut distinct: HashSet<String> = HashSet::new();
            let mut count = 0u64;
            for batch in batches {
                let column = batch.column(index);
                nulls += column.null_count() as u64;
                let text = cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
                for v in text.as_string::<i32>().iter().flatten() {
                    count += 1;
                    if !distinct.contains(v) {
                        distinct.insert(v.to_string());
                    }
                }
            }
            stats.count = count;
            stats.distinct = Some(distinct.len() as u64);
        }
        stats.nulls = nulls;
        out.push(stats);
    }
    Ok(out)
}

/// Linear interpolation between the closest ranks (numpy's default `linear` method).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    let fraction = position - low as f64;
    sorted[low] + (sorted[high] - sorted[low]) * fraction
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn numbers_match_numpy_and_strings_count_distinct() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let a = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Float64Array::from(vec![Some(1.0), None, Some(f64::NAN)])),
                Arc::new(Int64Array::from(vec![Some(10), Some(20), None])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
            ],
        )
        .unwrap();
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![Some(4.0), Some(2.0), Some(3.0)])),
                Arc::new(Int64Array::from(vec![Some(30), Some(40), Some(50)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("c"), Some("a")])),
            ],
        )
        .unwrap();
        let stats = compute(&[a, b], &["x".into(), "n".into(), "s".into()]).unwrap();
        let x = &stats[0];
        // numpy: np.quantile([1,2,3,4], [.25,.5]) == [1.75, 2.5]; np.std(ddof=1) == 1.29099...
        assert_eq!((x.count, x.nulls), (4, 2));
        assert_eq!((x.min, x.max, x.mean), (Some(1.0), Some(4.0), Some(2.5)));
        assert!((x.stddev.unwrap() - 1.2909944487358056).abs() < 1e-12);
        assert_eq!(x.quantiles[2], [0.25, 1.75]);
        assert_eq!(x.quantiles[3], [0.5, 2.5]);
        let n = &stats[1];
        assert_eq!((n.count, n.nulls, n.mean), (5, 1, Some(30.0)));
        assert_eq!(n.quantiles[6], [0.99, 49.6]);
        let s = &stats[2];
        assert_eq!((s.count, s.nulls, s.distinct), (5, 1, Some(3)));
        assert!(s.quantiles.is_empty());
    }
}
