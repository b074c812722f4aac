//! Where one stdio stream of a process goes, as the client names it: a fifo path (what
//! ctr passes), `file:///path` (append to a file) or `binary:///path?key=value` (a logging
//! program fed through pipes). An empty string means no stream (`/dev/null`).

use std::path::PathBuf;

use crate::server::ShimError;

/// One stream's destination (or, for stdin, its source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StdioTarget {
    /// Nothing: the process gets `/dev/null`.
    Null,
    /// A fifo the client created and reads (or, for stdin, writes).
    Fifo(PathBuf),
    /// A regular file the output is appended to.
    File(PathBuf),
    /// A logging program started by the shim; the output reaches it through pipes.
    Binary {
        /// The program.
        path: PathBuf,
        /// Its arguments: each query pair as `key` then `value` (when not empty).
        args: Vec<String>,
    },
}

impl StdioTarget {
    /// Parses what the client sent for one stream.
    pub(crate) fn parse(text: &str) -> Result<StdioTarget, ShimError> {
        if text.is_empty() {
            return Ok(StdioTarget::Null);
        }
        let invalid = |why: &str| ShimError::InvalidArgument(format!("stdio {text:?}: {why}"));
        let Some((scheme, rest)) = text.split_once("://") else {
            let path = PathBuf::from(text);
            if !path.is_absolute() {
                return Err(invalid("a fifo path must be absolute"));
            }
            return Ok(StdioTarget::Fifo(path));
        };
        let (path_part, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        // `scheme:///path`: the authority must be empty (or localhost, for file URIs).
        let path_part = path_part.strip_prefix("localhost").unwrap_or(path_part);
        if !path_part.starts_with('/') {
            return Err(invalid(
                "the URI must name an absolute path (scheme:///path)",
            ));
        }
        let path = PathBuf::from(percent_decode(path_part, false).map_err(|e| invalid(&e))?);
        match scheme {
            "fifo" => Ok(StdioTarget::Fifo(path)),
            "file" => Ok(StdioTarget::File(path)),
            "binary" => {
                let mut args = Vec::new();
                for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    args.push(percent_decode(key, true).map_err(|e| invalid(&e))?);
                    let value = percent_decode(value, true).map_err(|e| invalid(&e))?;
                    if !value.is_empty() {
                        args.push(value);
                    }
                }
                Ok(StdioTarget::Binary { path, args })
            }
            _ => Err(invalid(
                "unsupported scheme (use a fifo path, file:// or binary://)",
            )),
        }
    }
}

/// Undoes `%XX` escapes (and `+` as space in query parts).
fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad escape at byte {i}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "escapes do not decode to UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_paths_and_uris_are_recognised() {
        assert_eq!(StdioTarget::parse("").unwrap(), StdioTarget::Null);
        assert_eq!(
            StdioTarget::parse("/run/ctr/fifo/abc-stdout").unwrap(),
            StdioTarget::Fifo("/run/ctr/fifo/abc-stdout".into())
        );
        assert_eq!(
            StdioTarget::parse("file:///var/log/my%20app.log").unwrap(),
            StdioTarget::File("/var/log/my app.log".into())
        );
        assert_eq!(
            StdioTarget::parse("binary:///usr/bin/logger?tag=web&debug&level=a+b").unwrap(),
            StdioTarget::Binary {
                path: "/usr/bin/logger".into(),
                args: vec![
                    "tag".into(),
                    "web".into(),
                    "debug".into(),
                    "level".into(),
                    "a b".into()
                ],
            }
        );
    }

    #[test]
    fn relative_paths_and_other_schemes_are_refused() {
        for bad in [
            "relative/fifo",
            "file://relative",
            "http:///x",
            "binary://host/bin",
            "file:///bad%zz",
        ] {
            assert!(
                matches!(StdioTarget::parse(bad), Err(ShimError::InvalidArgument(_))),
                "{bad} accepted"
            );
        }
    }
}
