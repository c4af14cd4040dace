//! `multipart/form-data` requests (audio transcriptions and translations, image
//! edits): the `model` is a form field, and the body (an audio file, an image) can be
//! large. Only the form's head, up to the end of the `model` field, is read before
//! routing; the rest streams through to the upstream as the client sends it.
//!
//! A full multipart parser (`multer`) yields decoded fields, not the bytes they came
//! in, so forwarding would mean re-encoding the whole form. Finding one small field
//! needs only the boundary scan below, and leaves every other byte as the client
//! wrote it.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use memchr::memmem;
use tokio::time::Instant;

use super::body::BoxError;
use super::body_budget::BodyPermit;
use super::error::ProxyError;
use super::inbound::{read_body, Buffered};
use super::outbound::{self, Rest, RestStream};
use crate::config::ServerSettings;

/// How much of a form is read looking for `model` before routing. The `openai` SDKs
/// write the plain fields before the file; a form with `model` after a large file is
/// read whole instead (like a JSON body), within `body_limit` and the body budget.
pub const HEAD_LIMIT: usize = 64 * 1024;

/// Whether a `content-type` is `multipart/form-data`.
pub fn is_form(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("multipart/form-data")
}

/// The `boundary` parameter of a `multipart/form-data` content type (RFC 2046: 1 to
/// 70 characters, quoted or not).
pub fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        let valid = (1..=70).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        valid.then_some(value)
    })
}

/// What the bytes read so far say about the `model` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// The field's value sits at this range of the bytes.
    Found(Range<usize>),
    /// Not in the bytes read so far; more may tell.
    NeedMore,
    /// The form ended (or is malformed) without one.
    Absent,
}

/// Looks for the value of the field named `model` in the first bytes of a form.
pub fn find_model(buf: &[u8], boundary: &str) -> Scan {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let next_delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    // The first delimiter opens the body, or follows a preamble and CRLF.
    let mut pos = if buf.starts_with(&delimiter) {
        delimiter.len()
    } else {
        match memmem::find(buf, &next_delimiter) {
            Some(at) => at + next_delimiter.len(),
            None => return Scan::NeedMore,
        }
    };
    loop {
        let rest = &buf[pos..];
        if rest.len() < 2 {
            return Scan::NeedMore;
        }
        if rest.starts_with(b"--") {
            return Scan::Absent;
        }
        // Transport padding after the delimiter, then the line's end.
        let Some(eol) = memmem::find(rest, b"\r\n") else { return Scan::NeedMore };
        if !rest[..eol].iter().all(|&b| b == b' ' || b == b'\t') {
            return Scan::Absent;
        }
        let headers_start = pos + eol + 2;
        let (headers, content_start) = if buf[headers_start..].starts_with(b"\r\n") {
            (&buf[headers_start..headers_start], headers_start + 2)
        } else {
            match memmem::find(&buf[headers_start..], b"\r\n\r\n") {
                Some(end) => (&buf[headers_start..headers_start + end], headers_start + end + 4),
                None => return Scan::NeedMore,
            }
        };
        let Some(len) = memmem::find(&buf[content_start..], &next_delimiter) else { return Scan::NeedMore };
        let content_end = content_start + len;
        if is_model_field(headers) {
            return Scan::Found(content_start..content_end);
        }
        pos = content_end + next_delimiter.len();
    }
}

/// Whether a part's headers name it `model` (and it is not a file upload).
fn is_model_field(headers: &[u8]) -> bool {
    let Ok(headers) = std::str::from_utf8(headers) else { return false };
    headers.split("\r\n").any(|line| {
        let Some((name, value)) = line.split_once(':') else { return false };
        if !name.trim().eq_ignore_ascii_case("content-disposition") {
            return false;
        }
        let params = disposition_params(value);
        params.iter().any(|(k, v)| k.eq_ignore_ascii_case("name") && v == "model")
            && !params.iter().any(|(k, _)| k.eq_ignore_ascii_case("filename"))
    })
}

/// `form-data; name="model"; filename="a;b.wav"` -> [(name, model), (filename, a;b.wav)]:
/// `;` inside quotes does not split, `\"` inside quotes is a quote.
fn disposition_params(value: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = value.chars().peekable();
    // Skips the disposition type (`form-data`).
    for c in chars.by_ref() {
        if c == ';' {
            break;
        }
    }
    while chars.peek().is_some() {
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' || c == ';' {
                break;
            }
            name.push(c);
        }
        let mut value = String::new();
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
            }
        } else {
            for c in chars.by_ref() {
                if c == ';' {
                    break;
                }
                value.push(c);
            }
        }
        params.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    params
}

/// A form read up to its `model` field.
pub(super) struct FormHead {
    pub head: Bytes,
    pub span: Range<usize>,
    pub rest: Option<Arc<Rest>>,
}

/// Reads a form until its `model` value has arrived (and past it, to the end of the
/// frame), within [`HEAD_LIMIT`]; the rest is left to stream. A form
/// whose `model` comes later is read whole, like a JSON body.
pub(super) async fn read_form<B>(
    body: B,
    server: &ServerSettings,
    mut permit: BodyPermit,
    declared: Option<usize>,
    boundary: &str,
) -> Result<FormHead, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (limit, budget) = (server.body_limit, server.max_buffered_bodies);
    let deadline = Instant::now() + server.client_body_timeout;
    let mut body = Box::pin(body);
    let mut head = Vec::new();
    let span = loop {
        let frame = match tokio::time::timeout_at(deadline, body.as_mut().frame()).await {
            Err(_) => return Err(ProxyError::BodyTimeout),
            Ok(None) => match find_model(&head, boundary) {
                Scan::Found(span) => break span,
                _ => return Err(ProxyError::MissingModel),
            },
            Ok(Some(frame)) => frame.map_err(|_| ProxyError::BodyRead)?,
        };
        let Ok(data) = frame.into_data() else { continue };
        if head.len().saturating_add(data.len()) > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        permit.grow(data.len(), budget).map_err(|_| ProxyError::BodyBudgetExhausted)?;
        head.reserve_exact(data.len());
        head.extend_from_slice(&data);
        match find_model(&head, boundary) {
            Scan::Found(span) => break span,
            Scan::Absent => return Err(ProxyError::MissingModel),
            Scan::NeedMore if head.len() > HEAD_LIMIT => {
                let whole = read_body(body, server, permit, None, head).await?;
                let Scan::Found(span) = find_model(&whole, boundary) else {
                    return Err(ProxyError::MissingModel);
                };
                return Ok(FormHead { head: whole, span, rest: None });
            }
            Scan::NeedMore => {}
        }
    };
    let received = head.len();
    let head = Bytes::from_owner(Buffered { bytes: head, _permit: permit });
    if body.is_end_stream() {
        return Ok(FormHead { head, span, rest: None });
    }
    let stream = RestStream {
        body: body.map_err(BoxError::from).boxed_unsync(),
        received,
        limit,
        deadline: outbound::deadline(deadline),
    };
    let remaining = declared.and_then(|d| d.checked_sub(received)).map(|n| n as u64);
    Ok(FormHead { head, span, rest: Some(Rest::new(stream, remaining)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n\
        --XyZ  \r\ncontent-disposition: form-data; name=model\r\n\r\nwhisper-fast\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
        Content-Type: audio/wav\r\n\r\nRIFF....\r\n--XyZ--\r\n";

    #[test]
    fn finds_the_model_value_and_needs_no_more_than_its_end() {
        let at = FORM.find("whisper-fast").unwrap();
        let span = at..at + "whisper-fast".len();
        assert_eq!(find_model(FORM.as_bytes(), "XyZ"), Scan::Found(span.clone()));
        // Cut anywhere before the delimiter that ends the value: more is needed.
        let end = span.end + "\r\n--XyZ".len();
        for cut in 0..end {
            assert_eq!(find_model(&FORM.as_bytes()[..cut], "XyZ"), Scan::NeedMore, "cut at {cut}");
        }
        assert_eq!(find_model(&FORM.as_bytes()[..end], "XyZ"), Scan::Found(span));
    }

    #[test]
    fn a_form_without_model_or_a_file_named_model_is_absent() {
        let form = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model\"\r\n\r\nx\r\n--b--\r\n";
        assert_eq!(find_model(form.as_bytes(), "b"), Scan::Absent);
        assert_eq!(find_model(b"--b--\r\n", "b"), Scan::Absent);
        assert_eq!(find_model(b"--bjunk\r\n", "b"), Scan::Absent);
        let quoted = "--b\r\nContent-Disposition: form-data; name=\"x;name=model\"\r\n\r\nv\r\n--b--";
        assert_eq!(find_model(quoted.as_bytes(), "b"), Scan::Absent);
    }

    #[test]
    fn boundaries_quoted_or_not() {
        assert!(is_form("Multipart/Form-Data; boundary=abc"));
        assert!(!is_form("application/json"));
        assert_eq!(boundary("multipart/form-data; boundary=abc"), Some("abc"));
        assert_eq!(boundary("multipart/form-data; charset=utf-8; Boundary=\"a b:c\""), Some("a b:c"));
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"\""), None);
    }
}
