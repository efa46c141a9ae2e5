//! Reads one ODCS v3 contract file into the model and reports every problem of the file in one
//! pass, each at `file:line:column` with a did-you-mean hint where a name looks misspelt.
//!
//! The walk is over `spec::yaml`'s positioned tree rather than serde structs: ODCS keys are
//! camelCase, most are optional metadata, and the rules we interpret need cross-checks (a
//! rule's columns must be properties of its object) that point at the offending node. Keys are
//! checked against what the official ODCS v3.1.0 JSON Schema allows at each level (it forbids
//! unknown keys everywhere we look), so a file we accept also validates against the schema.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use sha2::{Digest, Sha256};

use super::model::{
    Bound, BoundValue, Comparison, Contract, ContractDescription, ContractObject, LogicalType,
    Property, Rule, RuleKind, RuleOrigin, Severity, Team, TeamMember, Unit,
};
use super::sql::quote_ident;
use crate::diag::{Diagnostic, did_you_mean};
use crate::spec::yaml::{self, Node, NodeKind, Pos, ScalarStyle};

/// The keys and names the official ODCS v3.1.0 JSON Schema allows, level by level (a test
/// compares them with the schema file).
pub(super) mod keys {
    use super::LogicalType;

    /// Top-level keys of ODCS v3.1.0 (v3.0.x allows the same ones).
    pub const CONTRACT: &[&str] = &[
        "version",
        "kind",
        "apiVersion",
        "id",
        "name",
        "tenant",
        "tags",
        "status",
        "servers",
        "dataProduct",
        "description",
        "domain",
        "schema",
        "support",
        "price",
        "team",
        "roles",
        "slaDefaultElement",
        "slaProperties",
        "authoritativeDefinitions",
        "customProperties",
        "contractCreatedTs",
    ];

    /// Keys every schema element (object or property) may have.
    pub const ELEMENT: &[&str] = &[
        "id",
        "name",
        "physicalType",
        "description",
        "businessName",
        "authoritativeDefinitions",
        "tags",
        "customProperties",
    ];

    pub const OBJECT: &[&str] = &[
        "logicalType",
        "physicalName",
        "dataGranularityDescription",
        "properties",
        "relationships",
        "quality",
    ];

    pub const PROPERTY: &[&str] = &[
        "primaryKey",
        "primaryKeyPosition",
        "logicalType",
        "logicalTypeOptions",
        "physicalName",
        "required",
        "unique",
        "partitioned",
        "partitionKeyPosition",
        "classification",
        "encryptedName",
        "transformSourceObjects",
        "transformLogic",
        "transformDescription",
        "examples",
        "criticalDataElement",
        "relationships",
        "quality",
        "items",
        "properties",
    ];

    /// Keys of a `quality[]` item: the common ones, then `library`, `sql` and `custom` ones.
    pub const QUALITY: &[&str] = &[
        "id",
        "name",
        "description",
        "type",
        "dimension",
        "method",
        "severity",
        "businessImpact",
        "unit",
        "schedule",
        "scheduler",
        "tags",
        "customProperties",
        "authoritativeDefinitions",
        "metric",
        "rule",
        "arguments",
        "query",
        "engine",
        "implementation",
    ];

    pub const SLA: &[&str] = &[
        "id",
        "property",
        "value",
        "valueExt",
        "unit",
        "element",
        "driver",
        "description",
        "scheduler",
        "schedule",
    ];

    pub const METRICS: &[&str] = &[
        "nullValues",
        "missingValues",
        "invalidValues",
        "duplicateValues",
        "rowCount",
    ];
    pub const QUALITY_TYPES: &[&str] = &["library", "sql", "text", "custom"];
    pub const DIMENSIONS: &[&str] = &[
        "accuracy",
        "completeness",
        "conformity",
        "consistency",
        "coverage",
        "timeliness",
        "uniqueness",
    ];
    pub const SEVERITIES: &[&str] = &["error", "warning", "info"];
    pub const UNITS: &[&str] = &["rows", "percent"];

    /// SLA properties that nightjar checks as freshness: ODCS `latency`, and `freshness` (not an
    /// ODCS name, but the one people reach for; `property` is free text in the schema).
    pub const FRESHNESS_SLAS: &[&str] = &["latency", "freshness"];

    /// `logicalTypeOptions` keys per `logicalType`, as the schema's `if`/`then` branches list
    /// them (a type without a branch, `boolean`, takes none).
    pub fn logical_type_options(logical_type: LogicalType) -> &'static [&'static str] {
        match logical_type {
            LogicalType::String => &["minLength", "maxLength", "pattern", "format"],
            LogicalType::Date => &[
                "format",
                "exclusiveMaximum",
                "maximum",
                "exclusiveMinimum",
                "minimum",
            ],
            LogicalType::Timestamp | LogicalType::Time => &[
                "format",
                "exclusiveMaximum",
                "maximum",
                "exclusiveMinimum",
                "minimum",
                "timezone",
                "defaultTimezone",
            ],
            LogicalType::Integer | LogicalType::Number => &[
                "multipleOf",
                "maximum",
                "exclusiveMaximum",
                "minimum",
                "exclusiveMinimum",
                "format",
            ],
            LogicalType::Object => &["maxProperties", "minProperties", "required"],
            LogicalType::Array => &["maxItems", "minItems", "uniqueItems"],
            LogicalType::Boolean => &[],
        }
    }
}

use keys::*;

/// Parses and checks one contract. `file` is the path shown in diagnostics.
pub fn parse_contract(file: &Path, text: &str) -> Result<Contract, Vec<Diagnostic>> {
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let pos = e.pos.unwrap_or(Pos { line: 1, col: 1 });
            return Err(vec![
                Diagnostic::new(file, pos, e.message).with_source(text),
            ]);
        }
    };
    let mut cx = Cx {
        file,
        text,
        diags: Vec::new(),
    };
    let contract = cx.contract(&root);
    match contract {
        Some(contract) if cx.diags.is_empty() => Ok(contract),
        _ => {
            if cx.diags.is_empty() {
                // Every `None` above pushed a diagnostic; an empty list would be a silent failure.
                cx.error(root.pos, "the contract could not be read (this is a bug)");
            }
            Err(cx.diags)
        }
    }
}

/// A rule before its id is settled: ids are unique per contract, so they are assigned once
/// every rule is known.
struct Draft {
    explicit_id: Option<(String, Pos)>,
    /// `<object>.<property>.<metric>` or `<object>.<metric>`.
    base_id: String,
    rule: Rule,
}

/// What a quality rule is attached to.
struct Scope<'a> {
    object: &'a str,
    /// The property, for property-level rules.
    property: Option<&'a Property>,
    /// All properties of the object, for schema-level `duplicateValues`.
    properties: &'a [Property],
}

struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn diag(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, pos, message).with_source(self.text)
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        let d = self.diag(pos, message);
        self.diags.push(d);
    }

    fn error_hint(&mut self, pos: Pos, message: impl Into<String>, hint: impl Into<String>) {
        let d = self.diag(pos, message).with_hint(hint);
        self.diags.push(d);
    }

    /// An unknown name, with a did-you-mean hint or the list of known names.
    fn unknown(&mut self, pos: Pos, message: String, name: &str, known: &[&str]) {
        if known.is_empty() {
            self.error(pos, message);
            return;
        }
        let hint = match did_you_mean(name, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("expected one of {}", backticked(known)),
        };
        self.error_hint(pos, message, hint);
    }

    /// Reports keys of `map` that are in none of `allowed`.
    fn check_keys(&mut self, map: &Node, allowed: &[&[&str]], what: &str) {
        let Some(entries) = map.entries() else { return };
        let known: Vec<&str> = allowed
            .iter()
            .flat_map(|keys| keys.iter().copied())
            .collect();
        for (key, _) in entries {
            let Some(name) = key.as_str() else {
                self.error(key.pos, format!("keys in {what} must be strings"));
                continue;
            };
            if !known.contains(&name) {
                match did_you_mean(name, known.iter().copied()) {
                    Some(s) => self.error_hint(
                        key.pos,
                        format!("unknown key `{name}` in {what}"),
                        format!("did you mean `{s}`?"),
                    ),
                    None => self.error(key.pos, format!("unknown key `{name}` in {what}")),
                }
            }
        }
    }

    fn expect_map<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n Node> {
        if node.entries().is_some() {
            Some(node)
        } else {
            self.error(node.pos, format!("{what} must be a mapping"));
            None
        }
    }

    fn expect_seq<'n>(&mut self, node: &'n Node, what: &str) -> &'n [Node] {
        match &node.kind {
            NodeKind::Seq(items) => items,
            _ => {
                self.error(node.pos, format!("`{what}` must be a list"));
                &[]
            }
        }
    }

    /// A string value; YAML scalars of any style are kept as written (dates stay strings).
    fn string_value(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(s, _) if !node.is_null() => Some(s.clone()),
            _ => {
                self.error(node.pos, format!("`{key}` must be a string"));
                None
            }
        }
    }

    fn opt_string(&mut self, map: &Node, key: &str) -> Option<String> {
        let node = map.get(key)?;
        self.string_value(node, key)
    }

    fn req_string(&mut self, map: &Node, key: &str, what: &str) -> Option<String> {
        match map.get(key) {
            Some(node) => self.string_value(node, key),
            None => {
                self.error(map.pos, format!("{what} needs `{key}`"));
                None
            }
        }
    }

    fn opt_bool(&mut self, map: &Node, key: &str) -> Option<bool> {
        let node = map.get(key)?;
        match plain(node).and_then(parse_bool) {
            Some(b) => Some(b),
            None => {
                self.error(node.pos, format!("`{key}` must be `true` or `false`"));
                None
            }
        }
    }

    fn number_value(&mut self, node: &Node, key: &str) -> Option<f64> {
        match plain(node)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|f| f.is_finite())
        {
            Some(f) => Some(f),
            None => {
                self.error(node.pos, format!("`{key}` must be a number"));
                None
            }
        }
    }

    fn integer_value(&mut self, node: &Node, key: &str) -> Option<i64> {
        match plain(node).and_then(|s| s.parse::<i64>().ok()) {
            Some(i) => Some(i),
            None => {
                self.error(node.pos, format!("`{key}` must be an integer"));
                None
            }
        }
    }

    fn string_list(&mut self, map: &Node, key: &str) -> Vec<String> {
        let Some(node) = map.get(key) else {
            return Vec::new();
        };
        let items = self.expect_seq(node, key);
        items
            .iter()
            .filter_map(|item| self.string_value(item, key))
            .collect()
    }

    // ---- the contract -------------------------------------------------------------------

    fn contract(&mut self, root: &Node) -> Option<Contract> {
        let root = self.expect_map(root, "a contract file")?;
        self.check_keys(root, &[CONTRACT], "a contract");

        match root.get("kind") {
            None => self.error(root.pos, "a contract needs `kind: DataContract`"),
            Some(node) if node.as_str() != Some("DataContract") => self.error_hint(
                node.pos,
                "`kind` must be `DataContract`",
                "nightjar reads ODCS v3 data contracts",
            ),
            Some(_) => {}
        }
        let api_version = self.req_string(root, "apiVersion", "a contract");
        if let (Some(v), Some(node)) = (&api_version, root.get("apiVersion"))
            && !is_supported_api_version(v)
        {
            self.error_hint(
                node.pos,
                format!("unsupported ODCS `apiVersion` `{v}`"),
                "nightjar reads ODCS v3.0.x and v3.1.x, e.g. `apiVersion: v3.1.0`",
            );
        }
        let id = self.req_string(root, "id", "a contract");
        let version = self.req_string(root, "version", "a contract");
        let status = self.req_string(root, "status", "a contract");
        let name = self.opt_string(root, "name");
        let domain = self.opt_string(root, "domain");
        let description = root
            .get("description")
            .and_then(|node| self.description(node));
        let team = root.get("team").and_then(|node| self.team(node));

        let mut objects = Vec::new();
        let mut drafts: Vec<Vec<Draft>> = Vec::new();
        if let Some(schema) = root.get("schema") {
            let mut seen: HashMap<String, Pos> = HashMap::new();
            for item in self.expect_seq(schema, "schema") {
                if let Some((object, object_drafts)) = self.object(item) {
                    if let Some(first) = seen.get(&object.name) {
                        let message = format!(
                            "object `{}` is declared twice (first at line {})",
                            object.name, first.line
                        );
                        self.error(object.pos, message);
                    }
                    seen.insert(object.name.clone(), object.pos);
                    objects.push(object);
                    drafts.push(object_drafts);
                }
            }
        }

        let default_element = root.get("slaDefaultElement").and_then(|n| {
            self.string_value(n, "slaDefaultElement")
                .map(|s| (s, n.pos))
        });
        if let Some(slas) = root.get("slaProperties") {
            for item in self.expect_seq(slas, "slaProperties") {
                if let Some((object_idx, draft)) =
                    self.sla(item, &objects, default_element.as_ref())
                {
                    drafts[object_idx].push(draft);
                }
            }
        }

        self.assign_ids(&mut objects, drafts);

        Some(Contract {
            file: self.file.to_path_buf(),
            id: id?,
            name,
            version: version?,
            status: status?,
            api_version: api_version?,
            domain,
            description,
            team,
            text_sha256: hex::encode(Sha256::digest(self.text.as_bytes())),
            objects,
        })
    }

    fn description(&mut self, node: &Node) -> Option<ContractDescription> {
        if node.entries().is_none() {
            self.error_hint(
                node.pos,
                "`description` must be a mapping",
                "in ODCS v3 the contract's description has `purpose`, `usage` and `limitations`",
            );
            return None;
        }
        self.check_keys(
            node,
            &[&[
                "purpose",
                "usage",
                "limitations",
                "authoritativeDefinitions",
                "customProperties",
            ]],
            "`description`",
        );
        Some(ContractDescription {
            purpose: self.opt_string(node, "purpose"),
            usage: self.opt_string(node, "usage"),
            limitations: self.opt_string(node, "limitations"),
        })
    }

    /// `team:` is a mapping with `members` since v3.1.0, a list of members before.
    fn team(&mut self, node: &Node) -> Option<Team> {
        const TEAM_KEYS: &[&str] = &[
            "id",
            "name",
            "description",
            "members",
            "tags",
            "customProperties",
            "authoritativeDefinitions",
        ];
        let (name, members) = match &node.kind {
            NodeKind::Map(_) => {
                self.check_keys(node, &[TEAM_KEYS], "`team`");
                let members = node
                    .get("members")
                    .map(|m| self.expect_seq(m, "members"))
                    .unwrap_or(&[]);
                (self.opt_string(node, "name"), members)
            }
            NodeKind::Seq(items) => (None, items.as_slice()),
            _ => {
                self.error(
                    node.pos,
                    "`team` must be a mapping with `name` and `members`",
                );
                return None;
            }
        };
        let mut team = Team {
            name,
            members: Vec::new(),
        };
        for member in members {
            let Some(member) = self.expect_map(member, "a team member") else {
                continue;
            };
            self.check_keys(
                member,
                &[&[
                    "id",
                    "username",
                    "name",
                    "description",
                    "role",
                    "dateIn",
                    "dateOut",
                    "replacedByUsername",
                    "tags",
                    "customProperties",
                    "authoritativeDefinitions",
                ]],
                "a team member",
            );
            if let Some(username) = self.req_string(member, "username", "a team member") {
                team.members.push(TeamMember {
                    username,
                    name: self.opt_string(member, "name"),
                    role: self.opt_string(member, "role"),
                });
            }
        }
        Some(team)
    }

    // ---- objects and properties ---------------------------------------------------------

    fn object(&mut self, node: &Node) -> Option<(ContractObject, Vec<Draft>)> {
        let node = self.expect_map(node, "a `schema` entry")?;
        self.check_keys(node, &[ELEMENT, OBJECT], "a schema object");
        let name = self.req_string(node, "name", "a schema object")?;
        if let Some(lt) = node.get("logicalType")
            && lt.as_str() != Some("object")
        {
            self.error(lt.pos, "an object's `logicalType` can only be `object`");
        }
        self.stable_id(node);

        let mut properties: Vec<Property> = Vec::new();
        let mut drafts = Vec::new();
        if let Some(list) = node.get("properties") {
            for item in self.expect_seq(list, "properties") {
                let Some(item) = self.expect_map(item, "a property") else {
                    continue;
                };
                let Some(property) = self.property(item) else {
                    continue;
                };
                if properties.iter().any(|p| p.name == property.name) {
                    let message = format!(
                        "property `{}` is declared twice in object `{name}`",
                        property.name
                    );
                    self.error(property.pos, message);
                    continue;
                }
                drafts.extend(self.implied_rules(&name, &property, item));
                properties.push(property);
                // Written rules come after the property is known, so they can name it.
                if let Some(quality) = item.get("quality") {
                    let property = properties.last().cloned();
                    let scope = Scope {
                        object: &name,
                        property: property.as_ref(),
                        properties: &properties,
                    };
                    for rule in self.expect_seq(quality, "quality") {
                        drafts.extend(self.quality_rule(rule, &scope));
                    }
                }
            }
        }
        if let Some(quality) = node.get("quality") {
            let scope = Scope {
                object: &name,
                property: None,
                properties: &properties,
            };
            for rule in self.expect_seq(quality, "quality") {
                drafts.extend(self.quality_rule(rule, &scope));
            }
        }
        drafts.extend(primary_key_rule(&name, &properties));

        let object = ContractObject {
            name,
            id: self.opt_string(node, "id"),
            physical_name: self.opt_string(node, "physicalName"),
            description: self.opt_string(node, "description"),
            properties,
            rules: Vec::new(),
            pos: node.pos,
        };
        Some((object, drafts))
    }

    fn property(&mut self, node: &Node) -> Option<Property> {
        self.check_keys(node, &[ELEMENT, PROPERTY], "a property");
        let name = self.req_string(node, "name", "a property")?;
        self.stable_id(node);
        let logical_type = node.get("logicalType").and_then(|lt| {
            let text = self.string_value(lt, "logicalType")?;
            let parsed = LogicalType::parse(&text);
            if parsed.is_none() {
                let known: Vec<&str> = LogicalType::ALL.iter().map(|t| t.as_str()).collect();
                self.unknown(
                    lt.pos,
                    format!("unknown `logicalType` `{text}`"),
                    &text,
                    &known,
                );
            }
            parsed
        });
        // Nested properties describe struct fields; nightjar checks top-level columns only, so a
        // rule inside them would never run.
        for nested in ["items", "properties"] {
            if let Some(child) = node.get(nested)
                && let Some(pos) = find_key(child, "quality")
            {
                self.error_hint(
                    pos,
                    format!("quality rules inside nested `{nested}` of property `{name}` are not supported"),
                    "nightjar checks the columns of a table; put the rule on a top-level property or use `type: sql`",
                );
            }
        }
        let tags = self.string_list(node, "tags");
        let primary_key_position = node
            .get("primaryKeyPosition")
            .and_then(|n| self.integer_value(n, "primaryKeyPosition"));
        Some(Property {
            id: self.opt_string(node, "id"),
            physical_name: self.opt_string(node, "physicalName"),
            logical_type,
            physical_type: self.opt_string(node, "physicalType"),
            required: self.opt_bool(node, "required").unwrap_or(false),
            unique: self.opt_bool(node, "unique").unwrap_or(false),
            primary_key: self.opt_bool(node, "primaryKey").unwrap_or(false),
            primary_key_position,
            classification: self.opt_string(node, "classification"),
            tags,
            description: self.opt_string(node, "description"),
            pos: node.pos,
            name,
        })
    }

    /// An element's `id` must be an ODCS StableId (letters, digits, `_`, `-`).
    fn stable_id(&mut self, map: &Node) -> Option<(String, Pos)> {
        let node = map.get("id")?;
        let id = self.string_value(node, "id")?;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.error_hint(
                node.pos,
                format!("invalid id `{id}`"),
                "ODCS ids use only letters, digits, `_` and `-`",
            );
            return None;
        }
        Some((id, node.pos))
    }

    /// `required`, `unique` and `logicalTypeOptions` as rules.
    fn implied_rules(&mut self, object: &str, property: &Property, node: &Node) -> Vec<Draft> {
        let column = property.column().to_string();
        let mut drafts = Vec::new();
        let implied = |suffix: &str, kind: RuleKind, origin: RuleOrigin, pos: Pos| Draft {
            explicit_id: None,
            base_id: format!("{object}.{}.{suffix}", property.name),
            rule: Rule {
                id: String::new(),
                object: object.to_string(),
                column: Some(property.name.clone()),
                kind,
                op: Comparison::Eq(0.0),
                unit: Unit::Rows,
                severity: Severity::Error,
                origin,
                description: None,
                pos,
            },
        };
        let pos_of = |key: &str| node.entry(key).map_or(node.pos, |(k, _)| k.pos);
        if property.required {
            drafts.push(implied(
                "required",
                RuleKind::NullValues {
                    column: column.clone(),
                },
                RuleOrigin::Required,
                pos_of("required"),
            ));
        }
        if property.unique {
            drafts.push(implied(
                "unique",
                RuleKind::DuplicateValues {
                    columns: vec![column.clone()],
                },
                RuleOrigin::Unique,
                pos_of("unique"),
            ));
        }
        if let Some(options) = node.get("logicalTypeOptions") {
            for (suffix, kind) in self.logical_type_options(property, options) {
                drafts.push(implied(
                    suffix,
                    kind,
                    RuleOrigin::LogicalTypeOptions,
                    options.pos,
                ));
            }
        }
        drafts
    }

    /// The value constraints of `logicalTypeOptions`, checked per `logicalType` as the ODCS
    /// schema does (each type allows its own keys only).
    fn logical_type_options(
        &mut self,
        property: &Property,
        options: &Node,
    ) -> Vec<(&'static str, RuleKind)> {
        let Some(options) = self.expect_map(options, "`logicalTypeOptions`") else {
            return Vec::new();
        };
        let Some(logical_type) = property.logical_type else {
            self.error_hint(
                options.pos,
                format!(
                    "`logicalTypeOptions` of property `{}` needs a `logicalType`",
                    property.name
                ),
                "the meaning of the options depends on the type, e.g. `logicalType: integer`",
            );
            return Vec::new();
        };
        let allowed = logical_type_options(logical_type);
        let what = format!(
            "`logicalTypeOptions` of a `{}` property",
            logical_type.as_str()
        );
        self.check_keys(options, &[allowed], &what);
        let column = property.column().to_string();
        let mut kinds = Vec::new();

        if matches!(logical_type, LogicalType::Object | LogicalType::Array) {
            if let Some((key, _)) = options.entries().and_then(|e| e.first()) {
                self.error_hint(
                    key.pos,
                    format!(
                        "`logicalTypeOptions` of `{}` properties are not checked by nightjar",
                        logical_type.as_str()
                    ),
                    "remove them, or express the check as a `type: sql` quality rule",
                );
            }
            return kinds;
        }
        if let Some(format) = options.get("format") {
            let valid: &[&str] = match logical_type {
                LogicalType::Integer => &[
                    "i8", "i16", "i32", "i64", "i128", "u8", "u16", "u32", "u64", "u128",
                ],
                LogicalType::Number => &["f32", "f64"],
                _ => &[],
            };
            if let Some(text) = self.string_value(format, "format")
                && !valid.is_empty()
                && !valid.contains(&text.as_str())
            {
                self.unknown(
                    format.pos,
                    format!("unknown number `format` `{text}`"),
                    &text,
                    valid,
                );
            }
        }
        if logical_type == LogicalType::String {
            let min = options
                .get("minLength")
                .and_then(|n| self.length(n, "minLength"));
            let max = options
                .get("maxLength")
                .and_then(|n| self.length(n, "maxLength"));
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                self.error(
                    options.pos,
                    format!("`minLength` {lo} is greater than `maxLength` {hi}"),
                );
            }
            if min.is_some() || max.is_some() {
                kinds.push((
                    "length",
                    RuleKind::Length {
                        column: column.clone(),
                        min,
                        max,
                    },
                ));
            }
            if let Some(node) = options.get("pattern")
                && let Some(pattern) = self.pattern(node)
            {
                kinds.push((
                    "pattern",
                    RuleKind::InvalidValues {
                        column,
                        valid_values: None,
                        pattern: Some(pattern),
                    },
                ));
            }
            return kinds;
        }
        let min = self.bound(options, logical_type, "minimum", "exclusiveMinimum");
        let max = self.bound(options, logical_type, "maximum", "exclusiveMaximum");
        if let (Some(lo), Some(hi)) = (&min, &max)
            && bound_order(&lo.value, &hi.value) == Some(std::cmp::Ordering::Greater)
        {
            self.error(
                options.pos,
                format!(
                    "the minimum of property `{}` is greater than its maximum",
                    property.name
                ),
            );
        }
        if min.is_some() || max.is_some() {
            kinds.push((
                "range",
                RuleKind::Range {
                    column: column.clone(),
                    min,
                    max,
                },
            ));
        }
        if let Some(node) = options.get("multipleOf")
            && let Some(factor) = self.number_value(node, "multipleOf")
        {
            if factor > 0.0 {
                kinds.push(("multipleOf", RuleKind::MultipleOf { column, factor }));
            } else {
                self.error(node.pos, "`multipleOf` must be greater than 0");
            }
        }
        kinds
    }

    fn length(&mut self, node: &Node, key: &str) -> Option<u64> {
        match plain(node).and_then(|s| s.parse::<u64>().ok()) {
            Some(n) => Some(n),
            None => {
                self.error(node.pos, format!("`{key}` must be a non-negative integer"));
                None
            }
        }
    }

    /// A regular expression, checked with the engine DataFusion's `regexp_like` uses.
    fn pattern(&mut self, node: &Node) -> Option<String> {
        let pattern = self.string_value(node, "pattern")?;
        let probe = arrow::array::StringArray::from(vec![""]);
        match arrow::compute::regexp_is_match_scalar(&probe, &pattern, None) {
            Ok(_) => Some(pattern),
            Err(e) => {
                self.error_hint(
                    node.pos,
                    format!("invalid `pattern`: {e}"),
                    "patterns use Rust `regex` syntax (ECMA-262 without look-around and backreferences)",
                );
                None
            }
        }
    }

    /// `minimum` or `exclusiveMinimum` (or the maximum pair): numbers for numeric types,
    /// ISO strings for dates, timestamps and times.
    fn bound(
        &mut self,
        options: &Node,
        logical_type: LogicalType,
        inclusive_key: &str,
        exclusive_key: &str,
    ) -> Option<Bound> {
        let (key, node, inclusive) = match (options.get(inclusive_key), options.get(exclusive_key))
        {
            (Some(_), Some(ex)) => {
                self.error(
                    ex.pos,
                    format!("give `{inclusive_key}` or `{exclusive_key}`, not both"),
                );
                return None;
            }
            (Some(node), None) => (inclusive_key, node, true),
            (None, Some(node)) => (exclusive_key, node, false),
            (None, None) => return None,
        };
        let value = match logical_type {
            LogicalType::Integer | LogicalType::Number => {
                BoundValue::Number(self.number_value(node, key)?)
            }
            LogicalType::Date => {
                let text = self.string_value(node, key)?;
                if chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").is_err() {
                    self.error(
                        node.pos,
                        format!("`{key}` must be a date `YYYY-MM-DD`, found `{text}`"),
                    );
                    return None;
                }
                BoundValue::Date(text)
            }
            LogicalType::Timestamp => {
                let text = self.string_value(node, key)?;
                if parse_timestamp(&text).is_none() {
                    self.error(
                        node.pos,
                        format!("`{key}` must be an ISO 8601 timestamp, found `{text}`"),
                    );
                    return None;
                }
                BoundValue::Timestamp(text)
            }
            LogicalType::Time => {
                let text = self.string_value(node, key)?;
                if chrono::NaiveTime::parse_from_str(&text, "%H:%M:%S%.f").is_err() {
                    self.error(
                        node.pos,
                        format!("`{key}` must be a time `HH:MM:SS`, found `{text}`"),
                    );
                    return None;
                }
                BoundValue::Time(text)
            }
            _ => return None,
        };
        Some(Bound { value, inclusive })
    }

    // ---- quality rules ------------------------------------------------------------------

    fn quality_rule(&mut self, node: &Node, scope: &Scope<'_>) -> Option<Draft> {
        let node = self.expect_map(node, "a quality rule")?;
        for (key, _) in node.entries().unwrap_or(&[]) {
            let Some(name) = key.as_str() else { continue };
            if QUALITY.contains(&name) || Comparison::OPERATORS.contains(&name) {
                continue;
            }
            if name.starts_with("must") {
                self.unknown(
                    key.pos,
                    format!("unknown operator `{name}`"),
                    name,
                    &Comparison::OPERATORS,
                );
            } else {
                let known: Vec<&str> = QUALITY
                    .iter()
                    .chain(Comparison::OPERATORS.iter())
                    .copied()
                    .collect();
                self.unknown(
                    key.pos,
                    format!("unknown key `{name}` in a quality rule"),
                    name,
                    &known,
                );
            }
        }
        let explicit_id = self.stable_id(node);
        if node.get("id").is_some() && explicit_id.is_none() {
            return None;
        }
        if let Some(dim) = node.get("dimension")
            && let Some(text) = self.string_value(dim, "dimension")
            && !DIMENSIONS.contains(&text.as_str())
        {
            self.unknown(
                dim.pos,
                format!("unknown `dimension` `{text}`"),
                &text,
                DIMENSIONS,
            );
        }
        let severity = self.severity(node);

        let metric_node = match (node.get("metric"), node.get("rule")) {
            (Some(m), Some(r)) => {
                self.error_hint(
                    r.pos,
                    "give `metric` or `rule`, not both",
                    "`rule` is the deprecated name of `metric`",
                );
                Some(m)
            }
            (m, r) => m.or(r),
        };
        let type_node = node.get("type");
        let rule_type = match type_node {
            Some(t) => {
                let text = self.string_value(t, "type")?;
                if !QUALITY_TYPES.contains(&text.as_str()) {
                    self.unknown(
                        t.pos,
                        format!("unknown quality rule `type` `{text}`"),
                        &text,
                        QUALITY_TYPES,
                    );
                    return None;
                }
                text
            }
            None if metric_node.is_some() => "library".to_string(),
            None if node.get("query").is_some() => {
                self.error_hint(
                    node.pos,
                    "a rule with `query` needs `type: sql`",
                    "add `type: sql`",
                );
                return None;
            }
            None => {
                self.error_hint(
                    node.pos,
                    "a quality rule needs a `metric` (or `type: sql`, `type: text`)",
                    format!("library metrics are {}", backticked(METRICS)),
                );
                return None;
            }
        };
        let description = self.opt_string(node, "description");
        let base = |metric: &str| match scope.property {
            Some(p) => format!("{}.{}.{metric}", scope.object, p.name),
            None => format!("{}.{metric}", scope.object),
        };
        let draft = |kind: RuleKind, op: Comparison, unit: Unit, base_id: String| Draft {
            explicit_id: explicit_id.clone(),
            base_id,
            rule: Rule {
                id: String::new(),
                object: scope.object.to_string(),
                column: scope.property.map(|p| p.name.clone()),
                kind,
                op,
                unit,
                severity: severity.unwrap_or(Severity::Error),
                origin: RuleOrigin::Quality,
                description: description.clone(),
                pos: node.pos,
            },
        };

        match rule_type.as_str() {
            // Prose for people: nothing to run.
            "text" => None,
            "custom" => {
                let engine = node
                    .get("engine")
                    .and_then(|e| e.as_str())
                    .unwrap_or("unknown");
                self.error_hint(
                    type_node.map_or(node.pos, |t| t.pos),
                    format!("`custom` quality rules (engine `{engine}`) are not run by nightjar"),
                    "write the check as a library `metric` or as `type: sql`",
                );
                None
            }
            "sql" => {
                let query_node = match node.get("query") {
                    Some(q) => q,
                    None => {
                        self.error(node.pos, "a `type: sql` rule needs `query`");
                        return None;
                    }
                };
                let query = self.sql_query(query_node, scope)?;
                let op = self.operator(node)?;
                let unit = self.unit(node)?;
                if unit != Unit::Rows {
                    self.error(
                        node.get("unit").map_or(node.pos, |u| u.pos),
                        "`unit: percent` needs a library metric; a `sql` rule compares the number its query returns",
                    );
                    return None;
                }
                Some(draft(RuleKind::Sql { query }, op, unit, base("sql")))
            }
            _ => {
                let Some(metric_node) = metric_node else {
                    self.error_hint(
                        node.pos,
                        "a `library` rule needs `metric`",
                        format!("library metrics are {}", backticked(METRICS)),
                    );
                    return None;
                };
                let metric = self.string_value(metric_node, "metric")?;
                let metric = match metric.as_str() {
                    // ODCS v3.0 examples spelled these differently.
                    "duplicateCount" => "duplicateValues".to_string(),
                    _ => metric,
                };
                if !METRICS.contains(&metric.as_str()) {
                    self.unknown(
                        metric_node.pos,
                        format!("unknown metric `{metric}`"),
                        &metric,
                        METRICS,
                    );
                    return None;
                }
                let op = self.operator(node);
                let unit = self.unit(node);
                let kind =
                    self.metric_kind(&metric, metric_node.pos, node.get("arguments"), scope)?;
                let (op, unit) = (op?, unit?);
                if unit == Unit::Percent && matches!(kind, RuleKind::RowCount) {
                    self.error(
                        node.get("unit").map_or(node.pos, |u| u.pos),
                        "`rowCount` is counted in `rows`, not `percent`",
                    );
                    return None;
                }
                let base_id = base(&metric);
                Some(draft(kind, op, unit, base_id))
            }
        }
    }

    /// The metric's kind, with its arguments checked and its columns resolved.
    fn metric_kind(
        &mut self,
        metric: &str,
        pos: Pos,
        arguments: Option<&Node>,
        scope: &Scope<'_>,
    ) -> Option<RuleKind> {
        let allowed: &[&str] = match (metric, scope.property.is_some()) {
            ("missingValues", true) => &["missingValues"],
            ("invalidValues", true) => &["validValues", "pattern"],
            ("duplicateValues", false) => &["properties"],
            _ => &[],
        };
        let arguments = match arguments {
            Some(args) => Some(self.expect_map(args, "`arguments`")?),
            None => None,
        };
        if let Some(args) = arguments {
            for (key, _) in args.entries().unwrap_or(&[]) {
                let Some(name) = key.as_str() else { continue };
                if !allowed.contains(&name) {
                    let message = format!("unknown argument `{name}` for metric `{metric}`");
                    if allowed.is_empty() {
                        self.error(key.pos, format!("{message}; it takes no arguments here"));
                    } else {
                        self.unknown(key.pos, message, name, allowed);
                    }
                }
            }
        }
        let property_level = |cx: &mut Self| -> Option<String> {
            match scope.property {
                Some(p) => Some(p.column().to_string()),
                None => {
                    cx.error_hint(
                        pos,
                        format!("`{metric}` counts the values of one property"),
                        "move this rule into that property's `quality` list",
                    );
                    None
                }
            }
        };
        match metric {
            "nullValues" => Some(RuleKind::NullValues {
                column: property_level(self)?,
            }),
            "missingValues" => {
                let column = property_level(self)?;
                let missing = arguments
                    .and_then(|a| a.get("missingValues"))
                    .map(|n| self.value_list(n, "missingValues"));
                Some(RuleKind::MissingValues {
                    column,
                    missing: missing.unwrap_or_default(),
                })
            }
            "invalidValues" => {
                let column = property_level(self)?;
                let valid_values = arguments
                    .and_then(|a| a.get("validValues"))
                    .map(|n| self.value_list(n, "validValues"));
                let pattern = match arguments.and_then(|a| a.get("pattern")) {
                    Some(node) => Some(self.pattern(node)?),
                    None => None,
                };
                if valid_values.is_none() && pattern.is_none() {
                    self.error_hint(
                        pos,
                        "`invalidValues` needs `arguments` with `validValues` or `pattern`",
                        "e.g. `arguments: { validValues: [new, shipped] }`",
                    );
                    return None;
                }
                Some(RuleKind::InvalidValues {
                    column,
                    valid_values,
                    pattern,
                })
            }
            "duplicateValues" => match scope.property {
                Some(p) => Some(RuleKind::DuplicateValues {
                    columns: vec![p.column().to_string()],
                }),
                None => {
                    let Some(list) = arguments.and_then(|a| a.get("properties")) else {
                        self.error_hint(
                            pos,
                            "a schema-level `duplicateValues` needs `arguments.properties`",
                            "list the properties that together must be unique, or move the rule into a property",
                        );
                        return None;
                    };
                    let mut columns = Vec::new();
                    let names: Vec<&str> =
                        scope.properties.iter().map(|p| p.name.as_str()).collect();
                    let items = self.expect_seq(list, "properties");
                    if items.is_empty() {
                        self.error(list.pos, "`properties` must name at least one property");
                        return None;
                    }
                    for item in items {
                        let Some(name) = self.string_value(item, "properties") else {
                            continue;
                        };
                        match scope.properties.iter().find(|p| p.name == name) {
                            Some(p) => columns.push(p.column().to_string()),
                            None => self.unknown(
                                item.pos,
                                format!("unknown property `{name}` in object `{}`", scope.object),
                                &name,
                                &names,
                            ),
                        }
                    }
                    // Unknown names were reported above; a partial key would check something else.
                    (columns.len() == items.len()).then_some(RuleKind::DuplicateValues { columns })
                }
            },
            "rowCount" => {
                if scope.property.is_some() {
                    self.error_hint(
                        pos,
                        "`rowCount` counts the rows of an object",
                        "move this rule to the object's `quality` list",
                    );
                    return None;
                }
                Some(RuleKind::RowCount)
            }
            _ => None,
        }
    }

    /// A list of values to compare as text. `null` entries are dropped: nulls are always
    /// missing, and never invalid (they are what `nullValues` counts).
    fn value_list(&mut self, node: &Node, key: &str) -> Vec<String> {
        let items = self.expect_seq(node, key);
        let mut values = Vec::new();
        for item in items {
            match &item.kind {
                NodeKind::Scalar(_, _) if item.is_null() => {}
                NodeKind::Scalar(s, _) => values.push(s.clone()),
                _ => self.error(item.pos, format!("`{key}` must list plain values")),
            }
        }
        values
    }

    fn sql_query(&mut self, node: &Node, scope: &Scope<'_>) -> Option<String> {
        let mut query = self.string_value(node, "query")?;
        if query.contains("{property}") {
            match scope.property {
                Some(p) => query = query.replace("{property}", &quote_ident(p.column())),
                None => {
                    self.error_hint(
                        node.pos,
                        "`{property}` is only known in a property's `quality` list",
                        "name the column, or move the rule into the property",
                    );
                    return None;
                }
            }
        }
        let probe = query.replace("{object}", "\"__nightjar_object__\"");
        let hint =
            if query.contains("${") || query.contains("{table}") || query.contains("{column}") {
                "write `{object}` for the table and `{property}` for the column"
            } else {
                "the query must be one DataFusion SQL `SELECT` returning one number"
            };
        match DFParser::parse_sql(&probe) {
            Ok(statements) => {
                let is_query = statements.len() == 1
                    && matches!(statements.front(), Some(DFStatement::Statement(s)) if matches!(**s, SqlStatement::Query(_)));
                if !is_query {
                    self.error_hint(node.pos, "`query` must be one `SELECT` statement", hint);
                    return None;
                }
            }
            Err(e) => {
                let message = e.strip_backtrace();
                self.error_hint(
                    node.pos,
                    format!(
                        "`query` does not parse: {}",
                        message.trim_start_matches("SQL error: ")
                    ),
                    hint,
                );
                return None;
            }
        }
        Some(query)
    }

    fn severity(&mut self, node: &Node) -> Option<Severity> {
        let sev = node.get("severity")?;
        let text = self.string_value(sev, "severity")?;
        match text.to_ascii_lowercase().as_str() {
            "error" => Some(Severity::Error),
            "warning" | "warn" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => {
                self.unknown(
                    sev.pos,
                    format!("unknown `severity` `{text}`"),
                    &text,
                    SEVERITIES,
                );
                None
            }
        }
    }

    fn unit(&mut self, node: &Node) -> Option<Unit> {
        let Some(unit) = node.get("unit") else {
            return Some(Unit::Rows);
        };
        let text = self.string_value(unit, "unit")?;
        match text.as_str() {
            "rows" => Some(Unit::Rows),
            "percent" => Some(Unit::Percent),
            _ => {
                self.unknown(unit.pos, format!("unknown `unit` `{text}`"), &text, UNITS);
                None
            }
        }
    }

    /// Exactly one operator, as the ODCS v3.1 schema requires (`oneOf`).
    fn operator(&mut self, node: &Node) -> Option<Comparison> {
        let present: Vec<(&Node, &Node)> = node
            .entries()
            .unwrap_or(&[])
            .iter()
            .filter(|(k, _)| {
                k.as_str()
                    .is_some_and(|k| Comparison::OPERATORS.contains(&k))
            })
            .map(|(k, v)| (k, v))
            .collect();
        let (key, value) = match present.as_slice() {
            // A misspelt operator was reported as unknown; "needs an operator" would be noise.
            [] if node
                .entries()
                .unwrap_or(&[])
                .iter()
                .any(|(k, _)| k.as_str().is_some_and(|k| k.starts_with("must"))) =>
            {
                return None;
            }
            [] => {
                self.error_hint(
                    node.pos,
                    "a quality rule needs an operator",
                    format!("add one of {}", backticked(&Comparison::OPERATORS)),
                );
                return None;
            }
            [one] => *one,
            [_, second, ..] => {
                self.error_hint(
                    second.0.pos,
                    "a quality rule takes exactly one operator",
                    "write a range as `mustBeBetween: [low, high]`",
                );
                return None;
            }
        };
        let name = key.as_str().unwrap_or_default();
        let scalar = |cx: &mut Self| -> Option<f64> {
            // `mustBe: true` compares with a query returning a boolean.
            match plain(value).and_then(parse_bool) {
                Some(b) if matches!(name, "mustBe" | "mustNotBe") => {
                    Some(if b { 1.0 } else { 0.0 })
                }
                _ => cx.number_value(value, name),
            }
        };
        match name {
            "mustBe" => Some(Comparison::Eq(scalar(self)?)),
            "mustNotBe" => Some(Comparison::Ne(scalar(self)?)),
            "mustBeGreaterThan" => Some(Comparison::Gt(scalar(self)?)),
            "mustBeGreaterOrEqualTo" => Some(Comparison::Ge(scalar(self)?)),
            "mustBeLessThan" => Some(Comparison::Lt(scalar(self)?)),
            "mustBeLessOrEqualTo" => Some(Comparison::Le(scalar(self)?)),
            _ => {
                let items = match &value.kind {
                    NodeKind::Seq(items) if items.len() == 2 => items,
                    _ => {
                        self.error(
                            value.pos,
                            format!("`{name}` takes two numbers, `[low, high]`"),
                        );
                        return None;
                    }
                };
                let lo = self.number_value(&items[0], name)?;
                let hi = self.number_value(&items[1], name)?;
                if lo >= hi {
                    self.error(
                        value.pos,
                        format!(
                            "`{name}` needs the smaller number first and two different numbers"
                        ),
                    );
                    return None;
                }
                Some(if name == "mustBeBetween" {
                    Comparison::Between(lo, hi)
                } else {
                    Comparison::NotBetween(lo, hi)
                })
            }
        }
    }

    // ---- SLA: freshness -----------------------------------------------------------------

    /// A `latency`/`freshness` SLA becomes a freshness rule on the object its `element` names.
    /// Other SLA properties (retention, frequency, availability, …) are accepted and not checked:
    /// they are promises about the service, not about the rows of one run.
    fn sla(
        &mut self,
        node: &Node,
        objects: &[ContractObject],
        default_element: Option<&(String, Pos)>,
    ) -> Option<(usize, Draft)> {
        let node = self.expect_map(node, "an `slaProperties` entry")?;
        self.check_keys(node, &[SLA], "an `slaProperties` entry");
        let property = self.req_string(node, "property", "an `slaProperties` entry")?;
        let Some(value_node) = node.get("value") else {
            self.error(node.pos, "an `slaProperties` entry needs `value`");
            return None;
        };
        if !FRESHNESS_SLAS.contains(&property.as_str()) {
            return None;
        }
        let explicit_id = self.stable_id(node);
        let value = self.number_value(value_node, "value");
        let unit = match node.get("unit") {
            Some(u) => self.time_unit(u),
            None => {
                self.error_hint(
                    node.pos,
                    format!("a `{property}` SLA needs `unit`"),
                    "e.g. `unit: d` for days or `unit: h` for hours",
                );
                None
            }
        };
        let (element, element_pos) = match (node.get("element"), default_element) {
            (Some(e), _) => (self.string_value(e, "element")?, e.pos),
            (None, Some((e, pos))) => (e.clone(), *pos),
            (None, None) => {
                self.error_hint(
                    node.pos,
                    format!("a `{property}` SLA needs `element`"),
                    "name the timestamp column as `object.property`, e.g. `element: orders.created_at`",
                );
                return None;
            }
        };
        let (object_idx, prop) = self.resolve_element(&element, element_pos, objects)?;
        let object = &objects[object_idx];
        let prop = &object.properties[prop];
        if let Some(lt) = prop.logical_type
            && !matches!(lt, LogicalType::Date | LogicalType::Timestamp)
        {
            self.error(
                element_pos,
                format!(
                    "freshness needs a date or timestamp property; `{}` is `{}`",
                    prop.name,
                    lt.as_str()
                ),
            );
            return None;
        }
        let value = value?;
        if value <= 0.0 {
            self.error(
                value_node.pos,
                format!("a `{property}` SLA needs a positive `value`"),
            );
            return None;
        }
        let (unit, factor) = unit?;
        let draft = Draft {
            explicit_id,
            base_id: format!("{}.{}.freshness", object.name, prop.name),
            rule: Rule {
                id: String::new(),
                object: object.name.clone(),
                column: Some(prop.name.clone()),
                kind: RuleKind::Freshness {
                    column: prop.column().to_string(),
                },
                op: Comparison::Le(value * factor),
                unit,
                severity: Severity::Error,
                origin: RuleOrigin::Sla,
                description: self.opt_string(node, "description"),
                pos: node.pos,
            },
        };
        Some((object_idx, draft))
    }

    /// An SLA time unit, as the unit to report in and the factor to it (weeks and years are
    /// reported in days).
    fn time_unit(&mut self, node: &Node) -> Option<(Unit, f64)> {
        let text = self.string_value(node, "unit")?;
        let unit = match text.to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" | "seconds" => (Unit::Seconds, 1.0),
            "min" | "minute" | "minutes" => (Unit::Minutes, 1.0),
            "h" | "hr" | "hour" | "hours" => (Unit::Hours, 1.0),
            "d" | "day" | "days" => (Unit::Days, 1.0),
            "w" | "week" | "weeks" => (Unit::Days, 7.0),
            "y" | "yr" | "year" | "years" => (Unit::Days, 365.0),
            "m" => {
                self.error_hint(
                    node.pos,
                    "`unit: m` is ambiguous",
                    "write `min` for minutes",
                );
                return None;
            }
            _ => {
                let known = [
                    "s", "min", "h", "d", "w", "y", "seconds", "minutes", "hours", "days", "weeks",
                    "years",
                ];
                self.unknown(
                    node.pos,
                    format!("unknown SLA `unit` `{text}`"),
                    &text,
                    &known,
                );
                return None;
            }
        };
        Some(unit)
    }

    /// `object.property` (names or physical names), `property` when the contract has one
    /// object, or the fully qualified `schema/<object id>/properties/<property id>`.
    fn resolve_element(
        &mut self,
        element: &str,
        pos: Pos,
        objects: &[ContractObject],
    ) -> Option<(usize, usize)> {
        if element.contains(',') {
            self.error(pos, "a freshness SLA checks one `element`, found several");
            return None;
        }
        let element = element.trim().trim_start_matches('/');
        let (object_key, property_key, by_id) = if let Some(rest) = element.strip_prefix("schema/")
        {
            match rest.split('/').collect::<Vec<_>>().as_slice() {
                [object, "properties", property] => (Some(*object), *property, true),
                _ => {
                    self.error_hint(
                        pos,
                        format!("cannot read element `{element}`"),
                        "write `object.property`",
                    );
                    return None;
                }
            }
        } else {
            match element.split_once('.') {
                Some((object, property)) => (Some(object), property, false),
                None => (None, element, false),
            }
        };
        let object_idx = match object_key {
            Some(key) => {
                let found = objects.iter().position(|o| {
                    if by_id {
                        o.id.as_deref() == Some(key)
                    } else {
                        o.name == key || o.physical_name.as_deref() == Some(key)
                    }
                });
                match found {
                    Some(i) => i,
                    None => {
                        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
                        self.unknown(
                            pos,
                            format!("unknown object `{key}` in element `{element}`"),
                            key,
                            &names,
                        );
                        return None;
                    }
                }
            }
            None if objects.len() == 1 => 0,
            None => {
                self.error_hint(
                    pos,
                    format!("element `{element}` does not say which object"),
                    "write `object.property`",
                );
                return None;
            }
        };
        let object = &objects[object_idx];
        let found = object.properties.iter().position(|p| {
            if by_id {
                p.id.as_deref() == Some(property_key)
            } else {
                p.name == property_key || p.physical_name.as_deref() == Some(property_key)
            }
        });
        match found {
            Some(i) => Some((object_idx, i)),
            None => {
                let names: Vec<&str> = object.properties.iter().map(|p| p.name.as_str()).collect();
                self.unknown(
                    pos,
                    format!(
                        "unknown property `{property_key}` in object `{}`",
                        object.name
                    ),
                    property_key,
                    &names,
                );
                None
            }
        }
    }

    // ---- ids ----------------------------------------------------------------------------

    /// Written ids are kept and must be unique in the contract; the others are derived from
    /// object, property and metric, numbered from `.2` on when repeated. Written ids cannot
    /// contain `.`, so they never collide with derived ones.
    fn assign_ids(&mut self, objects: &mut [ContractObject], drafts: Vec<Vec<Draft>>) {
        let mut explicit: HashMap<String, Pos> = HashMap::new();
        for draft in drafts.iter().flatten() {
            if let Some((id, pos)) = &draft.explicit_id {
                if let Some(first) = explicit.get(id) {
                    let message = format!(
                        "rule id `{id}` is used twice (first at line {})",
                        first.line
                    );
                    self.error(*pos, message);
                } else {
                    explicit.insert(id.clone(), *pos);
                }
            }
        }
        let mut used: HashSet<String> = explicit.keys().cloned().collect();
        for (object, object_drafts) in objects.iter_mut().zip(drafts) {
            for mut draft in object_drafts {
                draft.rule.id = match draft.explicit_id {
                    Some((id, _)) => id,
                    None => {
                        let mut id = draft.base_id.clone();
                        let mut n = 1;
                        while used.contains(&id) {
                            n += 1;
                            id = format!("{}.{n}", draft.base_id);
                        }
                        used.insert(id.clone());
                        id
                    }
                };
                object.rules.push(draft.rule);
            }
        }
    }
}

/// One `duplicateValues` rule over the `primaryKey` columns, in `primaryKeyPosition` order. A
/// lone key column that is also `unique` already has that rule.
fn primary_key_rule(object: &str, properties: &[Property]) -> Option<Draft> {
    let mut keys: Vec<(usize, &Property)> = properties
        .iter()
        .enumerate()
        .filter(|(_, p)| p.primary_key)
        .collect();
    let first = keys.first()?.1;
    if keys.len() == 1 && first.unique {
        return None;
    }
    keys.sort_by_key(|(i, p)| {
        (
            p.primary_key_position
                .filter(|pos| *pos > 0)
                .unwrap_or(i64::MAX),
            *i,
        )
    });
    Some(Draft {
        explicit_id: None,
        base_id: format!("{object}.primaryKey"),
        rule: Rule {
            id: String::new(),
            object: object.to_string(),
            column: (keys.len() == 1).then(|| first.name.clone()),
            kind: RuleKind::DuplicateValues {
                columns: keys.iter().map(|(_, p)| p.column().to_string()).collect(),
            },
            op: Comparison::Eq(0.0),
            unit: Unit::Rows,
            severity: Severity::Error,
            origin: RuleOrigin::PrimaryKey,
            description: None,
            pos: first.pos,
        },
    })
}

fn is_supported_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("v3.0.").or_else(|| v.strip_prefix("v3.1.")) else {
        return false;
    };
    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
}

/// The text of a plain (unquoted) scalar: numbers and booleans are never quoted in YAML.
fn plain(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Scalar(s, ScalarStyle::Plain) if !node.is_null() => Some(s),
        _ => None,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// An ISO 8601 date-time with or without offset, or a date (midnight).
pub(crate) fn parse_timestamp(text: &str) -> Option<chrono::NaiveDateTime> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.naive_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t);
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn bound_order(lo: &BoundValue, hi: &BoundValue) -> Option<std::cmp::Ordering> {
    match (lo, hi) {
        (BoundValue::Number(a), BoundValue::Number(b)) => a.partial_cmp(b),
        (BoundValue::Date(a), BoundValue::Date(b)) | (BoundValue::Time(a), BoundValue::Time(b)) => {
            Some(a.cmp(b))
        }
        (BoundValue::Timestamp(a), BoundValue::Timestamp(b)) => {
            parse_timestamp(a)?.partial_cmp(&parse_timestamp(b)?)
        }
        _ => None,
    }
}

/// The position of the first `key` anywhere under `node`.
fn find_key(node: &Node, key: &str) -> Option<Pos> {
    match &node.kind {
        NodeKind::Scalar(..) => None,
        NodeKind::Seq(items) => items.iter().find_map(|n| find_key(n, key)),
        NodeKind::Map(entries) => entries.iter().find_map(|(k, v)| {
            if k.as_str() == Some(key) {
                Some(k.pos)
            } else {
                find_key(v, key)
            }
        }),
    }
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
