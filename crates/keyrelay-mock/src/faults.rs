//! One-shot fault queues and what each fault does to the request that consumes it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

use super::body::MockBody;
use super::request::Family;
use super::state::{Outcome, Shared};
use super::{styles, Fault};

/// Faults waiting for requests: one FIFO per key, and one for any request; behind
/// them, standing faults that every request gets until they are cleared.
#[derive(Debug, Default)]
pub(crate) struct FaultQueues {
    by_key: HashMap<String, VecDeque<Fault>>,
    global: VecDeque<Fault>,
    standing_by_key: HashMap<String, Fault>,
    standing: Option<Fault>,
}

impl FaultQueues {
    pub(crate) fn push(&mut self, key: Option<&str>, fault: Fault) {
        match key {
            Some(key) => self.by_key.entry(key.to_string()).or_default().push_back(fault),
            None => self.global.push_back(fault),
        }
    }

    pub(crate) fn set_standing(&mut self, key: Option<&str>, fault: Option<Fault>) {
        match (key, fault) {
            (Some(key), Some(fault)) => {
                self.standing_by_key.insert(key.to_owned(), fault);
            }
            (Some(key), None) => {
                self.standing_by_key.remove(key);
            }
            (None, fault) => self.standing = fault,
        }
    }

    /// The fault for a request carrying `key`: the key's own queue first, then global,
    /// then the key's standing fault, then the global standing fault.
    pub(crate) fn take(&mut self, key: Option<&str>) -> Option<Fault> {
        let own = key.and_then(|k| self.by_key.get_mut(k)).and_then(VecDeque::pop_front);
        own.or_else(|| self.global.pop_front())
            .or_else(|| key.and_then(|k| self.standing_by_key.get(k)).cloned())
            .or_else(|| self.standing.clone())
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
        Fault::Answer { status, headers, body } => {
            tokio::time::sleep(shared.latency()).await;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let outcome = match status.as_u16() {
                200..=299 => Outcome::Ok,
                429 => Outcome::RateLimited,
                401 => Outcome::Unauthorized,
                _ => Outcome::Error,
            };
            shared.count(key, outcome);
            Next::Respond(verbatim(status, &headers, body))
        }
    }
}

/// A response with exactly these headers; names or values that HTTP cannot carry
/// are skipped (a test asking for them is asking for something no provider can send).
fn verbatim(status: StatusCode, headers: &[(String, String)], body: String) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
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
    fn standing_faults_stay_behind_one_shot_faults_until_cleared() {
        let mut q = FaultQueues::default();
        q.set_standing(None, Some(Fault::Status(503)));
        q.set_standing(Some("a"), Some(Fault::Status(502)));
        q.push(Some("a"), Fault::Status(500));
        assert!(matches!(q.take(Some("a")), Some(Fault::Status(500))));
        assert!(matches!(q.take(Some("a")), Some(Fault::Status(502))));
        assert!(matches!(q.take(Some("a")), Some(Fault::Status(502))));
        assert!(matches!(q.take(Some("b")), Some(Fault::Status(503))));
        q.set_standing(Some("a"), None);
        assert!(matches!(q.take(Some("a")), Some(Fault::Status(503))));
        q.set_standing(None, None);
        assert!(q.take(Some("a")).is_none());
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after("-1"), None);
        let before = std::time::Instant::now();
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&later).unwrap();
        // The date drops the fraction of a second; the parse reads the clock again later.
        assert!(
            d <= Duration::from_secs(30) && d + Duration::from_secs(1) + before.elapsed() >= Duration::from_secs(30),
            "{d:?}"
        );
    }
}
