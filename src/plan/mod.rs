//! `compile(project, pipeline) -> Plan`: names resolved, edges inferred from the tables each
//! task reads, the DAG checked (duplicates, unknown references, cycles). Pure: no IO.
//!
//! The executor sees only `Plan`, never the YAML types' raw form.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::diag::{Diagnostic, did_you_mean};
use crate::spec::{OnViolation, PipelineSpec, Project, QuarantineLimit, TaskDefaults};
use crate::tasks::TaskKind;

#[derive(Debug, Clone)]
pub struct PlannedTask {
    pub id: String,
    pub kind: TaskKind,
    /// Indices of the tasks this one waits for.
    pub deps: Vec<usize>,
    /// Tables read, and tables written.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    pub timeout: Option<Duration>,
    /// `pipelines/x.yaml:12:5`, for messages.
    pub location: String,
    /// The task's `description:` (model cards quote it).
    pub description: Option<String>,
    /// The contract gating this task's outputs.
    pub contract: Option<PlannedContract>,
}

/// A task's `contract:`, resolved against the project's contract files.
#[derive(Debug, Clone)]
pub struct PlannedContract {
    /// As written, relative to the project (`contracts/raw.yaml`).
    pub path: String,
    pub contract: std::sync::Arc<crate::contracts::Contract>,
    pub on_violation: OnViolation,
    pub max_quarantined: QuarantineLimit,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub pipeline: String,
    pub tasks: Vec<PlannedTask>,
    /// Tables read from other pipelines' outputs (no edge inside this plan).
    pub external_inputs: Vec<String>,
}

impl Plan {
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == id)
    }

    /// The tasks `--select` keeps: `TASK`, `TASK+` (and everything downstream), `+TASK` (and
    /// everything upstream). Returns a mask over `tasks`.
    pub fn select(&self, selectors: &[String]) -> Result<Vec<bool>, String> {
        if selectors.is_empty() {
            return Ok(vec![true; self.tasks.len()]);
        }
        let mut keep = vec![false; self.tasks.len()];
        for sel in selectors {
            let (up, name, down) = (
                sel.starts_with('+'),
                sel.trim_matches('+'),
                sel.ends_with('+'),
            );
            let Some(idx) = self.index_of(name) else {
                let hint = did_you_mean(name, self.tasks.iter().map(|t| t.id.as_str()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "`--select {sel}`: no task `{name}` in pipeline `{}`{hint}",
                    self.pipeline
                ));
            };
            keep[idx] = true;
            if up {
                let mut stack = vec![idx];
                while let Some(i) = stack.pop() {
                    for &d in &self.tasks[i].deps {
                        if !keep[d] {
                            keep[d] = true;
                            stack.push(d);
                        }
                    }
                }
            }
            if down {
                let mut changed = true;
                let mut reach = vec![false; self.tasks.len()];
                reach[idx] = true;
                while changed {
                    changed = false;
                    for (i, t) in self.tasks.iter().enumerate() {
                        if !reach[i] && t.deps.iter().any(|&d| reach[d]) {
                            reach[i] = true;
                            keep[i] = true;
                            changed = true;
                        }
                    }
                }
            }
        }
        Ok(keep)
    }
}

/// Checks every pipeline of the project; returns every problem.
pub fn check_project(project: &Project) -> Vec<Diagnostic> {
    project
        .pipelines
        .iter()
        .flat_map(|p| compile_pipeline(project, p).err().unwrap_or_default())
        .collect()
}

pub fn compile(project: &Project, pipeline: &str) -> Result<Plan, Vec<Diagnostic>> {
    match project.pipeline(pipeline) {
        Some(p) => compile_pipeline(project, p),
        None => {
            let names: Vec<&str> = project.pipelines.iter().map(|p| p.name.as_str()).collect();
            let mut d = Diagnostic::new(
                std::path::Path::new("pipelines"),
                Default::default(),
                format!("no pipeline `{pipeline}`"),
            );
            d = d.with_hint(match did_you_mean(pipeline, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "pipelines: {}",
                    if names.is_empty() {
                        "(none)".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            });
            Err(vec![d])
        }
    }
}

fn compile_pipeline(project: &Project, pipeline: &PipelineSpec) -> Result<Plan, Vec<Diagnostic>> {
    let file = &pipeline.file;
    let mut diags = Vec::new();

    // Writers of every table across the project: a table read here but written elsewhere is
    // an external input; written nowhere, it is an unknown table.
    let mut project_writers: HashMap<String, String> = HashMap::new();
    for p in &project.pipelines {
        for t in &p.tasks {
            for out in t.kind.outputs() {
                project_writers
                    .entry(out)
                    .or_insert_with(|| format!("{}.{}", p.name, t.common.id));
            }
        }
    }

    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, t) in pipeline.tasks.iter().enumerate() {
        if let Some(&first) = ids.get(t.common.id.as_str()) {
            let first_pos = pipeline.tasks[first].id_pos;
            diags.push(
                file.diag(t.id_pos, format!("duplicate task id `{}`", t.common.id))
                    .with_hint(format!("first declared at line {}", first_pos.line)),
            );
        } else {
            ids.insert(&t.common.id, i);
        }
    }

    let mut writers: BTreeMap<String, usize> = BTreeMap::new();
    for (i, t) in pipeline.tasks.iter().enumerate() {
        for out in t.kind.outputs() {
            if let Some(&other) = writers.get(&out) {
                diags.push(
                    file.diag(
                        t.pos_of("output"),
                        format!(
                            "table `{out}` is written by two tasks: `{}` and `{}`",
                            pipeline.tasks[other].common.id, t.common.id
                        ),
                    )
                    .with_hint("each table has one writer per pipeline"),
                );
            } else {
                writers.insert(out, i);
            }
        }
    }

    let defaults = merge_defaults(&project.config.defaults, &pipeline.header.defaults);
    let mut tasks = Vec::new();
    let mut external_inputs = Vec::new();
    for (i, t) in pipeline.tasks.iter().enumerate() {
        let mut deps: Vec<usize> = Vec::new();
        for (dep, pos) in t.common.depends_on.iter().zip(&t.depends_on_pos) {
            match ids.get(dep.as_str()) {
                Some(&d) if d == i => {
                    diags.push(file.diag(*pos, format!("task `{dep}` depends on itself")))
                }
                Some(&d) => deps.push(d),
                None => {
                    let mut d = file.diag(*pos, format!("unknown task `{dep}` in `depends_on`"));
                    if let Some(s) = did_you_mean(dep, ids.keys().copied()) {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    diags.push(d);
                }
            }
        }
        let inputs = t.kind.inputs();
        for input in &inputs {
            match writers.get(input) {
                Some(&w) if w == i => {
                    // Reading the table one writes (e.g. an incremental append) is allowed.
                }
                Some(&w) => deps.push(w),
                None if project_writers.contains_key(input) => external_inputs.push(input.clone()),
                None => {
                    let key = t.kind.input_key();
                    let mut d = file.diag(
                        t.pos_of(key),
                        format!("unknown table `{input}` in task `{}`", t.common.id),
                    );
                    let known: Vec<&str> = project_writers.keys().map(|s| s.as_str()).collect();
                    d = d.with_hint(match did_you_mean(input, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`? no task in the project writes `{input}`"),
                        None => format!("no task in the project writes `{input}`; add an `ingest` or `sql` task that does"),
                    });
                    diags.push(d);
                }
            }
        }
        // A `score` task following a model's latest version runs after the pipeline's
        // `train` task of that model, so it scores the version trained in this run.
        if let Some(model) = t.kind.model_followed() {
            deps.extend(
                pipeline
                    .tasks
                    .iter()
                    .enumerate()
                    .filter(|(j, other)| {
                        *j != i && other.kind.model_trained() == Some(model.as_str())
                    })
                    .map(|(j, _)| j),
            );
        }
        // A `score` task that rebuilds features from views reads views only the model names,
        // so it runs after every `features` task of the pipeline: it then sees this run's
        // snapshots whichever version the model was trained on.
        if t.kind.scores_from_views() {
            deps.extend(
                pipeline
                    .tasks
                    .iter()
                    .enumerate()
                    .filter(|(j, other)| *j != i && matches!(other.kind, TaskKind::Features(_)))
                    .map(|(j, _)| j),
            );
        }
        deps.sort_unstable();
        deps.dedup();
        tasks.push(PlannedTask {
            id: t.common.id.clone(),
            kind: t.kind.clone(),
            deps,
            inputs,
            outputs: t.kind.outputs(),
            retries: t.common.retries.or(defaults.retries).unwrap_or(0),
            retry_delay: t
                .common
                .retry_delay
                .or(defaults.retry_delay)
                .map_or(Duration::from_secs(5), |d| d.0),
            max_retry_delay: defaults
                .max_retry_delay
                .map_or(Duration::from_secs(300), |d| d.0),
            timeout: Some(
                t.common
                    .timeout
                    .or(defaults.timeout)
                    .map_or(Duration::from_secs(3600), |d| d.0),
            ),
            description: t.common.description.clone(),
            location: format!(
                "{}:{}:{}",
                file.path.display(),
                t.node.pos.line,
                t.node.pos.col
            ),
            contract: t.common.contract.as_ref().and_then(|r| {
                // Bindings were checked at load time; a missing file was reported there.
                let loaded = project.contract(r.path())?;
                Some(PlannedContract {
                    path: r.path().to_string(),
                    contract: loaded.contract.clone(),
                    on_violation: r.on_violation(),
                    max_quarantined: r
                        .max_quarantined()
                        .and_then(QuarantineLimit::parse)
                        .unwrap_or(QuarantineLimit::DEFAULT),
                })
            }),
        });
    }

    if diags.is_empty()
        && let Some(cycle) = find_cycle(&tasks)
    {
        let names: Vec<&str> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| tasks[i].id.as_str())
            .collect();
        let first = &pipeline.tasks[cycle[0]];
        diags.push(file.diag(first.id_pos, format!("dependency cycle: {}", names.join(" -> ")))
            .with_hint("edges come from `depends_on` and from the tables each task reads; break one of them"));
    }
    external_inputs.sort();
    external_inputs.dedup();
    if diags.is_empty() {
        Ok(Plan {
            pipeline: pipeline.name.clone(),
            tasks,
            external_inputs,
        })
    } else {
        Err(diags)
    }
}

fn merge_defaults(project: &TaskDefaults, pipeline: &TaskDefaults) -> TaskDefaults {
    TaskDefaults {
        retries: pipeline.retries.or(project.retries),
        retry_delay: pipeline.retry_delay.or(project.retry_delay),
        max_retry_delay: pipeline.max_retry_delay.or(project.max_retry_delay),
        timeout: pipeline.timeout.or(project.timeout),
    }
}

/// One cycle, as task indices in edge order (each depends on the next... reversed to read
/// as "a -> b" meaning a runs before b), or `None`.
pub fn find_cycle(tasks: &[PlannedTask]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let n = tasks.len();
    let mut mark = vec![Mark::New; n];
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS over "depends on" edges, keeping the active path.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&dep) = tasks[node].deps.get(*next) {
                *next += 1;
                match mark[dep] {
                    Mark::New => {
                        mark[dep] = Mark::Active;
                        path.push((dep, 0));
                    }
                    Mark::Active => {
                        let at = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        // The path runs against the arrows ("x depends on y"); reverse it so
                        // it reads in execution order.
                        let mut cycle: Vec<usize> = path[at..].iter().map(|(n, _)| *n).collect();
                        cycle.reverse();
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::sql::{SqlMode, SqlTask};
    use proptest::prelude::*;

    fn task(id: usize, deps: Vec<usize>) -> PlannedTask {
        PlannedTask {
            id: format!("t{id}"),
            kind: TaskKind::Sql(SqlTask {
                output: format!("s.t{id}"),
                sql: Some("SELECT 1".into()),
                sql_file: None,
                mode: SqlMode::Overwrite,
                resolved: None,
            }),
            deps,
            inputs: vec![],
            outputs: vec![],
            retries: 0,
            retry_delay: Duration::ZERO,
            max_retry_delay: Duration::ZERO,
            timeout: None,
            description: None,
            location: String::new(),
            contract: None,
        }
    }

    /// Random DAGs: edges only from higher to lower index, so acyclic by construction.
    fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
        (1usize..40).prop_flat_map(|n| {
            (0..n)
                .map(|i| {
                    proptest::collection::vec(0..i.max(1), 0..4)
                        .prop_map(move |d| if i == 0 { vec![] } else { d })
                })
                .collect::<Vec<_>>()
        })
    }

    proptest! {
        #[test]
        fn acyclic_graphs_have_no_cycle(deps in dag()) {
            let tasks: Vec<_> = deps.into_iter().enumerate().map(|(i, d)| task(i, d)).collect();
            prop_assert_eq!(find_cycle(&tasks), None);
        }

        #[test]
        fn an_added_back_edge_is_always_reported_as_a_real_cycle(deps in dag(), pick in any::<proptest::sample::Index>()) {
            let mut tasks: Vec<_> = deps.into_iter().enumerate().map(|(i, d)| task(i, d)).collect();
            // Close a cycle: some task with a dependency gets its dependency to depend on it.
            let with_deps: Vec<usize> = (0..tasks.len()).filter(|&i| !tasks[i].deps.is_empty()).collect();
            prop_assume!(!with_deps.is_empty());
            let from = with_deps[pick.index(with_deps.len())];
            let to = tasks[from].deps[0];
            tasks[to].deps.push(from);
            let cycle = find_cycle(&tasks).expect("a cycle exists");
            // Every consecutive pair in execution order is a real edge: next depends on prev.
            for w in 0..cycle.len() {
                let (a, b) = (cycle[w], cycle[(w + 1) % cycle.len()]);
                prop_assert!(tasks[b].deps.contains(&a), "{a} -> {b} is not an edge in {cycle:?}");
            }
        }
    }

    #[test]
    fn select_up_and_downstream() {
        // a -> b -> c, a -> d
        let tasks = vec![
            task(0, vec![]),
            task(1, vec![0]),
            task(2, vec![1]),
            task(3, vec![0]),
        ];
        let plan = Plan {
            pipeline: "p".into(),
            tasks,
            external_inputs: vec![],
        };
        assert_eq!(
            plan.select(&["t1+".into()]).unwrap(),
            vec![false, true, true, false]
        );
        assert_eq!(
            plan.select(&["+t2".into()]).unwrap(),
            vec![true, true, true, false]
        );
        assert_eq!(
            plan.select(&["t3".into()]).unwrap(),
            vec![false, false, false, true]
        );
        assert!(
            plan.select(&["t9".into()])
                .unwrap_err()
                .contains("no task `t9`")
        );
    }
}
