//! Where a member is reached besides the feed: an email address and a webhook endpoint, each
//! checked when given. A webhook must be https to a public address; loopback (where http is
//! then allowed) and private addresses only when the operator allows them, since otherwise any
//! member could make Kith call into the network it runs in.

use std::net::IpAddr;

/// An email address as SMTP takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

/// The longest address SMTP carries (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() > MAX_EMAIL {
            return Err(format!("at most {MAX_EMAIL} characters"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("must not contain spaces or control characters".into());
        }
        match raw.parse::<lettre::Address>() {
            Ok(address) if address.domain().contains('.') || address.domain() == "localhost" => {
                Ok(Self(address.to_string()))
            }
            _ => Err("is not an email address (name@example.org)".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A webhook endpoint allowed by the deployment's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

/// The longest endpoint URL taken.
const MAX_URL: usize = 2048;

impl WebhookUrl {
    /// Checks `raw`; `allow_private` lets it reach loopback (over http too) and private
    /// addresses.
    pub fn parse(raw: &str, allow_private: bool) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() > MAX_URL {
            return Err(format!("at most {MAX_URL} characters"));
        }
        let url = url::Url::parse(raw).map_err(|err| format!("is not a URL: {err}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user or password".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment".into());
        }
        let host = url.host().ok_or("must name a host")?;
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(name) if name.eq_ignore_ascii_case("localhost") => {
                Some(IpAddr::from([127, 0, 0, 1]))
            }
            url::Host::Domain(_) => None,
        };
        let loopback = ip.is_some_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback && allow_private => {}
            "http" if loopback => {
                return Err("loopback endpoints are not allowed on this deployment".into());
            }
            "http" => return Err("must be https (http only on loopback)".into()),
            other => return Err(format!("scheme {other:?} is not allowed; use https")),
        }
        if let Some(ip) = ip
            && !allow_private
            && !is_public(ip)
        {
            return Err(format!(
                "{ip} is a loopback, private or reserved address, which this deployment does not call"
            ));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, unique-local,
/// shared (CGNAT), documentation, multicast, broadcast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Both ways a member is reached besides the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub email: Option<EmailAddress>,
    pub webhook: Option<WebhookUrl>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_must_be_https_to_a_public_address_unless_allowed() {
        assert!(WebhookUrl::parse("https://hooks.example.org/kith", false).is_ok());
        assert!(WebhookUrl::parse("http://hooks.example.org/kith", false).is_err());
        assert!(WebhookUrl::parse("https://10.0.0.7/hook", false).is_err());
        assert!(WebhookUrl::parse("https://192.168.1.2/hook", false).is_err());
        assert!(WebhookUrl::parse("https://[fd00::1]/hook", false).is_err());
        assert!(WebhookUrl::parse("https://169.254.169.254/latest", false).is_err());
        assert!(WebhookUrl::parse("https://[::ffff:127.0.0.1]/hook", false).is_err());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hook", false).is_err());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(
            WebhookUrl::parse("http://10.0.0.7/hook", true).is_err(),
            "http only on loopback"
        );
        assert!(WebhookUrl::parse("https://10.0.0.7/hook", true).is_ok());
        assert!(WebhookUrl::parse("ftp://example.org/", true).is_err());
        assert!(WebhookUrl::parse("https://user:pw@example.org/", false).is_err());
    }

    #[test]
    fn email_addresses_are_checked() {
        assert_eq!(
            EmailAddress::parse(" ana@example.org ").unwrap().as_str(),
            "ana@example.org"
        );
        assert!(EmailAddress::parse("ana").is_err());
        assert!(EmailAddress::parse("ana @example.org").is_err());
        assert!(EmailAddress::parse("ana@example").is_err());
        assert!(EmailAddress::parse(&format!("{}@example.org", "a".repeat(300))).is_err());
    }
}
