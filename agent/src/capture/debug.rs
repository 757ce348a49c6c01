//! Capture through `Debug`: the output is written into a bounded buffer that refuses more than the string
//! limit, so formatting stops there and a huge `Debug` output is never built in memory.

use std::fmt::{self, Debug, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use keyhole_proto::v1::Value;

use super::leaf::floor_char_boundary;
use super::{panic_message, Capturer};

/// A `fmt::Write` that keeps at most `limit` bytes and then fails every write, which makes the formatting
/// machinery (and every `?` in a derived `Debug`) stop.
pub(crate) struct BoundedWriter {
    text: String,
    limit: usize,
    /// Bytes refused. Formatting stops at the first refusal, so this is a lower bound of what was cut (at
    /// least 1 when anything was): the full length of the output is never known, by design.
    omitted: u64,
    cut: bool,
}

/// The buffer grows with the output up to the limit; most Debug outputs are short.
const INITIAL_CAPACITY: usize = 32;

impl BoundedWriter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            text: String::with_capacity(limit.min(INITIAL_CAPACITY)),
            limit,
            omitted: 0,
            cut: false,
        }
    }

    /// Whether the output reached the limit (an `Err` from formatting is then ours, not the impl's).
    pub(crate) fn is_cut(&self) -> bool {
        self.cut
    }

    /// The kept text and the number of bytes cut from it.
    pub(crate) fn into_parts(self) -> (String, u64) {
        (self.text, self.omitted)
    }
}

impl Write for BoundedWriter {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let room = self.limit - self.text.len();
        if !self.cut && piece.len() <= room {
            self.text.push_str(piece);
            return Ok(());
        }
        if !self.cut {
            let end = floor_char_boundary(piece, room);
            self.text.push_str(&piece[..end]);
            self.cut = true;
            self.omitted += (piece.len() - end) as u64;
        } else {
            // Some impls ignore write errors and keep going; what they still write is cut too.
            self.omitted += piece.len() as u64;
        }
        Err(fmt::Error)
    }
}

impl Capturer<'_> {
    /// Captures `value` through its `Debug` impl as text of at most `max_string_bytes` (and no more than
    /// the snapshot has left). Output beyond that is never produced: the writer refuses it and formatting
    /// stops, and `omitted_bytes` counts what was refused (at least 1 when the text was cut). A panicking
    /// `Debug` becomes a `CaptureError`; so does one that fails on its own.
    ///
    /// ```
    /// use keyhole::capture::Capturer;
    /// use keyhole_proto::redaction::RedactionList;
    /// use keyhole_proto::v1::{value::Kind, CaptureLimits};
    ///
    /// let limits = CaptureLimits { max_string_bytes: 8, ..Default::default() };
    /// let redaction = RedactionList::default();
    /// let mut capturer = Capturer::new(&limits, &redaction);
    /// let Some(Kind::Text(text)) = capturer.debug(&vec![1, 2, 3, 4, 5]).kind else { unreachable!() };
    /// assert_eq!(text.value, "[1, 2, 3");
    /// assert!(text.omitted_bytes >= 1);
    /// ```
    pub fn debug<T: Debug + ?Sized>(&mut self, value: &T) -> Value {
        if self.budget.exhausted() {
            return self.over_budget();
        }
        let mut writer = BoundedWriter::new(self.text_limit());
        let written = catch_unwind(AssertUnwindSafe(|| {
            fmt::write(&mut writer, format_args!("{value:?}"))
        }));
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) if writer.is_cut() => {}
            Ok(Err(_)) => return self.capture_error("the Debug impl returned an error"),
            Err(payload) => return self.capture_error(&panic_message("the Debug impl", payload.as_ref())),
        }
        let (text, omitted) = writer.into_parts();
        self.text_parts(text, omitted)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use keyhole_proto::limits::default_capture_limits;
    use keyhole_proto::redaction::RedactionList;
    use keyhole_proto::v1::{value::Kind, CaptureLimits, Text};

    use super::*;

    fn debug_with<T: Debug + ?Sized>(limits: CaptureLimits, value: &T) -> Value {
        let list = RedactionList::default();
        Capturer::new(&limits, &list).debug(value)
    }

    fn text(value: Value) -> Text {
        match value.kind {
            Some(Kind::Text(text)) => text,
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn short_debug_output_is_captured_whole() {
        let captured = text(debug_with(default_capture_limits(), &Some("a\"b")));
        assert_eq!(captured.value, r#"Some("a\"b")"#);
        assert_eq!(captured.omitted_bytes, 0);
    }

    /// Ten megabytes of Debug output, written a kilobyte at a time, counting what formatting asked for.
    struct Huge<'c> {
        writes: &'c Cell<usize>,
        bytes: &'c Cell<usize>,
    }

    impl Debug for Huge<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let chunk = "x".repeat(1024);
            for _ in 0..10 * 1024 {
                self.writes.set(self.writes.get() + 1);
                self.bytes.set(self.bytes.get() + chunk.len());
                f.write_str(&chunk)?;
            }
            Ok(())
        }
    }

    #[test]
    fn ten_megabytes_of_debug_output_stop_at_the_string_limit_without_being_built() {
        let (writes, bytes) = (Cell::new(0), Cell::new(0));
        let captured = text(debug_with(
            default_capture_limits(),
            &Huge {
                writes: &writes,
                bytes: &bytes,
            },
        ));
        assert_eq!(captured.value.len(), 255);
        assert_eq!(captured.omitted_bytes, 1024 - 255);
        assert_eq!(writes.get(), 1, "formatting stopped at the first refused write");
        assert_eq!(bytes.get(), 1024, "only one chunk was ever produced, not 10 MB");
    }

    #[test]
    fn a_debug_impl_that_ignores_write_errors_is_still_cut_and_counted() {
        struct Stubborn;
        impl Debug for Stubborn {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..100 {
                    let _ = f.write_str("0123456789");
                }
                Ok(())
            }
        }
        let limits = CaptureLimits {
            max_string_bytes: 15,
            ..default_capture_limits()
        };
        let captured = text(debug_with(limits, &Stubborn));
        assert_eq!(captured.value, "012345678901234");
        assert_eq!(captured.omitted_bytes, 1000 - 15);
    }

    #[test]
    fn debug_text_is_cut_on_a_char_boundary() {
        let limits = CaptureLimits {
            max_string_bytes: 4,
            ..default_capture_limits()
        };
        let captured = text(debug_with(limits, "éé"));
        // `"éé"` with its quotes is `"` + 2×2 bytes + `"`; 4 bytes would split the second é.
        assert_eq!(captured.value, "\"é");
        assert!(captured.omitted_bytes >= 1);
    }

    #[test]
    fn a_panicking_debug_becomes_a_capture_error_and_does_not_unwind() {
        struct Boom;
        impl Debug for Boom {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                panic!("debug exploded")
            }
        }
        let list = RedactionList::default();
        let limits = default_capture_limits();
        let mut capturer = Capturer::new(&limits, &list);
        let captured = capturer.debug(&Boom);
        let Some(Kind::Error(error)) = captured.kind else {
            panic!("expected an error: {captured:?}")
        };
        assert!(error.message.contains("debug exploded"), "{}", error.message);
        // The capturer is still usable afterwards.
        assert_eq!(text(capturer.debug(&1)).value, "1");
    }

    #[test]
    fn a_debug_impl_that_fails_on_its_own_is_a_capture_error() {
        struct Failing;
        impl Debug for Failing {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        let captured = debug_with(default_capture_limits(), &Failing);
        assert!(matches!(captured.kind, Some(Kind::Error(_))), "{captured:?}");
    }

    #[test]
    fn debug_text_is_cut_to_what_the_snapshot_has_left() {
        let limits = CaptureLimits {
            max_snapshot_bytes: 10,
            ..default_capture_limits()
        };
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let first = text(capturer.debug(&"a long string that does not fit"));
        assert_eq!(first.value.len(), 10);
        let second = capturer.debug(&"more");
        assert!(matches!(second.kind, Some(Kind::Truncated(_))), "{second:?}");
    }
}
