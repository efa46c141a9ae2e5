//! Lineage queries over the audit log: a graph of datasets linked by the jobs that read one
//! and wrote the other, built from OpenLineage COMPLETE events (pure: the caller reads the
//! log), walked upstream or downstream, rendered as text, JSON, Graphviz dot or Mermaid.
//!
//! The graph is generic over dataset names: tables today, and whatever later task kinds
//! (feature views, training sets, models) report as their datasets. Choices:
//! - The shape comes from each job's newest COMPLETE event, so a query reflects what the
//!   pipelines do now; an edge that a changed query no longer has disappears with its next run.
//! - A dataset's facts (version, rows, run, contract results) are from the newest COMPLETE
//!   event that wrote it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upstream,
    Downstream,
}

/// What the newest write of a dataset recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Node {
    pub name: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The job (`pipeline.task`) that wrote it, its nightjar run and the event time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_at: Option<String>,
    /// `id version: passed|violated` for each contract checked on that write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<String>,
    /// A source file an ingest read: its size, ETag and last-modified time then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub job: String,
}

/// All datasets and edges known to the log.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: BTreeMap<String, Node>,
    edges: BTreeSet<Edge>,
}

/// The part of the graph a query reaches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    pub root: String,
    pub direction: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Sorted by name.
    pub nodes: Vec<Node>,
    /// Data flow direction (`from` was read to write `to`), sorted.
    pub edges: Vec<Edge>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

impl Graph {
    /// Builds the graph from events in log order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Value>) -> Graph {
        // Newest COMPLETE per job; later events in the log win.
        let mut latest: BTreeMap<String, &Value> = BTreeMap::new();
        for e in events {
            if str_at(e, "/eventType") != Some("COMPLETE") {
                continue;
            }
            let Some(job) = str_at(e, "/job/name") else {
                continue;
            };
            latest.insert(job.to_string(), e);
        }
        let mut graph = Graph::default();
        // Oldest first, so a newer write of a dataset replaces an older one's facts.
        let mut ordered: Vec<(&String, &&Value)> = latest.iter().collect();
        ordered.sort_by(|a, b| str_at(a.1, "/eventTime").cmp(&str_at(b.1, "/eventTime")));
        for (job, e) in ordered {
            let names = |key: &str| -> Vec<(String, String)> {
                e.get(key)
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .filter_map(|d| {
                                Some((
                                    str_at(d, "/name")?.to_string(),
                                    str_at(d, "/namespace")?.to_string(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let inputs = names("inputs");
            for (name, namespace) in &inputs {
                graph.nodes.entry(name.clone()).or_insert_with(|| Node {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    ..Default::default()
                });
            }
            for d in e
                .get("inputs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let facet = d.pointer("/facets/nightjar");
                let modified = facet.and_then(|f| str_at(f, "/lastModified"));
                if let (Some(name), Some(modified)) = (str_at(d, "/name"), modified)
                    && let Some(node) = graph.nodes.get_mut(name)
                {
                    node.last_modified = Some(modified.to_string());
                    node.etag = facet.and_then(|f| str_at(f, "/etag")).map(str::to_string);
                    node.size_bytes = facet
                        .and_then(|f| f.get("sizeBytes"))
                        .and_then(Value::as_u64);
                }
            }
            let outputs = e.get("outputs").and_then(Value::as_array);
            for d in outputs.into_iter().flatten() {
                let Some(node) = written_node(e, d, job) else {
                    continue;
                };
                for (input, _) in &inputs {
                    graph.edges.insert(Edge {
                        from: input.clone(),
                        to: node.name.clone(),
                        job: job.clone(),
                    });
                }
                graph.nodes.insert(node.name.clone(), node);
            }
        }
        graph
    }

    pub fn contains(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    /// Everything reachable from `root` in `direction`, at most `depth` edges away.
    pub fn walk(&self, root: &str, direction: Direction, depth: Option<usize>) -> Lineage {
        let mut seen: BTreeSet<String> = BTreeSet::from([root.to_string()]);
        let mut edges: BTreeSet<Edge> = BTreeSet::new();
        let mut queue = VecDeque::from([(root.to_string(), 0usize)]);
        while let Some((name, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for edge in &self.edges {
                let next = match direction {
                    Direction::Upstream if edge.to == name => &edge.from,
                    Direction::Downstream if edge.from == name => &edge.to,
                    _ => continue,
                };
                edges.insert(edge.clone());
                if seen.insert(next.clone()) {
                    queue.push_back((next.clone(), d + 1));
                }
            }
        }
        Lineage {
            root: root.to_string(),
            direction: match direction {
                Direction::Upstream => "upstream",
                Direction::Downstream => "downstream",
            },
            depth,
            nodes: seen
                .iter()
                .map(|n| {
                    self.nodes.get(n).cloned().unwrap_or_else(|| Node {
                        name: n.clone(),
                        ..Default::default()
                    })
                })
                .collect(),
            edges: edges.into_iter().collect(),
        }
    }
}

fn written_node(event: &Value, d: &Value, job: &str) -> Option<Node> {
    let facets = d.get("facets");
    let facet = |pointer: &str| facets.and_then(|f| f.pointer(pointer));
    let contracts = facet("/nightjar/contracts")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|c| {
                    let verdict = if c.get("passed").and_then(Value::as_bool) == Some(true) {
                        "passed"
                    } else {
                        "violated"
                    };
                    format!(
                        "{} {}: {verdict}",
                        str_at(c, "/id").unwrap_or("?"),
                        str_at(c, "/version").unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Node {
        name: str_at(d, "/name")?.to_string(),
        namespace: str_at(d, "/namespace")?.to_string(),
        version: facet("/nightjar/deltaVersion").and_then(Value::as_i64),
        rows: d
            .pointer("/outputFacets/outputStatistics/rowCount")
            .and_then(Value::as_u64),
        written_by: Some(job.to_string()),
        run_id: str_at(event, "/run/facets/nightjar/runId").map(str::to_string),
        written_at: str_at(event, "/eventTime").map(str::to_string),
        contracts,
        ..Default::default()
    })
}

impl Node {
    fn label(&self) -> String {
        match self.version {
            Some(v) => format!("{} v{v}", self.name),
            None => self.name.clone(),
        }
    }

    fn details(&self) -> String {
        let mut parts = Vec::new();
        if let Some(rows) = self.rows {
            parts.push(format!("{rows} rows"));
        }
        if let Some(job) = &self.written_by {
            parts.push(format!("by {job}"));
        }
        if let Some(run) = &self.run_id {
            parts.push(format!("run {run}"));
        }
        for c in &self.contracts {
            parts.push(format!("contract {c}"));
        }
        if let Some(modified) = &self.last_modified {
            parts.push(format!(
                "source file, {} bytes, modified {modified}",
                self.size_bytes.unwrap_or_default()
            ));
            if let Some(etag) = &self.etag {
                parts.push(format!("etag {etag}"));
            }
        }
        if parts.is_empty() {
            "not written by any recorded run".into()
        } else {
            parts.join(", ")
        }
    }
}

impl Lineage {
    fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// An indented tree from the root; a dataset reached twice is expanded once.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut expanded = BTreeSet::new();
        self.text_node(&self.root, "", "", &mut expanded, &mut out);
        out
    }

    fn text_node(
        &self,
        name: &str,
        first: &str,
        rest: &str,
        expanded: &mut BTreeSet<String>,
        out: &mut String,
    ) {
        let node = self.node(name);
        let label = node.map_or_else(|| name.to_string(), Node::label);
        let details = node.map(Node::details).unwrap_or_default();
        let again = !expanded.insert(name.to_string());
        let children: Vec<&Edge> = if again {
            vec![]
        } else {
            self.edges
                .iter()
                .filter(|e| match self.direction {
                    "upstream" => e.to == name,
                    _ => e.from == name,
                })
                .collect()
        };
        if again {
            out.push_str(&format!("{first}{label} (see above)\n"));
        } else {
            out.push_str(&format!("{first}{label}  [{details}]\n"));
        }
        for (i, edge) in children.iter().enumerate() {
            let last = i + 1 == children.len();
            let next = if self.direction == "upstream" {
                &edge.from
            } else {
                &edge.to
            };
            let (branch, indent) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            self.text_node(
                next,
                &format!("{rest}{branch}"),
                &format!("{rest}{indent}"),
                expanded,
                out,
            );
        }
    }

    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &self.nodes {
            out.push_str(&format!(
                "  {} [label={}];\n",
                dot_id(&n.name),
                dot_id(&n.label())
            ));
        }
        for e in &self.edges {
            out.push_str(&format!(
                "  {} -> {} [label={}];\n",
                dot_id(&e.from),
                dot_id(&e.to),
                dot_id(&e.job)
            ));
        }
        out.push_str("}\n");
        out
    }

    pub fn to_mermaid(&self) -> String {
        let ids: BTreeMap<&str, String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), format!("n{i}")))
            .collect();
        let mut out = String::from("flowchart LR\n");
        for n in &self.nodes {
            out.push_str(&format!(
                "  {}[\"{}\"]\n",
                ids[n.name.as_str()],
                n.label().replace('"', "#quot;")
            ));
        }
        for e in &self.edges {
            if let (Some(from), Some(to)) = (ids.get(e.from.as_str()), ids.get(e.to.as_str())) {
                out.push_str(&format!(
                    "  {from} -->|\"{}\"| {to}\n",
                    e.job.replace('"', "#quot;")
                ));
            }
        }
        out
    }
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn complete(job: &str, time: &str, inputs: &[&str], outputs: &[(&str, i64)]) -> Value {
        json!({
            "eventType": "COMPLETE",
            "eventTime": time,
            "job": {"namespace": "p", "name": job},
            "run": {"runId": "x", "facets": {"nightjar": {"runId": "r1"}}},
            "inputs": inputs.iter().map(|n| json!({"namespace": "ns", "name": n})).collect::<Vec<_>>(),
            "outputs": outputs.iter().map(|(n, v)| json!({
                "namespace": "ns", "name": n,
                "facets": {"nightjar": {"deltaVersion": v}},
            })).collect::<Vec<_>>(),
        })
    }

    fn graph() -> Graph {
        let events = [
            complete(
                "p.gen",
                "2025-01-01T00:00:01Z",
                &[],
                &[("raw.a", 0), ("raw.b", 0)],
            ),
            complete(
                "p.ab",
                "2025-01-01T00:00:02Z",
                &["raw.a", "raw.b"],
                &[("stg.ab", 0)],
            ),
            complete(
                "p.out",
                "2025-01-01T00:00:03Z",
                &["stg.ab"],
                &[("mart.x", 0)],
            ),
            // A newer run of `p.ab` no longer reads raw.b.
            complete("p.ab", "2025-01-02T00:00:02Z", &["raw.a"], &[("stg.ab", 1)]),
            json!({"eventType": "START", "eventTime": "2025-01-03T00:00:00Z", "job": {"name": "p.ab"}, "inputs": [{"namespace": "ns", "name": "raw.b"}], "outputs": []}),
        ];
        Graph::from_events(events.iter())
    }

    #[test]
    fn upstream_follows_the_newest_complete_of_each_job() {
        let l = graph().walk("mart.x", Direction::Upstream, None);
        let names: Vec<&str> = l.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["mart.x", "raw.a", "stg.ab"]);
        assert_eq!(l.node("stg.ab").unwrap().version, Some(1));
        assert_eq!(
            l.to_text(),
            "mart.x v0  [by p.out, run r1]\n└── stg.ab v1  [by p.ab, run r1]\n    └── raw.a v0  [by p.gen, run r1]\n"
        );
    }

    #[test]
    fn downstream_and_depth() {
        let l = graph().walk("raw.a", Direction::Downstream, Some(1));
        assert_eq!(
            l.edges,
            vec![Edge {
                from: "raw.a".into(),
                to: "stg.ab".into(),
                job: "p.ab".into()
            }]
        );
        assert_eq!(
            l.to_mermaid(),
            "flowchart LR\n  n0[\"raw.a v0\"]\n  n1[\"stg.ab v1\"]\n  n0 -->|\"p.ab\"| n1\n"
        );
        assert!(
            l.to_dot()
                .contains("\"raw.a\" -> \"stg.ab\" [label=\"p.ab\"];")
        );
    }
}
