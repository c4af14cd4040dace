//! The native `server:` section: addresses, limits and timeouts of the process.

use serde::Deserialize;

use super::bounds::{self, Zero};
use super::model::ServerSettings;
use super::validate::{report, Diags};
use super::values::{self, NumOrText};

/// Upper bound of `server.max_buffered_bodies`: far above any sidecar's memory, low
/// enough that a typo (a missing unit, an extra digit) is caught.
const MAX_BUFFERED_BODIES_CEILING: u64 = 64 << 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "server settings")]
pub(super) struct RawServer {
    listen: Option<String>,
    admin: Option<String>,
    region: Option<String>,
    required_regions: Option<Vec<String>>,
    health_check_interval: Option<NumOrText>,
    body_limit: Option<NumOrText>,
    max_buffered_bodies: Option<NumOrText>,
    timeouts: Option<RawTimeouts>,
    session_header: Option<String>,
    max_connections: Option<u64>,
    admin_max_connections: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "timeouts")]
struct RawTimeouts {
    connect: Option<NumOrText>,
    request: Option<NumOrText>,
    attempt: Option<NumOrText>,
    client_body: Option<NumOrText>,
    shutdown_grace: Option<NumOrText>,
    header_read: Option<NumOrText>,
    idle: Option<NumOrText>,
    key_probe: Option<NumOrText>,
}

pub(super) fn server(diags: &mut Diags<'_>, raw: RawServer) -> ServerSettings {
    let mut s = ServerSettings::default();
    if let Some(listen) = raw.listen {
        s.listen = report(diags, "server.listen", values::parse_addr(&listen)).unwrap_or(s.listen);
    }
    if let Some(admin) = raw.admin {
        s.admin = report(diags, "server.admin", values::parse_addr(&admin)).unwrap_or(s.admin);
    }
    if s.listen == s.admin {
        diags.error("server.admin", format!("admin address {} is the same as the listen address", s.admin));
    }
    s.region = raw.region.filter(|r| !r.trim().is_empty());
    if let Some(regions) = raw.required_regions {
        s.required_regions = required_regions(diags, "server.required_regions", regions);
    }
    if let Some(interval) = &raw.health_check_interval {
        s.health_check_interval = health_check_interval(diags, "server.health_check_interval", interval);
    }
    if let Some(name) = raw.session_header {
        match http::HeaderName::from_bytes(name.trim().as_bytes()) {
            Ok(header) => s.session_header = header,
            Err(_) => diags.error("server.session_header", format!("{name:?} is not a valid HTTP header name")),
        }
    }
    if let Some(limit) = raw.body_limit {
        let parsed = values::parse_size(&limit).and_then(|n| bounds::count(n as u64, 1, bounds::BODY_LIMIT));
        s.body_limit = report(diags, "server.body_limit", parsed).unwrap_or(s.body_limit);
    }
    let caps = [
        ("max_connections", raw.max_connections, &mut s.max_connections),
        ("admin_max_connections", raw.admin_max_connections, &mut s.admin_max_connections),
    ];
    for (name, value, slot) in caps {
        if let Some(n) = value {
            let path = format!("server.{name}");
            if let Some(n) = report(diags, &path, connection_cap(n)) {
                *slot = n;
            }
        }
    }
    if let Some(total) = raw.max_buffered_bodies {
        let path = "server.max_buffered_bodies";
        s.max_buffered_bodies = report(diags, path, values::parse_size(&total)).unwrap_or(s.max_buffered_bodies);
        if s.max_buffered_bodies as u64 > MAX_BUFFERED_BODIES_CEILING {
            diags.error(path, "must be at most 64GiB");
        }
    }
    if s.max_buffered_bodies < s.body_limit {
        let message = "smaller than server.body_limit, so a body of the largest accepted size would never fit";
        diags.error("server.max_buffered_bodies", message);
    }
    if let Some(t) = raw.timeouts {
        let fields = [
            ("connect", t.connect, &mut s.connect_timeout, bounds::CONNECT_TIMEOUT),
            ("request", t.request, &mut s.request_timeout, bounds::REQUEST_TIMEOUT),
            ("client_body", t.client_body, &mut s.client_body_timeout, bounds::CLIENT_BODY_TIMEOUT),
            ("shutdown_grace", t.shutdown_grace, &mut s.shutdown_grace, bounds::SHUTDOWN_GRACE),
            ("header_read", t.header_read, &mut s.header_read_timeout, bounds::HEADER_READ_TIMEOUT),
            ("idle", t.idle, &mut s.idle_timeout, bounds::IDLE_TIMEOUT),
            ("key_probe", t.key_probe, &mut s.key_probe_timeout, bounds::KEY_PROBE_TIMEOUT),
        ];
        for (name, value, slot, max) in fields {
            if let Some(value) = value {
                let path = format!("server.timeouts.{name}");
                if let Some(d) = bounds::duration_at(diags, &path, &value, max, Zero::Refused) {
                    *slot = d;
                }
            }
        }
        if let Some(value) = t.attempt {
            let (at, max) = ("server.timeouts.attempt", bounds::REQUEST_TIMEOUT);
            s.attempt_timeout = bounds::duration_at(diags, at, &value, max, Zero::Refused);
            if s.attempt_timeout.is_some_and(|a| a > s.request_timeout) {
                diags.warn("server.timeouts.attempt", "longer than timeouts.request, so it never applies");
            }
        }
    }
    s
}

fn connection_cap(n: u64) -> Result<usize, String> {
    bounds::count(n, 1, bounds::MAX_CONNECTIONS)
}

/// A required region set: trimmed, without blanks or repeats, at most
/// [`bounds::REQUIRED_REGIONS`] of them.
pub(super) fn required_regions(diags: &mut Diags<'_>, path: &str, raw: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for region in raw {
        let region = region.trim();
        if region.is_empty() {
            diags.error(path, "a required region must not be empty");
        } else if !out.iter().any(|r| r == region) {
            out.push(region.to_owned());
        }
    }
    if out.len() > bounds::REQUIRED_REGIONS {
        diags.error(path, format!("at most {} regions", bounds::REQUIRED_REGIONS));
        out.truncate(bounds::REQUIRED_REGIONS);
    }
    out
}

/// An active health check interval, from [`bounds::HEALTH_CHECK_FLOOR`] to a day.
pub(super) fn health_check_interval(diags: &mut Diags<'_>, path: &str, raw: &NumOrText) -> Option<std::time::Duration> {
    let d = bounds::duration_at(diags, path, raw, bounds::HEALTH_CHECK_INTERVAL, Zero::Refused)?;
    if d < bounds::HEALTH_CHECK_FLOOR {
        diags.error(path, "must be at least 100ms");
        return None;
    }
    Some(d)
}
