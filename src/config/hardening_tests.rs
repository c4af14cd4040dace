//! Configs that used to pass and then fail at run time: numbers past any sane bound,
//! keys pasted where their names belong, and keys headed for plain http.

use std::path::Path;

use super::*;

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("c.yaml"))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(loaded) => panic!("expected errors, got a config with warnings {:#?}", loaded.warnings),
        Err(ConfigErrors(list)) => list,
    }
}

/// The message at exactly `path`, which must also have a line.
fn message_at(list: &[Diagnostic], path: &str) -> String {
    let d = list.iter().find(|d| d.origin.path == path).unwrap_or_else(|| panic!("no diagnostic at {path}: {list:#?}"));
    assert!(d.origin.line.is_some(), "{d}");
    d.message.clone()
}

#[test]
fn every_native_number_and_duration_has_an_upper_bound() {
    let text = "\
server:
  body_limit: 2GiB
  timeouts: { connect: 1e19, request: 1e19, attempt: 7h, client_body: 18446744073709551615, shutdown_grace: 1e19 }
defaults:
  num_retries: 101
  cooldown: 1e19
  allowed_fails: 4294967296
  queue: { max_waiting: 18446744073709551615, max_wait: 1e19 }
models:
  m:
    num_retries: 100000
    cooldown: 2h
    allowed_fails: 1001
    queue: { max_waiting: 100001, max_wait: 61m }
    deployments:
      - { provider: openai, model: x, keys: [K], weight: 10001, rpm: 10000001, tpm: 10000000001, max_inflight: 100001, order: 1001 }
";
    let list = errors(text);
    let expected = [
        ("server.body_limit", "must be at most 1073741824"),
        ("server.timeouts.connect", "must be at most 5m"),
        ("server.timeouts.request", "must be at most 6h"),
        ("server.timeouts.attempt", "must be at most 6h"),
        ("server.timeouts.client_body", "must be at most 1h"),
        ("server.timeouts.shutdown_grace", "must be at most 1h"),
        ("defaults.num_retries", "must be at most 100"),
        ("defaults.cooldown", "must be at most 1h"),
        ("defaults.allowed_fails", "must be at most 1000"),
        ("defaults.queue.max_waiting", "must be at most 100000"),
        ("defaults.queue.max_wait", "must be at most 1h"),
        ("models.m.num_retries", "must be at most 100"),
        ("models.m.cooldown", "must be at most 1h"),
        ("models.m.allowed_fails", "must be at most 1000"),
        ("models.m.queue.max_waiting", "must be at most 100000"),
        ("models.m.queue.max_wait", "must be at most 1h"),
        ("models.m.deployments[0].weight", "must be at most 10000"),
        ("models.m.deployments[0].rpm", "must be at most 10000000"),
        ("models.m.deployments[0].tpm", "must be at most 10000000000"),
        ("models.m.deployments[0].max_inflight", "must be at most 100000"),
        ("models.m.deployments[0].order", "must be at most 1000"),
    ];
    for (path, message) in expected {
        assert_eq!(message_at(&list, path), message, "{path}");
    }
    assert_eq!(list.len(), expected.len(), "{list:#?}");
}

#[test]
fn every_litellm_number_and_duration_has_an_upper_bound() {
    let text = "\
litellm_settings: { num_retries: 101, request_timeout: 1e19 }
router_settings: { allowed_fails: 1001, cooldown_time: 1e19, timeout: 86401s }
model_list:
  - model_name: m
    litellm_params:
      model: openai/x
      api_key: os.environ/K
      rpm: 4294967296
      tpm: 18446744073709551615
      weight: 10001
      order: 1001
";
    let list = errors(text);
    for (path, message) in [
        ("litellm_settings.num_retries", "must be at most 100"),
        ("litellm_settings.request_timeout", "must be at most 6h"),
        ("router_settings.allowed_fails", "must be at most 1000"),
        ("router_settings.cooldown_time", "must be at most 1h"),
        ("router_settings.timeout", "must be at most 6h"),
        ("model_list[0].litellm_params.rpm", "must be at most 10000000"),
        ("model_list[0].litellm_params.tpm", "must be at most 10000000000"),
        ("model_list[0].litellm_params.weight", "must be at most 10000"),
        ("model_list[0].litellm_params.order", "must be at most 1000"),
    ] {
        assert_eq!(message_at(&list, path), message, "{path}");
    }
}

/// Every 8-character window of `value`.
fn pieces(value: &str) -> impl Iterator<Item = &str> {
    (0..=value.len().saturating_sub(8)).map(move |i| &value[i..(i + 8).min(value.len())])
}

fn assert_not_shown(haystack: &str, value: &str) {
    for piece in pieces(value) {
        assert!(!haystack.contains(piece), "{piece:?} of a pasted key is shown in:\n{haystack}");
    }
}

/// Shaped like real keys (made-up values) that the old check let through.
pub(crate) const PASTED: [&str; 5] = [
    "3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e",
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "csk-x7k2m9p4v8t3w6r1y5n0q8s2d7f4g9h3j6k1l5z8",
    "123e4567-e89b-12d3-a456-426614174000",
    "9e107d9d372bb6826bd81d3542a419d6f2a1c3b5d7e9f1a3c5b7d9e1f3a5c7b9",
];

#[test]
fn keys_pasted_as_secret_names_are_refused_without_being_shown() {
    let native = format!(
        "models:\n  m:\n    deployments:\n      - provider: openai\n        model: x\n        keys: [{}, {}, {}, {}]\n        keys_from: {}\n",
        PASTED[0], PASTED[1], PASTED[2], PASTED[3], PASTED[4]
    );
    let litellm = PASTED.iter().fold(String::from("model_list:\n"), |text, key| {
        text + &format!("  - model_name: m\n    litellm_params: {{ model: openai/x, api_key: os.environ/{key} }}\n")
    });
    let env = format!("environment_variables:\n  {}: v\n{litellm}", PASTED[0]);
    for text in [native, litellm, env] {
        let ConfigErrors(list) = load(&text).unwrap_err();
        let shown = ConfigErrors(list.clone()).to_string();
        for key in PASTED {
            assert_not_shown(&shown, key);
        }
        assert!(list.iter().all(|d| d.message.contains("looks like an API key")), "{shown}");
        assert!(list.len() >= PASTED.len(), "{shown}");
    }
    let list = errors(&format!(
        "models:\n  m:\n    deployments:\n      - provider: openai\n        model: x\n        keys: [{}]\n",
        PASTED[0]
    ));
    assert!(message_at(&list, "models.m.deployments[0].keys[0]").contains("put the key in the Secret"));
}

#[test]
fn a_key_pasted_as_a_field_name_is_not_shown_in_its_path_or_message() {
    let key = "gsk_Wq8Xk2Lp9Vz3Nt7Rb5Mc1Yd6Hf4Jg0Ks2Ae8Qw3Ez";
    let native = format!(
        "{key}: 1\nmodels:\n  m:\n    deployments:\n      - {{ provider: openai, model: x, keys: [K], {key}: 1 }}\n"
    );
    let shown = load(&native).unwrap_err().to_string();
    assert_not_shown(&shown, key);
    assert!(shown.contains("models.m.deployments[0]"), "{shown}");
    let litellm = format!(
        "model_list:\n  - model_name: m\n    litellm_params: {{ model: openai/x, api_key: os.environ/K, {key}: 1 }}\n"
    );
    let loaded = load(&litellm).unwrap();
    let shown: String = loaded.warnings.iter().map(|w| format!("{w}\n")).collect();
    assert_not_shown(&shown, key);
    assert!(shown.contains("model_list[0].litellm_params.<redacted>"), "{shown}");
}

fn litellm_entry(params: &str) -> String {
    format!("model_list:\n  - model_name: m\n    litellm_params: {{ model: openai/x, {params} }}\n")
}

#[test]
fn litellm_implicit_key_never_goes_over_plain_http_to_a_remote_host() {
    let list = errors(&litellm_entry("api_base: http://203.0.113.7:8000/v1"));
    let message = message_at(&list, "model_list[0].litellm_params");
    for needle in ["OPENAI_API_KEY", "http://203.0.113.7:8000", "api_key: os.environ/OPENAI_API_KEY"] {
        assert!(message.contains(needle), "{message}");
    }

    // Written explicitly, the same key goes there, with a warning.
    let loaded =
        load(&litellm_entry("api_base: http://203.0.113.7:8000/v1, api_key: os.environ/OPENAI_API_KEY")).unwrap();
    let warning = loaded.warnings.iter().find(|w| w.origin.path == "model_list[0].litellm_params.api_key");
    assert!(
        warning.is_some_and(|w| w.message.contains("plain http to http://203.0.113.7:8000")),
        "{:#?}",
        loaded.warnings
    );

    // A local server (loopback, private address, cluster DNS) gets no key at all.
    for base in ["http://127.0.0.1:8000/v1", "http://10.1.2.3:8000/v1", "http://vllm.models.svc:8000/v1"] {
        let loaded = load(&litellm_entry(&format!("api_base: {base}"))).unwrap();
        assert!(loaded.config.models["m"].deployments[0].keys.is_empty(), "{base}");
        assert!(render_table(&loaded.config).contains("no auth header is sent"), "{base}");
    }
    // Any https is fine; the warning says where the key goes.
    for (base, to) in
        [("https://gw.example.com/v1", "https://gw.example.com"), ("https://203.0.113.9/v1", "https://203.0.113.9")]
    {
        let loaded = load(&litellm_entry(&format!("api_base: {base}"))).unwrap();
        let d = &loaded.config.models["m"].deployments[0];
        assert!(d.keys[0].implicit && d.key_destination() == to);
        let w = loaded.warnings.iter().find(|w| w.origin.path == "model_list[0].litellm_params");
        assert!(w.is_some_and(|w| w.message.contains(&format!("OPENAI_API_KEY is used and sent to {to}"))));
        assert!(render_table(&loaded.config)
            .contains(&format!("keys: OPENAI_API_KEY (implied: no api_key written) -> sent to {to}\n")));
    }
}

#[test]
fn native_plain_http_to_a_remote_host_needs_the_deployment_to_opt_in() {
    let deployment = |base: &str, extra: &str| {
        format!("models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: x\n        api_base: {base}\n        keys: [K]\n{extra}")
    };
    let list = errors(&deployment("http://vllm.default.svc:8000/v1", ""));
    let message = message_at(&list, "models.m.deployments[0].api_base");
    assert!(
        message.contains("http://vllm.default.svc:8000") && message.contains("send_keys_over_http: true"),
        "{message}"
    );

    let opted_in = "        send_keys_over_http: true\n";
    let loaded = load(&deployment("http://vllm.default.svc:8000/v1", opted_in)).unwrap();
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    assert!(render_table(&loaded.config).contains("keys: K -> sent to http://vllm.default.svc:8000 (plain http)\n"));

    for base in ["http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "https://vllm.example.com/v1"] {
        assert!(load(&deployment(base, "")).is_ok(), "{base}");
        let loaded = load(&deployment(base, opted_in)).unwrap();
        let w = loaded.warnings.iter().find(|w| w.origin.path == "models.m.deployments[0].send_keys_over_http");
        assert!(w.is_some_and(|w| w.message.contains("has no effect")), "{base}: {:#?}", loaded.warnings);
    }
}
