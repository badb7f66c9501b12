//! The HTTP surface: every route on one screen, and the layers every response passes through.

pub mod account;
pub mod admin;
pub mod assets;
pub mod authorize;
pub mod brand;
pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod csrf;
pub mod discovery;
pub mod form;
pub mod guard;
pub mod health;
pub mod introspect;
pub mod keep_alive;
pub mod oauth_error;
pub mod observe;
pub mod page;
pub mod passkeys;
pub mod pending;
pub mod recovery;
pub mod request_id;
pub mod revoke;
pub mod rp_logout;
pub mod second_factor;
pub mod self_service;
pub mod shed;
pub mod signin;
pub mod signout;
pub mod signup;
pub mod size_limits;
pub mod token;
pub mod userinfo;
pub mod verify;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::routing::{MethodRouter, get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::SessionManagerLayer;

use crate::app::AppState;
use crate::sessions::store::PgSessionStore;

/// Largest request body we read: forms are a few hundred bytes; this leaves room, no more.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Content-Security-Policy of every response: our own origin only, so no inline script runs; no
/// framing (clickjacking on the consent page). No `form-action`: Chrome applies it to the redirect
/// after a form post, which would block the consent page's redirect back to the app.
const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `Strict-Transport-Security` of every response when the issuer is https.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The second step of signing in, and setting it up from the account page (hosted pages).
fn second_factor_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/signin/second-factor",
            get(second_factor::get_second_factor).post(second_factor::submit_second_factor),
        )
        .route(
            "/signin/second-factor/set-up",
            post(second_factor::submit_sign_in_set_up),
        )
        .route(
            "/account/authenticator",
            get(second_factor::get_account_set_up).post(second_factor::submit_account_set_up),
        )
        .route(
            "/account/authenticator/remove",
            get(second_factor::get_remove).post(second_factor::submit_remove),
        )
        .route(
            "/account/passkeys",
            get(passkeys::get_passkeys).post(passkeys::submit_passkey),
        )
        .route(
            "/account/passkeys/options",
            post(passkeys::registration_options),
        )
        .route("/account/passkeys/rename", post(passkeys::rename))
        .route("/account/passkeys/remove", post(passkeys::remove))
        .route(
            "/signin/second-factor/passkey",
            post(passkeys::submit_proof),
        )
        .route(
            "/signin/second-factor/passkey/options",
            post(passkeys::proof_options),
        )
        .route("/signin/passkey", post(passkeys::submit_sign_in))
        .route(
            "/account/recovery-codes",
            get(second_factor::get_new_codes).post(second_factor::submit_new_codes),
        )
}

/// Every route, on one screen, grouped by who calls it (and the second factor's, above).
fn routes() -> Router<AppState> {
    Router::new()
        // Hosted pages: people, in a browser, on Keyward's own origin.
        .route("/", get(account::get_account))
        .route("/account", get(account::get_account))
        .route("/account/consents/revoke", post(account::revoke_consent))
        .route("/account/sessions/end", post(account::end_sessions))
        .route(
            "/account/password",
            get(self_service::get_password).post(self_service::submit_password),
        )
        .route(
            "/account/email",
            get(self_service::get_email).post(self_service::submit_email),
        )
        .route(
            "/account/email/confirm",
            get(self_service::get_email_confirm).post(self_service::submit_email_confirm),
        )
        .route(
            "/account/delete",
            get(self_service::get_delete).post(self_service::submit_delete),
        )
        .route(
            "/signin",
            get(signin::get_signin).post(signin::submit_signin),
        )
        .route(
            "/signup",
            get(signup::get_signup).post(signup::submit_signup),
        )
        .merge(second_factor_routes())
        .route(
            "/verify-email",
            get(verify::get_verify).post(verify::submit_verify),
        )
        .route("/verify-email/resend", post(verify::resend))
        .route(
            "/forgot-password",
            get(recovery::get_forgot).post(recovery::submit_forgot),
        )
        .route(
            "/reset-password",
            get(recovery::get_reset).post(recovery::submit_reset),
        )
        .route(
            "/signout",
            get(signout::get_signout).post(signout::submit_signout),
        )
        .route(
            "/consent",
            get(authorize::get_consent).post(authorize::submit_consent),
        )
        .route("/assets/style.css", get(assets::get_style))
        .route("/assets/proof.js", get(assets::get_proof_script))
        .route("/assets/passkeys.js", get(assets::get_passkeys_script))
        .route("/assets/logo", get(brand::get_logo))
        // Endpoints for apps: browsers sent here by an app, then the app's own calls.
        .route(
            "/authorize",
            get(authorize::get_authorize).post(authorize::post_authorize),
        )
        .route("/authorize/resume", get(authorize::resume_authorize))
        .route(
            "/logout",
            get(rp_logout::get_rp_logout).post(rp_logout::post_rp_logout),
        )
        .route("/logout/confirm", post(rp_logout::confirm_rp_logout))
        .route(
            "/token",
            post(token::exchange_token).options(cors::preflight_post),
        )
        .route(
            "/revoke",
            post(revoke::revoke_token).options(cors::preflight_post),
        )
        .route("/introspect", post(introspect::introspect_token))
        .route(
            "/userinfo",
            get(userinfo::get_userinfo)
                .post(userinfo::post_userinfo)
                .options(cors::preflight_userinfo),
        )
        // Public documents: anyone, from any origin, without credentials.
        .route("/jwks.json", public(get(discovery::get_jwks)))
        .route(
            "/.well-known/openid-configuration",
            public(get(discovery::get_openid_configuration)),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            public(get(discovery::get_oauth_metadata)),
        )
        // Operations: load balancers and orchestrators (metrics have their own listener).
        .route("/healthz", get(health::get_healthz))
        .route("/readyz", get(health::get_readyz))
        .fallback(page::not_found)
}

/// A public document: readable by a page on any origin, without credentials (CORS `*`).
fn public(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route
        .options(cors::preflight_public)
        .layer(SetResponseHeaderLayer::overriding(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
}

/// Builds the router with its state and the layers every response passes through.
pub fn router(state: AppState, sessions: SessionManagerLayer<PgSessionStore>) -> Router {
    let request_timeout = state.config.server.request_timeout;
    let https = state.config.server.issuer.is_https();
    // The management API: a service's backend, with Keyward's own tokens (off: 404, as unknown).
    let routes = if state.config.server.admin_api {
        routes().merge(admin::routes())
    } else {
        routes()
    };
    let bounded = routes
        .route_layer(axum::middleware::from_fn(observe::mark_route))
        .layer(
            // Innermost: bound the head, the time and the body, then the session.
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(size_limits::limit_headers))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    request_timeout,
                ))
                .layer(axum::middleware::from_fn(
                    size_limits::linger_on_oversized_body,
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
                .layer(sessions),
        );
    // Around those, so that error pages and timeouts carry them too.
    with_security_headers(bounded, https)
        .layer(
            // Outermost first: an id, a span, the count and access line, panics as 500s, the
            // brand the pages show.
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(request_id::assign))
                .layer(TraceLayer::new_for_http().make_span_with(
                    |req: &axum::http::Request<axum::body::Body>| {
                        // No path: query strings carry codes and tokens, and raw paths are
                        // the caller's words; the access line names the route template.
                        let id = req
                            .extensions()
                            .get::<request_id::RequestId>()
                            .map_or("", |r| r.0.as_str());
                        tracing::info_span!("http", method = %req.method(), request_id = %id)
                    },
                ))
                // Outside the panic catcher, so that a panic's 500 is counted too.
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    observe::track,
                ))
                .layer(CatchPanicLayer::new())
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    brand::provide,
                )),
        )
        .with_state(state)
}

/// The security headers of every response (each set only where the handler set none).
fn with_security_headers(router: Router<AppState>, https: bool) -> Router<AppState> {
    let router = router
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(header_layer(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(header_layer(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(header_layer(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Pages carry CSRF tokens and personal data: never store them. Assets override this.
        .layer(header_layer(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    if !https {
        return router;
    }
    // RFC 6797: once seen over https, browsers refuse plain http to us for a year.
    router.layer(SetResponseHeaderLayer::overriding(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    ))
}

fn header_layer(name: HeaderName, value: HeaderValue) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, value)
}
