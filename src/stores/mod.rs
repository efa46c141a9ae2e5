//! The only IO boundary: object stores by URL scheme, Delta tables, run state and the audit
//! log.
//!
//! Architecture invariant: nothing outside `stores` (and the DataFusion session that
//! `engine` hands the same object stores to) reads or writes the storage root.

pub mod audit;
pub mod faults;
pub mod object;
pub mod registry;
pub mod runs;
pub mod tables;

pub use object::Storage;

/// Errors of the storage layer; each names the object or table it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported storage URL scheme `{scheme}` in `{url}`")]
    UnsupportedScheme { scheme: String, url: String },
    #[error("invalid storage URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("storage option `{key}`: {reason}")]
    BadOption { key: String, reason: String },
    #[error("cannot use storage root `{root}`: {reason}")]
    Root { root: String, reason: String },
    #[error("object `{path}`: {source}")]
    Object {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("table `{table}`: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake_core::DeltaTableError,
    },
    #[error("table `{table}` does not exist yet")]
    NoSuchTable { table: String },
    #[error("invalid table name `{0}` (expected `zone.name`, lowercase letters, digits and `_`)")]
    BadTableName(String),
    #[error("`{path}` is not valid JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// Errors from the environment or the user's setup rather than a passing fault.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StoreError::UnsupportedScheme { .. }
                | StoreError::InvalidUrl { .. }
                | StoreError::BadOption { .. }
                | StoreError::Root { .. }
                | StoreError::BadTableName(_)
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
