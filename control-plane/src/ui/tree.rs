//! A captured value tree as nested HTML: `<details>` for structs, lists, maps
//! and enums with a compound payload, so they expand with no script; one line
//! for everything else; and a visible marker wherever the agent hid or cut
//! something (redacted, not captured past a limit, "N more … not captured").
//! The semantics follow the CLI's text rendering (`cli/render.rs`).

use std::fmt::Write as _;

use keyhole_proto::v1::{value::Kind, Field, TruncationReason, Value};

use super::html::{count, escape};

/// How many levels start expanded: the variables themselves are open, what
/// they hold is one click away.
const OPEN_LEVELS: usize = 1;

/// The marker in place of a redacted value: no content, no length.
pub const REDACTED: &str = "<span class=\"redacted\" title=\"A sensitive value: \
     neither its content nor its length was captured\">redacted</span>";

/// A probe's variables as an expandable tree.
pub fn variables(fields: &[Field]) -> String {
    let mut html = String::from("<div class=\"tree\">");
    if fields.is_empty() {
        html.push_str("<p class=\"empty\">This probe captured no variables.</p>");
    }
    for field in fields {
        node(&mut html, &escape(&field.name), field.value.as_ref(), 0);
    }
    html.push_str("</div>");
    html
}

/// What one value looks like: a line, or a summary line with children.
enum Shape<'a> {
    Leaf(String),
    Branch {
        summary: String,
        children: Vec<(String, Option<&'a Value>)>,
        /// Children the agent did not capture, and what they are (singular, plural).
        omitted: u64,
        omitted_what: (&'static str, &'static str),
    },
}

/// One value under `name` (HTML), at `depth` below the variables.
fn node(html: &mut String, name: &str, value: Option<&Value>, depth: usize) {
    match shape(value) {
        Shape::Leaf(line) => {
            let _ = write!(
                html,
                "<div class=\"leaf\"><span class=\"name\">{name}</span> {line}</div>"
            );
        }
        Shape::Branch {
            summary, children, ..
        } if children.is_empty() => {
            let _ = write!(
                html,
                "<div class=\"leaf\"><span class=\"name\">{name}</span> {summary} <span class=\"dim\">(empty)</span></div>"
            );
        }
        Shape::Branch {
            summary,
            children,
            omitted,
            omitted_what,
        } => {
            let open = if depth < OPEN_LEVELS { " open" } else { "" };
            let _ = write!(
                html,
                "<details{open}><summary><span class=\"name\">{name}</span> {summary}</summary><div class=\"children\">"
            );
            for (child_name, child) in children {
                node(html, &child_name, child, depth + 1);
            }
            if omitted > 0 {
                let (singular, plural) = omitted_what;
                let _ = write!(
                    html,
                    "<div class=\"more\">… {} not captured</div>",
                    count(omitted, &format!("more {singular}"), &format!("more {plural}"))
                );
            }
            html.push_str("</div></details>");
        }
    }
}

fn leaf(class: &str, text: &str) -> Shape<'static> {
    Shape::Leaf(format!("<span class=\"v {class}\">{}</span>", escape(text)))
}

fn marker(class: &str, text: &str) -> Shape<'static> {
    Shape::Leaf(format!("<span class=\"{class}\">{}</span>", escape(text)))
}

/// `" (N more bytes not captured)"` after a cut string, or nothing.
fn bytes_cut(omitted: u64) -> String {
    if omitted == 0 {
        String::new()
    } else {
        format!(" <span class=\"more\">… {omitted} more bytes not captured</span>")
    }
}

fn summary(type_name: &str, size: String) -> String {
    format!(
        "<span class=\"type\">{}</span> <span class=\"size\">{size}</span>",
        escape(type_name)
    )
}

fn shape(value: Option<&Value>) -> Shape<'_> {
    let Some(kind) = value.and_then(|v| v.kind.as_ref()) else {
        return marker("missing", "no value");
    };
    match kind {
        Kind::Null(_) => leaf("null", "null"),
        Kind::Bool(b) => leaf("bool", &b.to_string()),
        Kind::Int(i) => leaf("num", &i.to_string()),
        Kind::Uint(u) => leaf("num", &u.to_string()),
        Kind::Float(f) => leaf("num", &f.to_string()),
        // Debug-quoted like the CLI, so control and invisible characters show as escapes.
        Kind::Text(t) => Shape::Leaf(format!(
            "<span class=\"v str\">{}</span>{}",
            escape(&format!("{:?}", t.value)),
            bytes_cut(t.omitted_bytes)
        )),
        Kind::Bytes(b) => {
            let hex: String = b.value.iter().map(|byte| format!("{byte:02x}")).collect();
            Shape::Leaf(format!(
                "<span class=\"v bytes\">0x{hex}</span>{}",
                bytes_cut(b.omitted_bytes)
            ))
        }
        Kind::List(list) => Shape::Branch {
            summary: summary(
                "list",
                count(list.items.len() as u64 + list.omitted_items, "item", "items"),
            ),
            children: list
                .items
                .iter()
                .enumerate()
                .map(|(index, item)| (format!("[{index}]"), Some(item)))
                .collect(),
            omitted: list.omitted_items,
            omitted_what: ("item", "items"),
        },
        Kind::Map(map) => Shape::Branch {
            summary: summary(
                "map",
                count(map.entries.len() as u64 + map.omitted_entries, "entry", "entries"),
            ),
            children: map
                .entries
                .iter()
                .map(|entry| (map_key(entry.key.as_ref()), entry.value.as_ref()))
                .collect(),
            omitted: map.omitted_entries,
            omitted_what: ("entry", "entries"),
        },
        Kind::Struct(s) => Shape::Branch {
            summary: summary(
                &s.type_name,
                count(s.fields.len() as u64 + s.omitted_fields, "field", "fields"),
            ),
            children: s
                .fields
                .iter()
                .map(|field| (escape(&field.name), field.value.as_ref()))
                .collect(),
            omitted: s.omitted_fields,
            omitted_what: ("field", "fields"),
        },
        Kind::Enum(e) => {
            let variant = format!(
                "<span class=\"type\">{}::{}</span>",
                escape(&e.type_name),
                escape(&e.variant)
            );
            match e.payload.as_deref().map(|payload| shape(Some(payload))) {
                None => Shape::Leaf(variant),
                Some(Shape::Leaf(payload)) => Shape::Leaf(format!("{variant}({payload})")),
                // A variant with fields reads as the variant holding them.
                Some(Shape::Branch {
                    children,
                    omitted,
                    omitted_what,
                    ..
                }) => Shape::Branch {
                    summary: variant,
                    children,
                    omitted,
                    omitted_what,
                },
            }
        }
        Kind::Redacted(_) => Shape::Leaf(REDACTED.into()),
        Kind::Truncated(t) => {
            let why = match TruncationReason::try_from(t.reason) {
                Ok(TruncationReason::Depth) => "depth limit",
                Ok(TruncationReason::SnapshotBytes) => "snapshot size limit",
                _ => "limit",
            };
            let what = if t.type_name.is_empty() {
                "value"
            } else {
                &t.type_name
            };
            marker("truncated", &format!("{what} not captured: {why}"))
        }
        Kind::Error(e) => marker("capture-error", &format!("capture failed: {}", e.message)),
    }
}

/// A map entry's name: its key in brackets, as a one-line value.
fn map_key(key: Option<&Value>) -> String {
    match shape(key) {
        Shape::Leaf(line) => format!("[{line}]"),
        Shape::Branch { summary, .. } => format!("[{summary}]"),
    }
}

#[cfg(test)]
mod tests {
    use keyhole_proto::v1::{self, Enum, List, Redacted, Struct, Text, Truncated};

    use super::*;

    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    fn text(s: &str) -> Value {
        value(Kind::Text(Text {
            value: s.into(),
            omitted_bytes: 0,
        }))
    }

    fn field(name: &str, v: Value) -> Field {
        Field {
            name: name.into(),
            value: Some(v),
        }
    }

    fn cart() -> Field {
        let items = value(Kind::List(List {
            items: vec![text("SKU-RED-SHOE")],
            omitted_items: 3,
        }));
        let owner = value(Kind::Struct(Struct {
            type_name: "shop::User".into(),
            fields: vec![field("password", value(Kind::Redacted(Redacted {})))],
            omitted_fields: 2,
        }));
        field(
            "cart",
            value(Kind::Struct(Struct {
                type_name: "shop::Cart".into(),
                fields: vec![field("items", items), field("owner", owner)],
                omitted_fields: 0,
            })),
        )
    }

    #[test]
    fn variables_start_open_and_what_they_hold_starts_closed() {
        let html = variables(&[cart()]);
        assert!(
            html.starts_with("<div class=\"tree\"><details open><summary><span class=\"name\">cart</span>")
        );
        assert!(html.contains("<details><summary><span class=\"name\">items</span> <span class=\"type\">list</span> <span class=\"size\">4 items</span>"));
        assert!(html.contains("&quot;SKU-RED-SHOE&quot;"));
        assert!(html.contains("… 3 more items not captured"));
        assert!(html.contains("… 2 more fields not captured"));
    }

    #[test]
    fn a_redacted_value_is_a_marker_with_nothing_of_the_value() {
        let html = variables(&[cart()]);
        assert!(html.contains(&format!("<span class=\"name\">password</span> {REDACTED}")));
    }

    #[test]
    fn captured_markup_is_shown_as_text() {
        let html = variables(&[field("<img src=x>", text("<script>alert(1)</script>"))]);
        assert!(html.contains("&lt;img src=x&gt;"));
        assert!(html.contains("&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"));
        assert!(!html.contains("<script>") && !html.contains("<img"));
    }

    #[test]
    fn cut_strings_truncated_values_and_failed_captures_say_so() {
        let cut = value(Kind::Text(Text {
            value: "abc".into(),
            omitted_bytes: 40,
        }));
        let deep = value(Kind::Truncated(Truncated {
            type_name: "Order".into(),
            reason: TruncationReason::Depth as i32,
        }));
        let failed = value(Kind::Error(v1::CaptureError {
            message: "Debug panicked".into(),
        }));
        let html = variables(&[field("note", cut), field("order", deep), field("x", failed)]);
        assert!(html.contains("… 40 more bytes not captured"));
        assert!(html.contains("<span class=\"truncated\">Order not captured: depth limit</span>"));
        assert!(html.contains("<span class=\"capture-error\">capture failed: Debug panicked</span>"));
    }

    #[test]
    fn enums_show_their_variant_and_payload() {
        let unit = value(Kind::Enum(Box::new(Enum {
            type_name: "Tier".into(),
            variant: "Gold".into(),
            payload: None,
        })));
        let tuple = value(Kind::Enum(Box::new(Enum {
            type_name: "Option".into(),
            variant: "Some".into(),
            payload: Some(Box::new(value(Kind::Int(7)))),
        })));
        let html = variables(&[field("tier", unit), field("n", tuple)]);
        assert!(html.contains("<span class=\"type\">Tier::Gold</span>"));
        assert!(html.contains("<span class=\"type\">Option::Some</span>(<span class=\"v num\">7</span>)"));
    }

    #[test]
    fn map_entries_are_named_by_their_keys() {
        let map = value(Kind::Map(v1::Map {
            entries: vec![v1::MapEntry {
                key: Some(text("eu")),
                value: Some(value(Kind::Uint(3))),
            }],
            omitted_entries: 1,
        }));
        let html = variables(&[field("stock", map)]);
        assert!(html.contains("<span class=\"size\">2 entries</span>"));
        assert!(html
            .contains("[<span class=\"v str\">&quot;eu&quot;</span>]</span> <span class=\"v num\">3</span>"));
        assert!(html.contains("… 1 more entry not captured"));
    }
}
