//! Checking our tokens as a third-party API would: an independent JWT implementation
//! (jsonwebtoken, on ring) with the keys fetched from `/jwks.json` over HTTP.

use serde_json::Value;

use super::TestApp;

/// Verifies `token` against the served JWKS: RS256, our issuer, and `aud` when given.
pub async fn verify_with_jwks(
    app: &TestApp,
    token: &str,
    aud: Option<&str>,
) -> Result<(jsonwebtoken::Header, Value), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let jwks: Value = app
        .browser
        .get("/jwks.json")
        .await
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("no keys in the JWKS")?
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .ok_or("kid not in the JWKS")?;
    let component = |name: &str| jwk[name].as_str().ok_or(format!("no {name} in the JWK"));
    let key = jsonwebtoken::DecodingKey::from_rsa_components(component("n")?, component("e")?)
        .map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[&app.base]);
    match aud {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data =
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| e.to_string())?;
    Ok((header, data.claims))
}
