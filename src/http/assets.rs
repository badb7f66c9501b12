//! The stylesheet of the hosted pages and their two scripts (the sign-in page's proof of work,
//! passkeys), compiled into the binary.

use axum::http::header;
use axum::response::IntoResponse;

const STYLE_CSS: &str = include_str!("../../templates/assets/style.css");
const PROOF_JS: &str = include_str!("../../templates/assets/proof.js");
const PASSKEYS_JS: &str = include_str!("../../templates/assets/passkeys.js");

/// `GET /assets/style.css`.
pub async fn get_style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `GET /assets/proof.js`.
pub async fn get_proof_script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", PROOF_JS)
}

/// `GET /assets/passkeys.js`.
pub async fn get_passkeys_script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", PASSKEYS_JS)
}

/// A file of ours, cached an hour: a new release is picked up within it.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}
