//! One-shot fault queues and what each fault does to the request that consumes it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};
use tokio::sync::Notify;

use super::body::MockBody;
use super::request::Family;
use super::state::{Outcome, Shared};
use super::{styles, Fault};

/// Faults waiting for requests: one FIFO per key, and one for any request.
#[derive(Debug, Default)]
pub(crate) struct FaultQueues {
    by_key: HashMap<String, VecDeque<Fault>>,
    global: VecDeque<Fault>,
}

impl FaultQueues {
    pub(crate) fn push(&mut self, key: Option<&str>, fault: Fault) {
        match key {
            Some(key) => self.by_key.entry(key.to_string()).or_default().push_back(fault),
            None => self.global.push_back(fault),
        }
    }

    /// The fault for a request carrying `key`: the key's own queue first, then global.
    pub(crate) fn take(&mut self, key: Option<&str>) -> Option<Fault> {
        let own = key.and_then(|k| self.by_key.get_mut(k)).and_then(VecDeque::pop_front);
        own.or_else(|| self.global.pop_front())
    }

    pub(crate) fn len(&self) -> usize {
        self.global.len() + self.by_key.values().map(VecDeque::len).sum::<usize>()
    }
}

/// What the request does after its fault ran.
pub(crate) enum Next {
    /// Send this response (already counted in stats).
    Respond(Response<MockBody>),
    /// Drop the connection without a response.
    Reset,
    /// Process normally; a streaming reply waits on `gate` after its first event.
    Proceed { gate: Option<Arc<Notify>> },
}

/// Runs `fault` for a request with `key` on a path of `family`.
pub(crate) async fn run(fault: Fault, shared: &Shared, key: Option<&str>, family: Family) -> Next {
    match fault {
        Fault::Status(code) => {
            tokio::time::sleep(shared.latency()).await;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            shared.count(key, Outcome::Error);
            Next::Respond(styles::error(status, family, &styles::fault_message(status.as_u16())))
        }
        Fault::RateLimited { retry_after } => {
            tokio::time::sleep(shared.latency()).await;
            let mut quota = shared.peek_quota(key).unwrap_or_default();
            quota.req_remaining = quota.req_remaining.map(|_| 0);
            quota.reset = retry_after.as_deref().and_then(parse_retry_after);
            shared.count(key, Outcome::RateLimited);
            Next::Respond(styles::rate_limited(shared.style, family, &quota, retry_after.as_deref()))
        }
        Fault::ResetConnection => Next::Reset,
        Fault::Hang => std::future::pending().await,
        Fault::SlowFirstByte(delay) => {
            tokio::time::sleep(delay).await;
            Next::Proceed { gate: None }
        }
        Fault::StreamGate(gate) => Next::Proceed { gate: Some(gate) },
    }
}

/// `retry-after` as a duration: seconds (integer or decimal) or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_queue_first_then_global_fifo() {
        let mut q = FaultQueues::default();
        q.push(None, Fault::Status(500));
        q.push(Some("a"), Fault::Status(502));
        q.push(None, Fault::Status(503));
        assert_eq!(q.len(), 3);
        assert!(matches!(q.take(Some("b")), Some(Fault::Status(500))));
        assert!(matches!(q.take(Some("a")), Some(Fault::Status(502))));
        assert!(matches!(q.take(Some("a")), Some(Fault::Status(503))));
        assert!(q.take(None).is_none());
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("-1"), None);
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        assert!(parse_retry_after(&later).is_some_and(|d| d > Duration::from_secs(28)));
    }
}
