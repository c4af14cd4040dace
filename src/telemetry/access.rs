//! The access line: one per request, in the log's own format (text or JSON).
//!
//! Formatting it as a `tracing` event through the fmt layer took as many instructions
//! as the rest of keyrelay's request path together: every field went through the
//! layer's visitor, its (disabled) colour styles and `Debug` wrappers. So when the
//! log is keyrelay's own and has no colours (a pod's log), the line is rendered here,
//! byte for byte as the fmt layer renders it (`access_tests` checks that against
//! `tracing-subscriber` itself), and queued on the log's buffer. `RUST_LOG` still
//! decides whether it is written ([`passes`]). Anywhere else (a terminal, a test's subscriber)
//! it stays a `tracing` event.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

use super::log_writer::LogBuffer;
use super::ACCESS_TARGET;

/// What one request's access line says; `None` fields are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine<'a> {
    pub model: Option<&'a str>,
    pub key: Option<&'a str>,
    pub deployment: Option<&'a str>,
    pub status: u16,
    pub attempts: u32,
    pub latency_ms: Option<f64>,
    pub duration_ms: f64,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub complete: bool,
}

/// Where access lines are rendered directly: set by `telemetry::install` when its
/// subscriber is the process's and writes without colours.
pub(super) struct DirectSink {
    /// Whether the log's filter lets the line through ([`passes`], asked once: the
    /// filter is fixed at start).
    pub enabled: bool,
    pub json: bool,
    /// `None`: straight to stderr (the writer thread could not start).
    pub buffer: Option<Arc<LogBuffer>>,
}

static DIRECT: OnceLock<DirectSink> = OnceLock::new();

pub(super) fn render_directly(sink: DirectSink) {
    let _ = DIRECT.set(sink);
}

/// Whether `filter` lets an `info` event of [`ACCESS_TARGET`] through, asked the one
/// way that gives its real answer: an event, under a scratch subscriber filtered by it.
/// (`tracing::enabled!` cannot say: with per-layer filters the dispatcher answers for
/// all its layers, and the fmt layer drops the event only when it arrives.)
pub(super) fn passes(filter: EnvFilter) -> bool {
    struct Seen(Arc<AtomicBool>);
    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let seen = Arc::new(AtomicBool::new(false));
    let probe = tracing_subscriber::registry().with(Seen(Arc::clone(&seen)).with_filter(filter));
    tracing::subscriber::with_default(probe, || tracing::info!(target: ACCESS_TARGET, "request"));
    seen.load(Ordering::Relaxed)
}

/// A line longer than this does not keep its buffer for the next one.
const KEEP_CAPACITY: usize = 4096;

thread_local! {
    /// The line being rendered, reused so that a line costs no allocation.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl AccessLine<'_> {
    /// Writes the line if `RUST_LOG` lets `keyrelay::access` through at `info`.
    pub fn log(&self) {
        let Some(sink) = DIRECT.get() else {
            self.event();
            return;
        };
        if !sink.enabled {
            return;
        }
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else { return self.event() };
            line.clear();
            self.render(sink.json, SystemTime::now(), &mut line);
            match &sink.buffer {
                Some(buffer) => buffer.push(&line),
                None => {
                    let _ = std::io::stderr().write_all(&line);
                }
            }
            if line.capacity() > KEEP_CAPACITY {
                *line = Vec::new();
            }
        });
    }

    /// The line as a `tracing` event, for whatever subscriber is installed.
    pub(super) fn event(&self) {
        tracing::info!(
            target: ACCESS_TARGET,
            model = self.model,
            key = self.key,
            deployment = self.deployment,
            status = self.status,
            attempts = self.attempts,
            latency_ms = self.latency_ms,
            duration_ms = self.duration_ms,
            input_tokens = self.input_tokens,
            output_tokens = self.output_tokens,
            cost_usd = self.cost_usd,
            complete = self.complete,
            "request"
        );
    }

    /// The line as the fmt layer writes it at `now`, newline included (the target,
    /// [`ACCESS_TARGET`], spelled out).
    pub(super) fn render(&self, json: bool, now: SystemTime, out: &mut Vec<u8>) {
        let mut fields = Fields { out: &mut *out, json };
        let at = humantime::format_rfc3339_micros(now);
        if json {
            fields.out.extend_from_slice(br#"{"timestamp":""#);
            let _ = write!(fields.out, "{at}");
            fields.out.extend_from_slice(br#"","level":"INFO","fields":{"message":"request""#);
        } else {
            let _ = write!(fields.out, "{at}");
            fields.out.extend_from_slice(b"  INFO keyrelay::access: request");
        }
        fields.str("model", self.model);
        fields.str("key", self.key);
        fields.str("deployment", self.deployment);
        fields.int("status", Some(u64::from(self.status)));
        fields.int("attempts", Some(u64::from(self.attempts)));
        fields.float("latency_ms", self.latency_ms);
        fields.float("duration_ms", Some(self.duration_ms));
        fields.int("input_tokens", self.input_tokens);
        fields.int("output_tokens", self.output_tokens);
        fields.float("cost_usd", self.cost_usd);
        fields.name("complete");
        out.extend_from_slice(if self.complete { b"true" } else { b"false" });
        if json {
            out.extend_from_slice(br#"},"target":"keyrelay::access"}"#);
        }
        out.push(b'\n');
    }
}

/// Writes `name=value` (text) or `,"name":value` (JSON) the way the fmt layer's
/// visitors do: strings and floats in text as `Debug` shows them, in JSON as
/// `serde_json` writes them.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
}

impl Fields<'_> {
    /// Field names are keyrelay's own: nothing in them to escape.
    fn name(&mut self, name: &str) {
        let (before, after): (&[u8], &[u8]) = if self.json { (b",\"", b"\":") } else { (b" ", b"=") };
        self.out.extend_from_slice(before);
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(after);
    }

    fn str(&mut self, name: &str, value: Option<&str>) {
        let Some(value) = value else { return };
        self.name(name);
        if self.json {
            self.json_value(&value);
        } else if value.bytes().all(|b| matches!(b, b' '..=b'~') && b != b'"' && b != b'\\') {
            // Printable ASCII with nothing to escape: what `Debug` writes, quoted.
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else {
            let _ = write!(self.out, "{value:?}");
        }
    }

    fn int(&mut self, name: &str, value: Option<u64>) {
        let Some(value) = value else { return };
        self.name(name);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn float(&mut self, name: &str, value: Option<f64>) {
        let Some(value) = value else { return };
        self.name(name);
        if self.json {
            self.json_value(&value);
        } else {
            // As `Debug` writes it: `ryu`'s shortest digits differ from it in the last
            // place for some 17-digit values (150898429778999.63 became ...99.62).
            let _ = write!(self.out, "{value:?}");
        }
    }

    fn json_value(&mut self, value: &impl serde::Serialize) {
        // Writing a string or a number into memory cannot fail.
        let _ = serde_json::to_writer(&mut *self.out, value);
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
