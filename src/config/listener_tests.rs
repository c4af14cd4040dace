//! The listener settings of `server:` (connection caps and connection timeouts):
//! defaults, overrides, and bounds reported with their field paths.

use std::path::Path;
use std::time::Duration;

use super::*;

const MODELS: &str = "models:\n  m:\n    deployments:\n      - { provider: groq, model: l, keys: [K] }\n";

fn load(server: &str) -> Result<Loaded, ConfigErrors> {
    load_str(&format!("server:\n{server}{MODELS}"), Path::new("config.yaml"))
}

#[test]
fn listener_settings_have_defaults_and_overrides() {
    let defaults = load("  region: x\n").expect("loads").config.server;
    assert_eq!(defaults.max_connections, 1024);
    assert_eq!(defaults.admin_max_connections, 64);
    assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
    assert_eq!(defaults.idle_timeout, Duration::from_secs(90));

    let set = load("  max_connections: 5000\n  admin_max_connections: 8\n  timeouts: { header_read: 2s, idle: 5m }\n")
        .expect("loads")
        .config
        .server;
    assert_eq!(set.max_connections, 5000);
    assert_eq!(set.admin_max_connections, 8);
    assert_eq!(set.header_read_timeout, Duration::from_secs(2));
    assert_eq!(set.idle_timeout, Duration::from_secs(300));
}

#[test]
fn listener_settings_out_of_bounds_are_errors_at_their_paths() {
    let text = "  max_connections: 0\n  admin_max_connections: 100001\n  timeouts: { header_read: 6m, idle: 0s }\n";
    let Err(ConfigErrors(errors)) = load(text) else { panic!("out-of-bounds values were accepted") };
    for (path, message) in [
        ("server.max_connections", "at least 1"),
        ("server.admin_max_connections", "at most 100000"),
        ("server.timeouts.header_read", "at most 5m"),
        ("server.timeouts.idle", "greater than zero"),
    ] {
        let found =
            errors.iter().find(|d| d.origin.path == path).unwrap_or_else(|| panic!("no error at {path}: {errors:#?}"));
        assert!(found.message.contains(message), "{path}: {}", found.message);
        assert!(found.origin.line.is_some(), "{path} has no line");
    }
    let Err(ConfigErrors(errors)) = load("  max_connections: -3\n") else { panic!("a negative cap was accepted") };
    assert!(errors.iter().any(|d| d.origin.path == "server.max_connections"), "{errors:#?}");
}
