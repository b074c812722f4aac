//! Turning the errors of the HTTP and distribution layers into [`RegistryError`]s that
//! say, in one line, which registry and which document they are about.

use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};

use crate::error::RegistryError;

/// What a failing request was doing, for the error message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorContext<'a> {
    /// The registry host.
    pub registry: &'a str,
    /// The document or transfer, e.g. `manifest 127.0.0.1:5000/app:v1`.
    pub what: &'a str,
    /// The stall timeout, reported when a timeout fires.
    pub stall_seconds: u64,
}

impl ErrorContext<'_> {
    fn not_found(&self) -> RegistryError {
        RegistryError::NotFound {
            what: self.what.to_string(),
        }
    }

    fn unauthorized(&self) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.to_string(),
            what: self.what.to_string(),
        }
    }

    fn unreachable(&self, detail: String) -> RegistryError {
        RegistryError::Unreachable {
            registry: self.registry.to_string(),
            detail,
        }
    }

    /// The [`RegistryError::Stalled`] error for this transfer.
    pub(crate) fn stalled(&self) -> RegistryError {
        RegistryError::Stalled {
            what: self.what.to_string(),
            seconds: self.stall_seconds,
        }
    }

    fn protocol(&self, detail: impl Into<String>) -> RegistryError {
        RegistryError::protocol(self.what, detail)
    }
}

/// `duration` in seconds, rounded up, as error messages report timeouts.
pub(crate) fn whole_seconds(duration: std::time::Duration) -> u64 {
    duration.as_millis().div_ceil(1000) as u64
}

/// Maps an error of the distribution client.
pub(crate) fn from_oci(err: OciDistributionError, ctx: &ErrorContext<'_>) -> RegistryError {
    match err {
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => ctx.unauthorized(),
        OciDistributionError::DigestError(e) => from_digest(e, ctx),
        OciDistributionError::IoError(e) => from_io(e, ctx),
        OciDistributionError::RequestError(e) => from_reqwest(&e, ctx),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let any = |wanted: &[OciErrorCode]| codes.iter().any(|c| wanted.contains(c));
            if any(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
                ctx.unauthorized()
            } else if any(&[
                OciErrorCode::ManifestUnknown,
                OciErrorCode::BlobUnknown,
                OciErrorCode::NameUnknown,
                OciErrorCode::NotFound,
            ]) {
                ctx.not_found()
            } else {
                let messages: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect();
                ctx.protocol(format!("registry said {}", one_line(&messages.join("; "))))
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 | 403 => ctx.unauthorized(),
            404 => ctx.not_found(),
            _ => ctx.protocol(format!("HTTP status {code}: {}", one_line(&message))),
        },
        OciDistributionError::UnsupportedMediaTypeError(media_type) => {
            RegistryError::UnsupportedMediaType {
                what: ctx.what.to_string(),
                media_type,
            }
        }
        other => ctx.protocol(one_line(&other.to_string())),
    }
}

/// Maps a digest check failure.
fn from_digest(err: DigestError, ctx: &ErrorContext<'_>) -> RegistryError {
    match err {
        DigestError::VerificationError { expected, actual } => RegistryError::DigestMismatch {
            what: ctx.what.to_string(),
            expected,
            actual,
        },
        other => ctx.protocol(other.to_string()),
    }
}

/// Maps an I/O error out of a response body stream, which wraps the real cause.
pub(crate) fn from_io(err: std::io::Error, ctx: &ErrorContext<'_>) -> RegistryError {
    if err.get_ref().is_some_and(|e| e.is::<DigestError>()) {
        let inner = err.into_inner().expect("checked above");
        let digest = inner.downcast::<DigestError>().expect("checked above");
        return from_digest(*digest, ctx);
    }
    if let Some(e) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<reqwest::Error>())
    {
        return from_reqwest(e, ctx);
    }
    if err
        .get_ref()
        .is_some_and(|e| e.is::<OciDistributionError>())
    {
        let inner = err.into_inner().expect("checked above");
        let oci = inner
            .downcast::<OciDistributionError>()
            .expect("checked above");
        return from_oci(*oci, ctx);
    }
    ctx.unreachable(format!("{}: {}", ctx.what, deepest_cause(&err)))
}

/// Maps an HTTP client error.
pub(crate) fn from_reqwest(err: &reqwest::Error, ctx: &ErrorContext<'_>) -> RegistryError {
    if let Some(status) = err.status() {
        return match status.as_u16() {
            401 | 403 => ctx.unauthorized(),
            404 => ctx.not_found(),
            code => ctx.protocol(format!("HTTP status {code}")),
        };
    }
    if let Some(detail) = tls_failure(err) {
        return RegistryError::Tls {
            registry: ctx.registry.to_string(),
            detail,
        };
    }
    let cause = deepest_cause(err);
    if err.is_connect() {
        ctx.unreachable(cause)
    } else if err.is_timeout() {
        ctx.stalled()
    } else if err.is_builder() {
        ctx.protocol(format!("cannot build the request: {cause}"))
    } else {
        ctx.unreachable(format!("connection lost during {}: {cause}", ctx.what))
    }
}

/// What the TLS layer said, if a TLS error is somewhere in `err`'s source chain. (An
/// I/O error hides the error it wraps from the chain, so each one is opened too.)
fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(found) = tls_failure(inner) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

/// The message of the innermost error in `err`'s source chain: the one that says what
/// actually happened ("Connection refused (os error 111)").
fn deepest_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    one_line(&current.to_string())
}

/// `text` cut to its first line and at most 200 characters.
fn one_line(text: &str) -> String {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    match first.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &first[..cut]),
        None => first.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError};

    const CTX: ErrorContext<'static> = ErrorContext {
        registry: "reg.example:5000",
        what: "manifest reg.example:5000/app:v1",
        stall_seconds: 7,
    };

    fn envelope(code: OciErrorCode) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: "msg".into(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "http://x".into(),
        }
    }

    #[test]
    fn registry_error_codes_map_to_what_the_user_should_do() {
        assert!(matches!(
            from_oci(envelope(OciErrorCode::ManifestUnknown), &CTX),
            RegistryError::NotFound { .. }
        ));
        assert!(matches!(
            from_oci(envelope(OciErrorCode::NameUnknown), &CTX),
            RegistryError::NotFound { .. }
        ));
        assert!(matches!(
            from_oci(envelope(OciErrorCode::Denied), &CTX),
            RegistryError::Unauthorized { .. }
        ));
        let other = from_oci(envelope(OciErrorCode::Toomanyrequests), &CTX);
        assert!(other.to_string().contains("Toomanyrequests"), "{other}");
    }

    #[test]
    fn digest_errors_inside_io_errors_are_found() {
        let io = std::io::Error::other(DigestError::VerificationError {
            expected: "sha256:a".into(),
            actual: "sha256:b".into(),
        });
        match from_io(io, &CTX) {
            RegistryError::DigestMismatch {
                what,
                expected,
                actual,
            } => {
                assert_eq!(what, CTX.what);
                assert_eq!(
                    (expected.as_str(), actual.as_str()),
                    ("sha256:a", "sha256:b")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let outer = std::io::Error::other(io);
        let detail = tls_failure(&outer).expect("found");
        assert!(detail.contains("UnknownIssuer"), "{detail}");
        assert_eq!(tls_failure(&std::io::Error::other("plain")), None);
    }

    #[test]
    fn server_errors_keep_one_line_of_the_body() {
        let err = OciDistributionError::ServerError {
            code: 500,
            url: "http://x".into(),
            message: "\n  boom\n<html>\n".into(),
        };
        let text = from_oci(err, &CTX).to_string();
        assert_eq!(
            text,
            "manifest reg.example:5000/app:v1: HTTP status 500: boom"
        );
        let unauthorized = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert_eq!(
            from_oci(unauthorized, &CTX).to_string(),
            "registry reg.example:5000 refused access to manifest reg.example:5000/app:v1: \
             wrong or missing credentials"
        );
    }
}
