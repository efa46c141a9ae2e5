//! A YAML tree that keeps the source position of every node, and a serde `Deserializer` over it.
//!
//! Why not `serde_yaml` straight into the typed spec: serde buffers internally tagged enums
//! (`kind: sql`) and loses line/column for every error inside them, and `serde_yaml::Value`
//! has no positions at all. Keeping our own tree gives every serde error (unknown field, wrong
//! type, missing field, unknown variant) the exact `line:column` of the offending node, and lets
//! the semantic checks in `plan` point at lines too (`Node::pos`).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper nesting than this is refused (a hostile file must not overflow the stack).
const MAX_DEPTH: usize = 64;
/// Nodes after alias expansion; guards against "billion laughs" files.
const MAX_NODES: usize = 200_000;

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 lines are 1-based, columns 0-based.
        Pos {
            line: m.line() as u32,
            col: m.col() as u32 + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    Quoted,
    /// `|` or `>` block; its text starts on the line after `pos`.
    Block,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Scalar(String, ScalarStyle),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s, ScalarStyle::Plain) if is_null_text(s))
    }

    /// The entries of a mapping, or `None` for any other node.
    pub fn entries(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value and key of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k, v))
    }

    /// A copy of this mapping without the given keys (used to split a task into its common
    /// fields and its kind's own fields, each deserialized with `deny_unknown_fields`).
    pub fn without_keys(&self, keys: &[&str]) -> Node {
        match &self.kind {
            NodeKind::Map(entries) => Node {
                pos: self.pos,
                kind: NodeKind::Map(
                    entries
                        .iter()
                        .filter(|(k, _)| !k.as_str().is_some_and(|k| keys.contains(&k)))
                        .cloned()
                        .collect(),
                ),
            },
            _ => self.clone(),
        }
    }

    /// A copy of this mapping with only the given keys.
    pub fn only_keys(&self, keys: &[&str]) -> Node {
        match &self.kind {
            NodeKind::Map(entries) => Node {
                pos: self.pos,
                kind: NodeKind::Map(
                    entries
                        .iter()
                        .filter(|(k, _)| k.as_str().is_some_and(|k| keys.contains(&k)))
                        .cloned()
                        .collect(),
                ),
            },
            _ => self.clone(),
        }
    }

    fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(..) if self.is_null() => "null",
            NodeKind::Scalar(..) => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

fn is_null_text(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// An error with the position it belongs to (filled in by the innermost node that saw it).
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Option<Pos>,
    pub message: String,
}

impl YamlError {
    pub fn at(pos: Pos, message: impl Into<String>) -> YamlError {
        YamlError {
            pos: Some(pos),
            message: message.into(),
        }
    }
    fn located(mut self, pos: Pos) -> YamlError {
        self.pos.get_or_insert(pos);
        self
    }
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for YamlError {}

impl de::Error for YamlError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        YamlError {
            pos: None,
            message: msg.to_string(),
        }
    }
}

/// Parses one YAML document into a tree. An empty file is an empty mapping.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    // Events one at a time rather than `Parser::load`, which recurses once per nesting level:
    // 5,000 nested block mappings overflowed the stack before the depth limit could answer
    // (issue 9, tests/it/corpus.rs `deeply_nested_yaml_mappings`).
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let message = e.info().to_string();
            YamlError::at(Pos::from_marker(*e.marker()), message)
        })?;
        let end = event == Event::StreamEnd;
        builder.on_event(event, mark);
        if end || builder.error.is_some() {
            break;
        }
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    if builder.documents.len() > 1 {
        let pos = builder.documents[1].pos;
        return Err(YamlError::at(
            pos,
            "a file holds one YAML document; found a second `---`",
        ));
    }
    Ok(builder.documents.pop().unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        kind: NodeKind::Map(Vec::new()),
    }))
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<Node>),
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    documents: Vec<Node>,
    anchors: HashMap<usize, Node>,
    n_nodes: usize,
    error: Option<YamlError>,
}

impl TreeBuilder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        self.n_nodes += count_nodes(&node);
        if self.n_nodes > MAX_NODES && self.error.is_none() {
            self.error = Some(YamlError::at(
                node.pos,
                format!("the document expands to more than {MAX_NODES} nodes (alias bomb?)"),
            ));
        }
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            Some(Frame::Seq(_, _, items)) | Some(Frame::Map(_, _, items)) => items.push(node),
            None => self.documents.push(node),
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar(..) => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = Pos::from_marker(mark);
        match event {
            Event::Scalar(value, style, anchor, _tag) => {
                let style = match style {
                    TScalarStyle::Plain => ScalarStyle::Plain,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => ScalarStyle::Quoted,
                    TScalarStyle::Literal | TScalarStyle::Folded => ScalarStyle::Block,
                };
                self.push_node(
                    Node {
                        pos,
                        kind: NodeKind::Scalar(value, style),
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.error = Some(YamlError::at(
                        pos,
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                    return;
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(pos, anchor, Vec::new())
                } else {
                    Frame::Map(pos, anchor, Vec::new())
                };
                self.stack.push(frame);
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(pos, anchor, items)) = self.stack.pop() {
                    self.push_node(
                        Node {
                            pos,
                            kind: NodeKind::Seq(items),
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(pos, anchor, items)) = self.stack.pop() {
                    let mut entries = Vec::with_capacity(items.len() / 2);
                    let mut iter = items.into_iter();
                    while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
                        if let Some(name) = k.as_str()
                            && entries
                                .iter()
                                .any(|(seen, _): &(Node, Node)| seen.as_str() == Some(name))
                        {
                            self.error =
                                Some(YamlError::at(k.pos, format!("duplicate key `{name}`")));
                            return;
                        }
                        entries.push((k, v));
                    }
                    // yaml-rust2 marks a block mapping at its first `:`; users read the
                    // mapping as starting at its first key.
                    let pos = entries.first().map_or(pos, |(k, _)| k.pos.min(pos));
                    self.push_node(
                        Node {
                            pos,
                            kind: NodeKind::Map(entries),
                        },
                        anchor,
                    );
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    node.pos = pos;
                    self.push_node(node, 0);
                }
                None => self.error = Some(YamlError::at(pos, "unknown alias")),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Deserializes `T` from a node; errors carry the position of the node they concern.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node) -> Result<T, YamlError> {
    T::deserialize(NodeDe { node }).map_err(|e| e.located(node.pos))
}

/// A serde deserializer over one node.
#[derive(Clone, Copy)]
pub struct NodeDe<'a> {
    pub node: &'a Node,
}

impl<'a> NodeDe<'a> {
    fn scalar(&self) -> Result<&'a str, YamlError> {
        match &self.node.kind {
            NodeKind::Scalar(s, _) => Ok(s),
            _ => Err(YamlError::at(
                self.node.pos,
                format!("expected a scalar, found {}", self.node.kind_name()),
            )),
        }
    }

    fn invalid<T>(&self, expected: &dyn de::Expected) -> Result<T, YamlError> {
        let unexpected = match &self.node.kind {
            NodeKind::Scalar(s, _) if self.node.is_null() => {
                let _ = s;
                de::Unexpected::Unit
            }
            NodeKind::Scalar(s, _) => de::Unexpected::Str(s),
            NodeKind::Seq(_) => de::Unexpected::Seq,
            NodeKind::Map(_) => de::Unexpected::Map,
        };
        Err(de::Error::invalid_type(unexpected, expected))
    }

    fn number<T: std::str::FromStr>(&self, what: &'static str) -> Result<T, YamlError> {
        let text = self.scalar()?;
        let cleaned = text.replace('_', "");
        cleaned.trim().parse::<T>().map_err(|_| {
            YamlError::at(
                self.node.pos,
                format!("invalid value `{text}`, expected {what}"),
            )
        })
    }
}

macro_rules! number_method {
    ($method:ident, $visit:ident, $ty:ty, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
            let value: $ty = self.number($what)?;
            visitor
                .$visit(value)
                .map_err(|e: YamlError| e.located(self.node.pos))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = YamlError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        let pos = self.node.pos;
        let result = match &self.node.kind {
            NodeKind::Scalar(s, ScalarStyle::Plain) => {
                if is_null_text(s) {
                    visitor.visit_unit()
                } else if let Some(b) = parse_bool(s) {
                    visitor.visit_bool(b)
                } else if let Ok(i) = s.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Ok(u) = s.parse::<u64>() {
                    visitor.visit_u64(u)
                } else if let Some(f) = parse_float(s) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_borrowed_str(s)
                }
            }
            NodeKind::Scalar(s, _) => visitor.visit_borrowed_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe { iter: items.iter() }),
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                iter: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|e| e.located(pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        match parse_bool(self.scalar()?) {
            Some(b) => visitor.visit_bool(b),
            None => self.invalid(&visitor),
        }
        .map_err(|e| e.located(self.node.pos))
    }

    number_method!(deserialize_i8, visit_i8, i8, "an integer");
    number_method!(deserialize_i16, visit_i16, i16, "an integer");
    number_method!(deserialize_i32, visit_i32, i32, "an integer");
    number_method!(deserialize_i64, visit_i64, i64, "an integer");
    number_method!(deserialize_u8, visit_u8, u8, "a non-negative integer");
    number_method!(deserialize_u16, visit_u16, u16, "a non-negative integer");
    number_method!(deserialize_u32, visit_u32, u32, "a non-negative integer");
    number_method!(deserialize_u64, visit_u64, u64, "a non-negative integer");

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        let text = self.scalar()?;
        match parse_float(text).or_else(|| text.parse::<f64>().ok()) {
            Some(f) => visitor
                .visit_f64(f)
                .map_err(|e: YamlError| e.located(self.node.pos)),
            None => Err(YamlError::at(
                self.node.pos,
                format!("invalid value `{text}`, expected a number"),
            )),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        if self.node.is_null() {
            return self.invalid(&visitor);
        }
        match &self.node.kind {
            NodeKind::Scalar(s, _) => visitor.visit_borrowed_str(s),
            _ => self.invalid(&visitor),
        }
        .map_err(|e| e.located(self.node.pos))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.invalid(&visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.invalid(&visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        if self.node.is_null() {
            visitor.visit_unit()
        } else {
            self.invalid(&visitor)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqDe { iter: items.iter() }),
            _ => self.invalid(&visitor),
        }
        .map_err(|e| e.located(self.node.pos))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapDe {
                iter: entries.iter(),
                value: None,
            }),
            _ => self.invalid(&visitor),
        }
        .map_err(|e| e.located(self.node.pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        let pos = self.node.pos;
        match &self.node.kind {
            NodeKind::Scalar(..) => visitor.visit_enum(EnumDe {
                tag: self.node,
                content: None,
            }),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (tag, content) = &entries[0];
                visitor.visit_enum(EnumDe {
                    tag,
                    content: Some(content),
                })
            }
            _ => self.invalid(&visitor),
        }
        .map_err(|e| e.located(pos))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        visitor.visit_unit()
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => {
            let looks_numeric = s
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit() || b"+-.".contains(&b))
                && s.bytes().any(|b| b.is_ascii_digit());
            if looks_numeric {
                s.parse::<f64>().ok()
            } else {
                None
            }
        }
    }
}

struct SeqDe<'a> {
    iter: std::slice::Iter<'a, Node>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de> {
    type Error = YamlError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, YamlError> {
        match self.iter.next() {
            Some(node) => seed
                .deserialize(NodeDe { node })
                .map(Some)
                .map_err(|e| e.located(node.pos)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapDe<'a> {
    iter: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> de::MapAccess<'de> for MapDe<'de> {
    type Error = YamlError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, YamlError> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(NodeDe { node: key })
                    .map(Some)
                    .map_err(|e| e.located(key.pos))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, YamlError> {
        let node = self.value.take().ok_or_else(|| {
            <YamlError as de::Error>::custom("value requested before key (this is a bug)")
        })?;
        seed.deserialize(NodeDe { node })
            .map_err(|e| e.located(node.pos))
    }
}

struct EnumDe<'a> {
    tag: &'a Node,
    content: Option<&'a Node>,
}

impl<'de> de::EnumAccess<'de> for EnumDe<'de> {
    type Error = YamlError;
    type Variant = VariantDe<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'de>), YamlError> {
        let tag = self
            .tag
            .as_str()
            .ok_or_else(|| YamlError::at(self.tag.pos, "expected a name"))?;
        let value = seed
            .deserialize(tag.into_deserializer())
            .map_err(|e: YamlError| e.located(self.tag.pos))?;
        Ok((
            value,
            VariantDe {
                tag: self.tag,
                content: self.content,
            },
        ))
    }
}

struct VariantDe<'a> {
    tag: &'a Node,
    content: Option<&'a Node>,
}

impl<'de> de::VariantAccess<'de> for VariantDe<'de> {
    type Error = YamlError;

    fn unit_variant(self) -> Result<(), YamlError> {
        match self.content {
            None => Ok(()),
            Some(node) if node.is_null() => Ok(()),
            Some(node) => Err(YamlError::at(node.pos, "this variant takes no value")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, YamlError> {
        let node = self
            .content
            .ok_or_else(|| YamlError::at(self.tag.pos, "this variant needs a value"))?;
        seed.deserialize(NodeDe { node })
            .map_err(|e| e.located(node.pos))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        let node = self
            .content
            .ok_or_else(|| YamlError::at(self.tag.pos, "this variant needs a list"))?;
        de::Deserializer::deserialize_seq(NodeDe { node }, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, YamlError> {
        let node = self
            .content
            .ok_or_else(|| YamlError::at(self.tag.pos, "this variant needs a mapping"))?;
        de::Deserializer::deserialize_map(NodeDe { node }, visitor)
    }
}

/// Deserializes a kind-tagged mapping (`kind: sql` plus the kind's own fields) as the
/// externally tagged enum `T`, so that every error inside keeps its position (serde's own
/// internally tagged enums buffer the content and lose it).
pub fn from_tagged_node<'de, T: de::Deserialize<'de>>(
    tag: &'de Node,
    content: &'de Node,
) -> Result<T, YamlError> {
    T::deserialize(TaggedDe { tag, content })
}

struct TaggedDe<'a> {
    tag: &'a Node,
    content: &'a Node,
}

impl<'de> de::Deserializer<'de> for TaggedDe<'de> {
    type Error = YamlError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, YamlError> {
        visitor.visit_enum(EnumDe {
            tag: self.tag,
            content: Some(self.content),
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        count: u32,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[test]
    fn positions_point_at_the_offending_node() {
        let text = "items:\n  - name: a\n    count: 1\n  - name: b\n    count: many\n";
        let root = parse(text).unwrap();
        let items = root.get("items").unwrap();
        let NodeKind::Seq(list) = &items.kind else {
            panic!("expected a list")
        };
        let first: Item = from_node(&list[0]).unwrap();
        assert_eq!(
            first,
            Item {
                name: "a".into(),
                count: 1,
                tags: vec![]
            }
        );
        let err = from_node::<Item>(&list[1]).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 5, col: 12 }));
        assert!(
            err.message.contains("expected a non-negative integer"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_field_points_at_the_key() {
        let root = parse("name: a\ncount: 2\ncuont: 3\n").unwrap();
        let err = from_node::<Item>(&root).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 3, col: 1 }));
        assert!(
            err.message.starts_with("unknown field `cuont`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_field_points_at_the_mapping() {
        let root = parse("x:\n  name: a\n").unwrap();
        let err = from_node::<Item>(root.get("x").unwrap()).unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 2, col: 3 }));
        assert_eq!(err.message, "missing field `count`");
    }

    #[test]
    fn duplicate_keys_and_bombs_and_depth_are_refused() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(
            (err.pos, err.message.as_str()),
            (Some(Pos { line: 2, col: 1 }), "duplicate key `a`")
        );
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..6 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            bomb.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse(&bomb).unwrap_err().message.contains("alias bomb"));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(&deep).unwrap_err().message.contains("nesting deeper"));
    }

    #[test]
    fn plain_scalars_resolve_like_yaml_core_schema() {
        let root = parse("a: 12\nb: true\nc: 1.5\nd: ~\ne: '12'\n").unwrap();
        let value: std::collections::BTreeMap<String, serde_json::Value> =
            from_node(&root).unwrap();
        assert_eq!(value["a"], serde_json::json!(12));
        assert_eq!(value["b"], serde_json::json!(true));
        assert_eq!(value["c"], serde_json::json!(1.5));
        assert_eq!(value["d"], serde_json::Value::Null);
        assert_eq!(value["e"], serde_json::json!("12"));
    }
}
