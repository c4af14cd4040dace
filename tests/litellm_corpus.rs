//! Real LiteLLM `proxy-config.yaml` files from public repositories (tests/litellm_corpus/,
//! sources in SOURCES.md), each run through the real `keyrelay check` with a fake secret
//! for every name it can ask for, and compared to a golden `<name>.expected`: the routing
//! table (aliases, deployments, providers, upstream URLs), the warnings and the exit code.
//! A migrating user's first contact with keyrelay is that command on their own file.
//!
//! `KEYRELAY_BLESS=1 cargo test --test litellm_corpus` rewrites the golden files; review
//! the diff. `refuse-*.yaml` are files LiteLLM itself refuses: they must fail `check` too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const BIN: &str = env!("CARGO_BIN_EXE_keyrelay");
const CORPUS: &str = "tests/litellm_corpus";
/// Stands for the per-file temporary secrets directory in golden output.
const SECRETS_PLACEHOLDER: &str = "$SECRETS_DIR";

/// Names LiteLLM reads by itself when an entry has no `api_key`/`api_base`/`api_version`
/// (the `check` output says so as "implicit"). Keyless local servers' names
/// (`HOSTED_VLLM_API_KEY`, `OLLAMA_API_KEY`, ...) and base-URL overrides such as
/// `OPENAI_BASE_URL` are left out on purpose: setting them would change what those
/// entries mean.
const IMPLICIT_NAMES: &[&str] = &[
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "OPENROUTER_API_KEY",
    "GROQ_API_KEY",
    "CEREBRAS_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "TOGETHERAI_API_KEY",
    "TOGETHER_AI_API_KEY",
    "FIREWORKS_AI_API_KEY",
    "FIREWORKS_API_KEY",
    "XAI_API_KEY",
    "AZURE_API_KEY",
    "AZURE_API_BASE",
    "AZURE_API_VERSION",
    "AZURE_AI_API_KEY",
    "AZURE_AI_API_BASE",
    "COHERE_API_KEY",
    "CLOUDFLARE_API_KEY",
    "CLOUDFLARE_ACCOUNT_ID",
    "NVIDIA_NIM_API_KEY",
    "PERPLEXITYAI_API_KEY",
    "DEEPINFRA_API_KEY",
    "SAMBANOVA_API_KEY",
    "DASHSCOPE_API_KEY",
    "MOONSHOT_API_KEY",
    "ZHIPUAI_API_KEY",
    "ZAI_API_KEY",
    "NOVITA_API_KEY",
    "HUGGINGFACE_API_KEY",
    "GITHUB_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION_NAME",
];

/// A plausible fake for `name`, chosen by its name's parts so that URLs look like URLs and
/// versions like versions (a key-shaped `api_base` would hide what `check` prints).
/// scripts/corpus-summary applies the same rules.
fn fake_value(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    // `AZURE_API_BASE_ANTHROPIC` is a URL too.
    let is_url = ["_BASE", "_URL", "_ENDPOINT"].iter().any(|s| upper.contains(s));
    if upper.starts_with("AZURE") && is_url {
        "https://example-resource.openai.azure.com".to_owned()
    } else if is_url {
        format!("https://{}.example.com/v1", name.to_ascii_lowercase().replace('_', "-"))
    } else if upper.ends_with("_VERSION") {
        "2024-10-21".to_owned()
    } else if upper.ends_with("_ACCOUNT_ID") {
        "0123456789abcdef0123456789abcdef".to_owned()
    } else if upper.ends_with("_REGION") || upper.ends_with("_REGION_NAME") {
        "us-east-1".to_owned()
    } else if upper.contains("MODEL") && !upper.contains("KEY") {
        "openai/fake-model-from-env".to_owned()
    } else {
        format!("sk-fake-{}-0123456789", name.to_ascii_lowercase().replace('_', "-"))
    }
}

/// Every `os.environ/NAME` in the text (comments included: a spare secret is harmless).
fn environ_names(text: &str) -> Vec<String> {
    const PREFIX: &str = "os.environ/";
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        rest = &rest[at + PREFIX.len()..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if end > 0 {
            names.push(rest[..end].to_owned());
        }
        rest = &rest[end..];
    }
    names
}

fn fake_secrets(text: &str) -> BTreeMap<String, String> {
    IMPLICIT_NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .chain(environ_names(text))
        .map(|name| {
            let value = fake_value(&name);
            (name, value)
        })
        .collect()
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read tests/litellm_corpus")
        .map(|e| e.expect("corpus dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn stem(path: &Path) -> String {
    path.file_stem().expect("file stem").to_string_lossy().into_owned()
}

/// `keyrelay check` on one corpus file, in a child with an empty environment, rendered
/// as exit code, stdout and stderr with the temporary secrets path replaced.
fn run_check(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read corpus file");
    let secrets = tempfile::tempdir().expect("secrets tempdir");
    for (name, value) in fake_secrets(&text) {
        std::fs::write(secrets.path().join(&name), value).expect("write fake secret");
    }
    let name = file.file_name().expect("file name").to_string_lossy().into_owned();
    let out = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .arg("check")
        .arg("--config")
        .arg(format!("{CORPUS}/{name}"))
        .arg("--secrets-dir")
        .arg(secrets.path())
        .output()
        .expect("run keyrelay check");
    let secrets_path = secrets.path().to_string_lossy().into_owned();
    let normalise = |bytes: &[u8]| String::from_utf8_lossy(bytes).replace(&secrets_path, SECRETS_PLACEHOLDER);
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or_else(|| "signal".to_owned(), |c| c.to_string()),
        normalise(&out.stdout),
        normalise(&out.stderr),
    )
}

/// A line diff (longest common subsequence) of golden against actual, `-`/`+` marked.
fn diff(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i][j] = if old[i] == new[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            let _ = writeln!(out, "  {}", old[i]);
            i += 1;
            j += 1;
        } else if j < new.len() && (i == old.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", new[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", old[i]);
            i += 1;
        }
    }
    out
}

/// Checks one file against its golden output; `Err` carries what to show.
fn compare(file: &Path, bless: bool) -> Result<(), String> {
    let actual = run_check(file);
    let name = stem(file);
    if name.starts_with("refuse-") && actual.starts_with("exit: 0\n") {
        return Err(format!("{name}: a file LiteLLM refuses loaded:\n{actual}"));
    }
    let golden = file.with_extension("expected");
    if bless {
        std::fs::write(&golden, &actual).map_err(|e| format!("{name}: write {}: {e}", golden.display()))?;
        return Ok(());
    }
    match std::fs::read_to_string(&golden) {
        Ok(expected) if expected == actual => Ok(()),
        Ok(expected) => Err(format!("{name}: output differs from {name}.expected:\n{}", diff(&expected, &actual))),
        Err(_) => Err(format!("{name}: no {name}.expected; its output is:\n{actual}")),
    }
}

#[test]
fn every_corpus_file_checks_as_its_golden_output_says() {
    let files = corpus_files();
    let bless = std::env::var_os("KEYRELAY_BLESS").is_some_and(|v| v == "1");
    let failures = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(failure) = compare(file, bless) {
                        failures.lock().expect("failures lock").push(failure);
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().expect("failures lock");
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} corpus files differ (KEYRELAY_BLESS=1 rewrites the golden files):\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The corpus is the evidence: at least 30 files, each with its source listed,
/// no golden file left over from a removed one.
#[test]
fn the_corpus_is_complete_and_every_file_has_a_source() {
    let files = corpus_files();
    assert!(files.len() >= 30, "only {} corpus files", files.len());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(CORPUS);
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).expect("read SOURCES.md");
    for file in &files {
        let listed = format!("`{}`", file.file_name().expect("file name").to_string_lossy());
        assert!(sources.contains(&listed), "{listed} is not listed in SOURCES.md");
    }
    let stems: Vec<String> = files.iter().map(|f| stem(f)).collect();
    for entry in std::fs::read_dir(&dir).expect("read corpus dir") {
        let path = entry.expect("corpus dir entry").path();
        if path.extension().is_some_and(|e| e == "expected") {
            assert!(stems.contains(&stem(&path)), "{} has no corpus file", path.display());
        }
    }
}

#[test]
fn fake_secrets_cover_every_environ_name_with_a_fitting_value() {
    let secrets = fake_secrets(
        "api_key: os.environ/MY_KEY\napi_base: \"os.environ/VLLM_API_BASE\"\nv: os.environ/AZURE_OPENAI_API_VERSION # x\n",
    );
    assert_eq!(secrets["MY_KEY"], "sk-fake-my-key-0123456789");
    assert_eq!(secrets["VLLM_API_BASE"], "https://vllm-api-base.example.com/v1");
    assert_eq!(secrets["AZURE_OPENAI_API_VERSION"], "2024-10-21");
    assert_eq!(secrets["AZURE_API_BASE"], "https://example-resource.openai.azure.com");
    assert!(secrets.contains_key("OPENAI_API_KEY"));
}
