//! The static check the control plane runs when a breakpoint is set: every
//! path is rooted in a captured variable and reads nothing redacted, and no
//! type error is certain before a value is seen.

use super::compare::{comparable, Refusal, Side};
use super::value::Type;
use super::{
    Comparison, Condition, ConditionError, Expr, ExprKind, Key, Method, Path, CONDITION_NEEDS, NOT_NEEDS,
};
use crate::redaction::RedactionList;

/// See [`Condition::check`].
pub(super) fn check<S: AsRef<str>>(
    condition: &Condition,
    variables: &[S],
    redaction: &RedactionList,
) -> Result<(), ConditionError> {
    let names = variables.iter().map(AsRef::as_ref).collect();
    let checker = Checker {
        condition,
        names,
        redaction,
    };
    checker
        .typed(&condition.root, &is_bool, CONDITION_NEEDS)
        .map(drop)
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
