//! The response body type every keyrelay server sends, and the helpers for small,
//! complete responses (status pages, errors, webhook replies).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Boxed errors of relayed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body that is either complete in memory or relayed frame by frame from elsewhere.
pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A complete response of `content_type`.
pub fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<BoxBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A complete plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<BoxBody> {
    typed(status, "text/plain; charset=utf-8", body)
}
