//! The breakpoint condition language: parsing, the static check the control
//! plane runs when a breakpoint is set, and evaluation on a captured snapshot.
//!
//! A condition only reads captured variables: `cart.items[0].sku == "A-1" &&
//! user.tier != "free"`, `cart.items.len() > 3`, `tags.contains("beta")`,
//! `!(total < 10.5)`. Source length, nesting and node count are bounded, so
//! a condition costs bounded work whoever wrote it. Evaluation refuses rather
//! than guesses when the answer depends on data the capture left out.
//!
//! ```
//! use keyhole_proto::condition::parse;
//! use keyhole_proto::redaction::RedactionList;
//!
//! let condition = parse(r#"user.tier != "free" && cart.items.len() > 3"#)?;
//! condition.check(&["user", "cart"], &RedactionList::default())?;
//! # Ok::<(), keyhole_proto::condition::ConditionError>(())
//! ```
//!
//! This file holds the public API and the syntax tree every part shares.
//! Each job has its own file: `parse` reads source into the tree, `check`
//! is the static check, `eval` decides a condition on captured variables,
//! `value` reads values out of the captured tree, and `compare` holds the
//! comparison rules the check and evaluation share.

mod check;
mod compare;
mod eval;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::fmt;

use self::compare::compare_numbers;
use self::value::{Datum, Number, Type};
use crate::redaction::RedactionList;
use crate::v1;

/// The longest condition accepted, in bytes of source.
pub const MAX_SOURCE_BYTES: usize = 1024;
/// How deeply expressions may nest (parentheses, `!`, method arguments).
pub const MAX_NESTING_DEPTH: usize = 32;
/// The most nodes (literals, paths and their segments, operators, method
/// calls) a condition may hold: it bounds the cost of an evaluation and the
/// depth of every walk over the tree.
pub const MAX_NODES: usize = 256;

const CONDITION_NEEDS: &str = "a condition must be true or false";
const NOT_NEEDS: &str = "`!` needs a boolean";

/// A parsed breakpoint condition, with the source it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    root: Expr,
}

/// Why [`parse`] or [`Condition::check`] refused a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionError {
    /// Byte offset into the condition's source of the offending part.
    pub position: usize,
    /// What was wrong, for a person to read.
    pub message: String,
}

impl ConditionError {
    fn at(position: usize, message: impl Into<String>) -> Self {
        let message = message.into();
        Self { position, message }
    }
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = self.position.saturating_add(1);
        write!(f, "at column {column}: {}", self.message)
    }
}

impl std::error::Error for ConditionError {}

/// Why a condition could not be decided on a captured snapshot. Paths and
/// expressions are quoted as the condition writes them.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalError {
    /// A path leads to nothing in the snapshot.
    MissingPath {
        /// The path up to the part that is missing, e.g. `cart.items[3]`.
        path: String,
        /// What the snapshot holds instead.
        detail: String,
    },
    /// A path leads to a redacted value.
    Redacted {
        /// The path to the redacted value.
        path: String,
    },
    /// The answer depends on a part of a value that was not captured.
    Truncated {
        /// The path or expression whose value is incomplete.
        path: String,
        /// What is missing.
        detail: String,
    },
    /// The agent failed to capture the value a path leads to.
    CaptureFailed {
        /// The path to the value.
        path: String,
        /// The agent's reason.
        message: String,
    },
    /// The sides of a comparison have types that cannot be compared.
    TypeMismatch {
        /// The left side, as written.
        left: String,
        /// The left side's type, e.g. "a number".
        left_type: &'static str,
        /// The right side, as written.
        right: String,
        /// The right side's type.
        right_type: &'static str,
    },
    /// An operator or method was given a value of a type it does not take.
    WrongType {
        /// The operand, as written.
        expression: String,
        /// The operand's type, e.g. "text".
        found: &'static str,
        /// What the operator or method takes, e.g. "`!` needs a boolean".
        needed: &'static str,
    },
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPath { path, detail } => write!(f, "missing path `{path}`: {detail}"),
            Self::Redacted { path } => {
                write!(f, "`{path}` is redacted; a condition cannot read it")
            }
            Self::Truncated { path, detail } => write!(f, "`{path}` is truncated: {detail}"),
            Self::CaptureFailed { path, message } => {
                write!(f, "`{path}` could not be captured: {message}")
            }
            Self::TypeMismatch {
                left,
                left_type,
                right,
                right_type,
            } => write!(
                f,
                "type mismatch between `{left}` ({left_type}) and `{right}` ({right_type})"
            ),
            Self::WrongType {
                expression,
                found,
                needed,
            } => {
                write!(f, "`{expression}` is {found}, but {needed}")
            }
        }
    }
}

impl std::error::Error for EvalError {}

/// Parses a condition, checking only its syntax and size; see
/// [`Condition::check`] for what needs the probe's variables.
pub fn parse(source: &str) -> Result<Condition, ConditionError> {
    let root = parse::syntax_tree(source)?;
    Ok(Condition {
        source: source.to_owned(),
        root,
    })
}

impl Condition {
    /// The condition as it was written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Static check against the names of the probe's captured variables.
    ///
    /// Refuses paths rooted outside `variables`, path parts that `redaction`
    /// hides, and type errors certain before any value is seen. A path has no
    /// type until evaluation, so it passes wherever some value could fit.
    pub fn check<S: AsRef<str>>(
        &self,
        variables: &[S],
        redaction: &RedactionList,
    ) -> Result<(), ConditionError> {
        check::check(self, variables, redaction)
    }

    /// Evaluate on a captured snapshot's variables.
    pub fn eval(&self, variables: &[v1::Field]) -> Result<bool, EvalError> {
        self.truth(&self.root, variables, CONDITION_NEEDS)
    }

    fn text(&self, expr: &Expr) -> &str {
        self.source.get(expr.start..expr.end).unwrap_or_default()
    }

    fn wrong_type(&self, expr: &Expr, found: Type, needed: &'static str) -> EvalError {
        let expression = self.text(expr).to_owned();
        EvalError::WrongType {
            expression,
            found: found.name(),
            needed,
        }
    }
}

// ---------------------------------------------------------------- syntax tree

#[derive(Debug, Clone, PartialEq)]
struct Expr {
    /// Byte span in the source, to quote the expression in errors.
    start: usize,
    end: usize,
    kind: ExprKind,
}

#[derive(Debug, Clone, PartialEq)]
enum ExprKind {
    Literal(Literal),
    Path(Path),
    Not(Box<Expr>),
    Chain(Connective, Vec<Expr>),
    Compare(Box<Comparison>),
    Call(Box<Expr>, Method),
}

/// `at` is where the operator is written.
#[derive(Debug, Clone, PartialEq)]
struct Comparison {
    op: CompareOp,
    at: usize,
    left: Expr,
    right: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Null,
}

impl Literal {
    fn datum(&self) -> Datum<'_> {
        match self {
            Self::Int(value) => Datum::Number(Number::Int(*value)),
            Self::Float(value) => Datum::Number(Number::Float(*value)),
            Self::Text(text) => Datum::Text { text, cut: false },
            Self::Bool(value) => Datum::Bool(*value),
            Self::Null => Datum::Null,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Path {
    root: String,
    root_end: usize,
    segments: Vec<Segment>,
}

/// `start` is where the name, key or index is written; `end` is where the
/// path up to and including this segment ends.
#[derive(Debug, Clone, PartialEq)]
struct Segment {
    key: Key,
    start: usize,
    end: usize,
}

/// `.name` and `["name"]` are the same lookup: a struct field or a map key.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Name(String),
    Index(u64),
}

impl Key {
    fn matches(&self, found: Datum<'_>) -> bool {
        match (self, found) {
            (Self::Name(name), Datum::Text { text, cut: false }) => text == name,
            (Self::Index(index), Datum::Number(number)) => {
                compare_numbers(number, Number::Uint(*index)) == Some(Ordering::Equal)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => write!(f, "{name:?}"),
            Self::Index(index) => write!(f, "{index}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connective {
    And,
    Or,
}

impl Connective {
    fn symbol(self) -> &'static str {
        match self {
            Self::And => "&&",
            Self::Or => "||",
        }
    }

    fn needs(self) -> &'static str {
        match self {
            Self::And => "`&&` needs booleans",
            Self::Or => "`||` needs booleans",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    fn is_ordering(self) -> bool {
        !matches!(self, Self::Eq | Self::Ne)
    }

    fn accepts(self, found: Type) -> bool {
        match found {
            Type::Number | Type::Text => true,
            Type::Null | Type::Bool | Type::Enum => !self.is_ordering(),
            Type::Bytes | Type::List | Type::Map | Type::Struct => false,
        }
    }

    fn needs(self) -> &'static str {
        if self.is_ordering() {
            "`<`, `<=`, `>` and `>=` need numbers or text"
        } else {
            "`==` and `!=` need numbers, text, booleans, enums or null"
        }
    }

    /// `order` is `None` for values that are unequal and unordered: null
    /// against anything else, or NaN.
    fn holds(self, order: Option<Ordering>) -> bool {
        match self {
            Self::Eq => order == Some(Ordering::Equal),
            Self::Ne => order != Some(Ordering::Equal),
            Self::Lt => order == Some(Ordering::Less),
            Self::Le => matches!(order, Some(Ordering::Less | Ordering::Equal)),
            Self::Gt => order == Some(Ordering::Greater),
            Self::Ge => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
        }
    }
}

/// A method holds its argument, so a `len` with one or a `contains` without
/// one cannot be built.
#[derive(Debug, Clone, PartialEq)]
enum Method {
    Len,
    Contains(Box<Expr>),
    StartsWith(Box<Expr>),
}

impl Method {
    fn accepts(&self, found: Type) -> bool {
        match self {
            Self::Len => matches!(found, Type::Text | Type::Bytes | Type::List | Type::Map),
            Self::Contains(_) => matches!(found, Type::Text | Type::List),
            Self::StartsWith(_) => found == Type::Text,
        }
    }

    fn needs(&self) -> &'static str {
        match self {
            Self::Len => "len() needs text, bytes, a list or a map",
            Self::Contains(_) => "contains(..) needs text or a list",
            Self::StartsWith(_) => "starts_with(..) needs text",
        }
    }

    fn argument_needs(&self) -> &'static str {
        match self {
            Self::StartsWith(_) => "starts_with(..) needs a text argument",
            _ => "contains(..) on text needs a text argument",
        }
    }

    fn result_type(&self) -> Type {
        match self {
            Self::Len => Type::Number,
            _ => Type::Bool,
        }
    }
}
