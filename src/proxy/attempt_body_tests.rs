use proptest::prelude::*;

use super::*;

fn default(key: &str, json: &str) -> BodyDefault {
    BodyDefault { key: key.to_owned(), member: Bytes::from(format!("{}:{json}", serde_json::Value::from(key))) }
}

fn merged(body: &str, model: &str, defaults: &[BodyDefault]) -> String {
    let bytes = Bytes::from(body.to_owned());
    let mut out = TopLevel::parse(&bytes).unwrap().attempt(&bytes, model, defaults);
    String::from_utf8(out.copy_to_bytes(out.remaining()).to_vec()).unwrap()
}

#[test]
fn missing_defaults_are_spliced_after_the_brace_and_client_values_kept() {
    let defaults = [default("reasoning_effort", r#""high""#), default("temperature", "0.2")];
    let out = merged(r#" {"model":"m","temperature":1,"messages":[]}"#, "up", &defaults);
    assert_eq!(out, r#" {"reasoning_effort":"high","model":"up","temperature":1,"messages":[]}"#);
}

#[test]
fn a_client_null_counts_as_set() {
    let out = merged(r#"{"model":"m","seed":null}"#, "up", &[default("seed", "7")]);
    assert_eq!(out, r#"{"model":"up","seed":null}"#);
}

#[test]
fn attempts_share_the_client_buffer_around_the_spliced_defaults() {
    let body = Bytes::from_static(br#"{"model":"m","messages":[]}"#);
    let top = TopLevel::parse(&body).unwrap();
    let out = top.attempt(&body, "up", &[default("top_p", "0.9")]);
    let pieces = out.pieces();
    assert_eq!(pieces.len(), 5);
    assert_eq!(pieces[0].as_ptr(), body.as_ptr());
    assert_eq!(pieces[2].as_ptr(), body[1..].as_ptr());
    assert_eq!(pieces[4].as_ptr(), body[12..].as_ptr());
}

#[test]
fn stream_and_keys_are_read_once() {
    let top = TopLevel::parse(br#"{"stream":true,"model":"a","x\u0079":1}"#).unwrap();
    assert!(top.stream && top.has("xy") && top.has("model") && !top.has("x"));
    assert!(!TopLevel::parse(br#"{"stream":"true","model":"a"}"#).unwrap().stream);
    assert!(TopLevel::parse(br#"{"model":"a","model":"b"}"#).is_err());
    assert!(TopLevel::parse(br#"{"model":5}"#).unwrap().model_not_string);
}

/// A JSON value of a few kinds, nested a little.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-z\"\\\\é🚀 ]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn merged_bodies_are_valid_json_with_client_keys_unchanged_and_defaults_once(
        client in prop::collection::btree_map("[a-e\"]{1,2}", json_value(), 0..5),
        defaults in prop::collection::btree_map("[a-e\"]{1,2}", json_value(), 0..5),
        model_first in any::<bool>(),
        spaces in "[ \n]{0,2}",
    ) {
        let mut client: serde_json::Map<String, serde_json::Value> = client.into_iter().collect();
        client.remove("model");
        let rest = serde_json::Value::Object(client.clone()).to_string();
        let inner = &rest[1..rest.len() - 1];
        let model = r#""model":"alias""#;
        let body = match (inner.is_empty(), model_first) {
            (true, _) => format!("{spaces}{{{spaces}{model}}}"),
            (false, true) => format!("{spaces}{{{model},{inner}}}"),
            (false, false) => format!("{spaces}{{{inner},{model}}}"),
        };
        let list: Vec<BodyDefault> =
            defaults.iter().filter(|(k, _)| *k != "model").map(|(k, v)| default(k, &v.to_string())).collect();
        let out = merged(&body, "up\"stream", &list);
        let parsed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&out).expect("valid JSON");
        prop_assert_eq!(parsed.get("model"), Some(&serde_json::Value::from("up\"stream")));
        for (k, v) in &client {
            prop_assert_eq!(parsed.get(k), Some(v), "client key {} changed", k);
        }
        for d in &list {
            let occurrences = out.matches(&*String::from_utf8_lossy(&d.member)).count();
            if client.contains_key(&d.key) {
                prop_assert_eq!(parsed.get(&d.key), client.get(&d.key));
            } else {
                prop_assert!(occurrences >= 1);
                prop_assert_eq!(parsed.get(&d.key).map(|v| v.to_string()), defaults.get(&d.key).map(|v| v.to_string()));
            }
        }
        // Every key once: serde_json keeps the last of duplicates, so count them.
        let top = TopLevel::parse(out.as_bytes()).unwrap();
        let keys: Vec<&str> = top.keys().collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(keys.len(), unique.len());
        prop_assert_eq!(keys.len(), client.len() + 1 + list.iter().filter(|d| !client.contains_key(&d.key)).count());
    }
}
