//! CORS (the Fetch standard's protocol) for browser apps, per client: public documents are open to
//! every origin; `/token`, `/revoke` and `/userinfo` answer an origin only for a client that
//! allows it (the origins of its redirect URIs, plus any registered with `--allowed-origin`).
//! Never on `/authorize`, the pages, `/consent` or `/introspect` (RFC 9700 §2.6: the authorization
//! endpoint is for top-level navigation only), and never with credentials: these endpoints take
//! tokens and client credentials in the request, not cookies.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::clients::{self, Client};
use crate::error::AppError;

/// How long a browser may cache a preflight answer.
const MAX_AGE: &str = "600";
/// Request headers a token-endpoint call may carry.
const ALLOW_HEADERS: &str = "Authorization, Content-Type";

/// The request's `Origin`, when it is one a client could have registered (not `null`).
fn origin(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers
        .get(header::ORIGIN)
        .filter(|o| o.as_bytes() != b"null" && !o.is_empty())
}

/// `OPTIONS` of the discovery documents and the JWKS: any origin, no credentials.
pub async fn preflight_public() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("If-None-Match"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    response
}

/// `OPTIONS /token` and `OPTIONS /revoke`.
pub async fn preflight_post(State(state): State<AppState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers, "POST").await
}

/// `OPTIONS /userinfo`.
pub async fn preflight_userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    preflight(&state, &headers, "GET, POST").await
}

/// A preflight names no client, so it is answered for an origin that some client allows; the
/// real request is then answered for its own client only.
async fn preflight(state: &AppState, headers: &HeaderMap, methods: &'static str) -> Response {
    let Some(origin) = origin(headers) else {
        return (StatusCode::BAD_REQUEST, "not a CORS preflight: no Origin").into_response();
    };
    let allowed = match origin.to_str() {
        Ok(o) => {
            let known = async {
                let mut conn = state.conn().await?;
                Ok::<_, AppError>(clients::any_allows_origin(&mut conn, o).await?)
            };
            match known.await {
                Ok(known) => known,
                Err(e) => return e.into_response(),
            }
        }
        Err(_) => false,
    };
    let mut response = if allowed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::FORBIDDEN,
            "this origin is not registered for any client",
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
    }
    response
}

/// Lets the page on the request's origin read `response` if `client` allows that origin; says
/// the answer depends on the origin either way, so no cache hands one origin's answer to another.
#[must_use]
pub fn for_client(
    response: Response,
    request_origin: Option<&HeaderValue>,
    client: Option<&Client>,
) -> Response {
    let Some(origin) = request_origin else {
        return response;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| client.is_some_and(|c| c.allows_origin(o)));
    with_origin(response, origin, allowed)
}

/// The request's `Origin`, for [`for_client`].
#[must_use]
pub fn request_origin(headers: &HeaderMap) -> Option<HeaderValue> {
    origin(headers).cloned()
}

/// For an error answered before any client was known (no valid token, unknown client): the
/// page may read it if some client allows its origin. An error carries nothing to protect, and a
/// browser app must see its 401 to know to refresh.
pub async fn for_any_client(
    state: &AppState,
    response: Response,
    request_origin: Option<&HeaderValue>,
) -> Response {
    let Some(origin) = request_origin else {
        return response;
    };
    let known = match origin.to_str() {
        Ok(o) => async {
            let mut conn = state.conn().await.ok()?;
            clients::any_allows_origin(&mut conn, o).await.ok()
        }
        .await
        .unwrap_or(false),
        Err(_) => false,
    };
    with_origin(response, origin, known)
}

/// Adds `Vary: Origin`, and the headers that let the page read the answer when `allowed`.
#[must_use]
pub fn with_origin(mut response: Response, origin: &HeaderValue, allowed: bool) -> Response {
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        // A 401 from /userinfo says why in its challenge: let the app read it.
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate, Retry-After"),
        );
    }
    response
}
