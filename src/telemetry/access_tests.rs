use std::io;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use proptest::prelude::*;
use tracing_subscriber::layer::SubscriberExt;

use super::AccessLine;

/// Collects what the fmt layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The line as `tracing-subscriber`'s fmt layer writes the event, configured as
/// `telemetry::install` configures it for a log that is not a terminal.
fn through_fmt_layer(line: &AccessLine<'_>, json: bool) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || writer.clone());
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
        Box::new(tracing_subscriber::registry().with(layer.json()))
    } else {
        Box::new(tracing_subscriber::registry().with(layer))
    };
    tracing::subscriber::with_default(subscriber, || line.event());
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn rendered(line: &AccessLine<'_>, json: bool) -> String {
    let mut out = Vec::new();
    line.render(json, SystemTime::now(), &mut out);
    String::from_utf8(out).unwrap()
}

/// The line without its timestamp (`2026-12-03T17:40:00.343530Z`, 27 characters),
/// which differs between two renderings.
fn untimed(line: &str, json: bool) -> String {
    let start = if json { r#"{"timestamp":""#.len() } else { 0 };
    assert!(line.len() > start + 27, "{line:?}");
    let stamp = &line[start..start + 27];
    assert!(humantime::parse_rfc3339(stamp).is_ok(), "timestamp {stamp:?} in {line:?}");
    format!("{}{}", &line[..start], &line[start + 27..])
}

fn text() -> impl Strategy<Value = Option<String>> {
    // Quotes, backslashes, control characters and non-ASCII: what `Debug` and JSON
    // escape differently.
    proptest::option::of(prop_oneof!["[a-z0-9/._-]{0,20}", any::<String>(), "[\"\\\\\n\t\u{7f}\u{200b}é]{0,6}"])
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..10_000_000).prop_map(|t| f64::from(t) / 10.0),
        any::<f64>(),
        Just(0.0),
        Just(1e-7),
        Just(1e16),
        Just(123_456_789_012_345_680.0),
        // `ryu` writes ...99.62 for it, `Debug` ...99.63.
        Just(150_898_429_778_999.63),
    ]
}

proptest! {
    #[test]
    fn rendered_as_the_fmt_layer_renders_the_event(
        model in text(), key in text(), deployment in text(),
        status in any::<u16>(), attempts in any::<u32>(),
        latency_ms in proptest::option::of(float()), duration_ms in float(),
        input_tokens in proptest::option::of(any::<u64>()), output_tokens in proptest::option::of(any::<u64>()),
        cost_usd in proptest::option::of(float()), complete in any::<bool>(),
    ) {
        let line = AccessLine {
            model: model.as_deref(),
            key: key.as_deref(),
            deployment: deployment.as_deref(),
            status,
            attempts,
            latency_ms,
            duration_ms,
            input_tokens,
            output_tokens,
            cost_usd,
            complete,
        };
        for json in [false, true] {
            let ours = rendered(&line, json);
            let theirs = through_fmt_layer(&line, json);
            prop_assert_eq!(untimed(&ours, json), untimed(&theirs, json), "json: {}", json);
        }
    }
}

#[test]
fn a_typical_line_reads_as_documented() {
    let line = AccessLine {
        model: Some("gpt-4o"),
        key: Some("OPENAI_KEY_1"),
        deployment: Some("openai/gpt-4o"),
        status: 200,
        attempts: 1,
        latency_ms: Some(1.6),
        duration_ms: 2.1,
        input_tokens: Some(35),
        output_tokens: Some(17),
        cost_usd: None,
        complete: true,
    };
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_796_319_600_343_530);
    let mut out = Vec::new();
    line.render(false, at, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "2026-12-03T17:40:00.343530Z  INFO keyrelay::access: request model=\"gpt-4o\" key=\"OPENAI_KEY_1\" \
         deployment=\"openai/gpt-4o\" status=200 attempts=1 latency_ms=1.6 duration_ms=2.1 input_tokens=35 \
         output_tokens=17 complete=true\n"
    );
    let mut out = Vec::new();
    line.render(true, at, &mut out);
    let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["fields"]["latency_ms"], 1.6);
    assert_eq!(value["target"], "keyrelay::access");
}

#[test]
fn the_filter_decides_as_it_decides_for_the_event() {
    let passes = |spec: &str| super::passes(tracing_subscriber::EnvFilter::new(spec));
    assert!(passes("info"));
    assert!(passes("debug"));
    assert!(passes("keyrelay=debug"));
    assert!(passes("off,keyrelay::access=info"));
    assert!(!passes("warn"));
    assert!(!passes("info,keyrelay::access=off"));
    assert!(!passes("keyrelay::proxy=info"));
}
