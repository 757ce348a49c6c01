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

use std::cmp::Ordering;
use std::fmt;

use crate::redaction::RedactionList;
use crate::v1;
use crate::v1::value::Kind;

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
    if source.len() > MAX_SOURCE_BYTES {
        let message = format!("condition is longer than {MAX_SOURCE_BYTES} bytes");
        return Err(ConditionError::at(MAX_SOURCE_BYTES, message));
    }
    let mut parser = Parser {
        source,
        at: 0,
        end: 0,
        depth: 0,
        nodes: 0,
    };
    let root = parser.expression()?;
    if !parser.rest().is_empty() {
        return Err(parser.expected("an operator or end of condition"));
    }
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
        let names = variables.iter().map(AsRef::as_ref).collect();
        let checker = Checker {
            condition: self,
            names,
            redaction,
        };
        checker.typed(&self.root, &is_bool, CONDITION_NEEDS).map(drop)
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

    fn truncated(&self, expr: &Expr, detail: &str) -> EvalError {
        Gap::Uncaptured(detail.to_owned()).at(self.text(expr).to_owned())
    }

    fn truth(&self, expr: &Expr, vars: &[v1::Field], needed: &'static str) -> Result<bool, EvalError> {
        match self.value(expr, vars)? {
            Datum::Bool(value) => Ok(value),
            other => Err(self.wrong_type(expr, other.type_of(), needed)),
        }
    }

    fn value<'a>(&'a self, expr: &'a Expr, vars: &'a [v1::Field]) -> Result<Datum<'a>, EvalError> {
        Ok(match &expr.kind {
            ExprKind::Literal(literal) => literal.datum(),
            ExprKind::Path(path) => self.resolve(expr.start, path, vars)?,
            ExprKind::Not(operand) => Datum::Bool(!self.truth(operand, vars, NOT_NEEDS)?),
            ExprKind::Chain(connective, operands) => {
                // `&&` is settled by its first false operand and `||` by its
                // first true one. The rest are never read, so a guard such as
                // `order != null && order.total > 3` protects what follows it.
                let settling = *connective == Connective::Or;
                for operand in operands {
                    if self.truth(operand, vars, connective.needs())? == settling {
                        return Ok(Datum::Bool(settling));
                    }
                }
                Datum::Bool(!settling)
            }
            ExprKind::Compare(comparison) => {
                let Comparison { op, left, right, .. } = &**comparison;
                let holds = compare(*op, self.value(left, vars)?, self.value(right, vars)?);
                let quoted = (self.text(left), self.text(right));
                Datum::Bool(holds.map_err(|refusal| refusal.into_error(*op, quoted.0, quoted.1))?)
            }
            ExprKind::Call(receiver, method) => self.call(receiver, method, vars)?,
        })
    }

    fn call<'a>(
        &'a self,
        receiver: &'a Expr,
        method: &'a Method,
        variables: &'a [v1::Field],
    ) -> Result<Datum<'a>, EvalError> {
        Ok(match (method, self.value(receiver, variables)?) {
            (Method::Len, Datum::Text { text, cut: false }) => count(text.chars().count(), 0),
            (Method::Len, Datum::Text { cut: true, .. }) => {
                let detail = "its text was cut short, so its length is unknown";
                return Err(self.truncated(receiver, detail));
            }
            (Method::Len, Datum::Bytes(bytes)) => count(bytes.value.len(), bytes.omitted_bytes),
            (Method::Len, Datum::List(list)) => count(list.items.len(), list.omitted_items),
            (Method::Len, Datum::Map(map)) => count(map.entries.len(), map.omitted_entries),
            (Method::Contains(argument), Datum::Text { text, cut }) => {
                let needle = self.complete_text(argument, method, variables)?;
                if cut && !text.contains(needle) {
                    let detail = "the captured part does not contain it and the rest was cut";
                    return Err(self.truncated(receiver, detail));
                }
                Datum::Bool(text.contains(needle))
            }
            (Method::Contains(argument), Datum::List(list)) => {
                let needle = self.value(argument, variables)?;
                Datum::Bool(self.list_contains(receiver, list, argument, needle)?)
            }
            (Method::StartsWith(argument), Datum::Text { text, cut }) => {
                let prefix = self.complete_text(argument, method, variables)?;
                // A cut text that is itself a start of `prefix` might go on to match it.
                if cut && !text.starts_with(prefix) && prefix.starts_with(text) {
                    let detail = "it was cut before the length of the argument";
                    return Err(self.truncated(receiver, detail));
                }
                Datum::Bool(text.starts_with(prefix))
            }
            (_, other) => return Err(self.wrong_type(receiver, other.type_of(), method.needs())),
        })
    }

    /// The argument of `starts_with`, or of `contains` on text, must be whole:
    /// a cut one could match where its full value would not.
    fn complete_text<'a>(
        &'a self,
        argument: &'a Expr,
        method: &Method,
        variables: &'a [v1::Field],
    ) -> Result<&'a str, EvalError> {
        match self.value(argument, variables)? {
            Datum::Text { text, cut: false } => Ok(text),
            Datum::Text { cut: true, .. } => {
                let detail = "its text was cut short, so it cannot be searched for";
                Err(self.truncated(argument, detail))
            }
            other => Err(self.wrong_type(argument, other.type_of(), method.argument_needs())),
        }
    }

    /// True as soon as a captured item equals `needle`; false only when every
    /// item was captured, readable and unequal.
    fn list_contains(
        &self,
        receiver: &Expr,
        list: &v1::List,
        argument: &Expr,
        needle: Datum<'_>,
    ) -> Result<bool, EvalError> {
        let mut undecided = None;
        for (index, item) in list.items.iter().enumerate() {
            let item_path = || format!("{}[{index}]", self.text(receiver));
            let outcome = visible(Some(item))
                .map_err(|gap| gap.at(item_path()))
                .and_then(|item| {
                    let holds = compare(CompareOp::Eq, item, needle);
                    holds.map_err(|refusal| {
                        refusal.into_error(CompareOp::Eq, &item_path(), self.text(argument))
                    })
                });
            match outcome {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(error) => undecided = undecided.or(Some(error)),
            }
        }
        match undecided {
            Some(error) => Err(error),
            None if list.omitted_items > 0 => {
                let detail = format!("{} of its items were not captured", list.omitted_items);
                Err(self.truncated(receiver, &detail))
            }
            None => Ok(false),
        }
    }

    fn resolve<'a>(
        &'a self,
        start: usize,
        path: &'a Path,
        variables: &'a [v1::Field],
    ) -> Result<Datum<'a>, EvalError> {
        let spelled = |end: usize| self.source.get(start..end).unwrap_or(&path.root).to_owned();
        let Some(root) = variables.iter().find(|variable| variable.name == path.root) else {
            let missing = Gap::Missing("the snapshot has no variable of this name".to_owned());
            return Err(missing.at(path.root.clone()));
        };
        let root_value = visible(root.value.as_ref());
        let mut current = root_value.map_err(|gap| gap.at(spelled(path.root_end)))?;
        for segment in &path.segments {
            let next = step(current, &segment.key).and_then(visible);
            current = next.map_err(|gap| gap.at(spelled(segment.end)))?;
        }
        Ok(current)
    }
}

fn is_bool(found: Type) -> bool {
    found == Type::Bool
}

/// The static check's walk over a condition.
struct Checker<'c> {
    condition: &'c Condition,
    names: Vec<&'c str>,
    redaction: &'c RedactionList,
}

impl Checker<'_> {
    /// The type `expr` is sure to have (`None` when it depends on a path),
    /// refused unless `accepted`.
    fn typed(
        &self,
        expr: &Expr,
        accepted: &dyn Fn(Type) -> bool,
        needed: &'static str,
    ) -> Result<Option<Type>, ConditionError> {
        let found = match &expr.kind {
            ExprKind::Literal(literal) => Some(literal.datum().type_of()),
            ExprKind::Path(path) => {
                self.check_path(expr.start, path)?;
                None
            }
            ExprKind::Not(operand) => {
                self.typed(operand, &is_bool, NOT_NEEDS)?;
                Some(Type::Bool)
            }
            ExprKind::Chain(connective, operands) => {
                for operand in operands {
                    self.typed(operand, &is_bool, connective.needs())?;
                }
                Some(Type::Bool)
            }
            ExprKind::Compare(comparison) => {
                let Comparison { op, at, left, right } = &**comparison;
                let (left_type, right_type) = (
                    self.typed(left, &|_| true, "")?,
                    self.typed(right, &|_| true, "")?,
                );
                if let Err(refusal) = comparable(*op, left_type, right_type) {
                    let position = match refusal {
                        Refusal::WrongType(Side::Left, _) => left.start,
                        Refusal::WrongType(Side::Right, _) => right.start,
                        _ => *at,
                    };
                    let text = |expr| self.condition.text(expr);
                    let message = refusal.into_error(*op, text(left), text(right)).to_string();
                    return Err(ConditionError::at(position, message));
                }
                Some(Type::Bool)
            }
            ExprKind::Call(receiver, method) => {
                let accepted = |found| method.accepts(found);
                let receiver_type = self.typed(receiver, &accepted, method.needs())?;
                if let Method::Contains(argument) | Method::StartsWith(argument) = method {
                    let on_text = receiver_type == Some(Type::Text);
                    let needs_text = on_text || matches!(method, Method::StartsWith(_));
                    let accepted = |found| !needs_text || found == Type::Text;
                    self.typed(argument, &accepted, method.argument_needs())?;
                }
                Some(method.result_type())
            }
        };
        match found {
            Some(found) if !accepted(found) => {
                let message = self.condition.wrong_type(expr, found, needed).to_string();
                Err(ConditionError::at(expr.start, message))
            }
            found => Ok(found),
        }
    }

    fn check_path(&self, start: usize, path: &Path) -> Result<(), ConditionError> {
        let redacted = |at, name: &str| {
            let message = format!("`{name}` is redacted and cannot be used in a condition");
            Err(ConditionError::at(at, message))
        };
        if self.redaction.is_redacted(&path.root) {
            return redacted(start, &path.root);
        }
        if !self.names.contains(&path.root.as_str()) {
            let captured = match self.names.as_slice() {
                [] => "this probe captures no variables".to_owned(),
                names => format!("this probe captures: {}", names.join(", ")),
            };
            let message = format!("unknown variable `{}`; {captured}", path.root);
            return Err(ConditionError::at(start, message));
        }
        for segment in &path.segments {
            if let Key::Name(name) = &segment.key {
                if self.redaction.is_redacted(name) {
                    return redacted(segment.start, name);
                }
            }
        }
        Ok(())
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

// ---------------------------------------------------------------- values

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Null,
    Bool,
    Number,
    Text,
    Bytes,
    List,
    Map,
    Struct,
    Enum,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool => "a boolean",
            Self::Number => "a number",
            Self::Text => "text",
            Self::Bytes => "bytes",
            Self::List => "a list",
            Self::Map => "a map",
            Self::Struct => "a struct",
            Self::Enum => "an enum",
        }
    }
}

/// A value a condition works with: a literal, a computed result, or a
/// readable part of the captured tree (hidden values never become one).
/// `cut` marks text whose end the string limit removed.
#[derive(Debug, Clone, Copy)]
enum Datum<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Text { text: &'a str, cut: bool },
    Bytes(&'a v1::Bytes),
    List(&'a v1::List),
    Map(&'a v1::Map),
    Struct(&'a v1::Struct),
    Enum(&'a v1::Enum),
}

impl<'a> Datum<'a> {
    fn type_of(&self) -> Type {
        match self {
            Self::Null => Type::Null,
            Self::Bool(_) => Type::Bool,
            Self::Number(_) => Type::Number,
            Self::Text { .. } => Type::Text,
            Self::Bytes(_) => Type::Bytes,
            Self::List(_) => Type::List,
            Self::Map(_) => Type::Map,
            Self::Struct(_) => Type::Struct,
            Self::Enum(_) => Type::Enum,
        }
    }

    /// Text, or an enum's variant name, with whether it was cut.
    fn as_text(&self) -> Option<(&'a str, bool)> {
        match *self {
            Self::Text { text, cut } => Some((text, cut)),
            Self::Enum(variant) => Some((&variant.variant, false)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i64),
    Uint(u64),
    Float(f64),
}

fn count(captured: usize, omitted: u64) -> Datum<'static> {
    let captured = u64::try_from(captured).unwrap_or(u64::MAX);
    Datum::Number(Number::Uint(captured.saturating_add(omitted)))
}

/// Why a path found no readable value.
enum Gap {
    Missing(String),
    Uncaptured(String),
    Redacted,
    Failed(String),
}

impl Gap {
    fn at(self, path: String) -> EvalError {
        match self {
            Self::Missing(detail) => EvalError::MissingPath { path, detail },
            Self::Uncaptured(detail) => EvalError::Truncated { path, detail },
            Self::Redacted => EvalError::Redacted { path },
            Self::Failed(message) => EvalError::CaptureFailed { path, message },
        }
    }
}

fn visible(value: Option<&v1::Value>) -> Result<Datum<'_>, Gap> {
    let Some(kind) = value.and_then(|value| value.kind.as_ref()) else {
        return Err(Gap::Failed("the snapshot holds no value for it".to_owned()));
    };
    Ok(match kind {
        Kind::Null(_) => Datum::Null,
        Kind::Bool(value) => Datum::Bool(*value),
        Kind::Int(value) => Datum::Number(Number::Int(*value)),
        Kind::Uint(value) => Datum::Number(Number::Uint(*value)),
        Kind::Float(value) => Datum::Number(Number::Float(*value)),
        Kind::Text(text) => Datum::Text {
            text: &text.value,
            cut: text.omitted_bytes > 0,
        },
        Kind::Bytes(bytes) => Datum::Bytes(bytes),
        Kind::List(list) => Datum::List(list),
        Kind::Map(map) => Datum::Map(map),
        Kind::Struct(fields) => Datum::Struct(fields),
        Kind::Enum(variant) => Datum::Enum(variant),
        Kind::Redacted(_) => return Err(Gap::Redacted),
        Kind::Truncated(truncated) => {
            let detail = match truncated.reason() {
                v1::TruncationReason::Depth => "it lies deeper than the capture depth limit",
                v1::TruncationReason::SnapshotBytes => "the snapshot's byte budget ran out first",
                v1::TruncationReason::Unspecified => "a capture limit was reached before it",
            };
            return Err(Gap::Uncaptured(detail.to_owned()));
        }
        Kind::Error(error) => return Err(Gap::Failed(error.message.clone())),
    })
}

/// One path step. It does not recurse: captured trees come from outside.
fn step<'a>(current: Datum<'a>, key: &Key) -> Result<Option<&'a v1::Value>, Gap> {
    // A path looks through an enum into the payload of the captured variant,
    // so `status.carrier` reads the field of `Shipped { carrier }`.
    let container = match current {
        Datum::Enum(variant) => match variant.payload.as_deref() {
            Some(payload) => visible(Some(payload))?,
            None => {
                return Err(Gap::Missing(format!(
                    "variant `{}` carries no value",
                    variant.variant
                )))
            }
        },
        other => other,
    };
    match (container, key) {
        (Datum::Struct(fields), Key::Name(name)) => {
            match fields.fields.iter().find(|field| field.name == *name) {
                Some(field) => Ok(field.value.as_ref()),
                None if fields.omitted_fields > 0 => {
                    let (omitted, type_name) = (fields.omitted_fields, &fields.type_name);
                    Err(Gap::Uncaptured(format!(
                        "{omitted} fields of `{type_name}` were not captured"
                    )))
                }
                None => Err(Gap::Missing(format!(
                    "`{}` has no field `{name}`",
                    fields.type_name
                ))),
            }
        }
        (Datum::Map(map), key) => {
            let key_of = |entry: &'a v1::MapEntry| visible(entry.key.as_ref()).ok();
            if let Some(entry) = map
                .entries
                .iter()
                .find(|entry| key_of(entry).is_some_and(|found| key.matches(found)))
            {
                return Ok(entry.value.as_ref());
            }
            // A cut key might be the one asked for.
            let cut_key = map
                .entries
                .iter()
                .any(|entry| matches!(key_of(entry), Some(Datum::Text { cut: true, .. })));
            if map.omitted_entries > 0 || cut_key {
                return Err(Gap::Uncaptured(
                    "not all of the map's keys were captured".to_owned(),
                ));
            }
            Err(Gap::Missing(format!("the map has no key {key}")))
        }
        (Datum::List(list), Key::Index(index)) => {
            let captured = u64::try_from(list.items.len()).unwrap_or(u64::MAX);
            let total = captured.saturating_add(list.omitted_items);
            match usize::try_from(*index)
                .ok()
                .and_then(|index| list.items.get(index))
            {
                Some(item) => Ok(Some(item)),
                None if *index < total => Err(Gap::Uncaptured(format!(
                    "only the first {captured} of its {total} items were captured"
                ))),
                None => Err(Gap::Missing(format!("the list has {total} items"))),
            }
        }
        (other, key) => {
            let part = if let Key::Name(_) = key { "field" } else { "item" };
            let found = other.type_of().name();
            Err(Gap::Missing(format!("it is {found}, which has no {part} {key}")))
        }
    }
}

// ---------------------------------------------------------------- comparison

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// Why two values could not be compared. `Undecided` is a cut text whose
/// captured part does not settle the comparison.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    WrongType(Side, Type),
    Mismatch(Type, Type),
    Undecided(Side),
}

impl Refusal {
    fn into_error(self, op: CompareOp, left: &str, right: &str) -> EvalError {
        let quote = |side| if side == Side::Left { left } else { right }.to_owned();
        match self {
            Self::WrongType(side, found) => EvalError::WrongType {
                expression: quote(side),
                found: found.name(),
                needed: op.needs(),
            },
            Self::Mismatch(left_type, right_type) => EvalError::TypeMismatch {
                left: quote(Side::Left),
                left_type: left_type.name(),
                right: quote(Side::Right),
                right_type: right_type.name(),
            },
            Self::Undecided(side) => {
                let detail = "its text was cut, and the captured part does not settle it";
                Gap::Uncaptured(detail.to_owned()).at(quote(side))
            }
        }
    }
}

/// The type rules of comparisons, shared by the static check (where a path's
/// type is `None`) and evaluation.
fn comparable(op: CompareOp, left: Option<Type>, right: Option<Type>) -> Result<(), Refusal> {
    for (side, found) in [(Side::Left, left), (Side::Right, right)] {
        if let Some(found) = found.filter(|found| !op.accepts(*found)) {
            return Err(Refusal::WrongType(side, found));
        }
    }
    let (Some(left), Some(right)) = (left, right) else {
        return Ok(());
    };
    // Null is unequal to every other value rather than a mismatch, so
    // `user.manager == null` works whatever `manager` holds.
    let compatible = left == right
        || left == Type::Null
        || right == Type::Null
        || matches!((left, right), (Type::Text, Type::Enum) | (Type::Enum, Type::Text));
    if compatible {
        Ok(())
    } else {
        Err(Refusal::Mismatch(left, right))
    }
}

fn compare(op: CompareOp, left: Datum<'_>, right: Datum<'_>) -> Result<bool, Refusal> {
    comparable(op, Some(left.type_of()), Some(right.type_of()))?;
    let order = match (left, right) {
        (Datum::Number(left), Datum::Number(right)) => compare_numbers(left, right),
        (Datum::Bool(left), Datum::Bool(right)) => Some(left.cmp(&right)),
        (Datum::Null, Datum::Null) => Some(Ordering::Equal),
        _ => match (left.as_text(), right.as_text()) {
            (Some(left), Some(right)) => {
                let side = if left.1 { Side::Left } else { Side::Right };
                Some(compare_texts(left, right).ok_or(Refusal::Undecided(side))?)
            }
            _ => None,
        },
    };
    Ok(op.holds(order))
}

/// Exact comparison across integer kinds and floats: nothing is rounded, so
/// `u64::MAX` is above `i64::MAX` and `2^53 + 1` is above the float `2^53`.
fn compare_numbers(left: Number, right: Number) -> Option<Ordering> {
    let as_integer = |number| match number {
        Number::Int(value) => Ok(i128::from(value)),
        Number::Uint(value) => Ok(i128::from(value)),
        Number::Float(value) => Err(value),
    };
    match (as_integer(left), as_integer(right)) {
        (Ok(left), Ok(right)) => Some(left.cmp(&right)),
        (Ok(left), Err(right)) => integer_against_float(left, right),
        (Err(left), Ok(right)) => integer_against_float(right, left).map(Ordering::reverse),
        (Err(left), Err(right)) => left.partial_cmp(&right),
    }
}

fn integer_against_float(integer: i128, float: f64) -> Option<Ordering> {
    if float.is_nan() {
        return None;
    }
    // The whole part converts exactly (saturating beyond i128, far past any
    // 64-bit integer); the fraction breaks ties.
    let whole = float.trunc();
    let by_fraction = whole.partial_cmp(&float).unwrap_or(Ordering::Equal);
    Some(integer.cmp(&(whole as i128)).then(by_fraction))
}

/// Orders two texts, each perhaps cut, by what was captured; `None` when the
/// missing part could change the answer.
fn compare_texts(left: (&str, bool), right: (&str, bool)) -> Option<Ordering> {
    let ((left, left_cut), (right, right_cut)) = (left, right);
    // The byte order of UTF-8 is the order of its characters.
    if let Some((l, r)) = left.bytes().zip(right.bytes()).find(|(l, r)| l != r) {
        return Some(l.cmp(&r));
    }
    // One captured text starts the other. A cut text goes on past what was
    // captured, so only a whole text can be known to be the shorter.
    match (left.len(), left_cut).cmp(&(right.len(), right_cut)) {
        Ordering::Equal if !left_cut => Some(Ordering::Equal),
        Ordering::Less if !left_cut => Some(Ordering::Less),
        Ordering::Greater if !right_cut => Some(Ordering::Greater),
        _ => None,
    }
}

// ---------------------------------------------------------------- parser

type Parsed = Result<Expr, ConditionError>;

/// Comparison operators, two-character ones first so `<=` is not read as `<`.
const COMPARISONS: [(&str, CompareOp); 6] = [
    ("==", CompareOp::Eq),
    ("!=", CompareOp::Ne),
    ("<=", CompareOp::Le),
    (">=", CompareOp::Ge),
    ("<", CompareOp::Lt),
    (">", CompareOp::Gt),
];

/// Symbols quoted whole when an error says what was found.
const PAIRED_SYMBOLS: [&str; 6] = ["==", "!=", "<=", ">=", "&&", "||"];

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// A recursive-descent parser reading the source directly; whitespace is
/// skipped before every token.
struct Parser<'s> {
    source: &'s str,
    /// Byte offset of the next unread character, on a character boundary.
    at: usize,
    /// Where the last token read ends, which is where a node ends.
    end: usize,
    depth: usize,
    nodes: usize,
}

impl<'s> Parser<'s> {
    /// The unread source, from the next token on.
    fn rest(&mut self) -> &'s str {
        let rest = self.source.get(self.at..).unwrap_or_default();
        let token = rest.trim_start();
        self.at += rest.len() - token.len();
        token
    }

    fn start(&mut self) -> usize {
        self.rest();
        self.at
    }

    fn take(&mut self, len: usize) -> &'s str {
        let start = self.start();
        self.at = start.saturating_add(len).min(self.source.len());
        self.end = self.at;
        self.source.get(start..self.at).unwrap_or_default()
    }

    fn eat(&mut self, symbol: &str) -> bool {
        let found = self.rest().starts_with(symbol);
        if found {
            self.take(symbol.len());
        }
        found
    }

    fn expect(&mut self, symbol: &str) -> Result<(), ConditionError> {
        if self.eat(symbol) {
            return Ok(());
        }
        Err(self.expected(&format!("`{symbol}`")))
    }

    fn expected(&mut self, wanted: &str) -> ConditionError {
        let rest = self.rest();
        let len = match rest.chars().next() {
            None => 0,
            Some(c) if is_name_char(c) => rest.find(|c| !is_name_char(c)).unwrap_or(rest.len()),
            Some(_) if PAIRED_SYMBOLS.iter().any(|symbol| rest.starts_with(symbol)) => 2,
            Some(c) => c.len_utf8(),
        };
        let found = match rest.get(..len) {
            Some("") | None => "end of condition".to_owned(),
            Some(token) => format!("`{token}`"),
        };
        ConditionError::at(self.at, format!("expected {wanted} but found {found}"))
    }

    fn node(&mut self, start: usize, kind: ExprKind) -> Parsed {
        self.count_node(start)?;
        Ok(Expr {
            start,
            end: self.end,
            kind,
        })
    }

    fn count_node(&mut self, at: usize) -> Result<(), ConditionError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            let message = format!("condition has more than {MAX_NODES} parts; split it up");
            return Err(ConditionError::at(at, message));
        }
        Ok(())
    }

    /// Every recursive descent passes through here, which bounds the
    /// parser's stack by [`MAX_NESTING_DEPTH`].
    fn nested(&mut self, parse: fn(&mut Self) -> Parsed) -> Parsed {
        if self.depth >= MAX_NESTING_DEPTH {
            let message = format!("condition nests deeper than {MAX_NESTING_DEPTH} levels");
            return Err(ConditionError::at(self.start(), message));
        }
        self.depth += 1;
        let parsed = parse(self);
        self.depth -= 1;
        parsed
    }

    fn expression(&mut self) -> Parsed {
        self.nested(|parser| parser.chain(Connective::Or, Self::conjunction))
    }

    fn conjunction(&mut self) -> Parsed {
        self.chain(Connective::And, Self::unary)
    }

    fn chain(&mut self, connective: Connective, operand: fn(&mut Self) -> Parsed) -> Parsed {
        let first = operand(self)?;
        if !self.rest().starts_with(connective.symbol()) {
            return Ok(first);
        }
        let start = first.start;
        let mut operands = vec![first];
        while self.eat(connective.symbol()) {
            operands.push(operand(self)?);
        }
        self.node(start, ExprKind::Chain(connective, operands))
    }

    fn unary(&mut self) -> Parsed {
        let start = self.start();
        if !self.eat("!") {
            return self.comparison();
        }
        let operand = self.nested(Self::unary)?;
        self.node(start, ExprKind::Not(Box::new(operand)))
    }

    fn comparison(&mut self) -> Parsed {
        let left = self.operand()?;
        let rest = self.rest();
        let operator = COMPARISONS.iter().find(|(symbol, _)| rest.starts_with(symbol));
        let Some(&(symbol, op)) = operator else {
            return Ok(left);
        };
        let at = self.start();
        self.take(symbol.len());
        let (start, right) = (left.start, self.operand()?);
        self.node(
            start,
            ExprKind::Compare(Box::new(Comparison { op, at, left, right })),
        )
    }

    fn operand(&mut self) -> Parsed {
        let mut receiver = self.primary()?;
        while self.eat(".") {
            let name_at = self.start();
            let name = self
                .name()
                .ok_or_else(|| self.expected("a method name after `.`"))?;
            if !["len", "contains", "starts_with"].contains(&name) {
                let available = "len(), contains(..), starts_with(..)";
                let message = format!("unknown method `{name}`; available: {available}");
                return Err(ConditionError::at(name_at, message));
            }
            self.expect("(")?;
            let method = match name {
                "len" => Method::Len,
                "contains" => Method::Contains(Box::new(self.expression()?)),
                _ => Method::StartsWith(Box::new(self.expression()?)),
            };
            self.expect(")")?;
            let start = receiver.start;
            receiver = self.node(start, ExprKind::Call(Box::new(receiver), method))?;
        }
        Ok(receiver)
    }

    fn primary(&mut self) -> Parsed {
        let start = self.start();
        let rest = self.rest();
        let literal = if rest.starts_with('"') {
            Literal::Text(self.text()?)
        } else if rest.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            self.number()?
        } else if self.eat("(") {
            let inner = self.expression()?;
            self.expect(")")?;
            return Ok(inner);
        } else {
            match self.name() {
                Some("true") => Literal::Bool(true),
                Some("false") => Literal::Bool(false),
                Some("null") => Literal::Null,
                Some(root) => return self.path(root.to_owned(), start),
                None => return Err(self.expected("a value, a variable or `(`")),
            }
        };
        self.node(start, ExprKind::Literal(literal))
    }

    fn name(&mut self) -> Option<&'s str> {
        let rest = self.rest();
        if !rest.starts_with(|c: char| c == '_' || c.is_alphabetic()) {
            return None;
        }
        Some(self.take(rest.find(|c| !is_name_char(c)).unwrap_or(rest.len())))
    }

    fn path(&mut self, root: String, start: usize) -> Parsed {
        let root_end = self.end;
        let mut segments = Vec::new();
        loop {
            // `.name(` is a method call, left to `operand`.
            let rest = self.rest();
            let after_dot = rest.get(1..).unwrap_or_default().trim_start();
            let after_name = after_dot.trim_start_matches(is_name_char);
            let key_at;
            let key = if rest.starts_with('.') && !after_name.trim_start().starts_with('(') {
                self.take(1);
                key_at = self.start();
                let name = self
                    .name()
                    .ok_or_else(|| self.expected("a field name after `.`"))?;
                Key::Name(name.to_owned())
            } else if self.eat("[") {
                key_at = self.start();
                let rest = self.rest();
                let key = if rest.starts_with('"') {
                    Key::Name(self.text()?)
                } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
                    let Literal::Int(index) = self.number()? else {
                        let message = "a list index must be a whole number";
                        return Err(ConditionError::at(key_at, message));
                    };
                    Key::Index(index.unsigned_abs())
                } else if rest.starts_with('-') {
                    return Err(ConditionError::at(key_at, "a list index cannot be negative"));
                } else {
                    return Err(self.expected("an index or a quoted key"));
                };
                self.expect("]")?;
                key
            } else {
                break;
            };
            self.count_node(key_at)?;
            segments.push(Segment {
                key,
                start: key_at,
                end: self.end,
            });
        }
        self.node(
            start,
            ExprKind::Path(Path {
                root,
                root_end,
                segments,
            }),
        )
    }

    fn number(&mut self) -> Result<Literal, ConditionError> {
        let (start, rest) = (self.start(), self.rest());
        let digits = |from: usize| {
            let tail = rest.get(from..).unwrap_or_default();
            tail.len() - tail.trim_start_matches(|c: char| c.is_ascii_digit()).len()
        };
        let sign = usize::from(rest.starts_with('-'));
        let whole = sign + digits(sign);
        if whole == sign {
            return Err(ConditionError::at(start, "expected a digit after `-`"));
        }
        // Only a digit after the dot makes a fraction: in `items[0].sku` a
        // dot follows a digit too.
        let has_dot = rest.get(whole..).is_some_and(|tail| tail.starts_with('.'));
        let fraction = if has_dot { digits(whole + 1) } else { 0 };
        let length = if fraction > 0 { whole + 1 + fraction } else { whole };
        let written = self.take(length);
        let refused = |why: &str| ConditionError::at(start, format!("number `{written}` {why}"));
        if fraction == 0 {
            let parsed = written.parse().map(Literal::Int);
            return parsed.map_err(|_| refused("does not fit in a 64-bit signed integer"));
        }
        match written.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Literal::Float(value)),
            _ => Err(refused("is out of range")),
        }
    }

    fn text(&mut self) -> Result<String, ConditionError> {
        let (start, rest) = (self.start(), self.rest());
        let mut value = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    self.take(offset + 1);
                    return Ok(value);
                }
                '\\' => match chars.next().map(|(_, escaped)| escaped) {
                    Some('"') => value.push('"'),
                    Some('\\') => value.push('\\'),
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    other => {
                        let written = other.map(String::from).unwrap_or_default();
                        let use_instead = r#"use \", \\, \n or \t"#;
                        let message = format!("unknown escape `\\{written}`; {use_instead}");
                        return Err(ConditionError::at(start + offset, message));
                    }
                },
                c => value.push(c),
            }
        }
        let message = "expected a closing `\"` for this text but found end of condition";
        Err(ConditionError::at(start, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(kind: Kind) -> v1::Value {
        v1::Value { kind: Some(kind) }
    }
    fn int(n: i64) -> v1::Value {
        value(Kind::Int(n))
    }
    fn text(s: &str) -> v1::Value {
        cut_text(s, 0)
    }
    fn cut_text(s: &str, omitted_bytes: u64) -> v1::Value {
        value(Kind::Text(v1::Text {
            value: s.to_owned(),
            omitted_bytes,
        }))
    }
    fn list(items: Vec<v1::Value>, omitted_items: u64) -> v1::Value {
        value(Kind::List(v1::List { items, omitted_items }))
    }
    fn record(name: &str, fields: Vec<(&str, v1::Value)>, omitted_fields: u64) -> v1::Value {
        let fields = fields.into_iter().map(|(name, value)| var(name, value)).collect();
        let type_name = name.to_owned();
        value(Kind::Struct(v1::Struct {
            type_name,
            fields,
            omitted_fields,
        }))
    }
    fn map(entries: Vec<(v1::Value, v1::Value)>, omitted_entries: u64) -> v1::Value {
        let entries = entries.into_iter().map(|(k, v)| v1::MapEntry {
            key: Some(k),
            value: Some(v),
        });
        value(Kind::Map(v1::Map {
            entries: entries.collect(),
            omitted_entries,
        }))
    }
    fn variant(name: &str, payload: Option<v1::Value>) -> v1::Value {
        let (type_name, variant, payload) = ("Status".to_owned(), name.to_owned(), payload.map(Box::new));
        value(Kind::Enum(Box::new(v1::Enum {
            type_name,
            variant,
            payload,
        })))
    }
    fn var(name: &str, value: v1::Value) -> v1::Field {
        v1::Field {
            name: name.to_owned(),
            value: Some(value),
        }
    }

    /// The snapshot most stories run on.
    fn shop() -> Vec<v1::Field> {
        let item = |sku, qty| record("Item", vec![("sku", text(sku)), ("qty", int(qty))], 0);
        let items = list(vec![item("A-1", 2), item("B-7", 1)], 0);
        let cart = record(
            "Cart",
            vec![("items", items), ("total", value(Kind::Float(12.5)))],
            0,
        );
        let admin = value(Kind::Bool(true));
        let user = vec![
            ("tier", text("gold")),
            ("email", text("admin@example.com")),
            ("admin", admin),
        ];
        let shipped = record("Shipped", vec![("carrier", text("DHL"))], 0);
        vec![
            var("cart", cart),
            var("user", record("User", user, 0)),
            var("tags", list(vec![text("beta"), text("eu")], 0)),
            var("status", variant("Shipped", Some(shipped))),
            var("pending", variant("Pending", None)),
        ]
    }

    /// Runs each `condition => expected outcome` line of `table`.
    fn assert_outcomes(table: &str, outcome: impl Fn(&str) -> String) {
        for line in table.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let (source, expected) = line
                .split_once(" => ")
                .expect("a line reads `condition => outcome`");
            assert_eq!(outcome(source), expected, "{source}");
        }
    }
    fn evaluated_on(variables: &[v1::Field]) -> impl Fn(&str) -> String + '_ {
        move |source| match parse(source).map(|condition| condition.eval(variables)) {
            Ok(Ok(holds)) => holds.to_string(),
            Ok(Err(error)) => error.to_string(),
            Err(error) => format!("parse error {error}"),
        }
    }
    fn parsed(source: &str) -> String {
        parse(source).map_or_else(|error| error.to_string(), |_| "parses".to_owned())
    }
    fn checked_against<'a>(variables: &'a [&'a str]) -> impl Fn(&str) -> String + 'a {
        move |source| {
            let checked = parse(source).and_then(|c| c.check(variables, &RedactionList::default()));
            checked.map_or_else(|error| error.to_string(), |()| "ok".to_owned())
        }
    }

    #[test]
    fn the_examples_of_the_design_parse_pass_the_check_and_evaluate_on_a_captured_cart() {
        let variables = ["cart", "user", "tags", "status"];
        let examples = [
            (r#"cart.items[0].sku == "A-1" && user.tier != "free""#, true),
            ("cart.items.len() > 3", false),
            (r#"user.email.starts_with("admin")"#, true),
            (r#"tags.contains("beta")"#, true),
            ("!(cart.total < 10.5)", true),
            (
                r#"status == "Shipped" || cart . items [ 1 ] [ "qty" ] >= 2"#,
                true,
            ),
        ];
        for (source, expected) in examples {
            let condition = parse(source).expect(source);
            assert_eq!(condition.source(), source);
            assert_eq!(
                condition.check(&variables, &RedactionList::default()),
                Ok(()),
                "{source}"
            );
            assert_eq!(condition.eval(&shop()), Ok(expected), "{source}");
        }
    }

    #[test]
    fn parse_errors_say_what_was_expected_and_what_was_found_at_a_one_based_byte_column() {
        let empty = "at column 1: expected a value, a variable or `(` but found end of condition";
        assert_eq!(parsed(""), empty);
        let error = parse("(a == 1").expect_err("unclosed");
        assert_eq!(error.position, 7);
        assert_eq!(error.message, "expected `)` but found end of condition");
        assert_outcomes(
            r#"
            (a == 1 => at column 8: expected `)` but found end of condition
            a.lenght() > 1 => at column 3: unknown method `lenght`; available: len(), contains(..), starts_with(..)
            a == 1 == 2 => at column 8: expected an operator or end of condition but found `==`
            a = 1 => at column 3: expected an operator or end of condition but found `=`
            a b => at column 3: expected an operator or end of condition but found `b`
            a.contains() => at column 12: expected a value, a variable or `(` but found `)`
            a.contains(1, 2) => at column 13: expected `)` but found `,`
            a.len(1) => at column 7: expected `)` but found `1`
            a. => at column 3: expected a field name after `.` but found end of condition
            "x". => at column 5: expected a method name after `.` but found end of condition
            a.b. == 1 => at column 6: expected a field name after `.` but found `==`
            a[b] => at column 3: expected an index or a quoted key but found `b`
            a[0 => at column 4: expected `]` but found end of condition
            a[-1] => at column 3: a list index cannot be negative
            a[1.5] => at column 3: a list index must be a whole number
            a == -x => at column 6: expected a digit after `-`
            é == ü # => at column 10: expected an operator or end of condition but found `#`
            s == "\x" => at column 7: unknown escape `\x`; use \", \\, \n or \t
            s == "open => at column 6: expected a closing `"` for this text but found end of condition
            n == 9223372036854775808 => at column 6: number `9223372036854775808` does not fit in a 64-bit signed integer
            n == -9223372036854775808 => parses
            "#,
            parsed,
        );
    }

    #[test]
    fn text_literals_understand_the_four_escapes() {
        let variables = [var("s", text("say \"hi\"\\\n\t"))];
        assert_outcomes(r#"s == "say \"hi\"\\\n\t" => true"#, evaluated_on(&variables));
    }

    #[test]
    fn a_float_literal_too_large_for_f64_is_refused() {
        let huge = format!("1{}.0", "0".repeat(400));
        let expected = format!("at column 5: number `{huge}` is out of range");
        assert_eq!(parsed(&format!("n < {huge}")), expected);
    }

    #[test]
    fn conditions_beyond_the_size_nesting_and_node_limits_are_refused_before_they_cost_anything() {
        let long = format!("a == \"{}\"", "x".repeat(MAX_SOURCE_BYTES));
        assert_eq!(
            parsed(&long),
            "at column 1025: condition is longer than 1024 bytes"
        );

        let nots = |n| format!("{}a", "!".repeat(n));
        assert_eq!(parsed(&nots(MAX_NESTING_DEPTH - 1)), "parses");
        let too_deep = "at column 33: condition nests deeper than 32 levels";
        assert_eq!(parsed(&nots(MAX_NESTING_DEPTH)), too_deep);
        let parens = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(parsed(&parens), too_deep);

        // Each `a` is a node, and so is the `&&` that joins them.
        let chain = |n| vec!["a"; n].join("&&");
        assert_eq!(parsed(&chain(MAX_NODES - 1)), "parses");
        let too_many = "condition has more than 256 parts; split it up";
        assert!(parsed(&chain(MAX_NODES)).ends_with(too_many));
        assert!(parsed(&format!("a{}", "[0]".repeat(300))).ends_with(too_many));
    }

    #[test]
    fn a_condition_naming_an_unknown_variable_is_refused_with_the_known_names() {
        let unknown = "at column 1: unknown variable `foo`; this probe captures: a, b, c";
        assert_outcomes(
            &format!("foo == 1 => {unknown}"),
            checked_against(&["a", "b", "c"]),
        );
        let unknown = "at column 9: unknown variable `foo`; this probe captures no variables";
        assert_outcomes(&format!("true && foo => {unknown}"), checked_against(&[]));
    }

    #[test]
    fn a_redacted_variable_field_or_map_key_cannot_be_used_in_a_condition() {
        assert_outcomes(
            r#"
            user.password == "x" => at column 6: `password` is redacted and cannot be used in a condition
            headers["Authorization"] != null => at column 9: `Authorization` is redacted and cannot be used in a condition
            api_key.len() > 0 => at column 1: `api_key` is redacted and cannot be used in a condition
            Session_Id == 1 => at column 1: `Session_Id` is redacted and cannot be used in a condition
            user.tier == "gold" && headers["accept"] != null => ok
            "#,
            checked_against(&["user", "headers", "api_key"]),
        );
    }

    #[test]
    fn type_errors_that_are_certain_before_capture_are_refused_at_the_offending_part() {
        assert_outcomes(
            r#"
            "a" < 3 => at column 5: type mismatch between `"a"` (text) and `3` (a number)
            a.len() == "3" => at column 9: type mismatch between `a.len()` (a number) and `"3"` (text)
            a < true => at column 5: `true` is a boolean, but `<`, `<=`, `>` and `>=` need numbers or text
            null >= a => at column 1: `null` is null, but `<`, `<=`, `>` and `>=` need numbers or text
            3.len() > a => at column 1: `3` is a number, but len() needs text, bytes, a list or a map
            true.contains("x") => at column 1: `true` is a boolean, but contains(..) needs text or a list
            1.5.starts_with("x") => at column 1: `1.5` is a number, but starts_with(..) needs text
            a.starts_with(1) => at column 15: `1` is a number, but starts_with(..) needs a text argument
            "abc".contains(null) => at column 16: `null` is null, but contains(..) on text needs a text argument
            a && 1 => at column 6: `1` is a number, but `&&` needs booleans
            a || "yes" => at column 6: `"yes"` is text, but `||` needs booleans
            !a.len() => at column 2: `a.len()` is a number, but `!` needs a boolean
            a.len() => at column 1: `a.len()` is a number, but a condition must be true or false
            "#,
            checked_against(&["a"]),
        );
    }

    #[test]
    fn paths_have_no_type_until_evaluation_so_they_pass_every_static_check() {
        assert_outcomes(
            r#"
            a => ok
            !a.b && a || b => ok
            a < b && a.len() > b => ok
            a.contains(b) && a.starts_with(b) && a.b.contains(1) => ok
            a == null && "x" == a && a != 1.5 => ok
            1 == 1.0 && null != 1 && (a == b) == true => ok
            "#,
            checked_against(&["a", "b"]),
        );
    }

    #[test]
    fn numbers_compare_exactly_across_signed_unsigned_and_float() {
        let variables = [
            var("max", value(Kind::Uint(u64::MAX))),
            var("minus_one", int(-1)),
            var("beyond_f64", int((1 << 53) + 1)),
            var("half", value(Kind::Float(0.5))),
            var("nan", value(Kind::Float(f64::NAN))),
        ];
        assert_outcomes(
            r#"
            max > 9223372036854775807 && minus_one < max => true
            max < 18446744073709551616.0 => true
            beyond_f64 > 9007199254740992.0 && 9007199254740992.0 < beyond_f64 => true
            half > 0 && half < 1 && half == 0.5 && minus_one == -1.0 => true
            nan == nan || nan < 1 || nan >= 1 => false
            nan != 1.5 => true
            "#,
            evaluated_on(&variables),
        );
    }

    #[test]
    fn a_missing_path_names_the_part_that_is_missing() {
        assert_outcomes(
            r#"
            cart.items[3].sku == "x" => missing path `cart.items[3]`: the list has 2 items
            cart.coupon == null => missing path `cart.coupon`: `Cart` has no field `coupon`
            order.id == 1 => missing path `order`: the snapshot has no variable of this name
            cart.total.cents > 1 => missing path `cart.total.cents`: it is a number, which has no field "cents"
            user[0] == 1 => missing path `user[0]`: it is a struct, which has no item 0
            pending.reason == 1 => missing path `pending.reason`: variant `Pending` carries no value
            "#,
            evaluated_on(&shop()),
        );
    }

    #[test]
    fn redacted_truncated_and_failed_values_are_never_compared() {
        let reason = v1::TruncationReason::Depth.into();
        let deep = v1::Truncated {
            type_name: "Profile".to_owned(),
            reason,
        };
        let failed = v1::CaptureError {
            message: "Debug panicked".to_owned(),
        };
        let user = vec![
            ("password", value(Kind::Redacted(v1::Redacted {}))),
            ("profile", value(Kind::Truncated(deep))),
            ("avatar", value(Kind::Error(failed))),
            ("orders", list(vec![int(1), int(2)], 5)),
            ("headers", map(vec![(text("accept"), text("json"))], 3)),
            ("cookies", map(vec![(cut_text("sess", 9), int(1))], 0)),
        ];
        let empty = v1::Field {
            name: "empty".to_owned(),
            value: None,
        };
        let variables = [var("user", record("User", user, 1)), empty];
        assert_outcomes(
            r#"
            user.password == "hunter2" => `user.password` is redacted; a condition cannot read it
            user.profile.age > 3 => `user.profile` is truncated: it lies deeper than the capture depth limit
            user.avatar == null => `user.avatar` could not be captured: Debug panicked
            empty == null => `empty` could not be captured: the snapshot holds no value for it
            user.orders[4] == 1 => `user.orders[4]` is truncated: only the first 2 of its 7 items were captured
            user.orders[7] == 1 => missing path `user.orders[7]`: the list has 7 items
            user.headers["host"] == 1 => `user.headers["host"]` is truncated: not all of the map's keys were captured
            user.cookies.session == 1 => `user.cookies.session` is truncated: not all of the map's keys were captured
            user.nickname == null => `user.nickname` is truncated: 1 fields of `User` were not captured
            user.orders[1] == 2 && user.headers.accept == "json" => true
            "#,
            evaluated_on(&variables),
        );
    }

    #[test]
    fn a_cut_text_decides_only_where_its_captured_part_does() {
        let variables = [
            var("note", cut_text("abc", 10)),
            var("other", cut_text("abd", 1)),
            var("same", cut_text("abc", 4)),
        ];
        assert_outcomes(
            r#"
            note == "abd" || note == "abc" => false
            note < "abd" && note > "ab" && note < other => true
            note.contains("bc") && note.starts_with("ab") => true
            note.starts_with("x") => false
            note != "abcdef" => `note` is truncated: its text was cut, and the captured part does not settle it
            note == same => `note` is truncated: its text was cut, and the captured part does not settle it
            note.len() > 1 => `note` is truncated: its text was cut short, so its length is unknown
            note.contains("zz") => `note` is truncated: the captured part does not contain it and the rest was cut
            note.starts_with("abcd") => `note` is truncated: it was cut before the length of the argument
            "xabcx".contains(note) => `note` is truncated: its text was cut short, so it cannot be searched for
            "#,
            evaluated_on(&variables),
        );
    }

    #[test]
    fn an_enum_compares_by_its_variant_name_and_a_path_reads_its_payload() {
        assert_outcomes(
            r#"
            status == "Shipped" && status != "Pending" && pending == "Pending" => true
            status.carrier == "DHL" && status != pending => true
            status < "Z" => `status` is an enum, but `<`, `<=`, `>` and `>=` need numbers or text
            "#,
            evaluated_on(&shop()),
        );
    }

    #[test]
    fn null_equals_only_null() {
        let variables = [var("none", value(Kind::Null(0))), var("zero", int(0))];
        assert_outcomes(
            r#"
            none == null && zero != null && none != 0 && !(zero == null) => true
            none < 1 => `none` is null, but `<`, `<=`, `>` and `>=` need numbers or text
            "#,
            evaluated_on(&variables),
        );
    }

    #[test]
    fn len_counts_characters_bytes_items_and_entries_including_those_not_captured() {
        let bytes = value(Kind::Bytes(v1::Bytes {
            value: vec![1, 2, 3],
            omitted_bytes: 2,
        }));
        let variables = [
            var("name", text("héllo")),
            var("blob", bytes),
            var("ids", list(vec![int(1), int(2)], 5)),
            var("scores", map(vec![(text("a"), int(1))], 2)),
        ];
        assert_outcomes(
            r#"
            name.len() == 5 && blob.len() == 5 && ids.len() == 7 && scores.len() == 3 => true
            "日本".len() == 2 => true
            "#,
            evaluated_on(&variables),
        );
    }

    #[test]
    fn contains_finds_a_substring_or_an_equal_item_and_refuses_to_guess_past_what_was_captured() {
        let hidden = value(Kind::Redacted(v1::Redacted {}));
        let numbers = vec![int(1), value(Kind::Uint(2)), value(Kind::Float(3.0))];
        let variables = [
            var("tags", list(vec![text("beta"), text("eu")], 0)),
            var("partial", list(vec![text("beta")], 4)),
            var("ids", list(numbers, 0)),
            var("secrets", list(vec![text("beta"), hidden], 0)),
        ];
        assert_outcomes(
            r#"
            tags.contains("eu") && !tags.contains("us") && "team-beta".contains("beta") => true
            partial.contains("beta") && ids.contains(2) && ids.contains(3) && !ids.contains(4) => true
            secrets.contains("beta") => true
            partial.contains("us") => `partial` is truncated: 4 of its items were not captured
            secrets.contains("us") => `secrets[1]` is redacted; a condition cannot read it
            tags.contains(3) => type mismatch between `tags[0]` (text) and `3` (a number)
            ids.len().contains(1) => `ids.len()` is a number, but contains(..) needs text or a list
            "#,
            evaluated_on(&variables),
        );
    }

    #[test]
    fn and_and_or_stop_at_the_first_operand_that_settles_them() {
        assert_outcomes(
            r#"
            false && missing.x == 1 => false
            true || missing => true
            true && missing == 1 => missing path `missing`: the snapshot has no variable of this name
            "#,
            evaluated_on(&shop()),
        );
    }

    #[test]
    fn a_value_used_as_a_condition_must_be_a_boolean() {
        assert_outcomes(
            r#"
            user.admin && !!user.admin => true
            user.admin || tags => true
            user.tier => `user.tier` is text, but a condition must be true or false
            !cart => `cart` is a struct, but `!` needs a boolean
            !user.admin || tags => `tags` is a list, but `||` needs booleans
            "#,
            evaluated_on(&shop()),
        );
    }

    #[test]
    fn two_paths_compare_by_the_same_rules_as_a_path_and_a_literal() {
        assert_outcomes(
            r#"
            cart.items[0].qty > cart.items[1].qty && cart.items[0].sku != user.tier => true
            cart.total == user.tier => type mismatch between `cart.total` (a number) and `user.tier` (text)
            cart.items == tags => `cart.items` is a list, but `==` and `!=` need numbers, text, booleans, enums or null
            "#,
            evaluated_on(&shop()),
        );
    }

    #[test]
    fn a_name_after_a_dot_is_a_method_call_only_when_a_parenthesis_follows() {
        let variables = [var("counts", map(vec![(text("len"), int(7))], 0))];
        assert_outcomes(
            r#"
            counts.len == 7 && counts.len() == 1 && counts . len ( ) == 1 => true
            counts.len.len() == 1 => `counts.len` is a number, but len() needs text, bytes, a list or a map
            "#,
            evaluated_on(&variables),
        );
    }

    #[test]
    fn map_entries_are_reached_by_field_name_quoted_key_or_integer_index() {
        let entries = vec![
            (text("content-type"), text("json")),
            (int(404), text("gone")),
            (text("ua"), text("curl")),
        ];
        let variables = [var("headers", map(entries, 0))];
        assert_outcomes(
            r#"
            headers["content-type"] == "json" && headers[404] == "gone" && headers.ua == "curl" => true
            headers.host == null => missing path `headers.host`: the map has no key "host"
            "#,
            evaluated_on(&variables),
        );
    }
}
