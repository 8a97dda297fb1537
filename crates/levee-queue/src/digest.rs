//! The MD5 digests SQS returns with every message.
//!
//! Owns: `MD5OfMessageBody` (hex MD5 of the UTF-8 body) and
//! `MD5OfMessageAttributes`, computed as the reference (§5 "MD5") and the
//! Java SDK's `MessageMD5ChecksumInterceptor` expect: attribute names in
//! sorted order; for each, the 4-byte big-endian length and bytes of the
//! name, the same for the data type, then a transport byte (1 = string,
//! 2 = binary) and the length-prefixed value. Must never: hash anything but
//! what is sent back — a receive that filters attributes hashes the
//! filtered set, because that is what SDKs verify.

use md5::{Digest, Md5};

use crate::model::{AttributeValue, MessageAttributes};

const STRING_TRANSPORT: u8 = 1;
const BINARY_TRANSPORT: u8 = 2;

/// Hex MD5 of a message body.
pub fn md5_of_body(body: &str) -> String {
    format!("{:x}", Md5::digest(body.as_bytes()))
}

/// Hex SHA-256 of a message body: a FIFO queue's content-based
/// deduplication id, as SQS computes it.
pub fn sha256_hex(body: &str) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(body.as_bytes()))
}

/// Feeds a length-prefixed field. Attribute values are bounded by the
/// message size (≤ 256 KiB), so the length always fits in 4 bytes; a longer
/// slice is hashed with a saturated length rather than panicking.
fn field(h: &mut Md5, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    h.update(len.to_be_bytes());
    h.update(bytes);
}

/// Hex MD5 of message attributes; `None` when there are none (SQS then
/// omits the field).
pub fn md5_of_attributes(attributes: &MessageAttributes) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut h = Md5::new();
    // BTreeMap iterates in byte order of the names; names are ASCII (see
    // model::validate_attribute_name), where byte order equals the UTF-16
    // order the Java SDK sorts by.
    for (name, attr) in attributes {
        field(&mut h, name.as_bytes());
        field(&mut h, attr.data_type.as_bytes());
        match &attr.value {
            AttributeValue::String(s) => {
                h.update([STRING_TRANSPORT]);
                field(&mut h, s.as_bytes());
            }
            AttributeValue::Binary(b) => {
                h.update([BINARY_TRANSPORT]);
                field(&mut h, b);
            }
        }
    }
    Some(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageAttribute;

    fn attr(data_type: &str, value: AttributeValue) -> MessageAttribute {
        MessageAttribute {
            data_type: data_type.into(),
            value,
        }
    }

    #[test]
    fn body_digest_matches_the_known_vector() {
        assert_eq!(md5_of_body("hello"), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(md5_of_body(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    // Fixtures computed with moto 5 (`moto.sqs.models.Message.attribute_md5`,
    // the implementation the reference cites), which boto-based test suites
    // and LocalStack agree with:
    //   {"a": String "b"}                      -> bef8bf215374a0a228d67533b1a488be
    //   {"city": String "Any City", "bin": Binary 00 01 ff,
    //    "count": Number.int "42"}             -> 2f54b15bc6345280563c021d904aac60
    #[test]
    fn attribute_digest_matches_moto() {
        let mut one = MessageAttributes::new();
        one.insert(
            "a".into(),
            attr("String", AttributeValue::String("b".into())),
        );
        assert_eq!(
            md5_of_attributes(&one).as_deref(),
            Some("bef8bf215374a0a228d67533b1a488be")
        );
        let mut three = MessageAttributes::new();
        three.insert(
            "city".into(),
            attr("String", AttributeValue::String("Any City".into())),
        );
        three.insert(
            "bin".into(),
            attr("Binary", AttributeValue::Binary(vec![0, 1, 0xff])),
        );
        three.insert(
            "count".into(),
            attr("Number.int", AttributeValue::String("42".into())),
        );
        assert_eq!(
            md5_of_attributes(&three).as_deref(),
            Some("2f54b15bc6345280563c021d904aac60")
        );
    }

    #[test]
    fn no_attributes_no_digest() {
        assert_eq!(md5_of_attributes(&MessageAttributes::new()), None);
    }
}
