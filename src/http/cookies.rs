//! Cookies other than the session's (trusted devices, visitors' CSRF nonces), built and read with
//! the `cookie` crate that tower-sessions already brings, never formatted by hand.

use axum::http::{HeaderMap, HeaderValue, header};
use tower_sessions::cookie::{Cookie, SameSite};

/// Reads one cookie's value from the request headers.
#[must_use]
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value for an `HttpOnly` cookie on `/`, sent by the browser on `same_site`
/// requests only.
#[must_use]
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: time::Duration,
    same_site: SameSite,
    secure: bool,
) -> Option<HeaderValue> {
    let cookie = Cookie::build((name, value))
        .path("/")
        .max_age(max_age)
        .http_only(true)
        .same_site(same_site)
        .secure(secure)
        .build();
    HeaderValue::from_str(&cookie.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_read_back_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; b=two; c=3"));
        headers.append(header::COOKIE, HeaderValue::from_static("d=4"));
        assert_eq!(cookie_value(&headers, "b").as_deref(), Some("two"));
        assert_eq!(cookie_value(&headers, "d").as_deref(), Some("4"));
        assert_eq!(cookie_value(&headers, "e"), None);
    }

    #[test]
    fn a_set_cookie_carries_every_flag() {
        let v = set_cookie("n", "v", time::Duration::hours(1), SameSite::Lax, true)
            .expect("a valid header value");
        let v = v.to_str().expect("ASCII");
        for part in [
            "n=v",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(v.contains(part), "{v} lacks {part}");
        }
    }
}
