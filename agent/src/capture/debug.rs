//! Text written through `Debug` and `Display`: the output goes straight into the snapshot through a bounded
//! writer that refuses more than the string limit, so formatting stops there and a huge output is never
//! built in memory.

use std::fmt::{self, Debug, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::leaf::floor_char_boundary;
use super::wire::{self, Wire};
use super::{panic_message, Capturer};

/// A `fmt::Write` that appends at most `room` bytes to the snapshot and then fails every write, which makes
/// the formatting machinery (and every `?` in a derived `Debug`) stop.
struct BoundedWriter<'w> {
    wire: &'w mut Wire,
    room: usize,
    /// Bytes refused. Formatting stops at the first refusal, so this is a lower bound of what was cut (at
    /// least 1 when anything was): the full length of the output is never known, by design.
    omitted: u64,
    cut: bool,
}

impl Write for BoundedWriter<'_> {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        if !self.cut && piece.len() <= self.room {
            self.wire.raw(piece.as_bytes());
            self.room -= piece.len();
            return Ok(());
        }
        if !self.cut {
            let end = floor_char_boundary(piece, self.room);
            self.wire.raw(piece.as_bytes().get(..end).unwrap_or_default());
            self.room -= end;
            self.cut = true;
            self.omitted += (piece.len() - end) as u64;
        } else {
            // Some impls ignore write errors and keep going; what they still write is cut too.
            self.omitted += piece.len() as u64;
        }
        Err(fmt::Error)
    }
}

/// How formatting a value into the snapshot failed.
pub(crate) enum FormatFailure {
    /// The impl returned an error of its own (not the writer's refusal).
    Failed,
    /// The impl panicked, saying this.
    Panicked(String),
}

/// How much of a `Display` map key is read to compare it with the redaction list, whatever the string
/// limit. Sensitive names are identifiers, far shorter than this.
const KEY_NAME_BYTES: usize = 256;

impl Capturer<'_> {
    /// Captures `value` through its `Debug` impl as text of at most `max_string_bytes` (and no more than
    /// the snapshot has left). Output beyond that is never produced: the writer refuses it and formatting
    /// stops, and `omitted_bytes` counts what was refused (at least 1 when the text was cut). A panicking
    /// `Debug` becomes a `CaptureError`; so does one that fails on its own.
    pub(crate) fn debug<T: Debug + ?Sized>(&mut self, value: &T) {
        if self.wire.exhausted() {
            return self.over_budget();
        }
        let limit = self.text_limit();
        match self.formatted(format_args!("{value:?}"), limit, None, "the Debug impl") {
            Ok(()) => {}
            Err(FormatFailure::Failed) => self.capture_error("the Debug impl returned an error"),
            Err(FormatFailure::Panicked(message)) => self.capture_error(&message),
        }
    }

    /// Writes `args` as a `Text` value of at most `limit` bytes. For a map key (`key_redacted` given), up to
    /// [`KEY_NAME_BYTES`] are formatted first, so that a cut never hides a sensitive name, and whether the
    /// whole of that names one is reported before the text is cut to `limit`. On a failure nothing is left
    /// written; `what` names the impl in a panic's message.
    pub(crate) fn formatted(
        &mut self,
        args: fmt::Arguments<'_>,
        limit: usize,
        key_redacted: Option<&mut bool>,
        what: &str,
    ) -> Result<(), FormatFailure> {
        let before = self.wire.mark();
        let text = self.wire.open(wire::value::TEXT);
        let content = self.wire.open(wire::text::VALUE);
        let start = self.wire.mark();
        let room = match key_redacted {
            Some(_) => limit.max(KEY_NAME_BYTES),
            None => limit,
        };
        let mut writer = BoundedWriter {
            wire: &mut self.wire,
            room,
            omitted: 0,
            cut: false,
        };
        let written = catch_unwind(AssertUnwindSafe(|| fmt::write(&mut writer, args)));
        let (mut omitted, cut) = (writer.omitted, writer.cut);
        let failure = match written {
            Ok(Ok(())) => None,
            Ok(Err(_)) if cut => None,
            Ok(Err(_)) => Some(FormatFailure::Failed),
            Err(payload) => Some(FormatFailure::Panicked(panic_message(what, payload.as_ref()))),
        };
        if let Some(failure) = failure {
            self.wire.rewind(before);
            return Err(failure);
        }
        if let Some(flag) = key_redacted {
            // What the writer kept is whole characters of `&str` pieces; were it not text, say it is
            // sensitive rather than guess.
            let written = std::str::from_utf8(self.wire.text_since(start));
            *flag = written.map_or(true, |key| self.names.is_redacted(key));
            let kept = written.map_or(0, |key| floor_char_boundary(key, limit));
            omitted += (self.wire.text_since(start).len() - kept) as u64;
            self.wire.keep(start, kept);
        }
        self.wire.close_unless_empty(content);
        self.wire.uint_field(wire::text::OMITTED_BYTES, omitted);
        self.wire.close(text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use keyhole_proto::limits::default_capture_limits;
    use keyhole_proto::redaction::RedactionList;
    use keyhole_proto::v1::{value::Kind, CaptureLimits, Text, Value};

    use super::*;

    fn debug_with<T: Debug + ?Sized>(limits: CaptureLimits, value: &T) -> Value {
        let list = RedactionList::default();
        Capturer::new(&limits, &list).tree(|slot| slot.debug(value))
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
        let captured = capturer.tree(|slot| slot.debug(&Boom));
        let Some(Kind::Error(error)) = captured.kind else {
            panic!("expected an error: {captured:?}")
        };
        assert!(error.message.contains("debug exploded"), "{}", error.message);
        // The capturer is still usable afterwards.
        assert_eq!(text(capturer.tree(|slot| slot.debug(&1))).value, "1");
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
        let first = text(capturer.tree(|slot| slot.debug(&"a long string that does not fit")));
        assert_eq!(first.value.len(), 10);
        let second = capturer.tree(|slot| slot.debug(&"more"));
        assert!(matches!(second.kind, Some(Kind::Truncated(_))), "{second:?}");
    }
}
