//! HTML for people: the one escaping function every page runs text from
//! outside through, the layout around each page's body, and the small pieces
//! pages share (times, links, state badges).
//!
//! Pages build their markup with `write!` into a `String`. The rule that keeps
//! that safe: anything that did not come from a literal in this module's
//! callers (captured values, names an agent registered, ids, a user's query)
//! goes through [`escape`], and anything put in a URL through [`url_component`]
//! first.

use std::fmt::Write as _;

use crate::cli::time::{relative, timestamp};
use crate::ids::now_ms;

/// `text` made safe to place anywhere in HTML: element content or a quoted
/// attribute value.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// `text` percent-encoded for one path segment or query value: every byte but
/// the URL-unreserved ones is encoded, so the result holds no `/ ? & # =`.
pub fn url_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// A query string (`a=1&b=2`, without `?`) of the non-empty `pairs`.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", url_component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `<a href="…">text</a>`, both escaped; `href` is built by the caller from
/// literals and [`url_component`]s.
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", escape(href), escape(text))
}

/// `<code>text</code>`, or a dash for empty text.
pub fn code(text: &str) -> String {
    if text.is_empty() {
        DASH.into()
    } else {
        format!("<code>{}</code>", escape(text))
    }
}

/// What a page shows for a value that is not set.
pub const DASH: &str = "<span class=\"dim\">-</span>";

/// `text` escaped, or a dash for empty text.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        DASH.into()
    } else {
        escape(text)
    }
}

/// A UTC time, with how long ago (or how far ahead) it is on hover.
pub fn when(unix_ms: i64) -> String {
    if unix_ms == 0 {
        return DASH.into();
    }
    format!(
        "<time title=\"{}\">{}</time>",
        relative(unix_ms, now_ms()),
        timestamp(unix_ms)
    )
}

/// How long ago (or ahead) a time is, with the UTC time on hover.
pub fn ago(unix_ms: i64) -> String {
    if unix_ms == 0 {
        return DASH.into();
    }
    format!(
        "<time title=\"{}\">{}</time>",
        timestamp(unix_ms),
        relative(unix_ms, now_ms())
    )
}

/// A state as a coloured badge; the CSS class is the state's own name.
pub fn badge(state: &str) -> String {
    let class: String = state
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("<span class=\"badge state-{class}\">{}</span>", escape(state))
}

/// A protocol enum's name for people: `BREAKPOINT_STATE_RATE_LIMITED` with
/// prefix `BREAKPOINT_STATE_` is `rate-limited`.
pub fn enum_label(proto_name: &str, prefix: &str) -> String {
    proto_name
        .strip_prefix(prefix)
        .unwrap_or(proto_name)
        .to_ascii_lowercase()
        .replace('_', "-")
}

/// `1 item`, `3 items`.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// The part of the UI a page belongs to, highlighted in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Probes,
    Breakpoints,
    Snapshots,
    Sessions,
    /// Pages outside the navigation: sign-in, errors.
    Other,
}

const NAVIGATION: [(Section, &str, &str); 5] = [
    (Section::Overview, "/", "Services"),
    (Section::Probes, "/probes", "Probes"),
    (Section::Breakpoints, "/breakpoints", "Breakpoints"),
    (Section::Snapshots, "/snapshots", "Snapshots"),
    (Section::Sessions, "/sessions", "Sessions"),
];

/// A whole page: `title` is plain text, `body` is HTML built by the page.
/// With a signed-in `user`, the header has the navigation and a sign-out
/// link; without one (sign-in and error pages) it has neither.
pub fn page(title: &str, section: Section, user: Option<&str>, body: &str) -> String {
    let mut header = String::from("<a class=\"brand\" href=\"/\">Keyhole</a>");
    if let Some(user) = user {
        header.push_str("<nav>");
        for (target, href, label) in NAVIGATION {
            let current = if target == section {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(header, "<a href=\"{href}\"{current}>{label}</a>");
        }
        let _ = write!(
            header,
            "</nav><span class=\"user\">{}</span><a class=\"logout\" href=\"/logout\">Sign out</a>",
            escape(user)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Keyhole</title>\
         <link rel=\"stylesheet\" href=\"/assets/keyhole.css\">\
         <script src=\"/assets/keyhole.js\" defer></script></head>\
         <body><header>{header}</header><main>{body}</main></body></html>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_turns_markup_into_text() {
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("a & \"b\""), "a &amp; &quot;b&quot;");
        assert_eq!(
            escape("&amp;"),
            "&amp;amp;",
            "escaping twice shows the entity as text"
        );
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn url_components_cannot_break_out_of_their_segment() {
        assert_eq!(url_component("snap-01_a.b~"), "snap-01_a.b~");
        assert_eq!(url_component("a/b?c=d&e#f"), "a%2Fb%3Fc%3Dd%26e%23f");
        assert_eq!(url_component("\"><é"), "%22%3E%3C%C3%A9");
        assert_eq!(
            query_string(&[("service", "shop & co"), ("trace", ""), ("session", "ses-1")]),
            "service=shop%20%26%20co&session=ses-1"
        );
    }

    #[test]
    fn links_and_badges_escape_what_they_are_given() {
        assert_eq!(
            link("/snapshots?a=1&b=2", "<b>"),
            "<a href=\"/snapshots?a=1&amp;b=2\">&lt;b&gt;</a>"
        );
        assert_eq!(
            badge("rate-limited\"><x"),
            "<span class=\"badge state-rate-limitedx\">rate-limited&quot;&gt;&lt;x</span>"
        );
    }

    #[test]
    fn protocol_enum_names_read_as_words() {
        assert_eq!(
            enum_label("BREAKPOINT_STATE_RATE_LIMITED", "BREAKPOINT_STATE_"),
            "rate-limited"
        );
        assert_eq!(enum_label("DROP_REASON_HIT_LIMIT", "DROP_REASON_"), "hit-limit");
    }

    #[test]
    fn the_page_title_and_user_are_escaped_and_signed_out_pages_have_no_navigation() {
        let signed_in = page("<t>", Section::Probes, Some("<u>"), "<p>body</p>");
        assert!(signed_in.contains("<title>&lt;t&gt; · Keyhole</title>"));
        assert!(signed_in.contains("&lt;u&gt;"));
        assert!(signed_in.contains("<a href=\"/probes\" aria-current=\"page\">"));
        assert!(signed_in.contains("<p>body</p>"));
        let signed_out = page("Sign in", Section::Other, None, "");
        assert!(!signed_out.contains("<nav>") && !signed_out.contains("/logout"));
    }
}
