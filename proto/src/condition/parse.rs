//! Parsing: reads a condition's source into the syntax tree, refusing it
//! beyond the size, nesting and node limits.

use super::{
    CompareOp, Comparison, ConditionError, Connective, Expr, ExprKind, Key, Literal, Method, Path, Segment,
    MAX_NESTING_DEPTH, MAX_NODES, MAX_SOURCE_BYTES,
};

/// The syntax tree of a whole condition, checking only its syntax and size.
pub(super) fn syntax_tree(source: &str) -> Parsed {
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
    Ok(root)
}

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
