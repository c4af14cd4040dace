//! The one place a client's response is built, from what routing produced: an
//! upstream answer (relayed, or a failure passed on as the provider said it) or
//! keyrelay's own error. The request's [`Exchange`] records the head here and ends
//! with the response: now, or, for a relayed body, when that body ends.

use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderValue, Response};
use http_body_util::BodyExt;

use super::attempt::{Answer, AnswerBody};
use super::body::{full, ProxyBody, Relay};
use super::error::ProxyError;
use super::exchange::Exchange;
use super::upstream;

/// Which key and deployment answered, and after how many tries: names only.
const KEY: HeaderName = HeaderName::from_static("x-keyrelay-key");
const DEPLOYMENT: HeaderName = HeaderName::from_static("x-keyrelay-deployment");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-keyrelay-attempts");

/// The client's response. `idle` is how long a relayed body may go silent.
pub(super) fn respond(
    mut exchange: Exchange,
    result: Result<Answer, ProxyError>,
    idle: Duration,
) -> Response<ProxyBody> {
    match result {
        Ok(Answer { endpoint, parts, body }) => {
            exchange.answered(parts.status.as_u16(), Some(&endpoint), None);
            let attempts = exchange.attempts();
            let body = match body {
                AnswerBody::Relay(body, mut completion) => {
                    completion.attach(exchange);
                    Relay::new(body, idle, *completion).boxed()
                }
                AnswerBody::Read(bytes) => full(bytes),
            };
            let mut response = Response::from_parts(parts, body);
            let headers = response.headers_mut();
            upstream::strip_hop_by_hop(headers);
            if let Ok(v) = HeaderValue::from_str(endpoint.key_name()) {
                headers.insert(KEY, v);
            }
            if let Ok(v) = HeaderValue::from_str(&endpoint.deployment.name) {
                headers.insert(DEPLOYMENT, v);
            }
            headers.insert(ATTEMPTS, count(attempts));
            response
        }
        Err(e) => {
            exchange.answered(e.status().as_u16(), None, Some(e.code().to_owned()));
            let attempts = exchange.attempts();
            let mut response = e.into_response();
            if attempts > 0 {
                response.headers_mut().insert(ATTEMPTS, count(attempts));
            }
            response
        }
    }
}

/// `n` as a header value; the usual few without an allocation.
fn count(n: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(n as usize) {
        Some(digits) => HeaderValue::from_static(digits),
        None => HeaderValue::from(n),
    }
}

/// keyrelay's own answer to a request that never reached routing.
pub(super) fn reject(exchange: Exchange, error: ProxyError) -> Response<ProxyBody> {
    respond(exchange, Err(error), Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_their_digits() {
        for n in [0, 1, 9, 10, 11, 100, u32::MAX] {
            assert_eq!(count(n), HeaderValue::from(n), "{n}");
        }
    }
}
