//! The routing table `keyrelay check` prints, so a user can see what a config
//! (especially a migrated LiteLLM one) actually means before deploying it.

use std::fmt::Write as _;

use super::model::{Config, Deployment, KeyRefKind};
use super::validate::is_plain_http_to_remote;

const HEADERS: [&str; 5] = ["DEPLOYMENT", "PROVIDER", "UPSTREAM MODEL", "BASE URL", "LIMITS"];

/// Renders aliases, their routing settings, deployments and key *names* (values are
/// never part of a [`Config`], so they cannot leak here) with the host each key is
/// sent to. Columns are aligned across the whole table.
pub fn render_table(config: &Config) -> String {
    let s = &config.server;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "server: listen {}, admin {}, request timeout {}{}, body limit {}{}",
        s.listen,
        s.admin,
        humantime::format_duration(s.request_timeout),
        s.attempt_timeout.map(|a| format!(" ({} per attempt)", humantime::format_duration(a))).unwrap_or_default(),
        size(s.body_limit),
        s.region.as_deref().map(|r| format!(", region {r}")).unwrap_or_default(),
    );

    let rows: Vec<(&Deployment, [String; 5])> =
        config.models.values().flat_map(|m| m.deployments.iter()).map(|d| (d, columns(d))).collect();
    let mut widths = HEADERS.map(str::len);
    for (_, cols) in &rows {
        for (w, c) in widths.iter_mut().zip(cols) {
            *w = (*w).max(c.len());
        }
    }

    let mut rows = rows.into_iter();
    for route in config.models.values() {
        let _ = writeln!(out, "\nmodel {}", route.alias);
        let _ = writeln!(
            out,
            "  strategy {}, retries {}, cooldown {}, allowed fails {}",
            route.strategy,
            route.num_retries,
            humantime::format_duration(route.cooldown),
            route.allowed_fails
        );
        if !route.fallbacks.is_empty() {
            let _ = writeln!(out, "  fallbacks: {}", route.fallbacks.join(" -> "));
        }
        if !route.required_regions.is_empty() {
            let _ = writeln!(
                out,
                "  required regions: {} (no request goes elsewhere, even when every key there is cooling down)",
                route.required_regions.join(", ")
            );
        }
        if let Some(interval) = route.health_check_interval {
            let _ = writeln!(out, "  health checks: every key probed every {}", humantime::format_duration(interval));
        }
        for reason in &route.unservable {
            let answer = if route.deployments.is_empty() { " (requests get 501)" } else { "" };
            let _ = writeln!(out, "  not served{answer}: {reason}");
        }
        if !route.deployments.is_empty() {
            out.push_str(&line(&HEADERS.map(str::to_owned), &widths));
        }
        for (d, cols) in rows.by_ref().take(route.deployments.len()) {
            out.push_str(&line(&cols, &widths));
            let keys: Vec<String> = d
                .keys
                .iter()
                .map(|k| match (k.kind, k.implicit) {
                    (KeyRefKind::Lines, _) => format!("{} (one key per line)", k.name),
                    (KeyRefKind::Literal, _) => format!("{} (written in the file)", k.name),
                    (KeyRefKind::Single, true) => format!("{} (implied: no api_key written)", k.name),
                    (KeyRefKind::Single, false) => k.name.clone(),
                })
                .collect();
            let required = &route.required_regions;
            if !required.is_empty() && !d.region.as_ref().is_some_and(|r| required.contains(r)) {
                let _ = writeln!(out, "      never used: outside the required regions");
            }
            let plain = if is_plain_http_to_remote(&d.base_url) { " (plain http)" } else { "" };
            if keys.is_empty() {
                let _ = writeln!(out, "      keys: none: no auth header is sent to {}", d.key_destination());
            } else {
                let _ = writeln!(out, "      keys: {} -> sent to {}{plain}", keys.join(", "), d.key_destination());
            }
            if !d.from_secrets.is_empty() {
                let params: Vec<String> =
                    d.from_secrets.iter().map(|p| format!("{} <- secret {}", p.field.as_str(), p.name)).collect();
                let _ = writeln!(out, "      from secrets (re-read on reload): {}", params.join(", "));
            }
        }
    }

    let deployments: usize = config.models.values().map(|m| m.deployments.len()).sum();
    let keys: usize = config.models.values().flat_map(|m| &m.deployments).map(|d| d.keys.len()).sum();
    let _ = writeln!(out, "\n{} model(s), {deployments} deployment(s), {keys} key reference(s)", config.models.len());
    let names: Vec<&str> = config
        .inline_secrets
        .keys()
        .map(String::as_str)
        .filter(|name| !name.starts_with(super::litellm_keys::INLINE_PREFIX))
        .collect();
    if !names.is_empty() {
        let _ = writeln!(out, "inline environment_variables (looked up last): {}", names.join(", "));
    }
    out
}

fn columns(d: &Deployment) -> [String; 5] {
    let mut limits = Vec::new();
    if d.weight != 1 {
        limits.push(format!("weight {}", d.weight));
    }
    if let Some(rpm) = d.rpm {
        limits.push(format!("rpm {rpm}"));
    }
    if let Some(tpm) = d.tpm {
        limits.push(format!("tpm {tpm}"));
    }
    if let Some(n) = d.max_inflight {
        limits.push(format!("max inflight {n}"));
    }
    if d.priority != 0 {
        limits.push(format!("order {}", d.priority));
    }
    if let Some(region) = &d.region {
        limits.push(format!("region {region}"));
    }
    let limits = if limits.is_empty() { "-".to_owned() } else { limits.join(", ") };
    let url = match &d.api_version {
        Some(version) => format!("{}?api-version={version}", d.base_url),
        None => d.base_url.to_string(),
    };
    [d.name.clone(), d.provider.to_string(), d.upstream_model.clone(), url, limits]
}

fn line(cols: &[String; 5], widths: &[usize; 5]) -> String {
    let mut s = String::from("    ");
    for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
        if i + 1 == cols.len() {
            s.push_str(c);
        } else {
            let _ = write!(s, "{c:<w$}  ");
        }
    }
    s.push('\n');
    s
}

fn size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{name}", bytes / unit);
        }
    }
    format!("{bytes}B")
}
