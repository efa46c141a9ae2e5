//! Command-line types (clap derive). Their `///` comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "nightjar",
    version,
    about = "Batch data platform for marketing data science: pipelines, data contracts, features, models and lineage from one project folder"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Project directory (holds nightjar.yaml)
    #[arg(long, short = 'C', global = true, default_value = ".")]
    pub project: PathBuf,
    /// Machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// More logs on stderr (-v info, -vv debug)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every project file; report every problem with file:line:column
    Validate {
        /// Project directory (default: the current one, or --project)
        path: Option<PathBuf>,
    },
    /// Show the resolved DAG of a pipeline and what a run would do
    Plan {
        pipeline: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run a pipeline
    Run {
        pipeline: String,
        #[command(flatten)]
        run: RunArgs,
        /// Continue a failed or cancelled run: tasks it completed are skipped
        #[arg(long, value_name = "RUN_ID")]
        resume: Option<String>,
        /// Resolve and print the plan without running anything
        #[arg(long)]
        dry_run: bool,
    },
    /// Past runs
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Data contracts (ODCS v3 files under contracts/)
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
    },
    /// Feature views (features/*.yaml): definitions, versions, materializations, statistics
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
    /// Print the JSON Schema of the project files (for editors' YAML language servers)
    Schema,
    /// Run every pipeline that has a `schedule:` each time it falls due, until SIGTERM
    Schedule {
        /// Run whatever is due now, then exit (for system cron or a Kubernetes CronJob)
        #[arg(long, conflicts_with = "list")]
        once: bool,
        /// Print the next fire times of the scheduled pipelines, then exit
        #[arg(long)]
        list: bool,
        /// With --list: how many fire times per pipeline
        #[arg(long, default_value_t = 1, requires = "list")]
        count: usize,
        /// Only this pipeline (repeatable; default: every pipeline with a `schedule:`)
        #[arg(long = "pipeline", value_name = "PIPELINE")]
        pipelines: Vec<String>,
        #[command(flatten)]
        timing: ScheduleArgs,
    },
    /// One run per interval of a pipeline's schedule whose ds is in [--from, --to]; intervals
    /// that already succeeded are skipped, failed or interrupted ones resumed
    Backfill {
        pipeline: String,
        /// The first ds, YYYY-MM-DD
        #[arg(long, value_name = "DATE")]
        from: String,
        /// The last ds, YYYY-MM-DD (included)
        #[arg(long, value_name = "DATE")]
        to: String,
        /// Intervals that may run at once
        #[arg(long, default_value_t = 1, value_name = "N")]
        parallel: usize,
        /// Run succeeded intervals again, as new runs
        #[arg(long)]
        rerun: bool,
        #[command(flatten)]
        timing: ScheduleArgs,
    },
    /// The audit log of OpenLineage events: verify its hash chain, list its events
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The model registry: versions, aliases, promotions, model cards, garbage collection
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Where a dataset (a table `zone.name`, a feature view version, or a model version
    /// `name@version|@alias`) came from or what it feeds, from the audit log
    Lineage {
        /// The dataset, e.g. `staging.customer_activity` or `churn@champion`
        name: String,
        /// Datasets it was derived from (the default)
        #[arg(long, conflicts_with = "downstream")]
        upstream: bool,
        /// Datasets derived from it
        #[arg(long)]
        downstream: bool,
        /// At most this many steps away (default: all)
        #[arg(long, value_name = "N")]
        depth: Option<usize>,
        /// Output format (`--json` is `--format json`)
        #[arg(long, value_enum, default_value_t = LineageFormat::Text)]
        format: LineageFormat,
    },
}

#[derive(Debug, Args, Clone)]
pub struct ScheduleArgs {
    /// After SIGTERM or Ctrl-C no new run starts; running ones get this long to finish before
    /// they are cancelled (a second signal cancels them at once)
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub grace: String,
    /// Take this RFC 3339 instant as the current time (what-if checks, tests)
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Every view: its current definition version and what is materialized
    List,
    /// One view: its definition, every stored version, each materialization with its
    /// statistics, and the SQL
    Show {
        /// The view name (the file name under features/, without .yaml)
        view: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every model: versions, latest, aliases
    List,
    /// One version (default: the latest) with its metadata, files (checked) and aliases
    Show {
        /// `name`, `name@<version>`, `name@<alias>` or `models:/name@alias`
        model: String,
    },
    /// Point an alias at a version (compare-and-swap: a concurrent move makes this fail)
    Promote {
        model: String,
        version: u64,
        #[arg(long)]
        alias: String,
        /// Why, for the alias history and the audit log
        #[arg(long)]
        reason: String,
        /// Who (default: $NIGHTJAR_USER, else $USER)
        #[arg(long)]
        by: Option<String>,
    },
    /// Point an alias back at the version it held before its last move
    Rollback {
        model: String,
        #[arg(long)]
        alias: String,
        #[arg(long, default_value = "rollback")]
        reason: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Which version held an alias when, who moved it and why
    History {
        model: String,
        /// Only this alias (default: every alias)
        #[arg(long)]
        alias: Option<String>,
    },
    /// A version's model card, with the current alias history
    Card {
        model: String,
        #[arg(long, value_enum, default_value_t = CardFormat::Md)]
        format: CardFormat,
    },
    /// Delete old versions that no alias points to, keeping the newest N
    Gc {
        model: String,
        #[arg(long, value_name = "N")]
        keep: usize,
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CardFormat {
    Md,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and check it against every recorded head; exit 1 and name the
    /// first broken link on any edit, deletion, insertion, reordering or truncation
    Verify,
    /// The events of the log, oldest first
    Log {
        /// Only events at or after this time (RFC 3339, or YYYY-MM-DD for midnight UTC)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events of this run (nightjar run id, or an OpenLineage runId)
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LineageFormat {
    Text,
    Json,
    Dot,
    Mermaid,
}

#[derive(Debug, Subcommand)]
pub enum ContractCommand {
    /// Check a table or a data file against a contract now (exit 3 on a blocking violation)
    Check {
        /// The contract file (ODCS v3 YAML)
        contract: PathBuf,
        /// A table of the project, `zone.name` (its latest version)
        #[arg(long, conflicts_with = "data", required_unless_present = "data")]
        table: Option<String>,
        /// A Parquet, CSV or NDJSON file or folder: a URL or a path
        #[arg(long)]
        data: Option<String>,
        /// The contract's schema object to check (default: the one matching the table, or the only one)
        #[arg(long)]
        object: Option<String>,
        /// The day freshness is measured against, YYYY-MM-DD (default: today, UTC)
        #[arg(long)]
        ds: Option<String>,
    },
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Run only these tasks: TASK, TASK+ (and downstream), +TASK (and upstream); repeatable
    #[arg(long, value_name = "TASK")]
    pub select: Vec<String>,
    /// Override a pipeline param: --var key=value (repeatable)
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// The run's logical date, YYYY-MM-DD (default: today, UTC)
    #[arg(long)]
    pub ds: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first
    List {
        /// Only runs of this pipeline
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// One run with its tasks
    Show { run_id: String },
}
