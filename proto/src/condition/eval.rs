//! Evaluation: decides a condition on a captured snapshot's variables, or
//! says why the snapshot cannot decide it.

use super::compare::compare;
use super::value::{step, visible, Datum, Gap, Number};
use super::{
    CompareOp, Comparison, Condition, Connective, EvalError, Expr, ExprKind, Method, Path, NOT_NEEDS,
};
use crate::v1;

impl Condition {
    fn truncated(&self, expr: &Expr, detail: &str) -> EvalError {
        Gap::Uncaptured(detail.to_owned()).at(self.text(expr).to_owned())
    }

    pub(super) fn truth(
        &self,
        expr: &Expr,
        vars: &[v1::Field],
        needed: &'static str,
    ) -> Result<bool, EvalError> {
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

fn count(captured: usize, omitted: u64) -> Datum<'static> {
    let captured = u64::try_from(captured).unwrap_or(u64::MAX);
    Datum::Number(Number::Uint(captured.saturating_add(omitted)))
}
