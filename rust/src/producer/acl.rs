//! AK/SK request signing as RocketMQ's AclClientRPCHook does it (ACL 1.0 wire format, which
//! ACL 2.0 servers still check): extField `AccessKey` is added, then HmacSHA1 over the values of
//! every extField except `Signature`, in Java TreeMap key order, followed by the body bytes,
//! Base64-encoded into extField `Signature`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use base64::Engine as _;
use ring::hmac;

/// extField carrying the access key.
pub const ACCESS_KEY: &str = "AccessKey";
/// extField carrying the signature.
pub const SIGNATURE: &str = "Signature";

/// An access key and the HMAC key derived from its secret.
#[derive(Clone)]
pub struct Credentials {
    access_key: String,
    key: hmac::Key,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// Java's String.compareTo: lexicographic over UTF-16 code units (differs from byte order only
/// for characters above U+FFFF against U+E000..U+FFFF).
fn java_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

impl Credentials {
    /// Credentials for `access_key` with `secret_key` (UTF-8, as Java's getBytes(UTF-8)).
    pub fn new(access_key: &str, secret_key: &str) -> Self {
        Credentials {
            access_key: access_key.to_owned(),
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret_key.as_bytes()),
        }
    }

    /// The access key.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The Base64 signature of these extFields (all but `Signature`) and body.
    pub fn signature(&self, ext_fields: &BTreeMap<String, String>, body: &[u8]) -> String {
        let mut keys: Vec<&String> = ext_fields.keys().filter(|k| *k != SIGNATURE).collect();
        // BTreeMap order is byte order; re-sort only when a key could order differently.
        if keys.iter().any(|k| !k.is_ascii()) {
            keys.sort_by(|a, b| java_cmp(a, b));
        }
        let mut ctx = hmac::Context::with_key(&self.key);
        for k in keys {
            ctx.update(ext_fields[k].as_bytes());
        }
        ctx.update(body);
        base64::engine::general_purpose::STANDARD.encode(ctx.sign().as_ref())
    }

    /// Adds `AccessKey` and then `Signature` to a request's extFields.
    pub fn sign(&self, ext_fields: &mut BTreeMap<String, String>, body: &[u8]) {
        ext_fields.insert(ACCESS_KEY.to_owned(), self.access_key.clone());
        let sig = self.signature(ext_fields, body);
        ext_fields.insert(SIGNATURE.to_owned(), sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_vector() {
        // Python: base64(hmac.new(b"12345678", b"rocketmq" + b"G" + b"T" + b"hello", sha1))
        // (values in key order AccessKey < a < b: uppercase sorts first).
        let c = Credentials::new("rocketmq", "12345678");
        let mut ext = map(&[("b", "T"), ("a", "G")]);
        c.sign(&mut ext, b"hello");
        assert_eq!(ext["AccessKey"], "rocketmq");
        assert_eq!(ext["Signature"], "AEKxoF/VOJJJeX1eJXfyPgt/Sx4=");
        // Re-signing ignores the old Signature.
        c.sign(&mut ext, b"hello");
        assert_eq!(ext["Signature"], "AEKxoF/VOJJJeX1eJXfyPgt/Sx4=");
    }

    #[test]
    fn java_key_order_for_non_bmp_keys() {
        // UTF-16 puts U+1F600 (surrogates D83D DE00) before U+FFFF; UTF-8 bytes put it after.
        // Python: base64(hmac.new(b"k", b"v_z" + b"v_emoji" + b"v_ffff", sha1))
        let c = Credentials::new("ak", "k");
        let ext = map(&[
            ("z", "v_z"),
            ("\u{ffff}", "v_ffff"),
            ("\u{1F600}", "v_emoji"),
        ]);
        assert_eq!(c.signature(&ext, b""), "/8U64B0G0jtZbHIy4QsYQAK//go=");
        assert_eq!(java_cmp("\u{1F600}", "\u{ffff}"), Ordering::Less);
        assert_eq!(java_cmp("AccessKey", "a"), Ordering::Less);
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Credentials::new("ak", "very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
