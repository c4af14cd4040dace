//! Property tests over arbitrary input to everything that parses files: both config
//! formats (raw text and bytes, documents built from the known fields with hostile
//! values, random edits of the shipped examples) and secret files. None may panic;
//! a config that loads must also build a snapshot and render its table.
//!
//! Here rather than in `config` because they run the whole way to a [`Snapshot`]:
//! `pool` depends on `config`, never the other way, tests included.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as Generator;
use serde_yaml::{Mapping, Value};

use crate::config::*;
use crate::pool::Snapshot;
use crate::secret::Secret;

/// Field names of both formats, so generated documents reach past "unknown field".
const FIELDS: [&str; 58] = [
    "server",
    "defaults",
    "models",
    "kubernetes",
    "listen",
    "admin",
    "region",
    "body_limit",
    "timeouts",
    "session_header",
    "connect",
    "request",
    "attempt",
    "client_body",
    "shutdown_grace",
    "strategy",
    "num_retries",
    "cooldown",
    "allowed_fails",
    "queue",
    "max_waiting",
    "max_wait",
    "fallbacks",
    "deployments",
    "name",
    "provider",
    "model",
    "api_base",
    "keys",
    "keys_from",
    "weight",
    "rpm",
    "tpm",
    "max_inflight",
    "order",
    "send_keys_over_http",
    "namespace",
    "secret",
    "config_map",
    "model_list",
    "model_name",
    "litellm_params",
    "api_key",
    "region_name",
    "timeout",
    "litellm_settings",
    "router_settings",
    "request_timeout",
    "cooldown_time",
    "routing_strategy",
    "environment_variables",
    "general_settings",
    "model_info",
    "drop_params",
    "stream_timeout",
    "<<",
    "m",
    "K",
];

/// Scalars that have broken parsers before or sit on a boundary.
const HOSTILE: [&str; 40] = [
    "1e19",
    "1e19s",
    "-1",
    "0",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "NaN",
    ".inf",
    "-.inf",
    "1.5",
    "5s",
    "6h",
    "99999999999999years",
    "2m 3s",
    "32MiB",
    "99999999999999999999GiB",
    "0B",
    "openai",
    "openai-compatible",
    "azure",
    "groq",
    "gemini/gemini-2.5-flash",
    "openai/x",
    "openrouter/a/b",
    "http://10.0.0.1:8000/v1",
    "http://127.0.0.1:1/v1",
    "https://[::1]/v1",
    "ftp://x",
    "os.environ/K",
    "os.environ/sk-abc",
    "os.environ/",
    "sk-proj-Q3vX9kLm2PzT8wRb5NcY",
    "round-robin",
    "usage-based-routing-v2",
    "127.0.0.1:0",
    "localhost:99999",
    "x-session-id",
    "bad header",
    "..data",
];

/// Numbers on the edges of the types they end up in.
const EDGES: [u64; 10] =
    [0, 1, 100_000, 100_001, u32::MAX as u64, u32::MAX as u64 + 1, 1 << 53, (1 << 61) + 1, u64::MAX - 1, u64::MAX];

fn scalar() -> impl Generator<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<u64>().prop_map(|n| Value::Number(n.into())),
        2 => prop::sample::select(&EDGES[..]).prop_map(|n| Value::Number(n.into())),
        1 => prop::sample::select(&[1e19, 1.8e19, 1e300, f64::NAN, f64::INFINITY, -0.0, 5e-324][..]).prop_map(|n| Value::Number(n.into())),
        1 => any::<i64>().prop_map(|n| Value::Number(n.into())),
        1 => any::<f64>().prop_map(|n| Value::Number(n.into())),
        4 => prop::sample::select(&HOSTILE[..]).prop_map(|s| Value::String(s.to_owned())),
        2 => "\\PC{0,24}".prop_map(Value::String),
    ]
}

fn key() -> impl Generator<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(&FIELDS[..]).prop_map(|s| Value::String(s.to_owned())),
        1 => scalar(),
    ]
}

/// Nested mappings and sequences of known fields and hostile scalars.
fn value() -> impl Generator<Value = Value> {
    scalar().prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..8).prop_map(|pairs| Value::Mapping(pairs.into_iter().collect())),
        ]
    })
}

/// A document with the top level of either format.
fn document() -> impl Generator<Value = Value> {
    let top =
        prop_oneof![Just("models"), Just("model_list"), Just("server"), Just("defaults"), Just("litellm_settings")];
    prop::collection::vec((top, value()), 1..5).prop_map(|pairs| {
        let map: Mapping = pairs.into_iter().map(|(k, v)| (Value::String(k.to_owned()), v)).collect();
        Value::Mapping(map)
    })
}

/// Mostly valid documents of either format whose optional fields carry hostile
/// values, so the conversions past the required fields are reached.
fn plausible_document() -> impl Generator<Value = String> {
    let extras = |fields: &'static [&'static str]| {
        // A scalar as serde_yaml writes it, or hostile text unquoted (so `1e19` is a
        // float and `18446744073709551615` an integer to the parser).
        let text = prop_oneof![
            3 => prop::sample::select(&EDGES[..]).prop_map(|n| n.to_string()),
            1 => prop::sample::select(&HOSTILE[..]).prop_map(str::to_owned),
            1 => scalar().prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default().trim().to_owned()),
        ];
        let pairs = prop::collection::vec((prop::sample::select(fields), text), 1..3);
        prop::option::weighted(0.4, pairs).prop_map(|pairs| {
            pairs.unwrap_or_default().into_iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>()
        })
    };
    let native = (
        extras(&["weight", "rpm", "tpm", "max_inflight", "order", "region", "name", "api_base", "send_keys_over_http"]),
        extras(&["num_retries", "cooldown", "allowed_fails", "strategy", "fallbacks"]),
        extras(&["connect", "request", "attempt", "client_body", "shutdown_grace"]),
        extras(&["max_waiting", "max_wait"]),
        prop::sample::select(&["openai", "groq", "azure", "openai-compatible"][..]),
    )
        .prop_map(|(deployment, model, timeouts, queue, provider)| {
            format!(
                "server:\n  timeouts: {{ {} }}\ndefaults:\n  queue: {{ {} }}\nmodels:\n  m:\n    {}\n    deployments:\n      - {{ provider: {provider}, model: x, keys: [K], {} }}\n",
                timeouts.join(", "), queue.join(", "), model.join("\n    "), deployment.join(", ")
            )
        });
    let litellm = (
        extras(&["rpm", "tpm", "weight", "order", "api_base", "api_key", "region_name", "timeout"]),
        extras(&["num_retries", "request_timeout"]),
        extras(&["allowed_fails", "cooldown_time", "timeout", "num_retries", "routing_strategy"]),
        prop::sample::select(&["openai/x", "groq/y", "azure/z", "hosted_vllm/w"][..]),
    )
        .prop_map(|(params, settings, router, model)| {
            format!(
                "litellm_settings: {{ {} }}\nrouter_settings: {{ {} }}\nmodel_list:\n  - model_name: m\n    litellm_params: {{ model: {model}, {} }}\n",
                settings.join(", "), router.join(", "), params.join(", ")
            )
        });
    prop_oneof![native, litellm]
}

/// Loads `text`; whatever loads must also build and render.
fn exercise(text: &str) {
    let _ = LineIndex::build(text);
    let Ok(loaded) = load_str(text, Path::new("fuzz.yaml")) else { return };
    let _ = render_table(&loaded.config);
    let inline: BTreeMap<String, Secret> = loaded
        .config
        .models
        .values()
        .flat_map(|m| &m.deployments)
        .flat_map(|d| &d.keys)
        .map(|k| (k.name.clone(), Secret::new("fuzz-key\nfuzz-key-2")))
        .collect();
    let secrets = ResolvedSecrets::read(&loaded.config, &SecretSource::new(None, inline));
    let _ = Snapshot::build(&loaded.config, &secrets, None);
}

/// One random edit: insert, delete or replace a short span.
fn edit() -> impl Generator<Value = (usize, usize, String)> {
    (
        any::<usize>(),
        0usize..8,
        prop_oneof![Just(String::new()), "[ -~\\n]{0,8}", prop::sample::select(&HOSTILE[..]).prop_map(str::to_owned)],
    )
}

fn apply(text: &str, edits: &[(usize, usize, String)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for (at, len, insert) in edits {
        let at = at % (bytes.len() + 1);
        let end = (at + len).min(bytes.len());
        bytes.splice(at..end, insert.bytes());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        exercise(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn documents_of_known_fields_never_panic(doc in document()) {
        let text = serde_yaml::to_string(&doc).expect("a Value serializes");
        exercise(&text);
    }

    #[test]
    fn plausible_documents_with_hostile_values_never_panic(texts in prop::collection::vec(plausible_document(), 4)) {
        for text in texts {
            exercise(&text);
        }
    }

    #[test]
    fn edited_shipped_examples_never_panic(native in any::<bool>(), edits in prop::collection::vec(edit(), 1..6)) {
        let example = if native { include_str!("../../config/keyrelay.yaml") } else { include_str!("../../config/litellm-proxy-config.yaml") };
        exercise(&apply(example, &edits));
    }

    #[test]
    fn secret_files_never_panic(
        content in prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 0..512),
            2 => prop::collection::vec(prop::sample::select(&b"ab\r\n\0 #\t\xff"[..]), 0..512),
            1 => (any::<u8>(), 60_000usize..70_000).prop_map(|(b, n)| vec![b; n]),
        ],
        lines in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("K"), &content).expect("write");
        let source = SecretSource::new(Some(dir.path().to_path_buf()), BTreeMap::new());
        let kind = if lines { KeyRefKind::Lines } else { KeyRefKind::Single };
        let key = KeyRef { name: "K".into(), kind, origin: Origin::default(), implicit: false };
        match source.resolve(&key) {
            Ok(keys) => {
                prop_assert!(content.len() as u64 <= MAX_SECRET_BYTES);
                for k in keys {
                    let v = k.secret.expose();
                    prop_assert!(!v.is_empty() && v.trim() == v);
                    prop_assert!(!lines || !v.contains('\n'));
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// Aliases that expand to billions of nodes, and nesting thousands deep, are refused
/// by the YAML parser's own limits before anything walks them.
#[test]
fn yaml_bombs_are_refused() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"]) {
        bomb += &format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n");
    }
    bomb += "models: *i\n";
    let message = load_str(&bomb, Path::new("bomb.yaml")).unwrap_err().to_string();
    assert!(message.contains("repetition limit exceeded"), "{message}");

    let deep = format!("models: {}", "[".repeat(10_000));
    let message = load_str(&deep, Path::new("deep.yaml")).unwrap_err().to_string();
    assert!(message.contains("recursion limit exceeded"), "{message}");

    let huge = format!("models: {{}}\n#{}\n", "x".repeat(MAX_CONFIG_BYTES as usize));
    let message = load_str(&huge, Path::new("huge.yaml")).unwrap_err().to_string();
    assert!(message.contains("larger than the limit of 1 MiB"), "{message}");
}

/// The bounds themselves are accepted, and a snapshot builds from them (a semaphore
/// of `max_waiting` permits, deadlines `request_timeout` ahead).
#[test]
fn values_at_the_bounds_load_and_build() {
    let text = "\
server:
  body_limit: 1GiB
  max_buffered_bodies: 64GiB
  max_connections: 100000
  admin_max_connections: 100000
  timeouts: { connect: 5m, request: 6h, attempt: 6h, client_body: 1h, shutdown_grace: 1h, header_read: 5m, idle: 1h }
defaults: { num_retries: 100, cooldown: 1h, cooldown_floor: 1m, max_cooldown: 24h, allowed_fails: 1000, queue: { max_waiting: 100000, max_wait: 1h } }
models:
  m:
    deployments:
      - { provider: openai, model: x, keys: [K], weight: 10000, rpm: 10000000, tpm: 10000000000, max_inflight: 100000, order: 1000 }
";
    let config = load_str(text, Path::new("c.yaml")).unwrap_or_else(|e| panic!("{e}")).config;
    assert_eq!(config.server.request_timeout, Duration::from_secs(6 * 3600));
    assert_eq!(config.models["m"].queue.max_waiting, 100_000);
    let mut inline = BTreeMap::new();
    inline.insert("K".to_owned(), Secret::new("k-value"));
    let secrets = ResolvedSecrets::read(&config, &SecretSource::new(None, inline));
    assert!(Snapshot::build(&config, &secrets, None).is_ok());
}
