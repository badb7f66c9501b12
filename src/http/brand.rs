//! The product name and optional logo on every hosted page (`KEYWARD_PRODUCT_NAME`, `KEYWARD_LOGO_FILE`).

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;

use crate::app::AppState;

/// The largest logo file accepted: it is served from memory on every page view.
const MAX_LOGO_BYTES: usize = 256 * 1024;

/// What the pages are called and wear.
#[derive(Debug)]
pub struct Brand {
    name: String,
    logo: Option<Logo>,
}

#[derive(Debug)]
struct Logo {
    bytes: Bytes,
    content_type: &'static str,
    /// Part of the URL, so a new logo is fetched at once despite the long cache lifetime.
    version: String,
}

impl Brand {
    /// The brand, reading the logo file (png, svg, webp or jpeg, at most 256 KiB) if one is set.
    pub fn load(name: &str, logo_file: Option<&Path>) -> anyhow::Result<Self> {
        let logo = logo_file.map(read_logo).transpose()?;
        Ok(Self {
            name: name.to_owned(),
            logo,
        })
    }
}

fn read_logo(path: &Path) -> anyhow::Result<Logo> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let content_type = match ext.as_deref() {
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => anyhow::bail!(
            "KEYWARD_LOGO_FILE {}: must end in .png, .svg, .webp or .jpg",
            path.display()
        ),
    };
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("KEYWARD_LOGO_FILE {}: {e}", path.display()))?;
    anyhow::ensure!(
        bytes.len() <= MAX_LOGO_BYTES,
        "KEYWARD_LOGO_FILE {}: {} bytes, at most {MAX_LOGO_BYTES}",
        path.display(),
        bytes.len()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let version = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..8]);
    Ok(Logo {
        bytes: bytes.into(),
        content_type,
        version,
    })
}

tokio::task_local! {
    // Request-scoped rather than a field of each of the pages' structs: error pages are rendered
    // from `PageError` without the state, and every page shares the one base template.
    static CURRENT: Arc<Brand>;
}

/// Middleware: the brand of this app, for the templates rendered while handling the request.
pub async fn provide(State(state): State<AppState>, request: Request, next: Next) -> Response {
    CURRENT.scope(state.brand.clone(), next.run(request)).await
}

/// The product name (read by `base.html`); "Keyward" outside a request.
#[must_use]
pub fn name() -> String {
    CURRENT
        .try_with(|b| b.name.clone())
        .unwrap_or_else(|_| "Keyward".to_owned())
}

/// The logo's URL, if there is one (read by `base.html`).
#[must_use]
pub fn logo_src() -> Option<String> {
    CURRENT
        .try_with(|b| {
            b.logo
                .as_ref()
                .map(|l| format!("/assets/logo?v={}", l.version))
        })
        .ok()
        .flatten()
}

/// `GET /assets/logo`.
pub async fn get_logo(State(state): State<AppState>) -> Response {
    match &state.brand.logo {
        Some(logo) => (
            [
                (header::CONTENT_TYPE, logo.content_type),
                // The URL changes with the file (`?v=`), so it may be cached for long.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                // An SVG opened on its own must not run script in our origin.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            logo.bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
