//! `X-Request-Id`: the caller's when it is a short plain token, else a new one; echoed on the response and carried by every log line of the request.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

static HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longer ids are replaced: they would only bloat every log line.
const MAX_LEN: usize = 64;

/// The id of the request being handled.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Letters, digits and `-_.:` only: an id goes into logs verbatim, so nothing that could forge a
/// line or a field.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Outermost layer: gives the request its id before anything logs.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(acceptable("req-42.a:b_C"));
        for bad in ["", "a b", "x\ny", "a\"b", "é", &"x".repeat(65)] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }
}
