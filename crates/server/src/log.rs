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
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
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

/// One INFO line of `target`, written straight into the buffer in the layout [`Lines`] and
/// [`Fields`] give every other line, without going through tracing's dispatch and field
/// visitors: for the line every call writes. The caller checks that INFO is enabled for
/// `target` (`tracing::enabled!`). Before [`stderr`] made the buffer, the line goes to
/// standard error directly.
pub(crate) fn info_line(target: &str, message: &str, fields: impl FnOnce(&mut LineFields)) {
    thread_local! {
        static TEXT: RefCell<String> = const { RefCell::new(String::new()) };
    }
    TEXT.with_borrow_mut(|text| {
        text.clear();
        format_info_line(text, target, message, fields);
        let _ = match BUFFER.get() {
            Some(shared) => Line { shared }.write_all(text.as_bytes()),
            None => std::io::stderr().write_all(text.as_bytes()),
        };
    });
}

fn format_info_line(
    text: &mut String,
    target: &str,
    message: &str,
    fields: impl FnOnce(&mut LineFields),
) {
    let _ = Clock.format_time(&mut Writer::new(text));
    text.push_str("  INFO ");
    text.push_str(target);
    text.push_str(": ");
    let mut line = LineFields(text);
    let _ = line.text_value(message, true);
    fields(&mut line);
    text.push('\n');
}

/// Appends the decimal digits of `value`.
fn push_digits(text: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        text.push(char::from(d));
    }
}

/// The fields of an [`info_line`], written as [`Fields`] writes them.
pub(crate) struct LineFields<'a>(&'a mut String);

impl LineFields<'_> {
    /// `name=value`: a plain word as it is, other text quoted and escaped.
    pub(crate) fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name);
        let _ = self.text_value(value, false);
        self
    }

    /// `name=value` for a number.
    pub(crate) fn number(&mut self, name: &str, value: u64) -> &mut Self {
        self.name(name);
        push_digits(self.0, value);
        self
    }

    /// `name=<milliseconds>.<three decimals>` for a duration.
    pub(crate) fn millis(&mut self, name: &str, value: Duration) -> &mut Self {
        self.name(name);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        push_digits(self.0, micros / 1000);
        self.0.push('.');
        let fraction = micros % 1000;
        if fraction < 100 {
            self.0.push('0');
        }
        if fraction < 10 {
            self.0.push('0');
        }
        push_digits(self.0, fraction);
        self
    }

    fn name(&mut self, name: &str) {
        self.0.push(' ');
        self.0.push_str(name);
        self.0.push('=');
    }

    fn text_value(&mut self, value: &str, message: bool) -> fmt::Result {
        write_text(self.0, value, message)
    }
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

/// Log lines' time, as tracing-subscriber writes it (`2026-01-02T03:04:05.123456Z`), with the
/// date and time of day written out once a second rather than for every line.
pub(crate) struct Clock;

impl FormatTime for Clock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
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
                *text = whole.to_rfc3339().map_err(|_| fmt::Error)?;
                text.pop(); // the `Z`
                *second = now.seconds;
            }
            // `.` and the microseconds in six digits, then `Z`.
            let mut fraction = *b".000000Z";
            let mut micros = now.nanos / 1000;
            for digit in fraction[1..7].iter_mut().rev() {
                *digit = b'0' + (micros % 10) as u8;
                micros /= 10;
            }
            w.write_str(text)?;
            w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
        })
    }
}

/// Fields as `name=value` after the message, as tracing-subscriber writes them, in fewer
/// steps: a text value that is one plain word is written as it is, any other quoted and
/// escaped; control characters in any value are escaped, so that nothing a client sends can
/// reach a terminal through the log.
pub(crate) struct Fields;

impl<'w> FormatFields<'w> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FieldWriter<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl FieldWriter<'_> {
    /// Writes what comes before a value; false once writing failed.
    fn name(&mut self, field: &Field) -> bool {
        if self.result.is_err() {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        if field.name() != "message" && self.result.is_ok() {
            self.result = self
                .writer
                .write_str(field.name())
                .and_then(|()| self.writer.write_char('='));
        }
        self.result.is_ok()
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
        if self.name(field) {
            self.result = write_text(&mut self.writer, value, field.name() == "message");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.name(field) {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.name(field) {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.name(field) {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.name(field) {
            self.result = write!(EscapedTo(&mut self.writer), "{value:?}");
        }
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

/// Log lines as tracing-subscriber's default (`Full`) format writes them without colours:
/// `<time>  INFO <span>{<fields>}:<span>: <target>: <message> <fields>`, in fewer steps, since
/// every call writes one.
pub(crate) struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        Clock.format_time(&mut writer)?;
        let meta = event.metadata();
        writer.write_str(match *meta.level() {
            Level::ERROR => " ERROR ",
            Level::WARN => "  WARN ",
            Level::INFO => "  INFO ",
            Level::DEBUG => " DEBUG ",
            Level::TRACE => " TRACE ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                writer.write_str(span.name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                writer.write_str(":")?;
            }
            writer.write_char(' ')?;
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
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
    fn lines_read_like_the_default_format_and_escape_what_clients_send() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(Fields)
            .event_format(Lines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                request_id = "abc-1",
                path = "/a b",
                agent = "evil\u{1b}[31m",
                empty = "",
                status = 200u16,
                delta = -3i64,
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
             agent=\"evil\\u{1b}[31m\" empty=\"\" status=200 delta=-3 ok=true"
        );
        assert_eq!(
            &lines[1][27..],
            "  WARN yc_images::log::tests: store\\tunavailable error=bad\\nthing"
        );

        // The call line written straight into the buffer reads the same.
        let mut direct = String::new();
        format_info_line(&mut direct, "yc_images::log::tests", "call", |line| {
            line.str("request_id", "abc-1")
                .str("path", "/a b")
                .str("agent", "evil\u{1b}[31m")
                .str("empty", "")
                .number("status", 200);
        });
        let through_tracing = &lines[0][27..lines[0].find(" delta=").expect("delta")];
        assert_eq!(&direct[27..], format!("{through_tracing}\n"));
        for (micros, text) in [
            (0, " ms=0.000"),
            (7, " ms=0.007"),
            (42, " ms=0.042"),
            (1_234, " ms=1.234"),
            (90_000_100, " ms=90000.100"),
        ] {
            let mut line = String::new();
            LineFields(&mut line).millis("ms", Duration::from_micros(micros));
            assert_eq!(line, text);
        }
        let mut line = String::new();
        LineFields(&mut line).number("n", u64::MAX).number("z", 0);
        assert_eq!(line, " n=18446744073709551615 z=0");
    }
}
