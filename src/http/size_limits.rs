//! Request size limits below the handlers: header sizes (431), and a lingering read of oversized
//! bodies so the client actually receives its 413.

use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;

use crate::http::BODY_LIMIT_BYTES;

/// The largest single header (name and value) we accept (RFC 9110 §15.5.21 allows refusing more).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest header section we accept, counting `name: value\r\n` per field.
pub const MAX_HEADERS_BYTES: usize = 32 * 1024;
/// The largest request target; an OAuth request is a few hundred bytes.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// hyper's read buffer (its HTTP/1 default, made explicit) and our HTTP/2 header list limit:
/// anything larger gets hyper's own 431 before the router; smaller heads are read whole and then
/// [`limit_headers`] answers, so the client reads its 431 instead of a reset.
pub const TRANSPORT_HEADERS_BYTES: usize = 8192 + 400 * 1024;

/// How much of an oversized body we read and discard before answering 413.
const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// How long we keep reading an oversized body before answering anyway.
const LINGER_TIME: Duration = Duration::from_secs(10);

/// Answers 431 for a header over [`MAX_HEADER_BYTES`] or a header section over
/// [`MAX_HEADERS_BYTES`], and 414 for a target over [`MAX_URI_BYTES`], before any handler,
/// session lookup or database work.
pub async fn limit_headers(req: Request, next: Next) -> Response {
    let mut total = 0usize;
    for (name, value) in req.headers() {
        let size = name.as_str().len() + value.len();
        if size > MAX_HEADER_BYTES {
            return too_large(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "a header is too large",
            );
        }
        total += size + 4;
    }
    if total > MAX_HEADERS_BYTES {
        return too_large(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the headers are too large",
        );
    }
    if req.uri().to_string().len() > MAX_URI_BYTES {
        return too_large(StatusCode::URI_TOO_LONG, "the request target is too long");
    }
    next.run(req).await
}

fn too_large(status: StatusCode, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads the body before the handler. A body within [`BODY_LIMIT_BYTES`] is handed on as read; a
/// larger one is handed on cut at one byte over the limit, so the handler answers 413 in its own
/// format, but only after the rest has been read and discarded (up to [`LINGER_BYTES`] or
/// [`LINGER_TIME`]). Without that, the connection closes while the client is still sending, its
/// kernel sees a reset, and the 413 is lost (the "lingering close" of RFC 9112 §9.6). Bodies are
/// buffered by every handler anyway; hyper has no lingering close of its own to turn on.
pub async fn linger_on_oversized_body(req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok((kept, drained)) = read_lingering(body).await else {
        // The client went away or broke the framing: a truncated body must never be parsed.
        return too_large(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        );
    };
    let mut response = next.run(Request::from_parts(parts, Body::from(kept))).await;
    if !drained {
        // We stopped reading: the rest of the body is still coming, so this connection is done.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The body's first `BODY_LIMIT_BYTES + 1` bytes, and whether it was read to its end. Within the
/// limit only the request timeout bounds the read; past it, [`LINGER_BYTES`] and [`LINGER_TIME`].
async fn read_lingering(mut body: Body) -> Result<(bytes::Bytes, bool), axum::Error> {
    let mut kept = BytesMut::new();
    let mut discarded = 0usize;
    let mut deadline = None;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx));
        let frame = match deadline {
            None => frame.await,
            Some(at) => match tokio::time::timeout_at(at, frame).await {
                Ok(frame) => frame,
                Err(_) => return Ok((kept.freeze(), false)),
            },
        };
        let Some(frame) = frame else {
            return Ok((kept.freeze(), true));
        };
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        let room = (BODY_LIMIT_BYTES + 1).saturating_sub(kept.len());
        kept.extend_from_slice(&data[..data.len().min(room)]);
        if data.len() > room {
            discarded += data.len() - room;
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER_TIME);
            if discarded > LINGER_BYTES {
                return Ok((kept.freeze(), false));
            }
        }
    }
}
