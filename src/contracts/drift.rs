//! Schema drift: the columns a table has against the properties its contract declares, by
//! name, with types compared by family (`Int32` and `Int64` are both `integer`).

use arrow::datatypes::{DataType, Schema};
use serde::Serialize;

use super::model::{ContractObject, LogicalType, Property};

/// One difference between the contract and the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Drift {
    /// A column the contract does not declare.
    Added { column: String, actual_type: String },
    /// A declared property the table lacks.
    Missing {
        column: String,
        expected_type: Option<String>,
    },
    /// A column whose type is not of the declared family.
    Retyped {
        column: String,
        expected_type: String,
        actual_type: String,
    },
}

impl Drift {
    pub fn column(&self) -> &str {
        match self {
            Drift::Added { column, .. }
            | Drift::Missing { column, .. }
            | Drift::Retyped { column, .. } => column,
        }
    }

    /// `missing \`a\``, `added \`b\` (Utf8)`, `retyped \`c\` (expected integer, found Utf8)`.
    pub fn describe(&self) -> String {
        match self {
            Drift::Added {
                column,
                actual_type,
            } => format!("added `{column}` ({actual_type})"),
            Drift::Missing { column, .. } => format!("missing `{column}`"),
            Drift::Retyped {
                column,
                expected_type,
                actual_type,
            } => {
                format!("retyped `{column}` (expected {expected_type}, found {actual_type})")
            }
        }
    }
}

/// Coarse type families: what a contract can promise without naming an engine's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    String,
    Integer,
    Number,
    Boolean,
    Date,
    Timestamp,
    Time,
    Object,
    Array,
    Binary,
}

/// Missing and retyped columns in contract order, then added columns in table order. An
/// object that declares no properties promises no schema (only its table-level rules), so it
/// has no drift.
pub fn expected_schema_drift(object: &ContractObject, actual: &Schema) -> Vec<Drift> {
    let mut drift = Vec::new();
    if object.properties.is_empty() {
        return drift;
    }
    for property in &object.properties {
        let column = property.column();
        match actual.field_with_name(column) {
            Err(_) => drift.push(Drift::Missing {
                column: column.to_string(),
                expected_type: declared_type(property),
            }),
            Ok(field) => {
                let expected = expected_families(property);
                let found = family_of(field.data_type());
                let compatible = expected.is_empty()
                    || found.is_some_and(|f| expected.iter().any(|e| accepts(*e, f)));
                if !compatible {
                    drift.push(Drift::Retyped {
                        column: column.to_string(),
                        expected_type: declared_type(property).unwrap_or_default(),
                        actual_type: field.data_type().to_string(),
                    });
                }
            }
        }
    }
    for field in actual.fields() {
        if object.property_by_column(field.name()).is_none() {
            drift.push(Drift::Added {
                column: field.name().clone(),
                actual_type: field.data_type().to_string(),
            });
        }
    }
    drift
}

/// `integer`, `number (float(3,2))`, or the physical type alone.
fn declared_type(property: &Property) -> Option<String> {
    match (property.logical_type, &property.physical_type) {
        (Some(lt), Some(pt)) => Some(format!("{} ({pt})", lt.as_str())),
        (Some(lt), None) => Some(lt.as_str().to_string()),
        (None, Some(pt)) => Some(pt.clone()),
        (None, None) => None,
    }
}

/// The families the declaration allows: the logical type's and the physical type's when it is
/// one we recognise. Either one matching is enough — contracts written for other engines often
/// pair e.g. `logicalType: date` with `physicalType: timestamp`.
fn expected_families(property: &Property) -> Vec<Family> {
    let mut families = Vec::new();
    if let Some(lt) = property.logical_type {
        families.push(logical_family(lt));
    }
    if let Some(f) = property.physical_type.as_deref().and_then(physical_family) {
        families.push(f);
    }
    families
}

fn accepts(expected: Family, found: Family) -> bool {
    // Every integer is a number (JSON Schema and ODCS agree).
    expected == found || (expected == Family::Number && found == Family::Integer)
}

fn logical_family(lt: LogicalType) -> Family {
    match lt {
        LogicalType::String => Family::String,
        LogicalType::Date => Family::Date,
        LogicalType::Timestamp => Family::Timestamp,
        LogicalType::Time => Family::Time,
        LogicalType::Number => Family::Number,
        LogicalType::Integer => Family::Integer,
        LogicalType::Object => Family::Object,
        LogicalType::Array => Family::Array,
        LogicalType::Boolean => Family::Boolean,
    }
}

/// Common SQL and engine type names; `None` for names we do not recognise (not checked).
fn physical_family(physical: &str) -> Option<Family> {
    let lower = physical.trim().to_ascii_lowercase();
    // `varchar(18)`, `varchar[15]`, `array<string>`, `decimal(10, 2)`: the base name decides.
    let base = lower.split(['(', '[', '<']).next().unwrap_or("").trim();
    let family = match base {
        "varchar" | "char" | "character" | "character varying" | "nvarchar" | "nchar" | "text"
        | "string" | "utf8" | "largeutf8" | "utf8view" | "clob" | "uuid" => Family::String,
        "int" | "integer" | "int2" | "int4" | "int8" | "int16" | "int32" | "int64" | "smallint"
        | "tinyint" | "bigint" | "serial" | "bigserial" | "smallserial" | "long" | "short"
        | "byte" | "uint8" | "uint16" | "uint32" | "uint64" => Family::Integer,
        "float" | "float4" | "float8" | "float32" | "float64" | "double" | "double precision"
        | "real" | "decimal" | "numeric" | "number" | "money" => Family::Number,
        "bool" | "boolean" => Family::Boolean,
        "date" | "date32" | "date64" => Family::Date,
        "timestamp"
        | "timestamptz"
        | "timestamp_ntz"
        | "timestamp_ltz"
        | "timestamp_tz"
        | "datetime"
        | "datetime2"
        | "timestamp with time zone"
        | "timestamp without time zone" => Family::Timestamp,
        "time" | "timetz" => Family::Time,
        "struct" | "record" | "map" | "object" => Family::Object,
        "array" | "list" => Family::Array,
        "binary" | "varbinary" | "bytea" | "blob" | "bytes" => Family::Binary,
        _ => return None,
    };
    Some(family)
}

fn family_of(data_type: &DataType) -> Option<Family> {
    use DataType::*;
    Some(match data_type {
        Utf8 | LargeUtf8 | Utf8View => Family::String,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Family::Integer,
        // A decimal without fraction digits holds integers.
        Decimal32(_, 0) | Decimal64(_, 0) | Decimal128(_, 0) | Decimal256(_, 0) => Family::Integer,
        Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) => Family::Number,
        Boolean => Family::Boolean,
        Date32 | Date64 => Family::Date,
        Timestamp(..) => Family::Timestamp,
        Time32(_) | Time64(_) => Family::Time,
        Struct(_) | Map(..) => Family::Object,
        List(_) | LargeList(_) | FixedSizeList(..) | ListView(_) | LargeListView(_) => {
            Family::Array
        }
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => Family::Binary,
        Dictionary(_, value) => return family_of(value),
        _ => return None,
    })
}
