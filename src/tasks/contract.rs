//! `contract`: checks a table that is already published against the task's `contract:`.
//!
//! Use it for tables written elsewhere (another pipeline, an external loader) and put it in
//! front of the tasks that read them: a blocking violation fails it (exit 3), so they do not
//! run. For tables written in the same task, `contract:` on that task is stronger: the
//! violating version is never published at all.
//!
//! ```yaml
//! - id: check_events
//!   kind: contract
//!   table: raw.events
//!   contract: contracts/raw.yaml
//! ```

use serde::{Deserialize, Serialize};

use super::{SpecCx, TaskCx, TaskOutput, gate, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::spec::is_table_name;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractTask {
    /// The table checked, `zone.name` (its latest version).
    pub table: String,
}

impl ContractTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_table_name(&self.table) {
            diags.push(cx.error("table", format!("invalid table name `{}`", self.table)));
        }
        if cx.node.get("contract").is_none() {
            diags.push(cx.error(
                "kind",
                "a `contract` task needs `contract:` (the ODCS file to check the table against)",
            ));
        }
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let planned = cx
            .task
            .contract
            .as_ref()
            .ok_or_else(|| cx.fail("no contract resolved (this is a bug)", false))?;
        let session = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        let read = register_tables(cx, &session, std::slice::from_ref(&self.table)).await?;
        let report = gate::check_one(cx, planned, &session, &self.table).await?;
        let failed = report.blocking_failures();
        if failed.is_empty() {
            cx.run.record_check(&cx.task.id, report, false);
            return Ok(TaskOutput::published(vec![], read));
        }
        let message = gate::violation_message(planned, &report, &failed);
        cx.run.record_check(&cx.task.id, report, true);
        Err(cx.fail(message, false))
    }
}
