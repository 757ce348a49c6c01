//! The values a condition works with, and how a path reads them out of a
//! captured tree without ever reading past what was captured.

use super::{EvalError, Key};
use crate::v1;
use crate::v1::value::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Type {
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
    pub(super) fn name(self) -> &'static str {
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
pub(super) enum Datum<'a> {
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
    pub(super) fn type_of(&self) -> Type {
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
    pub(super) fn as_text(&self) -> Option<(&'a str, bool)> {
        match *self {
            Self::Text { text, cut } => Some((text, cut)),
            Self::Enum(variant) => Some((&variant.variant, false)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Number {
    Int(i64),
    Uint(u64),
    Float(f64),
}

/// Why a path found no readable value.
pub(super) enum Gap {
    Missing(String),
    Uncaptured(String),
    Redacted,
    Failed(String),
}

impl Gap {
    pub(super) fn at(self, path: String) -> EvalError {
        match self {
            Self::Missing(detail) => EvalError::MissingPath { path, detail },
            Self::Uncaptured(detail) => EvalError::Truncated { path, detail },
            Self::Redacted => EvalError::Redacted { path },
            Self::Failed(message) => EvalError::CaptureFailed { path, message },
        }
    }
}

pub(super) fn visible(value: Option<&v1::Value>) -> Result<Datum<'_>, Gap> {
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
pub(super) fn step<'a>(current: Datum<'a>, key: &Key) -> Result<Option<&'a v1::Value>, Gap> {
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
