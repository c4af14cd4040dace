//! The reloader driven directly (no watcher, no task): what each content change
//! leads to, one call at a time.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::api_source::ApiView;
use super::{load_initial, Health, Outcome, Reloader, Sources};

const CONFIG: &str = "models:\n  m:\n    deployments:\n      - { provider: openai, model: x, keys: [K] }\n";

struct Fixture {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    secrets: std::path::PathBuf,
    reloader: Reloader,
    store: Arc<ArcSwap<crate::pool::Snapshot>>,
    health: Arc<Health>,
    generations: watch::Receiver<u64>,
    api: Arc<ApiView>,
}

fn fixture(config: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("K"), "sk-1").unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config).unwrap();
    let sources = Sources { config: config_path.clone(), secrets_dir: Some(secrets.clone()), ..Default::default() };
    let initial = load_initial(&sources);
    let store = Arc::new(ArcSwap::from_pointee(initial.snapshot));
    let health = Arc::new(Health::default());
    let (tx, generations) = watch::channel(store.load().generation);
    let api = Arc::new(ApiView::default());
    let reloader = Reloader::new(sources, initial.seed, Arc::clone(&store), Arc::clone(&health), Arc::clone(&api), tx);
    Fixture { _dir: dir, config: config_path, secrets, reloader, store, health, generations, api }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn unchanged_content_is_a_no_op_and_a_changed_value_is_not() {
    let mut f = fixture(CONFIG);
    assert_eq!(f.reloader.reload(), Outcome::Unchanged, "the first read matches the initial one");
    write(&f.secrets.join("K"), "sk-1");
    write(&f.secrets.join("UNUSED"), "whatever");
    assert_eq!(f.reloader.reload(), Outcome::Unchanged, "rewriting the same bytes or an unused file is no change");

    write(&f.secrets.join("K"), "sk-2");
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 2 });
    assert_eq!(*f.generations.borrow(), 2);
    assert_eq!(f.store.load().generation, 2);
    assert_eq!(f.reloader.reload(), Outcome::Unchanged);
}

#[test]
fn the_same_bad_content_is_reported_once_and_recovery_clears_it() {
    let mut f = fixture(CONFIG);
    write(&f.config, "models: [");
    assert_eq!(f.reloader.reload(), Outcome::Rejected);
    assert_eq!(f.reloader.reload(), Outcome::Unchanged, "a re-scan of the same bad file is not a new failure");
    assert_eq!(f.health.reload_failures(), 1);
    assert!(f.health.last_error().unwrap().contains("invalid YAML"));
    assert_eq!(f.store.load().generation, 1);

    // Going back to the content that is already serving still counts as a reload:
    // the last attempt was the bad one.
    write(&f.config, CONFIG);
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 2 });
    assert_eq!(f.health.last_error(), None);
}

#[test]
fn a_secret_error_names_the_secret_never_its_value() {
    let mut f = fixture(CONFIG);
    std::fs::remove_file(f.secrets.join("K")).unwrap();
    assert_eq!(f.reloader.reload(), Outcome::Rejected);
    let error = f.health.last_error().unwrap();
    assert!(error.contains("\"K\" not found") && !error.contains("sk-1"), "{error}");
}

#[test]
fn settings_fixed_at_start_are_kept_and_noted() {
    let mut f = fixture(CONFIG);
    let changed = format!("server:\n  admin: 127.0.0.1:9\n  timeouts: {{ connect: 9s, request: 7s }}\n{CONFIG}");
    write(&f.config, &changed);
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 2 });
    let snapshot = f.store.load();
    assert_eq!(snapshot.server.admin.to_string(), "0.0.0.0:9901", "admin is bound at start");
    assert_eq!(snapshot.server.request_timeout.as_secs(), 7, "request timeout applies at once");
    let note = f.health.restart_note().unwrap();
    assert!(note.contains("server.admin is 127.0.0.1:9") && note.contains("server.timeouts.connect"), "{note}");
    assert!(!note.contains("request"), "{note}");

    write(&f.config, CONFIG);
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 3 });
    assert_eq!(f.health.restart_note(), None);
}

#[test]
fn api_data_goes_before_the_files() {
    let mut f = fixture(CONFIG);
    // The Secret through the API has K2 and a newer K; the files have the old K.
    f.api.set_for_tests(CONFIG.replace("keys: [K]", "keys: [K, K2]"), &[("K", "sk-new"), ("K2", "sk-api")]);
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 2 });
    let fingerprints = |store: &ArcSwap<crate::pool::Snapshot>| -> Vec<(String, u64)> {
        store
            .load()
            .routes()
            .flat_map(|r| r.endpoints.iter().map(|e| (e.key_name().to_owned(), e.key_fingerprint)))
            .collect()
    };
    let expected = |v: &str| crate::secret::Secret::new(v).fingerprint();
    assert_eq!(fingerprints(&f.store), [("K".to_owned(), expected("sk-new")), ("K2".to_owned(), expected("sk-api"))]);

    // The API forgets the objects (deleted, or unreachable too long): files again.
    f.api.clear_for_tests();
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 3 });
    assert_eq!(fingerprints(&f.store), [("K".to_owned(), expected("sk-1"))]);
}

fn config_errors(store: &ArcSwap<crate::pool::Snapshot>) -> String {
    let snapshot = store.load();
    let errors = snapshot.config_errors.as_ref().expect("unconfigured");
    crate::config::ConfigErrors(errors.clone()).to_string()
}

#[test]
fn a_bad_first_version_starts_unconfigured_and_the_first_good_one_serves() {
    let mut f = fixture("models: [");
    assert_eq!(f.store.load().generation, 0);
    assert!(f.store.load().routes().next().is_none());
    assert!(config_errors(&f.store).contains("invalid YAML"), "{}", config_errors(&f.store));
    assert_eq!(f.reloader.reload(), Outcome::Unchanged, "a re-scan of the same bad file is no new failure");

    // Another bad version: requests and /readyz name its errors now.
    write(&f.config, &CONFIG.replace("openai", "not-a-provider"));
    assert_eq!(f.reloader.reload(), Outcome::Rejected);
    let errors = config_errors(&f.store);
    assert!(errors.contains("not-a-provider") && !errors.contains("invalid YAML"), "{errors}");
    assert_eq!((f.store.load().generation, f.health.is_ready()), (0, false));

    write(&f.config, CONFIG);
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 1 });
    assert!(f.store.load().config_errors.is_none());
    assert!(f.health.is_ready() && f.health.last_error().is_none());
    assert_eq!(*f.generations.borrow(), 1);
    assert_eq!(f.store.load().route("m").map(|r| r.endpoints.len()), Some(1));
}

#[test]
fn a_missing_secret_at_start_is_named_and_its_arrival_applies() {
    let mut f = fixture(&CONFIG.replace("[K]", "[K, LATE]"));
    let errors = config_errors(&f.store);
    assert!(errors.contains("\"LATE\" not found") && !errors.contains("sk-1"), "{errors}");
    write(&f.secrets.join("LATE"), "sk-late");
    assert_eq!(f.reloader.reload(), Outcome::Applied { generation: 1 });
}

#[test]
fn an_unconfigured_start_takes_its_ports_from_flags_else_a_sound_server_section() {
    let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
    let broken_model = "models:\n  m:\n    deployments:\n      - { provider: nope, model: x, keys: [K] }\n";
    let sound = format!("server:\n  listen: 127.0.0.1:4555\n  admin: 127.0.0.1:4556\n{broken_model}");
    let f = fixture(&sound);
    let server = &f.store.load().server;
    assert_eq!((server.listen, server.admin), (addr("127.0.0.1:4555"), addr("127.0.0.1:4556")));

    // A mistake in `server` itself: the defaults, not half of it.
    let unsound = format!("server:\n  listen: 127.0.0.1:4555\n  admin: nowhere\n{broken_model}");
    let f = fixture(&unsound);
    let server = &f.store.load().server;
    assert_eq!((server.listen, server.admin), (addr("127.0.0.1:4000"), addr("0.0.0.0:9901")));

    // Flags win, and a config that cannot be read at all is named.
    let dir = tempfile::tempdir().unwrap();
    let sources =
        Sources { config: dir.path().join("absent.yaml"), listen: Some(addr("127.0.0.1:4700")), ..Default::default() };
    let initial = load_initial(&sources);
    assert_eq!(initial.snapshot.server.listen, addr("127.0.0.1:4700"));
    assert_eq!(initial.snapshot.server.admin, addr("0.0.0.0:9901"));
    let errors = crate::config::ConfigErrors(initial.snapshot.config_errors.unwrap()).to_string();
    assert!(errors.contains("absent.yaml") && errors.contains("cannot read config file"), "{errors}");
}

#[test]
fn an_unconfigured_start_keeps_a_sound_kubernetes_section_so_the_fix_arrives_by_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let sources = Sources { config: config.clone(), ..Default::default() };
    let broken_model = "models:\n  m:\n    deployments:\n      - { provider: nope, model: x, keys: [K] }\n";
    write(&config, &format!("kubernetes:\n  secret: llm-keys\n  config_map: keyrelay\n{broken_model}"));
    let initial = load_initial(&sources);
    assert!(initial.snapshot.config_errors.is_some());
    assert_eq!(initial.seed.kubernetes().and_then(|k| k.config_map.as_deref()), Some("keyrelay"));

    write(&config, &format!("kubernetes:\n  secrett: llm-keys\n{broken_model}"));
    assert!(load_initial(&sources).seed.kubernetes().is_none(), "a section with errors is not half applied");
}

/// What is hashed is what serves: the secrets are read once, into a map the snapshot is
/// built from, so removing every file after the read changes nothing about the build,
/// and the build sees the values of the read, not of the disk.
#[test]
fn a_snapshot_is_built_from_the_one_read_of_its_secrets() {
    use crate::config::{self, ResolvedSecrets, SecretSource};
    let native = "models:\n  m:\n    deployments:\n      - { provider: openai, model: x, keys: [K] }\n      - { provider: openai, model: y, keys_from: POOL }\n";
    let litellm = "model_list:\n  - model_name: l\n    litellm_params: { model: openai/x, api_key: os.environ/K, api_base: os.environ/BASE }\n";
    for (text, alias, keys) in [(native, "m", &["K", "POOL#1", "POOL#2"][..]), (litellm, "l", &["K"][..])] {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("K"), "sk-1\n");
        write(&dir.path().join("BASE"), "http://127.0.0.1:9/v1");
        write(&dir.path().join("POOL"), "sk-a\nsk-b\n");
        let loaded = config::load_str(text, Path::new("c.yaml")).unwrap();
        let source = SecretSource::new(Some(dir.path().into()), Default::default());
        let secrets = ResolvedSecrets::read(&loaded.config, &source);
        for name in ["K", "BASE", "POOL"] {
            write(&dir.path().join(name), "sk-changed-after-the-read");
        }
        let resolved = config::resolve_params(&loaded.config, &secrets).unwrap();
        let snapshot = crate::pool::Snapshot::build(&resolved.config, &secrets, None).unwrap();
        let route = snapshot.route(alias).unwrap();
        let names: Vec<&str> = route.endpoints.iter().map(|e| e.key_name()).collect();
        assert_eq!(names, keys, "the lines read, not the one line written after");
        if alias == "l" {
            assert_eq!(route.endpoints[0].deployment.base_url.to_string(), "http://127.0.0.1:9/v1");
        }
        drop(dir);
        assert!(crate::pool::Snapshot::build(&resolved.config, &secrets, None).is_ok(), "the build reads no file");
    }
}
