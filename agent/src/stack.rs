//! Stack traces: instruction addresses taken on the request's thread into a
//! fixed array, resolved to function, file and line later on the agent's own
//! thread, where the cost of symbolisation is nobody's latency.

use std::collections::HashMap;

use keyhole_proto::v1::StackFrame;

/// The most frames any breakpoint may ask for (the control plane's maximum).
pub const MAX_FRAMES: usize = 64;
/// Frames of the agent itself (trace, fire, hit) walked before the caller's;
/// a deeper agent stack than this is kept whole rather than searched further.
const AGENT_FRAMES: usize = 16;
/// Resolved addresses kept, so repeated stacks resolve from memory.
const SYMBOL_CACHE_ENTRIES: usize = 8192;

/// Unresolved return addresses, innermost first.
#[derive(Clone, Copy)]
pub struct StackAddresses {
    addresses: [usize; MAX_FRAMES + AGENT_FRAMES],
    len: usize,
}

impl Default for StackAddresses {
    fn default() -> Self {
        Self {
            addresses: [0; MAX_FRAMES + AGENT_FRAMES],
            len: 0,
        }
    }
}

impl StackAddresses {
    /// The current thread's stack below the function starting at `entry`
    /// (the agent's entry point, whose caller is the probe's function): at
    /// most `max_frames` frames. If `entry` is not on the stack, the whole
    /// stack is kept.
    #[inline(never)]
    pub fn capture_below(entry: usize, max_frames: usize) -> Self {
        let mut stack = Self::default();
        let max_frames = max_frames.min(MAX_FRAMES);
        let mut entry_found = false;
        // Walks the stack without allocating or resolving anything.
        walk(|frame| {
            // Frames whose start is unknown report 0, which is never the entry.
            if !entry_found && entry != 0 && frame.symbol_address() as usize == entry {
                entry_found = true;
                stack.len = 0;
                return true;
            }
            let limit = if entry_found {
                max_frames
            } else {
                max_frames + AGENT_FRAMES
            };
            // The array holds the most any limit allows: `get_mut` never misses below `limit`.
            let Some(slot) = stack.addresses.get_mut(stack.len).filter(|_| stack.len < limit) else {
                return entry_found;
            };
            *slot = frame.ip() as usize;
            stack.len += 1;
            true
        });
        if !entry_found {
            stack.len = stack.len.min(max_frames);
        }
        stack
    }

    pub fn addresses(&self) -> &[usize] {
        self.addresses.get(..self.len).unwrap_or_default()
    }
}

/// Walks the current thread's stack, innermost frame first, until `visit` says stop.
///
/// Not `backtrace::trace`: that takes the lock `backtrace::resolve` holds for as long as it reads
/// debug information, so a request capturing its stack would wait for the agent's thread to finish
/// naming another snapshot's frames. The lock is there for Windows' dbghelp, whose unwinder and
/// symbolizer are one non-reentrant library; elsewhere the unwinder (libgcc's or libunwind's, the
/// one panics use from any thread at any time) is safe to run from many threads at once and shares
/// no state with symbolisation.
#[cfg(not(windows))]
fn walk(visit: impl FnMut(&backtrace::Frame) -> bool) {
    // SAFETY: `trace_unsynchronized` asks that nothing else use the platform's unwinder at the same
    // time unless that unwinder is thread-safe. Outside Windows it is `_Unwind_Backtrace`, which
    // is: it holds its own locks around the registered frame tables and reads nothing the
    // symbolizer writes. The callback neither panics nor unwinds (it only copies addresses).
    unsafe { backtrace::trace_unsynchronized(visit) }
}

/// Windows' dbghelp is not thread-safe: there the walk takes backtrace's lock.
#[cfg(windows)]
fn walk(visit: impl FnMut(&backtrace::Frame) -> bool) {
    backtrace::trace(visit)
}

/// Names frames, with a bounded cache of what it has resolved before.
#[derive(Default)]
pub struct Symbolizer {
    cache: HashMap<usize, Vec<StackFrame>>,
}

impl Symbolizer {
    /// Loads the binary's debug information now, so the first snapshot does
    /// not pay for it.
    pub fn warm_up(&mut self) {
        let here = Self::warm_up as *const () as usize;
        self.frames_at(here);
    }

    /// The frames of `stack`, inlined ones included, at most `max_frames`.
    pub fn resolve(&mut self, stack: &StackAddresses, max_frames: usize) -> Vec<StackFrame> {
        let mut frames = Vec::new();
        for &address in stack.addresses() {
            for frame in self.frames_at(address) {
                if frames.len() == max_frames {
                    return frames;
                }
                frames.push(frame);
            }
        }
        frames
    }

    fn frames_at(&mut self, address: usize) -> Vec<StackFrame> {
        if let Some(frames) = self.cache.get(&address) {
            return frames.clone();
        }
        let mut frames = Vec::new();
        // The return address points after the call; one byte back is inside it.
        let lookup = address.saturating_sub(1);
        backtrace::resolve(lookup as *mut std::ffi::c_void, |symbol| {
            frames.push(StackFrame {
                function: symbol.name().map(|name| format!("{name:#}")).unwrap_or_default(),
                file: symbol
                    .filename()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
                line: symbol.lineno().unwrap_or(0),
                column: symbol.colno().unwrap_or(0),
                address: address as u64,
            });
        });
        if frames.is_empty() {
            frames.push(StackFrame {
                address: address as u64,
                ..Default::default()
            });
        }
        if self.cache.len() >= SYMBOL_CACHE_ENTRIES {
            self.cache.clear();
        }
        self.cache.insert(address, frames.clone());
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn agent_entry(max_frames: usize) -> StackAddresses {
        std::hint::black_box(StackAddresses::capture_below(
            agent_entry as *const () as usize,
            max_frames,
        ))
    }

    #[inline(never)]
    fn a_function_with_a_probe(max_frames: usize) -> StackAddresses {
        std::hint::black_box(agent_entry(max_frames))
    }

    #[test]
    fn a_resolved_stack_starts_at_the_probes_function_and_respects_the_frame_limit() {
        let stack = a_function_with_a_probe(3);
        assert_eq!(stack.addresses().len(), 3);
        let frames = Symbolizer::default().resolve(&stack, 3);
        assert!(frames.len() <= 3);
        assert!(
            frames[0].function.contains("a_function_with_a_probe"),
            "{frames:#?}"
        );
        assert!(frames[0].file.ends_with("stack.rs"), "{frames:#?}");
        assert!(frames[0].line > 0, "{frames:#?}");
    }

    #[test]
    fn a_stack_is_taken_while_another_thread_is_inside_the_symbolizer() {
        use std::sync::mpsc;
        use std::time::Duration;

        /// Long enough for any stack walk on any machine; the symbolizer is held until the walk
        /// is done, so without the fix the walk never ends before it.
        const WALK_WAIT: Duration = Duration::from_secs(30);

        let (inside, symbolizing) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let symbolizer = std::thread::spawn(move || {
            let here = a_function_with_a_probe as *const () as *mut std::ffi::c_void;
            // The callback runs with backtrace's lock held, as a slow resolution would.
            let mut once = Some((inside, released));
            backtrace::resolve(here, |_| {
                if let Some((inside, released)) = once.take() {
                    let _ = inside.send(());
                    let _ = released.recv_timeout(WALK_WAIT);
                }
            });
        });
        symbolizing
            .recv_timeout(WALK_WAIT)
            .expect("the symbolizer resolves this test's own function");
        let (walked, stack) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = walked.send(a_function_with_a_probe(3).addresses().len());
        });
        let frames = stack.recv_timeout(WALK_WAIT);
        release.send(()).unwrap();
        symbolizer.join().unwrap();
        assert_eq!(
            frames,
            Ok(3),
            "the stack walk waited for the symbolizer to let go"
        );
    }

    #[test]
    fn without_the_entry_on_the_stack_the_whole_stack_is_kept_up_to_the_limit() {
        let nowhere = usize::MAX;
        let stack = StackAddresses::capture_below(nowhere, 5);
        assert_eq!(stack.addresses().len(), 5);
    }
}
