//! Where log lines go: a buffer in memory that a thread of its own writes to standard error
//! every few milliseconds, so that a call never waits on the terminal or the disk and the
//! serving threads pay for one copy of each line and nothing more (no allocation, no wake-up
//! of another thread per line; a channel per line, as `tracing-appender` does, cost a
//! measurable share of a cheap call).
//!
//! Nothing is dropped: when the buffer holds more than [`MAX_BUFFERED`], the thread logging
//! writes it out itself before going on; and the [`Flush`] guard writes out what is left when
//! the program ends.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::registry::LookupSpan;

/// How long a line may wait in the buffer.
const INTERVAL: Duration = Duration::from_millis(20);
/// Buffered bytes at which the writing thread is woken before its interval is up.
const WAKE_AT: usize = 256 * 1024;
/// Buffered bytes at which the thread logging writes the buffer out itself.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// A `MakeWriter` for `tracing_subscriber::fmt` that appends to the shared buffer.
pub(crate) struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Writes out what is buffered and stops the writing thread when dropped.
pub(crate) struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while writing to standard error, so that buffers go out in the order they filled.
    out: Mutex<std::io::Stderr>,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closing: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves only bytes behind; they are still worth writing.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes out everything buffered so far.
    fn drain(&self, spare: &mut Vec<u8>) {
        let mut out = lock(&self.out);
        std::mem::swap(&mut lock(&self.pending).lines, spare);
        if !spare.is_empty() {
            // Standard error that cannot be written to has nowhere to report that either.
            let _ = out.write_all(spare);
            let _ = out.flush();
            spare.clear();
        }
    }
}

/// The buffer of the process's log, for [`info_line`].
static BUFFER: OnceLock<Arc<Shared>> = OnceLock::new();

/// The writer and the guard that flushes it; the guard must live until the program ends.
pub(crate) fn stderr() -> (BufferedStderr, Flush) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending {
            lines: Vec::with_capacity(64 * 1024),
            closing: false,
        }),
        wake: Condvar::new(),
        out: Mutex::new(std::io::stderr()),
    });
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(64 * 1024);
                loop {
                    let closing = {
                        let pending = lock(&shared.pending);
                        let (pending, _) = shared
                            .wake
                            .wait_timeout_while(pending, INTERVAL, |p| {
                                !p.closing && p.lines.len() < WAKE_AT
                            })
                            .unwrap_or_else(PoisonError::into_inner);
                        pending.closing
                    };
                    shared.drain(&mut spare);
                    if closing {
                        break;
                    }
                }
            })
            .ok()
    };
    let _ = BUFFER.set(shared.clone());
    (
        BufferedStderr {
            shared: shared.clone(),
        },
        Flush { shared, thread },
    )
}

/// A text value as every line writes it: the message with control characters escaped; any
/// other value as it is when it is one plain word, else quoted and escaped.
fn write_text<W: fmt::Write + ?Sized>(out: &mut W, value: &str, message: bool) -> fmt::Result {
    if message {
        EscapedTo(out).write_str(value)
    } else if is_plain(value) {
        out.write_str(value)
    } else {
        write!(out, "{value:?}")
    }
}

/// The writer of one log line.
pub(crate) struct Line<'a> {
    shared: &'a Shared,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut pending = lock(&self.shared.pending);
            pending.lines.extend_from_slice(bytes);
            let len = pending.lines.len();
            if len >= WAKE_AT && len - bytes.len() < WAKE_AT {
                self.shared.wake.notify_one();
            }
            len >= MAX_BUFFERED
        };
        if full {
            self.shared.drain(&mut Vec::new());
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            shared: &self.shared,
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        lock(&self.shared.pending).closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Without a writing thread (it could not be started), or after it: write what is left.
        self.shared.drain(&mut Vec::new());
    }
}

/// Writes log lines' time as tracing-subscriber writes it (`2026-01-02T03:04:05.123456Z`), with
/// the date and time of day written out once a second rather than for every line.
fn write_time(out: &mut String) {
    thread_local! {
        /// The second last written, and its text without the fraction.
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let now = yc_proto_types::google::protobuf::Timestamp::now();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != now.seconds {
            let whole = yc_proto_types::google::protobuf::Timestamp {
                seconds: now.seconds,
                nanos: 0,
            };
            *text = whole.to_rfc3339().unwrap_or_default();
            text.pop(); // the `Z`
            *second = now.seconds;
        }
        out.push_str(text);
        out.push('.');
        push_digits(out, u64::from(now.nanos.cast_unsigned() / 1000), 6);
        out.push('Z');
    });
}

/// Writes `n` in decimal, with leading zeros to at least `width` digits.
fn push_digits(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while n > 0 || start > digits.len().saturating_sub(width.max(1)) {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// A call's latency as the call line writes it: milliseconds with three decimals (`1.234`),
/// written without the formatting machinery.
pub(crate) struct Millis {
    text: String,
}

impl Millis {
    pub(crate) fn new(elapsed: Duration) -> Self {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let mut text = String::with_capacity(16);
        push_digits(&mut text, micros / 1000, 1);
        text.push('.');
        push_digits(&mut text, micros % 1000, 3);
        Self { text }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// Writes fields as `name=value` after the message, as tracing-subscriber writes them: a text
/// value that is one plain word is written as it is, any other quoted and escaped; control
/// characters in any value are escaped, so that nothing a client sends can reach a terminal
/// through the log. Straight into the line's `String`: a line is written with no dynamic
/// writer and no formatting machinery for text and numbers.
pub(crate) struct FieldWriter<'w> {
    out: &'w mut String,
    first: bool,
}

impl FieldWriter<'_> {
    /// Writes what comes before a value.
    fn name(&mut self, name: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(' ');
        }
        if name != "message" {
            self.out.push_str(name);
            self.out.push('=');
        }
    }

    /// Writes a text field.
    pub(crate) fn text(&mut self, name: &str, value: &str) {
        self.name(name);
        // Writing into a String does not fail.
        let _ = write_text(self.out, value, name == "message");
    }

    /// Writes a number field.
    pub(crate) fn number(&mut self, name: &str, value: u64) {
        self.name(name);
        push_digits(self.out, value, 1);
    }
}

/// A word written without quotes: printable, no space, quote, `=` or backslash.
fn is_plain(text: &str) -> bool {
    /// The bytes a plain word may hold.
    const PLAIN: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let byte = b as u8;
            table[b] = byte.is_ascii_graphic() && !matches!(byte, b'"' | b'=' | b'\\');
            b += 1;
        }
        table
    };
    !text.is_empty() && text.bytes().all(|b| PLAIN[usize::from(b)])
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field.name(), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field.name(), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field.name());
        if value < 0 {
            self.out.push('-');
        }
        push_digits(self.out, value.unsigned_abs(), 1);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field.name());
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field.name());
        let _ = write!(EscapedTo(self.out), "{value:?}");
    }
}

/// Writes text with control characters escaped (`\u{1b}`).
struct EscapedTo<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for EscapedTo<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "{}", c.escape_default())?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Text log lines, as tracing-subscriber's default (`Full`) format writes them without
/// colours: `<time>  INFO <span>{<fields>}:<span>: <target>: <message> <fields>`. A layer of
/// its own rather than tracing-subscriber's `fmt` layer, since every call writes a line in a
/// span of its own: a span's fields are written once, when it is made, and a line goes
/// straight into the log's buffer.
pub(crate) struct TextLayer<W> {
    make_writer: W,
}

impl<W> TextLayer<W> {
    /// Lines written through `make_writer` ([`BufferedStderr`] in the server).
    pub(crate) fn new(make_writer: W) -> Self {
        Self { make_writer }
    }
}

/// A span's fields as a line writes them, kept in the span's extensions.
struct SpanText(String);

impl<S, W> tracing_subscriber::Layer<S> for TextLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        // Room for a call span's fields, the method a REST call records later included.
        let mut text = String::with_capacity(256);
        attrs.record(&mut FieldWriter {
            out: &mut text,
            first: true,
        });
        span.extensions_mut().insert(SpanText(text));
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(SpanText(text)) = extensions.get_mut::<SpanText>() {
            let first = text.is_empty();
            values.record(&mut FieldWriter { out: text, first });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        thread_local! {
            static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
        }
        TEXT.with_borrow_mut(|text| {
            text.clear();
            format_line(text, event, &ctx);
            let _ = self.make_writer.make_writer().write_all(text.as_bytes());
        });
    }
}

/// Whether lines are written by [`TextLayer`] into the log buffer (set when it is installed),
/// so that [`call_line`] may write a call's line itself.
static TEXT_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that [`TextLayer`] writes the process's lines into the log buffer.
pub(crate) fn text_lines() {
    TEXT_LINES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Writes the line of a call that ended, as [`TextLayer`] writes an INFO event with the
/// message `call` and target `target` in `span`: the span's fields come from the span's own
/// data in the registry, the event's are written by `fields` (`name=value` pairs, each
/// after a space). Returns false, having written nothing, when lines are not written by
/// [`TextLayer`] or the span is not in the registry; the caller then logs an event instead.
///
/// Measured: an event dispatched through the subscriber's layers and visited field by field
/// cost a tenth of a cheap call's time; this costs a lookup of the span and the copy.
pub(crate) fn call_line(
    span: &tracing::Span,
    target: &str,
    fields: impl FnOnce(&mut FieldWriter<'_>),
) -> bool {
    if !TEXT_LINES.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    let Some(shared) = BUFFER.get() else {
        return false;
    };
    thread_local! {
        static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let mut fields = Some(fields);
    span.with_subscriber(|(id, dispatch)| {
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return false;
        };
        let Some(data) = registry.span(id) else {
            return false;
        };
        let Some(fields) = fields.take() else {
            return false;
        };
        TEXT.with_borrow_mut(|text| {
            text.clear();
            write_head(text, Level::INFO, Some(data.scope()), target);
            let mut writer = FieldWriter {
                out: text,
                first: true,
            };
            writer.text("message", "call");
            fields(&mut writer);
            text.push('\n');
            let _ = Line { shared }.write_all(text.as_bytes());
        });
        true
    })
    .unwrap_or(false)
}

/// Writes what comes before a line's message: the time, the level, the spans the line is in
/// (from the outermost, each with its fields) and the target.
fn write_head<'a, R: LookupSpan<'a>>(
    text: &mut String,
    level: Level,
    scope: Option<tracing_subscriber::registry::Scope<'a, R>>,
    target: &str,
) {
    write_time(text);
    text.push_str(match level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    });
    if let Some(scope) = scope {
        for span in scope.from_root() {
            text.push_str(span.name());
            if let Some(SpanText(fields)) = span.extensions().get::<SpanText>()
                && !fields.is_empty()
            {
                text.push('{');
                text.push_str(fields);
                text.push('}');
            }
            text.push(':');
        }
        text.push(' ');
    }
    text.push_str(target);
    text.push_str(": ");
}

fn format_line<S>(
    text: &mut String,
    event: &Event<'_>,
    ctx: &tracing_subscriber::layer::Context<'_, S>,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    write_head(text, *meta.level(), ctx.event_scope(event), meta.target());
    event.record(&mut FieldWriter {
        out: text,
        first: true,
    });
    text.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what is logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn latencies_and_numbers_are_written_in_decimal() {
        for (micros, text) in [
            (0, "0.000"),
            (7, "0.007"),
            (1_234, "1.234"),
            (1_000_000, "1000.000"),
            (12_345_678, "12345.678"),
        ] {
            assert_eq!(Millis::new(Duration::from_micros(micros)).as_str(), text);
        }
        let mut text = String::new();
        for (n, width) in [(0, 1), (5, 6), (123_456, 6), (u64::MAX, 1), (42, 0)] {
            push_digits(&mut text, n, width);
            text.push(' ');
        }
        assert_eq!(text, "0 000005 123456 18446744073709551615 42 ");
    }

    #[test]
    fn lines_read_like_the_default_format_and_escape_what_clients_send() {
        let captured = Captured::default();
        let writer = captured.clone();
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber =
            tracing_subscriber::registry().with(TextLayer::new(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                request_id = "abc-1",
                path = "/a b",
                agent = "evil\u{1b}[31m",
                empty = "",
                status = 200u16,
                delta = -3i64,
                most = i64::MIN,
                ok = true,
                "call"
            );
            tracing::warn!(error = %"bad\nthing", "store\tunavailable");
        });
        let text = String::from_utf8(lock(&captured.0).clone()).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            // 2026-01-02T03:04:05.123456Z
            let time = &line[..27];
            assert!(
                time.chars().enumerate().all(|(i, c)| match i {
                    4 | 7 => c == '-',
                    10 => c == 'T',
                    13 | 16 => c == ':',
                    19 => c == '.',
                    26 => c == 'Z',
                    _ => c.is_ascii_digit(),
                }),
                "{line}"
            );
        }
        assert_eq!(
            &lines[0][27..],
            "  INFO yc_images::log::tests: call request_id=abc-1 path=\"/a b\" \
             agent=\"evil\\u{1b}[31m\" empty=\"\" status=200 delta=-3 most=-9223372036854775808 ok=true"
        );
        assert_eq!(
            &lines[1][27..],
            "  WARN yc_images::log::tests: store\\tunavailable error=bad\\nthing"
        );

        // In a span: its fields once, in braces, fields recorded later after them.
        let span = tracing::info_span!("call", request_id = "r-1", caller = tracing::field::Empty);
        let captured_line = {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber =
                tracing_subscriber::registry().with(TextLayer::new(move || writer.clone()));
            tracing::subscriber::with_default(subscriber, || {
                let span =
                    tracing::info_span!("call", request_id = "r-1", caller = tracing::field::Empty);
                span.record("caller", "alice smith");
                let _in = span.enter();
                tracing::error!(store = "operation store", "store unavailable");
            });
            String::from_utf8(lock(&captured.0).clone()).expect("UTF-8")
        };
        drop(span);
        assert_eq!(
            &captured_line[27..],
            " ERROR call{request_id=r-1 caller=\"alice smith\"}: yc_images::log::tests: \
             store unavailable store=\"operation store\"\n"
        );
    }
}
