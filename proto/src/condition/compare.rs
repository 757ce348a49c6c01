//! The comparison rules, shared by the static check (where a path's type is
//! not yet known) and evaluation.

use std::cmp::Ordering;

use super::value::{Datum, Gap, Number, Type};
use super::{CompareOp, EvalError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Left,
    Right,
}

/// Why two values could not be compared. `Undecided` is a cut text whose
/// captured part does not settle the comparison.
#[derive(Debug, Clone, Copy)]
pub(super) enum Refusal {
    WrongType(Side, Type),
    Mismatch(Type, Type),
    Undecided(Side),
}

impl Refusal {
    pub(super) fn into_error(self, op: CompareOp, left: &str, right: &str) -> EvalError {
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
pub(super) fn comparable(op: CompareOp, left: Option<Type>, right: Option<Type>) -> Result<(), Refusal> {
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

pub(super) fn compare(op: CompareOp, left: Datum<'_>, right: Datum<'_>) -> Result<bool, Refusal> {
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
pub(super) fn compare_numbers(left: Number, right: Number) -> Option<Ordering> {
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
