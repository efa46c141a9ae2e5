//! nightjar: a batch data platform for marketing data science, as one binary.
//!
//! A project of YAML and SQL files declares pipelines (DAGs of tasks). nightjar checks them,
//! plans them, and runs them on DataFusion over Delta tables on object storage.
//!
//! ```text
//!  YAML/SQL files ──► spec (serde types + positions) ──► plan (checked DAG, no IO)
//!                                                            │
//!                       exec (tokio: order, parallelism, retries, timeouts, cancel)
//!                                                            │
//!                  tasks: synthetic · ingest · sql · export  (engine: the one session factory)
//!                                                            │
//!  stores (the only IO): object stores by URL · Delta tables · run state · audit log
//!                                                            │
//!  audit: OpenLineage events per task (one hook around every task), lineage queries
//! ```
//!
//! Code map: see README.md.

pub mod app;
pub mod audit;
pub mod cli;
pub mod contracts;
pub mod diag;
pub mod engine;
pub mod exec;
pub mod features;
pub mod models;
pub mod plan;
pub mod schedule;
pub mod schema;
pub mod spec;
pub mod stores;
pub mod synth;
pub mod tasks;
