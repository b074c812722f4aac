//! Content digests (`sha256:<hex>`, `sha512:<hex>`): syntax checks and verification.

use sha2::{Digest, Sha256, Sha512};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `digest` is `sha256:` + 64 or `sha512:` + 128 lowercase hex digits, the
/// algorithms this crate can verify; returns why not otherwise.
pub fn check_digest_syntax(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} has no algorithm"))?;
    let want_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => return Err(format!("unsupported digest algorithm {other:?}")),
    };
    let lower_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.len() != want_len || !lower_hex {
        return Err(format!(
            "digest {digest:?} must have {want_len} lowercase hex digits"
        ));
    }
    Ok(())
}

/// The digest of `bytes` computed with the algorithm `expected` names; `None` when the
/// algorithm is not one of those [`check_digest_syntax`] accepts.
pub fn digest_like(expected: &str, bytes: &[u8]) -> Option<String> {
    match expected.split_once(':')?.0 {
        "sha256" => Some(sha256_digest(bytes)),
        "sha512" => Some(format!("sha512:{}", hex::encode(Sha512::digest(bytes)))),
        _ => None,
    }
}

/// An incremental digest of the algorithm a given digest names.
pub enum Hasher {
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-512.
    Sha512(Sha512),
}

impl Hasher {
    /// A hasher for the algorithm of `digest`; `None` for algorithms not supported.
    pub fn for_digest(digest: &str) -> Option<Hasher> {
        match digest.split_once(':')?.0 {
            "sha256" => Some(Hasher::Sha256(Sha256::new())),
            "sha512" => Some(Hasher::Sha512(Sha512::new())),
            _ => None,
        }
    }

    /// Adds `bytes` to the digest.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything added, as `algorithm:hex`.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_of_empty_input() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest_like("sha256:x", b""), Some(sha256_digest(b"")));
        assert!(digest_like("sha512:x", b"")
            .unwrap()
            .starts_with("sha512:cf83e1"));
        assert_eq!(digest_like("md5:x", b""), None);
    }

    #[test]
    fn incremental_hashing_equals_one_shot() {
        for algorithm in ["sha256:", "sha512:"] {
            let mut h = Hasher::for_digest(algorithm).unwrap();
            h.update(b"hello ");
            h.update(b"world");
            assert_eq!(h.finish(), digest_like(algorithm, b"hello world").unwrap());
        }
        assert!(Hasher::for_digest("md5:x").is_none());
    }

    #[test]
    fn syntax_is_checked_per_algorithm() {
        assert!(check_digest_syntax(&sha256_digest(b"a")).is_ok());
        assert!(check_digest_syntax(&digest_like("sha512:", b"a").unwrap()).is_ok());
        assert!(check_digest_syntax("sha256:ABC").is_err());
        assert!(check_digest_syntax(&sha256_digest(b"a").to_uppercase()).is_err());
        assert!(check_digest_syntax("sha256").is_err());
        assert!(check_digest_syntax("sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709").is_err());
        assert!(check_digest_syntax(&format!("{}0", sha256_digest(b"a"))).is_err());
    }
}
