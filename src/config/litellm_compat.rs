//! What keyrelay does with each LiteLLM key: honoured, approximated (and how), or
//! ignored (and why). [`TABLE`] is the one source for the `ignored` warnings, the
//! compatibility report `keyrelay check` prints and README's table (a test holds
//! README to it), so the three cannot disagree.
//!
//! The readers record every key they meet ([`entries`]) and send the ones they do
//! not read to [`ignored`]; the report is built from that record, so a key that a
//! reader starts to read stops being reported as ignored without touching this file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_yaml::Value;

use super::lines::join_key;
use super::validate::Diags;
use super::walk::{self, IGNORED};

/// Where a key sits in a LiteLLM file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Top,
    Entry,
    Params,
    ModelInfo,
    LitellmSettings,
    RouterSettings,
    GeneralSettings,
}

/// How the report and README spell a key of `section`.
#[cfg(test)]
pub(crate) fn prefix_of(section: Section) -> &'static str {
    section.prefix()
}

impl Section {
    /// How the report and README spell a key of this section.
    fn prefix(self) -> &'static str {
        match self {
            Section::Top => "",
            Section::Entry => "model_list[].",
            Section::Params => "model_list[].litellm_params.",
            Section::ModelInfo => "model_list[].model_info.",
            Section::LitellmSettings => "litellm_settings.",
            Section::RouterSettings => "router_settings.",
            Section::GeneralSettings => "general_settings.",
        }
    }
}

/// What keyrelay does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Honoured,
    /// Read, with a difference the text describes.
    Approximated(&'static str),
    /// Not read; the text says why, or what to do instead.
    Ignored(&'static str),
}

impl Support {
    pub fn label(self) -> &'static str {
        match self {
            Support::Honoured => "honoured",
            Support::Approximated(_) => "approximated",
            Support::Ignored(_) => "ignored",
        }
    }

    pub fn note(self) -> &'static str {
        match self {
            Support::Honoured => "",
            Support::Approximated(how) | Support::Ignored(how) => how,
        }
    }
}

use Section::*;
use Support::*;

/// Every LiteLLM key keyrelay has something to say about. Keys not listed are
/// honoured when a reader reads them, and ignored (with the generic message) when not.
pub const TABLE: &[(Section, &str, Support)] = &[
    (Top, "environment_variables", Approximated("looked up last, after the secrets dir and the environment")),
    (Entry, "model_name", Honoured),
    (Entry, "litellm_params", Honoured),
    (Entry, "fallbacks", Honoured),
    (Entry, "rpm", Approximated("a limit per key, as litellm_params.rpm")),
    (Entry, "tpm", Approximated("a limit per key, as litellm_params.tpm")),
    (
        Entry,
        "model_info",
        Approximated("mode sends each endpoint to the deployments that serve it; the rest is metadata"),
    ),
    (ModelInfo, "input_cost_per_token", Honoured),
    (ModelInfo, "output_cost_per_token", Honoured),
    (Params, "model", Honoured),
    (Params, "api_key", Honoured),
    (Params, "api_base", Honoured),
    (Params, "rpm", Approximated("a limit per key of the deployment")),
    (Params, "tpm", Approximated("a limit per key of the deployment")),
    (Params, "weight", Honoured),
    (Params, "order", Honoured),
    (
        Params,
        "region_name",
        Approximated("preferred when it is the sidecar's region; the native required_regions make it a rule"),
    ),
    (Params, "api_version", Honoured),
    (Params, "organization", Honoured),
    (Params, "timeout", Approximated("one attempt's budget at that deployment, within server.timeouts.request")),
    (Params, "stream_timeout", Approximated("the same, for stream: true requests")),
    (Params, "max_retries", Approximated("at most 1 + max_retries attempts at that deployment, within num_retries")),
    (Params, "ssl_verify", Honoured),
    (Params, "extra_headers", Honoured),
    (Params, "extra_body", Approximated("its fields are merged at the body's top level, as LiteLLM sends them")),
    (Params, "temperature", Approximated("a request default: merged into the body when the client did not set it")),
    (Params, "max_tokens", Approximated("a request default: merged into the body when the client did not set it")),
    (
        Params,
        "reasoning_effort",
        Approximated("a request default: merged into the body when the client did not set it"),
    ),
    (LitellmSettings, "num_retries", Honoured),
    (LitellmSettings, "request_timeout", Approximated("server.timeouts.request: one deadline for all attempts")),
    (LitellmSettings, "fallbacks", Honoured),
    (LitellmSettings, "context_window_fallbacks", Honoured),
    (LitellmSettings, "content_policy_fallbacks", Honoured),
    (LitellmSettings, "drop_params", Approximated("nothing is dropped: keyrelay passes every parameter through")),
    (LitellmSettings, "custom_provider_map", Ignored("Python handlers; their entries are not served")),
    (LitellmSettings, "success_callback", Ignored("use keyrelay's metrics and OpenTelemetry traces")),
    (LitellmSettings, "failure_callback", Ignored("use keyrelay's metrics and OpenTelemetry traces")),
    (LitellmSettings, "callbacks", Ignored("use keyrelay's metrics and OpenTelemetry traces")),
    (LitellmSettings, "cache", Ignored("keyrelay caches no responses")),
    (LitellmSettings, "set_verbose", Ignored("set RUST_LOG instead")),
    (RouterSettings, "routing_strategy", Approximated("mapped to keyrelay's strategies; unknown ones use usage")),
    (RouterSettings, "num_retries", Honoured),
    (RouterSettings, "timeout", Approximated("server.timeouts.request: one deadline for all attempts")),
    (RouterSettings, "fallbacks", Honoured),
    (RouterSettings, "context_window_fallbacks", Honoured),
    (RouterSettings, "content_policy_fallbacks", Honoured),
    (RouterSettings, "redis_host", Approximated("replicas share per-key counts, cooldowns, quota and refusals")),
    (RouterSettings, "redis_port", Honoured),
    (RouterSettings, "redis_password", Honoured),
    (RouterSettings, "redis_url", Honoured),
    (RouterSettings, "allowed_fails", Approximated("failures within a minute open the endpoint's breaker")),
    (RouterSettings, "cooldown_time", Approximated("at least cooldown_floor (1s); provider hints take precedence")),
    (
        RouterSettings,
        "enable_pre_call_checks",
        Ignored("every candidate is checked anyway; allowed_model_region is per end user, use required_regions"),
    ),
    (GeneralSettings, "background_health_checks", Honoured),
    (
        GeneralSettings,
        "health_check_interval",
        Approximated("each key is probed once per interval (token-free model list), offsets spread"),
    ),
    (GeneralSettings, "master_key", Ignored("keyrelay takes no client key: it listens on localhost in the pod")),
    (GeneralSettings, "database_url", Ignored("no database: models come from this file")),
    (GeneralSettings, "store_model_in_db", Ignored("no database: models come from this file")),
];

fn lookup(section: Section, key: &str) -> Option<Support> {
    TABLE.iter().find(|(s, k, _)| *s == section && *k == key).map(|(_, _, support)| *support)
}

/// What the readers met, for the report: per key, how often and whether it was read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    keys: BTreeMap<(Section, String), (usize, bool)>,
}

/// One line of the compatibility report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatRow {
    /// e.g. `model_list[].litellm_params.api_key`.
    pub key: String,
    /// Entries (or sections) that carry it.
    pub count: usize,
    pub support: Support,
}

/// The string-keyed entries of a LiteLLM mapping of `section`, recorded for the report.
pub(crate) fn entries<'v>(
    diags: &mut Diags<'_>,
    value: &'v Value,
    path: &str,
    section: Section,
) -> Vec<(String, &'v Value)> {
    let list = walk::entries(diags, value, path);
    for (key, _) in &list {
        diags.seen.keys.entry((section, key.clone())).or_insert((0, true)).0 += 1;
    }
    list
}

/// Records a key read where [`entries`] is not used (a top-level section).
pub(crate) fn note(diags: &mut Diags<'_>, section: Section, key: &str) {
    diags.seen.keys.entry((section, key.to_owned())).or_insert((0, true)).0 += 1;
}

/// Reports a key the reader does not read (at `parent`), with the table's reason.
pub(crate) fn ignored(diags: &mut Diags<'_>, section: Section, key: &str, parent: &str) {
    let seen = diags.seen.keys.entry((section, key.to_owned())).or_insert((0, false));
    seen.0 = seen.0.max(1);
    seen.1 = false;
    let message = match lookup(section, key) {
        Some(Ignored(why)) => format!("{IGNORED} ({why})"),
        _ => IGNORED.to_owned(),
    };
    diags.warn(&join_key(parent, key), message);
}

/// The report: every key met, in file-section order, with what keyrelay does with it.
pub(crate) fn report(seen: &Seen) -> Vec<CompatRow> {
    seen.keys
        .iter()
        .map(|((section, key), &(count, read))| {
            let support = match (read, lookup(*section, key)) {
                (false, Some(Ignored(why))) => Ignored(why),
                (false, _) => Ignored("not implemented by keyrelay"),
                (true, Some(Approximated(how))) => Approximated(how),
                (true, _) => Honoured,
            };
            CompatRow { key: format!("{}{key}", section.prefix()), count, support }
        })
        .collect()
}

/// The report as `check` prints it: one aligned line per key.
pub fn render_report(rows: &[CompatRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let mut out = String::from("\nLiteLLM compatibility (each key in this file):\n");
    for r in rows {
        let times = if r.count > 1 { format!(" (x{})", r.count) } else { String::new() };
        let key = format!("{}{times}", r.key);
        let line = match r.support.note() {
            "" => format!("  {:<12} {key}", r.support.label()),
            note => format!("  {:<12} {key:<width$}  {note}", r.support.label(), width = width + 5),
        };
        let _ = writeln!(out, "{line}");
    }
    out
}

/// README's table, as it must read (see the test in `litellm_compat_tests`).
#[cfg(test)]
pub(crate) fn markdown_table() -> String {
    let mut out = String::from("| LiteLLM key | keyrelay |\n|---|---|\n");
    for (section, key, support) in TABLE {
        let note = support.note();
        let sep = if note.is_empty() { "" } else { ": " };
        let _ = writeln!(out, "| `{}{key}` | {}{sep}{note} |", section.prefix(), support.label());
    }
    out
}
