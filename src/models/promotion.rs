//! Promotion gates: a small expression language deciding whether a newly trained model version
//! may take over an alias (e.g. `champion`), parsed and type-checked at `nightjar validate` time
//! and evaluated after training against the holdout metrics of both versions.
//!
//! ```text
//! promote: {alias: champion, when: "auc >= 0.70 and auc >= champion.auc - 0.005"}
//! ```
//!
//! # Language
//!
//! ```text
//! expr    := or
//! or      := and ('or' and)*
//! and     := not ('and' not)*
//! not     := 'not' not | cmp
//! cmp     := sum (cmpop sum)?           cmpop: >= <= > < == !=
//! sum     := product (('+'|'-') product)*
//! product := unary (('*'|'/') unary)*
//! unary   := '-' unary | atom
//! atom    := number | 'true' | 'false' | func '(' sum (',' sum)* ')' | ident ('.' ident)? | '(' expr ')'
//! func    := abs (1 argument) | min | max (2 or more arguments)
//! number  := digits ['.' digits] [('e'|'E') ['+'|'-'] digits]
//! ```
//!
//! - Keywords (`and`, `or`, `not`, `true`, `false`) are lowercase; function names (`abs`, `min`,
//!   `max`) are reserved and cannot be bare metric names (they can after an alias:
//!   `champion.max`). A number needs a digit before its point: `.5` is rejected (write `0.5`) so
//!   that a stray `.` after a metric is never silently read as a number.
//! - Two types, number and condition (boolean), checked at parse time: `and`/`or`/`not` and the
//!   whole gate need conditions; arithmetic, function arguments and both sides of a comparison
//!   (including `==`/`!=`) need numbers; comparisons do not chain (`a < b < c` is an error).
//! - `metric` is the new version's metric; `alias.metric` is the metric of the version that alias
//!   currently points to. Any alias name is accepted; metric names are checked separately by
//!   [`Expr::check_metrics`] because the known set depends on the task.
//! - Limits, so that hostile or fuzzed input errors instead of overflowing the stack: at most
//!   [`MAX_CHARS`] characters, [`MAX_NESTING`] levels of parentheses / `not` / unary minus /
//!   function calls, and an operator tree at most [`MAX_HEIGHT`] levels high (long `and` chains).
//! - Error offsets are 0-based character (not byte) offsets; `ParseError` displays 1-based columns.
//!
//! # Evaluation
//!
//! - Every variable is looked up once; `None` means the alias points to no version yet or the
//!   metric is missing. A comparison whose operands depend on any such variable evaluates to
//!   **true** ("passes"): this is how the first version is promoted when there is no champion.
//!   The rule applies to the comparison itself, so `not (champion.auc > auc)` with no champion is
//!   false: write requirements as positive comparisons.
//! - A comparison with a NaN operand is false, for every operator including `!=`.
//! - Arithmetic is IEEE (division by zero gives ±inf or NaN).
//! - `and`/`or`/`not` are plain boolean logic; every comparison is evaluated (no short-circuit) so
//!   the explanation always shows all of them.
//! - The explanation is the canonical form of the gate with each comparison followed by its
//!   values and result, e.g. `auc >= 0.7 (0.8985 >= 0.7: true)`. Numbers are printed with at most
//!   4 decimals (or 4 significant digits in scientific notation when tiny or huge), except when two
//!   different values would print the same, in which case both are printed in full.

use std::collections::BTreeMap;
use std::fmt;

/// Longest accepted gate, in characters.
pub const MAX_CHARS: usize = 4096;
/// Deepest accepted nesting of parentheses, `not`, unary minus and function calls.
pub const MAX_NESTING: usize = 64;
/// Highest accepted operator tree; bounds the recursion of display and evaluation.
pub const MAX_HEIGHT: usize = 256;

/// A parse, type or metric error at a character offset of the gate text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character offset into the text.
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A metric of the new version (`alias: None`) or of the version an alias points to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variable {
    pub alias: Option<String>,
    pub metric: String,
}

impl Variable {
    /// `auc` or `champion.auc`, as written in the gate.
    pub fn key(&self) -> String {
        match &self.alias {
            Some(alias) => format!("{alias}.{}", self.metric),
            None => self.metric.clone(),
        }
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// The outcome of a gate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    pub passed: bool,
    /// Every variable's value as looked up (None: the alias points to no version, or the metric
    /// is missing).
    pub inputs: BTreeMap<String, Option<f64>>,
    /// Each comparison with its values and result, e.g.
    /// "auc >= 0.7 (0.8985 >= 0.7: true) and auc >= champion.auc - 0.005 (no value for champion.auc: passes)".
    pub explanation: String,
}

/// A parsed, type-checked gate. Equality is structural: it ignores the source text, spacing,
/// redundant parentheses and offsets, so `parse(&e.to_string()) == e`.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    root: Node,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Ge,
    Le,
    Gt,
    Lt,
    Eq,
    Ne,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Ge => ">=",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Lt => "<",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }

    fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Ge => a >= b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Lt => a < b,
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    fn prec(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => PREC_SUM,
            ArithOp::Mul | ArithOp::Div => PREC_PRODUCT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Abs,
    Min,
    Max,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        match name {
            "abs" => Some(Func::Abs),
            "min" => Some(Func::Min),
            "max" => Some(Func::Max),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Min => "min",
            Func::Max => "max",
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Num(f64),
    Bool(bool),
    Var {
        var: Variable,
        offset: usize,
    },
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith {
        op: ArithOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Cmp {
        op: CmpOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Call {
        func: Func,
        args: Vec<Node>,
    },
}

// Offsets are deliberately ignored: two spellings of the same gate are the same gate.
impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Node::Num(a), Node::Num(b)) => a.to_bits() == b.to_bits(),
            (Node::Bool(a), Node::Bool(b)) => a == b,
            (Node::Var { var: a, .. }, Node::Var { var: b, .. }) => a == b,
            (Node::Neg(a), Node::Neg(b)) | (Node::Not(a), Node::Not(b)) => a == b,
            (
                Node::Arith {
                    op: o1,
                    lhs: l1,
                    rhs: r1,
                },
                Node::Arith {
                    op: o2,
                    lhs: l2,
                    rhs: r2,
                },
            ) => o1 == o2 && l1 == l2 && r1 == r2,
            (
                Node::Cmp {
                    op: o1,
                    lhs: l1,
                    rhs: r1,
                },
                Node::Cmp {
                    op: o2,
                    lhs: l2,
                    rhs: r2,
                },
            ) => o1 == o2 && l1 == l2 && r1 == r2,
            (Node::And(l1, r1), Node::And(l2, r2)) | (Node::Or(l1, r1), Node::Or(l2, r2)) => {
                l1 == l2 && r1 == r2
            }
            (Node::Call { func: f1, args: a1 }, Node::Call { func: f2, args: a2 }) => {
                f1 == f2 && a1 == a2
            }
            _ => false,
        }
    }
}

const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_NOT: u8 = 3;
const PREC_CMP: u8 = 4;
const PREC_SUM: u8 = 5;
const PREC_PRODUCT: u8 = 6;
const PREC_UNARY: u8 = 7;
const PREC_ATOM: u8 = 8;

impl Node {
    fn prec(&self) -> u8 {
        match self {
            Node::Or(..) => PREC_OR,
            Node::And(..) => PREC_AND,
            Node::Not(_) => PREC_NOT,
            Node::Cmp { .. } => PREC_CMP,
            Node::Arith { op, .. } => op.prec(),
            Node::Neg(_) => PREC_UNARY,
            Node::Num(_) | Node::Bool(_) | Node::Var { .. } | Node::Call { .. } => PREC_ATOM,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    And,
    Or,
    Not,
    True,
    False,
    Cmp(CmpOp),
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    Comma,
    Dot,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("number `{}`", format_literal(*n)),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::And => "`and`".into(),
            Tok::Or => "`or`".into(),
            Tok::Not => "`not`".into(),
            Tok::True => "`true`".into(),
            Tok::False => "`false`".into(),
            Tok::Cmp(op) => format!("`{}`", op.symbol()),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Star => "`*`".into(),
            Tok::Slash => "`/`".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
        }
    }
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        offset,
        message: message.into(),
    })
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn lex(chars: &[char]) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut toks = Vec::new();
    let mut i = 0;
    let at = |j: usize| chars.get(j).copied();
    while let Some(c) = at(i) {
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            i = lex_number(chars, i, &mut toks)?;
            continue;
        }
        if is_ident_start(c) {
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = match word.as_str() {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                "true" => Tok::True,
                "false" => Tok::False,
                _ => Tok::Ident(word),
            };
            toks.push((tok, start));
            continue;
        }
        let next = at(i + 1);
        let (tok, len) = match (c, next) {
            ('>', Some('=')) => (Tok::Cmp(CmpOp::Ge), 2),
            ('<', Some('=')) => (Tok::Cmp(CmpOp::Le), 2),
            ('=', Some('=')) => (Tok::Cmp(CmpOp::Eq), 2),
            ('!', Some('=')) => (Tok::Cmp(CmpOp::Ne), 2),
            ('>', _) => (Tok::Cmp(CmpOp::Gt), 1),
            ('<', _) => (Tok::Cmp(CmpOp::Lt), 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('.', Some(d)) if d.is_ascii_digit() => {
                return err(
                    start,
                    "bad number: write a digit before the point (`0.5`, not `.5`)",
                );
            }
            ('.', _) => (Tok::Dot, 1),
            ('=', _) => return err(start, "unexpected `=`: use `==` to compare"),
            ('!', _) => return err(start, "unexpected `!`: use `not` or `!=`"),
            ('&', _) => return err(start, "unexpected `&`: use `and`"),
            ('|', _) => return err(start, "unexpected `|`: use `or`"),
            _ => return err(start, format!("unexpected character {c:?}")),
        };
        toks.push((tok, start));
        i += len;
    }
    Ok(toks)
}

fn lex_number(
    chars: &[char],
    start: usize,
    toks: &mut Vec<(Tok, usize)>,
) -> Result<usize, ParseError> {
    let at = |j: usize| chars.get(j).copied();
    let digit = |j: usize| at(j).is_some_and(|c| c.is_ascii_digit());
    let mut i = start;
    while digit(i) {
        i += 1;
    }
    if at(i) == Some('.') {
        if !digit(i + 1) {
            return err(start, "bad number: a digit must follow the decimal point");
        }
        i += 1;
        while digit(i) {
            i += 1;
        }
    }
    if matches!(at(i), Some('e' | 'E')) {
        i += 1;
        if matches!(at(i), Some('+' | '-')) {
            i += 1;
        }
        if !digit(i) {
            return err(start, "bad number: the exponent needs digits");
        }
        while digit(i) {
            i += 1;
        }
    }
    if at(i).is_some_and(|c| is_ident_char(c) || c == '.') {
        return err(start, "bad number: unexpected character after the number");
    }
    let text: String = chars[start..i].iter().collect();
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => {
            toks.push((Tok::Num(v), start));
            Ok(i)
        }
        _ => err(start, format!("bad number: `{text}` is out of range")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Num,
    Bool,
}

struct Parsed {
    node: Node,
    ty: Ty,
    start: usize,
    height: usize,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    nesting: usize,
}

const OPERAND: &str = "a number, metric, function call, `true`, `false`, `not`, `-` or `(`";

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, o)| *o)
    }

    fn bump(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn enter(&mut self, offset: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return err(
                offset,
                format!("expression is nested more than {MAX_NESTING} levels deep"),
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    fn unexpected<T>(&self, expected: &str) -> Result<T, ParseError> {
        match self.toks.get(self.pos) {
            None => err(
                self.end,
                format!("unexpected end of input: expected {expected}"),
            ),
            Some((Tok::RParen, o)) if self.nesting == 0 => {
                err(*o, "unbalanced parentheses: `)` without a matching `(`")
            }
            Some((Tok::Ident(word), o)) if is_keyword(&word.to_ascii_lowercase()) => err(
                *o,
                format!(
                    "unexpected `{word}`: keywords are lowercase (`{}`)",
                    word.to_ascii_lowercase()
                ),
            ),
            Some((t, o)) => err(
                *o,
                format!("unexpected {}: expected {expected}", t.describe()),
            ),
        }
    }

    fn node(&self, node: Node, ty: Ty, start: usize, height: usize) -> Result<Parsed, ParseError> {
        if height > MAX_HEIGHT {
            return err(
                start,
                format!("expression is too complex: more than {MAX_HEIGHT} levels of operators"),
            );
        }
        Ok(Parsed {
            node,
            ty,
            start,
            height,
        })
    }

    fn expect_bool(p: &Parsed, what: &str) -> Result<(), ParseError> {
        if p.ty != Ty::Bool {
            return err(
                p.start,
                format!("{what} needs a condition (e.g. `auc >= 0.7`), not a number"),
            );
        }
        Ok(())
    }

    fn expect_num(p: &Parsed, what: &str) -> Result<(), ParseError> {
        if p.ty != Ty::Num {
            return err(p.start, format!("{what} needs a number, not a condition"));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Parsed, ParseError> {
        let mut lhs = self.parse_and()?;
        while self.peek() == Some(&Tok::Or) {
            Self::expect_bool(&lhs, "`or`")?;
            self.pos += 1;
            let rhs = self.parse_and()?;
            Self::expect_bool(&rhs, "`or`")?;
            let height = 1 + lhs.height.max(rhs.height);
            lhs = self.node(
                Node::Or(Box::new(lhs.node), Box::new(rhs.node)),
                Ty::Bool,
                lhs.start,
                height,
            )?;
        }
        Ok(lhs)
    }

    fn parse_and(&mut self) -> Result<Parsed, ParseError> {
        let mut lhs = self.parse_not()?;
        while self.peek() == Some(&Tok::And) {
            Self::expect_bool(&lhs, "`and`")?;
            self.pos += 1;
            let rhs = self.parse_not()?;
            Self::expect_bool(&rhs, "`and`")?;
            let height = 1 + lhs.height.max(rhs.height);
            lhs = self.node(
                Node::And(Box::new(lhs.node), Box::new(rhs.node)),
                Ty::Bool,
                lhs.start,
                height,
            )?;
        }
        Ok(lhs)
    }

    fn parse_not(&mut self) -> Result<Parsed, ParseError> {
        if self.peek() == Some(&Tok::Not) {
            let start = self.offset();
            self.enter(start)?;
            self.pos += 1;
            let inner = self.parse_not()?;
            self.leave();
            Self::expect_bool(&inner, "`not`")?;
            let height = 1 + inner.height;
            return self.node(Node::Not(Box::new(inner.node)), Ty::Bool, start, height);
        }
        self.parse_cmp()
    }

    fn parse_cmp(&mut self) -> Result<Parsed, ParseError> {
        let lhs = self.parse_sum()?;
        let Some(Tok::Cmp(op)) = self.peek().cloned() else {
            return Ok(lhs);
        };
        Self::expect_num(&lhs, &format!("the left side of `{}`", op.symbol()))?;
        self.pos += 1;
        let rhs = self.parse_sum()?;
        Self::expect_num(&rhs, &format!("the right side of `{}`", op.symbol()))?;
        if let Some(Tok::Cmp(op2)) = self.peek() {
            return err(
                self.offset(),
                format!(
                    "comparisons cannot be chained: write `a {} b and b {} c`",
                    op.symbol(),
                    op2.symbol()
                ),
            );
        }
        let height = 1 + lhs.height.max(rhs.height);
        self.node(
            Node::Cmp {
                op,
                lhs: Box::new(lhs.node),
                rhs: Box::new(rhs.node),
            },
            Ty::Bool,
            lhs.start,
            height,
        )
    }

    fn parse_sum(&mut self) -> Result<Parsed, ParseError> {
        let mut lhs = self.parse_product()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => ArithOp::Add,
                Some(Tok::Minus) => ArithOp::Sub,
                _ => return Ok(lhs),
            };
            lhs = self.arith(lhs, op, Self::parse_product)?;
        }
    }

    fn parse_product(&mut self) -> Result<Parsed, ParseError> {
        let mut lhs = self.parse_unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => ArithOp::Mul,
                Some(Tok::Slash) => ArithOp::Div,
                _ => return Ok(lhs),
            };
            lhs = self.arith(lhs, op, Self::parse_unary)?;
        }
    }

    fn arith(
        &mut self,
        lhs: Parsed,
        op: ArithOp,
        operand: fn(&mut Self) -> Result<Parsed, ParseError>,
    ) -> Result<Parsed, ParseError> {
        Self::expect_num(&lhs, &format!("`{}`", op.symbol()))?;
        self.pos += 1;
        let rhs = operand(self)?;
        Self::expect_num(&rhs, &format!("`{}`", op.symbol()))?;
        let height = 1 + lhs.height.max(rhs.height);
        self.node(
            Node::Arith {
                op,
                lhs: Box::new(lhs.node),
                rhs: Box::new(rhs.node),
            },
            Ty::Num,
            lhs.start,
            height,
        )
    }

    fn parse_unary(&mut self) -> Result<Parsed, ParseError> {
        if self.peek() == Some(&Tok::Minus) {
            let start = self.offset();
            self.enter(start)?;
            self.pos += 1;
            let inner = self.parse_unary()?;
            self.leave();
            Self::expect_num(&inner, "unary `-`")?;
            let height = 1 + inner.height;
            return self.node(Node::Neg(Box::new(inner.node)), Ty::Num, start, height);
        }
        self.parse_atom()
    }

    fn parse_atom(&mut self) -> Result<Parsed, ParseError> {
        let start = self.offset();
        let Some(tok) = self.peek().cloned() else {
            return self.unexpected(OPERAND);
        };
        match tok {
            Tok::Num(v) => {
                self.pos += 1;
                self.node(Node::Num(v), Ty::Num, start, 1)
            }
            Tok::True | Tok::False => {
                self.pos += 1;
                self.node(Node::Bool(tok == Tok::True), Ty::Bool, start, 1)
            }
            Tok::LParen => {
                self.enter(start)?;
                self.pos += 1;
                let mut inner = self.parse_or()?;
                if !self.eat(&Tok::RParen) {
                    if self.peek().is_none() {
                        return err(
                            self.end,
                            format!(
                                "unbalanced parentheses: `(` at column {} is not closed",
                                start + 1
                            ),
                        );
                    }
                    return self.unexpected("`)` or an operator");
                }
                self.leave();
                // The parenthesised expression starts at the `(` for error reporting.
                inner.start = start;
                Ok(inner)
            }
            Tok::Ident(name) => {
                self.pos += 1;
                if self.peek() == Some(&Tok::LParen) {
                    return self.parse_call(&name, start);
                }
                if let Some(func) = Func::from_name(&name) {
                    return err(
                        start,
                        format!(
                            "`{}` is a function: call it as `{}(...)`",
                            func.name(),
                            func.name()
                        ),
                    );
                }
                let var = if self.eat(&Tok::Dot) {
                    match self.bump() {
                        Some((Tok::Ident(metric), _)) => Variable {
                            alias: Some(name),
                            metric,
                        },
                        Some((t, o)) => {
                            return err(
                                o,
                                format!(
                                    "unexpected {} after `{name}.`: expected a metric name",
                                    t.describe()
                                ),
                            );
                        }
                        None => {
                            return err(
                                self.end,
                                format!(
                                    "unexpected end of input after `{name}.`: expected a metric name"
                                ),
                            );
                        }
                    }
                } else {
                    Variable {
                        alias: None,
                        metric: name,
                    }
                };
                self.node(Node::Var { var, offset: start }, Ty::Num, start, 1)
            }
            _ => self.unexpected(OPERAND),
        }
    }

    fn parse_call(&mut self, name: &str, start: usize) -> Result<Parsed, ParseError> {
        let Some(func) = Func::from_name(name) else {
            return err(
                start,
                format!("unknown function `{name}` (functions: abs, min, max)"),
            );
        };
        self.enter(start)?;
        self.pos += 1; // `(`
        let mut args = Vec::new();
        let mut height = 0;
        if self.peek() != Some(&Tok::RParen) {
            loop {
                // A full expression so that `abs(a > 1)` gets a type error rather than a syntax error.
                let arg = self.parse_or()?;
                Self::expect_num(&arg, &format!("an argument of `{name}`"))?;
                height = height.max(arg.height);
                args.push(arg.node);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        if !self.eat(&Tok::RParen) {
            if self.peek().is_none() {
                return err(
                    self.end,
                    format!(
                        "unbalanced parentheses: `(` at column {} is not closed",
                        start + name.chars().count() + 1
                    ),
                );
            }
            return self.unexpected("`,`, `)` or an operator");
        }
        self.leave();
        let n = args.len();
        match func {
            Func::Abs if n != 1 => {
                return err(start, format!("`abs` takes 1 argument, got {n}"));
            }
            Func::Min | Func::Max if n < 2 => {
                return err(
                    start,
                    format!("`{name}` takes at least 2 arguments, got {n}"),
                );
            }
            _ => {}
        }
        self.node(Node::Call { func, args }, Ty::Num, start, height + 1)
    }
}

fn is_keyword(word: &str) -> bool {
    matches!(word, "and" | "or" | "not" | "true" | "false")
}

/// Parses and type-checks a gate; the result must be a condition.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.chars().nth(MAX_CHARS).is_some() {
        return err(
            MAX_CHARS,
            format!("expression is longer than {MAX_CHARS} characters"),
        );
    }
    let chars: Vec<char> = text.chars().collect();
    let toks = lex(&chars)?;
    if toks.is_empty() {
        return err(
            0,
            "empty expression: expected a condition such as `auc >= 0.7`",
        );
    }
    let mut parser = Parser {
        toks,
        pos: 0,
        end: chars.len(),
        nesting: 0,
    };
    let parsed = parser.parse_or()?;
    if let Some((tok, offset)) = parser.toks.get(parser.pos) {
        if *tok == Tok::RParen {
            return err(
                *offset,
                "unbalanced parentheses: `)` without a matching `(`",
            );
        }
        if let Tok::Ident(word) = tok
            && is_keyword(&word.to_ascii_lowercase())
        {
            return err(
                *offset,
                format!(
                    "unexpected `{word}`: keywords are lowercase (`{}`)",
                    word.to_ascii_lowercase()
                ),
            );
        }
        return err(
            *offset,
            format!(
                "unexpected {} after the end of the expression",
                tok.describe()
            ),
        );
    }
    if parsed.ty != Ty::Bool {
        return err(
            0,
            "a gate must be a condition (e.g. `auc >= 0.7`), but this is a number",
        );
    }
    Ok(Expr {
        source: text.to_string(),
        root: parsed.node,
    })
}

// ---------------------------------------------------------------------------------------------
// Display

/// Shortest text that parses back to exactly this (finite, non-negative) literal.
fn format_literal(v: f64) -> String {
    let s = format!("{v:?}");
    match s.strip_suffix(".0") {
        Some(int) => int.to_string(),
        None => s,
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        render(self, f, None)
    }
}

/// Writes the canonical form; with `annotations`, each comparison is followed by its evaluation,
/// consumed in the same left-to-right order in which `Evaluator::boolean` produced them.
fn render(
    node: &Node,
    f: &mut fmt::Formatter<'_>,
    mut annotations: Option<&mut std::slice::Iter<'_, String>>,
) -> fmt::Result {
    let prec = node.prec();
    let child = |f: &mut fmt::Formatter<'_>,
                 c: &Node,
                 min: u8,
                 ann: &mut Option<&mut std::slice::Iter<'_, String>>| {
        let paren = c.prec() < min;
        if paren {
            f.write_str("(")?;
        }
        render(c, f, ann.as_deref_mut())?;
        if paren {
            f.write_str(")")?;
        }
        Ok(())
    };
    match node {
        Node::Num(v) => f.write_str(&format_literal(*v)),
        Node::Bool(b) => write!(f, "{b}"),
        Node::Var { var, .. } => write!(f, "{var}"),
        Node::Neg(inner) => {
            f.write_str("-")?;
            child(f, inner, PREC_UNARY, &mut annotations)
        }
        Node::Not(inner) => {
            f.write_str("not ")?;
            child(f, inner, PREC_NOT, &mut annotations)
        }
        Node::Arith { op, lhs, rhs } => {
            // Left-associative: an equal-precedence right operand keeps its parentheses.
            child(f, lhs, prec, &mut annotations)?;
            write!(f, " {} ", op.symbol())?;
            child(f, rhs, prec + 1, &mut annotations)
        }
        Node::Cmp { op, lhs, rhs } => {
            child(f, lhs, PREC_SUM, &mut annotations)?;
            write!(f, " {} ", op.symbol())?;
            child(f, rhs, PREC_SUM, &mut annotations)?;
            if let Some(ann) = annotations.as_deref_mut()
                && let Some(text) = ann.next()
            {
                write!(f, " ({text})")?;
            }
            Ok(())
        }
        Node::And(lhs, rhs) | Node::Or(lhs, rhs) => {
            child(f, lhs, prec, &mut annotations)?;
            f.write_str(if matches!(node, Node::And(..)) {
                " and "
            } else {
                " or "
            })?;
            child(f, rhs, prec + 1, &mut annotations)
        }
        Node::Call { func, args } => {
            write!(f, "{}(", func.name())?;
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                child(f, arg, PREC_SUM, &mut annotations)?;
            }
            f.write_str(")")
        }
    }
}

impl fmt::Display for Expr {
    /// The canonical form: single spaces, minimal parentheses, shortest number literals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)
    }
}

// ---------------------------------------------------------------------------------------------
// Variables, metric checking and evaluation

fn collect_vars<'a>(node: &'a Node, out: &mut Vec<(&'a Variable, usize)>) {
    match node {
        Node::Num(_) | Node::Bool(_) => {}
        Node::Var { var, offset } => {
            if !out.iter().any(|(v, _)| *v == var) {
                out.push((var, *offset));
            }
        }
        Node::Neg(a) | Node::Not(a) => collect_vars(a, out),
        Node::Arith { lhs, rhs, .. } | Node::Cmp { lhs, rhs, .. } => {
            collect_vars(lhs, out);
            collect_vars(rhs, out);
        }
        Node::And(lhs, rhs) | Node::Or(lhs, rhs) => {
            collect_vars(lhs, out);
            collect_vars(rhs, out);
        }
        Node::Call { args, .. } => args.iter().for_each(|a| collect_vars(a, out)),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A number that may depend on a variable without a value.
struct NumValue {
    value: f64,
    missing: Vec<String>,
}

struct Evaluator<'a> {
    values: &'a BTreeMap<String, Option<f64>>,
    annotations: Vec<String>,
}

impl Evaluator<'_> {
    fn num(&self, node: &Node) -> NumValue {
        let binary = |a: NumValue, b: NumValue, f: fn(f64, f64) -> f64| {
            let mut missing = a.missing;
            for m in b.missing {
                if !missing.contains(&m) {
                    missing.push(m);
                }
            }
            NumValue {
                value: f(a.value, b.value),
                missing,
            }
        };
        match node {
            Node::Num(v) => NumValue {
                value: *v,
                missing: Vec::new(),
            },
            Node::Var { var, .. } => {
                let key = var.key();
                match self.values.get(&key).copied().flatten() {
                    Some(value) => NumValue {
                        value,
                        missing: Vec::new(),
                    },
                    None => NumValue {
                        value: f64::NAN,
                        missing: vec![key],
                    },
                }
            }
            Node::Neg(a) => {
                let a = self.num(a);
                NumValue {
                    value: -a.value,
                    missing: a.missing,
                }
            }
            Node::Arith { op, lhs, rhs } => {
                let f: fn(f64, f64) -> f64 = match op {
                    ArithOp::Add => |a, b| a + b,
                    ArithOp::Sub => |a, b| a - b,
                    ArithOp::Mul => |a, b| a * b,
                    ArithOp::Div => |a, b| a / b,
                };
                binary(self.num(lhs), self.num(rhs), f)
            }
            Node::Call { func, args } => {
                let mut vals = args.iter().map(|a| self.num(a));
                let first = vals.next().unwrap_or(NumValue {
                    value: f64::NAN,
                    missing: Vec::new(),
                });
                match func {
                    Func::Abs => NumValue {
                        value: first.value.abs(),
                        missing: first.missing,
                    },
                    // NaN propagates (unlike f64::min/max) so a NaN metric cannot be hidden.
                    Func::Min => vals.fold(first, |a, b| binary(a, b, nan_min)),
                    Func::Max => vals.fold(first, |a, b| binary(a, b, nan_max)),
                }
            }
            // The type checker makes these unreachable; a defined value beats a panic.
            Node::Bool(_) | Node::Not(_) | Node::Cmp { .. } | Node::And(..) | Node::Or(..) => {
                NumValue {
                    value: f64::NAN,
                    missing: Vec::new(),
                }
            }
        }
    }

    fn boolean(&mut self, node: &Node) -> bool {
        match node {
            Node::Bool(b) => *b,
            Node::Not(a) => !self.boolean(a),
            Node::And(a, b) => {
                let a = self.boolean(a);
                let b = self.boolean(b);
                a && b
            }
            Node::Or(a, b) => {
                let a = self.boolean(a);
                let b = self.boolean(b);
                a || b
            }
            Node::Cmp { op, lhs, rhs } => {
                let a = self.num(lhs);
                let b = self.num(rhs);
                let mut missing = a.missing;
                for m in b.missing {
                    if !missing.contains(&m) {
                        missing.push(m);
                    }
                }
                let (result, text) = if !missing.is_empty() {
                    (true, format!("no value for {}: passes", missing.join(", ")))
                } else {
                    let (x, y) = format_pair(a.value, b.value);
                    if a.value.is_nan() || b.value.is_nan() {
                        (
                            false,
                            format!("{x} {} {y}: false, NaN fails every comparison", op.symbol()),
                        )
                    } else {
                        let r = op.apply(a.value, b.value);
                        (r, format!("{x} {} {y}: {r}", op.symbol()))
                    }
                };
                self.annotations.push(text);
                result
            }
            Node::Num(_)
            | Node::Var { .. }
            | Node::Neg(_)
            | Node::Arith { .. }
            | Node::Call { .. } => false,
        }
    }
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Compact, deterministic rendering of a value for explanations.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e15).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" { "0".into() } else { s.to_string() }
    } else {
        let s = format!("{v:.3e}");
        // "1.230e-5" -> "1.23e-5": trim the mantissa only.
        match s.split_once('e') {
            Some((m, e)) => {
                let m = if m.contains('.') {
                    m.trim_end_matches('0').trim_end_matches('.')
                } else {
                    m
                };
                format!("{m}e{e}")
            }
            None => s,
        }
    }
}

/// Two values for one comparison; printed in full when rounding would make them look equal.
fn format_pair(a: f64, b: f64) -> (String, String) {
    let (x, y) = (format_value(a), format_value(b));
    if x == y && a != b && a.is_finite() && b.is_finite() {
        (format!("{a}"), format!("{b}"))
    } else {
        (x, y)
    }
}

struct Annotated<'a> {
    root: &'a Node,
    annotations: &'a [String],
}

impl fmt::Display for Annotated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut iter = self.annotations.iter();
        render(self.root, f, Some(&mut iter))
    }
}

impl Expr {
    /// The text the gate was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Distinct variables with the char offset of their first appearance, in order of appearance.
    pub fn variables(&self) -> Vec<(Variable, usize)> {
        let mut out = Vec::new();
        collect_vars(&self.root, &mut out);
        out.into_iter().map(|(v, o)| (v.clone(), o)).collect()
    }

    /// Every metric named (with or without alias) must be one of `known`; otherwise an error at
    /// the variable's offset naming the metric, listing the known ones and suggesting the closest
    /// (edit distance <= 2).
    pub fn check_metrics(&self, known: &[&str]) -> Result<(), ParseError> {
        for (var, offset) in self.variables() {
            if known.contains(&var.metric.as_str()) {
                continue;
            }
            let list = if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            };
            let mut message = format!(
                "unknown metric `{}` in `{}`; known metrics: {list}",
                var.metric,
                var.key()
            );
            let best = known
                .iter()
                .map(|k| (edit_distance(&var.metric, k), *k))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d);
            if let Some((_, k)) = best {
                message.push_str(&format!("; did you mean `{k}`?"));
            }
            return err(offset, message);
        }
        Ok(())
    }

    /// Evaluates the gate; see the module documentation for missing values and NaN.
    pub fn evaluate(&self, lookup: &dyn Fn(&Variable) -> Option<f64>) -> Evaluation {
        let inputs: BTreeMap<String, Option<f64>> = self
            .variables()
            .into_iter()
            .map(|(v, _)| (v.key(), lookup(&v)))
            .collect();
        let mut ev = Evaluator {
            values: &inputs,
            annotations: Vec::new(),
        };
        let passed = ev.boolean(&self.root);
        let explanation = Annotated {
            root: &self.root,
            annotations: &ev.annotations,
        }
        .to_string();
        Evaluation {
            passed,
            inputs,
            explanation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Expr {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn e(text: &str) -> ParseError {
        match parse(text) {
            Ok(x) => panic!("{text:?} parsed as {x}"),
            Err(e) => e,
        }
    }

    fn lookup_from(pairs: &[(&str, Option<f64>)]) -> impl Fn(&Variable) -> Option<f64> {
        let map: BTreeMap<String, Option<f64>> =
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        move |v: &Variable| map.get(&v.key()).copied().flatten()
    }

    #[test]
    fn precedence_arithmetic() {
        let x = p("a + b * c > 0");
        assert_eq!(x.to_string(), "a + b * c > 0");
        assert_eq!(x, p("a + (b * c) > 0"));
        assert_ne!(x, p("(a + b) * c > 0"));
        assert_eq!(p("(a + b) * c > 0").to_string(), "(a + b) * c > 0");
        let ev = x.evaluate(&lookup_from(&[
            ("a", Some(1.0)),
            ("b", Some(2.0)),
            ("c", Some(3.0)),
        ]));
        assert_eq!(ev.explanation, "a + b * c > 0 (7 > 0: true)");
        assert_eq!(p("a - b - c == 0").to_string(), "a - b - c == 0");
        assert_eq!(p("a - (b - c) == 0").to_string(), "a - (b - c) == 0");
        assert_eq!(p("a / (b * c) == 0").to_string(), "a / (b * c) == 0");
        assert_eq!(p("--a == -(-a)").to_string(), "--a == --a");
    }

    #[test]
    fn precedence_boolean() {
        let x = p("not a > 1 and b < 2 or c == 3");
        assert_eq!(x, p("((not (a > 1)) and (b < 2)) or (c == 3)"));
        assert_eq!(x.to_string(), "not a > 1 and b < 2 or c == 3");
        assert_eq!(
            p("not (a > 1 and b < 2)").to_string(),
            "not (a > 1 and b < 2)"
        );
        assert_eq!(
            p("a > 1 and (b < 2 or c == 3)").to_string(),
            "a > 1 and (b < 2 or c == 3)"
        );
        let look = lookup_from(&[("a", Some(0.0)), ("b", Some(5.0)), ("c", Some(4.0))]);
        // not false = true, and false -> false, or false -> false
        assert!(!x.evaluate(&look).passed);
        let look = lookup_from(&[("a", Some(0.0)), ("b", Some(1.0)), ("c", Some(4.0))]);
        assert!(x.evaluate(&look).passed);
        let look = lookup_from(&[("a", Some(9.0)), ("b", Some(1.0)), ("c", Some(3.0))]);
        assert!(x.evaluate(&look).passed);
    }

    const GATE: &str = "auc >= 0.70 and auc >= champion.auc - 0.005";

    #[test]
    fn example_gate_with_champion() {
        let x = p(GATE);
        assert_eq!(x.source(), GATE);
        assert_eq!(x.to_string(), "auc >= 0.7 and auc >= champion.auc - 0.005");
        let ev = x.evaluate(&lookup_from(&[
            ("auc", Some(0.8985)),
            ("champion.auc", Some(0.9)),
        ]));
        assert!(ev.passed);
        assert_eq!(
            ev.explanation,
            "auc >= 0.7 (0.8985 >= 0.7: true) and auc >= champion.auc - 0.005 (0.8985 >= 0.895: true)"
        );
        assert_eq!(ev.inputs.get("champion.auc"), Some(&Some(0.9)));
        assert_eq!(ev.inputs.get("auc"), Some(&Some(0.8985)));
        assert_eq!(ev.inputs.len(), 2);

        let ev = x.evaluate(&lookup_from(&[
            ("auc", Some(0.8985)),
            ("champion.auc", Some(0.91)),
        ]));
        assert!(!ev.passed);
        assert!(
            ev.explanation.ends_with("(0.8985 >= 0.905: false)"),
            "{}",
            ev.explanation
        );
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["passed"], false);
        assert_eq!(json["inputs"]["champion.auc"], 0.91);
    }

    #[test]
    fn example_gate_without_champion() {
        let x = p(GATE);
        let ev = x.evaluate(&lookup_from(&[("auc", Some(0.8985))]));
        assert!(ev.passed);
        assert_eq!(
            ev.explanation,
            "auc >= 0.7 (0.8985 >= 0.7: true) and auc >= champion.auc - 0.005 (no value for champion.auc: passes)"
        );
        assert_eq!(ev.inputs.get("champion.auc"), Some(&None));
        // The absolute floor still applies to the first model.
        let ev = x.evaluate(&lookup_from(&[("auc", Some(0.6))]));
        assert!(!ev.passed);
        assert!(ev.explanation.starts_with("auc >= 0.7 (0.6 >= 0.7: false)"));
    }

    #[test]
    fn missing_values_in_functions_and_not() {
        let x = p("max(auc, champion.auc, challenger.auc) > 0.5");
        let ev = x.evaluate(&lookup_from(&[("auc", Some(0.6))]));
        assert!(ev.passed);
        assert_eq!(
            ev.explanation,
            "max(auc, champion.auc, challenger.auc) > 0.5 (no value for champion.auc, challenger.auc: passes)"
        );
        // Documented caveat: the comparison passes, then `not` inverts it.
        let ev = p("not champion.auc > auc").evaluate(&lookup_from(&[("auc", Some(0.6))]));
        assert!(!ev.passed);
    }

    #[test]
    fn nan_fails_every_comparison() {
        for op in [">=", "<=", ">", "<", "==", "!="] {
            let x = p(&format!("auc {op} 0.5"));
            let ev = x.evaluate(&lookup_from(&[("auc", Some(f64::NAN))]));
            assert!(!ev.passed, "{op}");
            assert_eq!(
                ev.explanation,
                format!("auc {op} 0.5 (NaN {op} 0.5: false, NaN fails every comparison)")
            );
        }
        let ev = p("auc / 0 > 1 and 0 / 0 != 1").evaluate(&lookup_from(&[("auc", Some(2.0))]));
        assert_eq!(
            ev.explanation,
            "auc / 0 > 1 (inf > 1: true) and 0 / 0 != 1 (NaN != 1: false, NaN fails every comparison)"
        );
        assert!(!ev.passed);
        // min/max do not hide a NaN.
        let ev = p("min(auc, 1) < 2").evaluate(&lookup_from(&[("auc", Some(f64::NAN))]));
        assert!(!ev.passed);
    }

    #[test]
    fn number_formatting() {
        assert_eq!(format_value(0.89851234), "0.8985");
        assert_eq!(format_value(0.7), "0.7");
        assert_eq!(format_value(12.0), "12");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(-0.00001), "-1e-5");
        assert_eq!(format_value(0.000012345), "1.234e-5");
        assert_eq!(format_value(2e20), "2e20");
        assert_eq!(format_value(-3.5), "-3.5");
        // Values that would round alike are printed in full.
        let ev = p("auc >= 0.7").evaluate(&lookup_from(&[("auc", Some(0.69999))]));
        assert_eq!(ev.explanation, "auc >= 0.7 (0.69999 >= 0.7: false)");
        assert_eq!(format_literal(1e20), "1e20");
        assert_eq!(format_literal(1.5e-7), "1.5e-7");
        assert_eq!(p("a > 1.50e0").to_string(), "a > 1.5");
    }

    #[test]
    fn literals_and_functions() {
        assert!(p("true").evaluate(&|_| None).passed);
        assert!(!p("false or not true").evaluate(&|_| None).passed);
        let ev = p("abs(auc - champion.auc) <= 0.01").evaluate(&lookup_from(&[
            ("auc", Some(0.80)),
            ("champion.auc", Some(0.805)),
        ]));
        assert!(ev.passed);
        assert_eq!(
            ev.explanation,
            "abs(auc - champion.auc) <= 0.01 (0.005 <= 0.01: true)"
        );
        let ev = p("min(a, b, 3) == 1 and max(a,b)==2")
            .evaluate(&lookup_from(&[("a", Some(1.0)), ("b", Some(2.0))]));
        assert!(ev.passed);
        assert_eq!(
            p("min( a ,b ) < max(a,b,c)").to_string(),
            "min(a, b) < max(a, b, c)"
        );
        assert_eq!(p("champion.max > 1").to_string(), "champion.max > 1");
    }

    #[test]
    fn variables_in_order_of_appearance() {
        let x = p("auc >= champion.auc and  logloss < champion.logloss or auc > 0.9");
        let vars = x.variables();
        let keys: Vec<(String, usize)> = vars.iter().map(|(v, o)| (v.key(), *o)).collect();
        assert_eq!(
            keys,
            vec![
                ("auc".to_string(), 0),
                ("champion.auc".to_string(), 7),
                ("logloss".to_string(), 25),
                ("champion.logloss".to_string(), 35),
            ]
        );
        assert_eq!(
            vars[1].0,
            Variable {
                alias: Some("champion".into()),
                metric: "auc".into()
            }
        );
        assert_eq!(vars[0].0.alias, None);
    }

    #[test]
    fn type_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("auc and 1", 0, "`and` needs a condition"),
            ("auc > 1 and 1", 12, "`and` needs a condition"),
            ("1 and auc > 1", 0, "`and` needs a condition"),
            ("a > 1 or b", 9, "`or` needs a condition"),
            ("not auc", 4, "`not` needs a condition"),
            ("auc + (a > b) > 1", 6, "`+` needs a number"),
            ("a < b < c", 6, "comparisons cannot be chained"),
            ("auc", 0, "a gate must be a condition"),
            ("auc * 2 + 1", 0, "a gate must be a condition"),
            ("-true > 1", 1, "unary `-` needs a number"),
            ("true == false", 0, "the left side of `==` needs a number"),
            ("a == (b > 1)", 5, "the right side of `==` needs a number"),
            ("abs(a > 1) > 0", 4, "an argument of `abs` needs a number"),
        ];
        for (text, offset, msg) in cases {
            let err = e(text);
            assert_eq!(err.offset, *offset, "{text}: {err}");
            assert!(err.message.contains(msg), "{text}: {err}");
        }
    }

    #[test]
    fn syntax_errors_with_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty expression"),
            ("   \n\t", 0, "empty expression"),
            ("auc >", 5, "unexpected end of input"),
            ("auc >= >", 7, "unexpected `>`"),
            (
                "auc >= 0.7 champion",
                11,
                "unexpected `champion` after the end",
            ),
            ("(auc > 1", 8, "`(` at column 1 is not closed"),
            ("auc > 1)", 7, "`)` without a matching `(`"),
            ("(auc > 1))", 9, "`)` without a matching `(`"),
            ("()", 1, "unexpected `)`: expected a number"),
            ("foo(a) > 1", 0, "unknown function `foo`"),
            ("abs(a, b) > 1", 0, "`abs` takes 1 argument, got 2"),
            ("abs() > 1", 0, "`abs` takes 1 argument, got 0"),
            ("min(a) > 1", 0, "`min` takes at least 2 arguments, got 1"),
            ("max() > 1", 0, "`max` takes at least 2 arguments, got 0"),
            (
                "max(a, b c) > 1",
                9,
                "unexpected `c`: expected `,`, `)` or an operator",
            ),
            ("max(a, b", 8, "`(` at column 4 is not closed"),
            ("abs > 1", 0, "`abs` is a function"),
            ("a > 1.", 4, "bad number: a digit must follow"),
            ("a > 1e", 4, "bad number: the exponent needs digits"),
            ("a > 1e+", 4, "bad number: the exponent needs digits"),
            ("a > 1.2.3", 4, "bad number: unexpected character"),
            ("a > 12abc", 4, "bad number: unexpected character"),
            ("a > .5", 4, "write a digit before the point"),
            ("a > 1e999", 4, "out of range"),
            ("a = 1", 2, "use `==`"),
            ("!a", 0, "use `not`"),
            ("a > 1 && b > 1", 6, "use `and`"),
            ("a > 1 AND b > 1", 6, "keywords are lowercase (`and`)"),
            ("a > 1 and b > 1 # x", 16, "unexpected character '#'"),
            ("champion. > 1", 10, "expected a metric name"),
            ("champion.and > 1", 9, "expected a metric name"),
            ("champion.", 9, "unexpected end of input after `champion.`"),
            ("a > 1 and", 9, "unexpected end of input"),
            ("é > 1", 0, "unexpected character 'é'"),
            ("a > 1 and é", 10, "unexpected character 'é'"),
            ("ü > 1 or", 0, "unexpected character 'ü'"),
        ];
        for (text, offset, msg) in cases {
            let err = e(text);
            assert_eq!(err.offset, *offset, "{text:?}: {err}");
            assert!(err.message.contains(msg), "{text:?}: {err}");
        }
        assert_eq!(
            e("auc >").to_string(),
            format!("column 6: unexpected end of input: expected {OPERAND}")
        );
    }

    #[test]
    fn char_offsets_not_bytes() {
        // The whitespace before `b` is multi-byte; offsets count characters.
        let err = e("a\u{3000}> 1 x");
        assert_eq!(err.offset, 6);
        let x = p("\u{3000}\u{3000}auc > 1");
        assert_eq!(x.variables()[0].1, 2);
    }

    #[test]
    fn length_and_depth_limits() {
        let long = format!("a > {}", "1".repeat(MAX_CHARS));
        let err = e(&long);
        assert_eq!(err.offset, MAX_CHARS);
        assert!(err.message.contains("longer than 4096"));
        // Exactly at the limit is fine.
        let ok = format!("a > 1{}", " ".repeat(MAX_CHARS - 5));
        assert!(parse(&ok).is_ok());

        let nested = |n: usize| format!("{}a{} > 1", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_NESTING)).is_ok());
        let err = e(&nested(MAX_NESTING + 1));
        assert_eq!(err.offset, MAX_NESTING);
        assert!(err.message.contains("nested more than 64 levels"), "{err}");

        let err = e(&format!("{}a > 1", "not ".repeat(MAX_NESTING + 1)));
        assert_eq!(err.offset, 4 * MAX_NESTING);
        let err = e(&format!("{}a > 1", "-".repeat(2000)));
        assert_eq!(err.offset, MAX_NESTING);
        assert!(e(&"(".repeat(4000)).message.contains("nested"));

        // Long flat chains are bounded by the operator-tree height instead.
        let chain = |n: usize| format!("a > 0{}", " and a > 0".repeat(n));
        assert!(parse(&chain(MAX_HEIGHT - 2)).is_ok());
        let err = e(&chain(MAX_HEIGHT + 5));
        assert!(err.message.contains("too complex"), "{err}");
        let err = e(&format!("a{} > 0", "+a".repeat(1500)));
        assert!(err.message.contains("too complex"), "{err}");
    }

    #[test]
    fn metric_checking() {
        let known = ["auc", "logloss", "accuracy"];
        assert_eq!(p(GATE).check_metrics(&known), Ok(()));
        let err = p("auc >= 0.7 and champion.aucc > 0")
            .check_metrics(&known)
            .unwrap_err();
        assert_eq!(err.offset, 15);
        assert_eq!(
            err.message,
            "unknown metric `aucc` in `champion.aucc`; known metrics: auc, logloss, accuracy; did you mean `auc`?"
        );
        let err = p("logloss > 0 and rmse < 1")
            .check_metrics(&known)
            .unwrap_err();
        assert_eq!(err.offset, 16);
        assert_eq!(
            err.message,
            "unknown metric `rmse` in `rmse`; known metrics: auc, logloss, accuracy"
        );
        let err = p("logloos < 1").check_metrics(&known).unwrap_err();
        assert!(err.message.ends_with("did you mean `logloss`?"), "{err}");
        let err = p("a < 1").check_metrics(&[]).unwrap_err();
        assert!(err.message.contains("known metrics: (none)"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn evaluation_is_deterministic_and_serializes() {
        let x = p("auc > 0.5 and champion.auc < 1");
        let look = lookup_from(&[("auc", Some(0.75)), ("champion.auc", None)]);
        let a = x.evaluate(&look);
        let b = x.evaluate(&look);
        assert_eq!(a, b);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"passed":true,"inputs":{"auc":0.75,"champion.auc":null},"explanation":"auc > 0.5 (0.75 > 0.5: true) and champion.auc < 1 (no value for champion.auc: passes)"}"#
        );
    }

    // ---- deterministic pseudo-random properties ----

    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const NAMES: [&str; 4] = ["auc", "rmse", "champion.auc", "challenger.rmse"];

    fn gen_num(r: &mut Lcg, depth: u32) -> Node {
        let leaf = depth == 0 || r.below(3) == 0;
        if leaf {
            return if r.below(2) == 0 {
                let v = match r.below(3) {
                    0 => r.below(100) as f64,
                    1 => r.below(10_000) as f64 / 1000.0,
                    _ => (r.below(1000) as f64) * 1e-9,
                };
                Node::Num(v)
            } else {
                let name = NAMES[r.below(4) as usize];
                let var = match name.split_once('.') {
                    Some((a, m)) => Variable {
                        alias: Some(a.into()),
                        metric: m.into(),
                    },
                    None => Variable {
                        alias: None,
                        metric: name.into(),
                    },
                };
                Node::Var { var, offset: 0 }
            };
        }
        match r.below(4) {
            0 => Node::Neg(Box::new(gen_num(r, depth - 1))),
            1 => {
                let func = [Func::Abs, Func::Min, Func::Max][r.below(3) as usize];
                let n = if func == Func::Abs {
                    1
                } else {
                    2 + r.below(2) as usize
                };
                Node::Call {
                    func,
                    args: (0..n).map(|_| gen_num(r, depth - 1)).collect(),
                }
            }
            _ => {
                let op =
                    [ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div][r.below(4) as usize];
                Node::Arith {
                    op,
                    lhs: Box::new(gen_num(r, depth - 1)),
                    rhs: Box::new(gen_num(r, depth - 1)),
                }
            }
        }
    }

    fn gen_bool(r: &mut Lcg, depth: u32) -> Node {
        if depth == 0 || r.below(3) == 0 {
            if r.below(10) == 0 {
                return Node::Bool(r.below(2) == 0);
            }
            let op = [
                CmpOp::Ge,
                CmpOp::Le,
                CmpOp::Gt,
                CmpOp::Lt,
                CmpOp::Eq,
                CmpOp::Ne,
            ][r.below(6) as usize];
            let d = depth.min(3);
            return Node::Cmp {
                op,
                lhs: Box::new(gen_num(r, d)),
                rhs: Box::new(gen_num(r, d)),
            };
        }
        match r.below(3) {
            0 => Node::Not(Box::new(gen_bool(r, depth - 1))),
            1 => Node::And(
                Box::new(gen_bool(r, depth - 1)),
                Box::new(gen_bool(r, depth - 1)),
            ),
            _ => Node::Or(
                Box::new(gen_bool(r, depth - 1)),
                Box::new(gen_bool(r, depth - 1)),
            ),
        }
    }

    fn random_lookup(seed: u64) -> impl Fn(&Variable) -> Option<f64> {
        move |v: &Variable| {
            let h = v
                .key()
                .bytes()
                .fold(seed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            match h % 5 {
                0 => None,
                1 => Some(f64::NAN),
                _ => Some((h % 1000) as f64 / 1000.0),
            }
        }
    }

    #[test]
    fn random_round_trip_property() {
        let mut r = Lcg(42);
        for i in 0..2000 {
            let root = gen_bool(&mut r, 5);
            let original = Expr {
                source: String::new(),
                root,
            };
            let text = original.to_string();
            let reparsed = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(reparsed, original, "{text}");
            assert_eq!(reparsed.to_string(), text, "display is a fixed point");
            let look = random_lookup(i);
            let a = original.evaluate(&look);
            let b = reparsed.evaluate(&look);
            assert_eq!(a.passed, b.passed, "{text}");
            assert_eq!(a.explanation, b.explanation);
            // One annotation per comparison, after the expression text.
            assert!(a.explanation.len() > text.len() || !text.contains(['<', '>', '=']));
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut r = Lcg(7);
        let alphabet: Vec<char> =
            "ab_.0123456789eE+-*/()<>=!, \tandornotruefalsabsminmax\u{e9}\u{3000}#&|"
                .chars()
                .collect();
        let seeds = [
            GATE,
            "not a > 1 and b < 2 or c == 3",
            "abs(auc - champion.auc) <= 0.01",
            "min(a, b, 3) == 1 and max(a, b) == 2",
            "(((a > 1e-3)))",
        ];
        let check = |text: &str| {
            if let Ok(x) = parse(text) {
                let shown = x.to_string();
                let again = parse(&shown).unwrap_or_else(|e| panic!("{text:?} -> {shown:?}: {e}"));
                assert_eq!(again, x, "{text:?}");
                let _ = x.evaluate(&random_lookup(1));
                let _ = x.check_metrics(&["auc", "a"]);
            }
        };
        for _ in 0..3000 {
            // Arbitrary bytes, as a fuzzer would feed them after lossy decoding.
            let len = r.below(40) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| r.below(256) as u8).collect();
            check(&String::from_utf8_lossy(&bytes));
            // Strings over the language's own alphabet reach deeper into the parser.
            let s: String = (0..len)
                .map(|_| alphabet[r.below(alphabet.len() as u64) as usize])
                .collect();
            check(&s);
            // Mutations of valid gates.
            let mut chars: Vec<char> = seeds[r.below(seeds.len() as u64) as usize]
                .chars()
                .collect();
            for _ in 0..1 + r.below(3) {
                let at = r.below(chars.len() as u64 + 1) as usize;
                let c = alphabet[r.below(alphabet.len() as u64) as usize];
                match r.below(3) {
                    0 => chars.insert(at, c),
                    1 if at < chars.len() => {
                        chars.remove(at);
                    }
                    _ if at < chars.len() => chars[at] = c,
                    _ => chars.push(c),
                }
            }
            check(&chars.into_iter().collect::<String>());
        }
    }
}
