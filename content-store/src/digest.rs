//! Content digests: the `sha256:<64 lowercase hex>` names of blobs.
//!
//! Only sha256 is supported. Parsing is strict (lowercase hex, exact length) because a digest
//! becomes a file name under `blobs/sha256/`; anything else is rejected as `InvalidArgument`.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Length of a sha256 digest in bytes.
const SHA256_LEN: usize = 32;
/// Length of a sha256 digest written as hex.
const SHA256_HEX_LEN: usize = SHA256_LEN * 2;
/// How much of a rejected input is echoed back in an error message.
const MAX_ECHO_CHARS: usize = 100;

/// A validated sha256 content digest, displayed as `sha256:<64 lowercase hex>`.
///
/// It is `Copy` (32 bytes) and orders by its bytes, which is also the order of its hex form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; SHA256_LEN]);

impl Digest {
    /// The only algorithm this store supports, as written before the `:`.
    pub const ALGORITHM: &'static str = "sha256";

    /// Parses and validates `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Self> {
        let Some((algorithm, hex_part)) = text.split_once(':') else {
            return Err(invalid(
                text,
                "expected \"sha256:\" followed by 64 lowercase hex characters",
            ));
        };
        if algorithm != Self::ALGORITHM {
            return Err(Error::InvalidArgument(format!(
                "unsupported digest algorithm {:?} in {:?}: only sha256 is supported",
                echo(algorithm),
                echo(text)
            )));
        }
        Self::from_hex(hex_part).map_err(|_| {
            invalid(
                text,
                &format!(
                    "the part after \"sha256:\" must be exactly {SHA256_HEX_LEN} lowercase hex characters \
                     [0-9a-f] (got {} characters)",
                    hex_part.chars().count()
                ),
            )
        })
    }

    /// Parses the bare 64-character lowercase hex form (as used for blob file names).
    pub fn from_hex(hex_part: &str) -> Result<Self> {
        let well_formed = hex_part.len() == SHA256_HEX_LEN
            && hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(invalid(
                hex_part,
                "expected 64 lowercase hex characters [0-9a-f]",
            ));
        }
        let mut bytes = [0u8; SHA256_LEN];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|e| invalid(hex_part, &e.to_string()))?;
        Ok(Digest(bytes))
    }

    /// Wraps the raw 32 bytes of a sha256 sum.
    pub fn from_bytes(bytes: [u8; SHA256_LEN]) -> Self {
        Digest(bytes)
    }

    /// Computes the digest of `bytes` in one go.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// The 64 lowercase hex characters, without the `sha256:` prefix (the blob's file name).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The raw 32 bytes of the sum.
    pub fn as_bytes(&self) -> &[u8; SHA256_LEN] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", Self::ALGORITHM, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Digest::parse(text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Builds the `InvalidArgument` error for a malformed digest.
fn invalid(text: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("invalid digest {:?}: {why}", echo(text)))
}

/// Shortens untrusted input before it goes into an error message.
fn echo(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO_CHARS {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX_ECHO_CHARS).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn assert_invalid(text: &str, needle: &str) {
        match Digest::parse(text) {
            Err(Error::InvalidArgument(message)) => assert!(
                message.contains(needle),
                "message {message:?} for {text:?} should mention {needle:?}"
            ),
            other => panic!("{text:?} should be InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn of_matches_known_sha256_and_round_trips_through_text() {
        let digest = Digest::of(b"hello");
        assert_eq!(digest.to_string(), HELLO);
        assert_eq!(HELLO.parse::<Digest>().unwrap(), digest);
        assert_eq!(digest.hex(), &HELLO[7..]);
        assert_eq!(Digest::from_hex(&HELLO[7..]).unwrap(), digest);
        assert_eq!(format!("{digest:?}"), HELLO);
    }

    #[test]
    fn uppercase_hex_is_rejected() {
        assert_invalid(
            &HELLO.to_uppercase().replace("SHA256", "sha256"),
            "lowercase hex",
        );
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert_invalid(&HELLO[..HELLO.len() - 1], "got 63 characters");
        assert_invalid(&format!("{HELLO}0"), "got 65 characters");
        assert_invalid("sha256:", "got 0 characters");
    }

    #[test]
    fn other_algorithms_are_rejected_by_name() {
        assert_invalid(
            "md5:5d41402abc4b2a76b9719d911017c592",
            "only sha256 is supported",
        );
        assert_invalid(
            &HELLO.replace("sha256", "sha512"),
            "only sha256 is supported",
        );
    }

    #[test]
    fn empty_and_prefixless_inputs_are_rejected() {
        assert_invalid("", "expected \"sha256:\"");
        assert_invalid(&HELLO[7..], "expected \"sha256:\"");
    }

    #[test]
    fn non_hex_characters_are_rejected() {
        assert_invalid(&HELLO.replace('c', "g"), "lowercase hex");
        assert_invalid(&HELLO.replace("2c", "/."), "lowercase hex");
    }

    #[test]
    fn huge_input_is_not_echoed_in_full() {
        let huge = format!("sha256:{}", "a".repeat(10_000));
        let message = Digest::parse(&huge).unwrap_err().to_string();
        assert!(
            message.len() < 400,
            "message too long: {} bytes",
            message.len()
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let digest = Digest::of(b"hello");
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(json, format!("\"{HELLO}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<Digest>("\"md5:00\"").is_err());
    }
}
