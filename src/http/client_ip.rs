//! The client's address: the socket peer, or what a trusted proxy says it forwarded for.
//!
//! The one header `KEYWARD_TRUSTED_PROXY_HEADER` names (`X-Forwarded-For` by default, or RFC 7239
//! `Forwarded`) is believed only when the peer is one of `KEYWARD_TRUSTED_PROXIES`, and then read
//! from the right, past every trusted hop, to the first address we do not trust: entries further
//! left were written by the client and prove nothing. The other header is never read: a proxy
//! passes through the one it does not set, so the client could write it.
//! (The extractor crates take the leftmost or rightmost entry; none walks a list of trusted CIDRs.)

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::app::AppState;
use crate::config::ProxyHeader;

/// The address a request is counted and audited under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        let server = &state.config.server;
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &server.trusted_proxies,
            server.trusted_proxy_header,
        )))
    }
}

/// The client address of a request that arrived from `peer`.
#[must_use]
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ProxyHeader,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let hops = match header {
        ProxyHeader::XForwardedFor => x_forwarded_for(headers),
        ProxyHeader::Forwarded => forwarded_for(headers),
    };
    let Some(hops) = hops else {
        return peer;
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            // A hop we cannot read ends the walk: the last address we could vouch for stands.
            None => break,
            Some(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    break;
                }
            }
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Every `for=` of every `Forwarded` header, in order; `None` for one we cannot read (obfuscated
/// identifiers, `unknown`, garbage).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim())
            });
            if let Some(node) = node {
                hops.push(parse_node(node));
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// Every entry of every `X-Forwarded-For` header, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        hops.extend(value.split(',').map(|v| parse_node(v.trim())));
    }
    (!hops.is_empty()).then_some(hops)
}

/// `192.0.2.1`, `192.0.2.1:4711`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim_matches('"');
    if let Ok(ip) = raw.parse() {
        return Some(ip);
    }
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    raw.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const XFF: ProxyHeader = ProxyHeader::XForwardedFor;
    const FWD: ProxyHeader = ProxyHeader::Forwarded;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=1.2.3.4")]);
        assert_eq!(
            client_ip(ip("198.51.100.9"), &h, &[], XFF),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_ip(ip("198.51.100.9"), &h, &nets(&["10.0.0.0/8"]), FWD),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client prepended a fake entry; our proxies appended the real one and themselves.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.1.1.1")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &h, &trusted, XFF),
            ip("203.0.113.5")
        );
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.1.1.1",
        )]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &h, &trusted, FWD),
            ip("2001:db8::7")
        );
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers(&[]), &trusted, XFF),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn an_unreadable_hop_stops_the_walk_at_the_last_trusted_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("forwarded", "for=6.6.6.6, for=_hidden, for=10.1.1.1")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted, FWD), ip("10.1.1.1"));
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted, XFF), ip("10.0.0.2"));
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_cidrs() {
        let trusted = nets(&["127.0.0.1/32"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.5")]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted, XFF),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn only_the_configured_header_is_believed() {
        let trusted = nets(&["127.0.0.1/32"]);
        // nginx sets X-Forwarded-For and passes the client's own Forwarded through.
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "203.0.113.5"),
        ]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted, XFF),
            ip("203.0.113.5")
        );
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted, XFF),
            ip("127.0.0.1")
        );
        // And the other way round.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=203.0.113.5"),
        ]);
        assert_eq!(
            client_ip(ip("127.0.0.1"), &h, &trusted, FWD),
            ip("203.0.113.5")
        );
    }
}
