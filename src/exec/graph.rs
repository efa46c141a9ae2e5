//! Adjacency and ordering for an [`ExecPlan`](super::ExecPlan): the dependents
//! index the executor walks on every transition, and the deterministic
//! topological order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{ExecError, ExecPlan};

/// Reverse edges (task -> tasks that depend on it) in compressed sparse-row
/// form, plus each task's dependency count.
///
/// CSR rather than `Vec<Vec<usize>>` so that the whole graph is two flat
/// allocations: the executor reads a task's dependents on every completion,
/// and for 10k-task plans one allocation per task would dominate setup.
#[derive(Debug)]
pub(crate) struct Graph {
    /// `dependents[offsets[i]..offsets[i + 1]]` are the tasks that list `i`
    /// as a dependency (once per listing, so duplicate deps stay balanced
    /// with `indegree`).
    offsets: Vec<usize>,
    dependents: Vec<usize>,
    /// Number of entries in each task's `deps`.
    indegree: Vec<usize>,
}

impl Graph {
    /// Builds the reverse index, rejecting dependency indices outside the plan.
    pub(crate) fn build(plan: &ExecPlan) -> Result<Self, ExecError> {
        let n = plan.tasks.len();
        let mut offsets = vec![0usize; n + 1];
        let mut indegree = Vec::with_capacity(n);
        for task in &plan.tasks {
            for &dep in &task.deps {
                if dep >= n {
                    return Err(ExecError::UnknownDependency {
                        task: task.name.clone(),
                        dep,
                        len: n,
                    });
                }
                offsets[dep + 1] += 1;
            }
            indegree.push(task.deps.len());
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        // `cursor[i]` is where the next dependent of `i` goes.
        let mut cursor = offsets.clone();
        let mut dependents = vec![0usize; offsets[n]];
        for (idx, task) in plan.tasks.iter().enumerate() {
            for &dep in &task.deps {
                dependents[cursor[dep]] = idx;
                cursor[dep] += 1;
            }
        }
        Ok(Self {
            offsets,
            dependents,
            indegree,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.indegree.len()
    }

    pub(crate) fn dependents(&self, idx: usize) -> &[usize] {
        &self.dependents[self.offsets[idx]..self.offsets[idx + 1]]
    }

    pub(crate) fn indegree(&self, idx: usize) -> usize {
        self.indegree[idx]
    }

    /// Kahn's algorithm with a min-heap, so that among ready tasks the lowest
    /// index always comes first: the same plan always yields the same order,
    /// which keeps logs and run reports diffable between nights.
    pub(crate) fn order(&self, plan: &ExecPlan) -> Result<Vec<usize>, ExecError> {
        let n = self.len();
        let mut remaining = self.indegree.clone();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| remaining[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(idx)) = ready.pop() {
            order.push(idx);
            for &d in self.dependents(idx) {
                remaining[d] -= 1;
                if remaining[d] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        // Whatever never reached indegree 0 is on a cycle or downstream of
        // one: exactly the tasks that could never start.
        let tasks = (0..n)
            .filter(|&i| remaining[i] > 0)
            .map(|i| plan.tasks[i].name.clone())
            .collect();
        Err(ExecError::Cycle { tasks })
    }
}

/// Deterministic topological order of `plan`: every task comes after all of
/// its dependencies, and among tasks that are ready at the same point the
/// lowest index comes first.
///
/// Errors with [`ExecError::UnknownDependency`] for an out-of-range dependency
/// and [`ExecError::Cycle`] (naming every task that can never start) if the
/// plan is not acyclic.
pub fn topo_order(plan: &ExecPlan) -> Result<Vec<usize>, ExecError> {
    Graph::build(plan)?.order(plan)
}
