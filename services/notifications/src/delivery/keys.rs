//! What the notifications key derives: each webhook endpoint's Standard Webhooks secret, and the
//! signature of each member's unsubscribe link. Nothing is stored: the same key, member and
//! endpoint always give the same secret, and a new URL gives a new one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The deployment's notifications key.
#[derive(Clone)]
pub struct Keys([u8; 32]);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable_key());
    for part in parts {
        mac.update(part);
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC takes a key of any length; this is never reached.
fn unreachable_key() -> HmacSha256 {
    HmacSha256::new_from_slice(&[0; 32])
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

impl Keys {
    pub fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// The raw secret of `member`'s webhook at `url`.
    pub fn webhook_secret(&self, member: Uuid, url: &str) -> [u8; 32] {
        mac(&self.0, &[b"webhook", member.as_bytes(), url.as_bytes()])
    }

    /// The secret as Standard Webhooks writes it: `whsec_` and the key in base64.
    pub fn webhook_secret_text(&self, member: Uuid, url: &str) -> String {
        format!(
            "whsec_{}",
            STANDARD.encode(self.webhook_secret(member, url))
        )
    }

    /// The signature of `member`'s unsubscribe link, in hex.
    pub fn unsubscribe_signature(&self, member: Uuid) -> String {
        hex::encode(mac(&self.0, &[b"unsubscribe", member.as_bytes()]))
    }

    /// Whether `signature` is `member`'s, compared in constant time.
    pub fn unsubscribe_signed(&self, member: Uuid, signature: &str) -> bool {
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let mut check = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable_key());
        for part in [b"unsubscribe".as_slice(), member.as_bytes()] {
            check.update(part);
            check.update(&[0]);
        }
        check.verify_slice(&given).is_ok()
    }
}

/// The Standard Webhooks signature of a message: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under the endpoint's secret.
pub fn sign_webhook(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable_key());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_signs_as_the_specification_says() {
        // The worked example of the Standard Webhooks specification.
        let secret = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let signed = sign_webhook(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            b"{\"test\": 2432232314}",
        );
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn unsubscribe_links_are_bound_to_the_member_and_the_key() {
        let keys = Keys::new([7; 32]);
        let ana = Uuid::from_u128(1);
        let signature = keys.unsubscribe_signature(ana);
        assert!(keys.unsubscribe_signed(ana, &signature));
        assert!(!keys.unsubscribe_signed(Uuid::from_u128(2), &signature));
        assert!(!Keys::new([8; 32]).unsubscribe_signed(ana, &signature));
        assert!(!keys.unsubscribe_signed(ana, "zz"));
    }
}
