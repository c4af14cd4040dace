//! The `keyrelay-demo` binary: it runs with no keys and no network.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_keyrelay-demo");

#[test]
fn demo_runs_without_keys_or_network_and_absorbs_429s() {
    let out = Command::new(BIN).args(["--seconds", "3", "--rate", "30"]).output().expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let final_table = stdout.split("final:").nth(1).expect("final table");
    for key in ["OPENAI_KEY_1", "OPENAI_KEY_2", "OPENAI_KEY_3", "429s absorbed"] {
        assert!(final_table.contains(key), "{key} missing from:\n{final_table}");
    }
    // Keys are used in proportion to their hidden limits (9, 6 and 3 per second).
    let attempts = |key: &str| -> u64 {
        let row = final_table.lines().find(|l| l.contains(key)).expect("key row");
        row.split_whitespace().nth(3).and_then(|n| n.parse().ok()).expect("attempts column")
    };
    assert!(attempts("OPENAI_KEY_1") > attempts("OPENAI_KEY_3"), "{final_table}");
    let app = final_table.lines().find(|l| l.starts_with("app saw:")).expect("app line");
    assert!(app.contains(" 0 rate-limited"), "{app}");
    assert!(!app.contains(" 0 ok"), "{app}");
    assert!(!stdout.contains("demo-key-"), "a key value was printed");
}
