//! Turning `mount -o` style option strings into kernel flags and filesystem data.

use libc::c_ulong;

/// What one generic option word does to the `mount(2)` flags.
enum Effect {
    /// Sets these `MS_*` bits.
    Set(c_ulong),
    /// Clears these `MS_*` bits.
    Clear(c_ulong),
    /// Asks for a bind mount, recursive or not.
    Bind { recursive: bool },
    /// Changes the propagation type of the mount once it is made (`MS_SHARED` etc.).
    Propagation(c_ulong),
    /// Means nothing on its own (`defaults`).
    Nothing,
}

/// The generic (filesystem-independent) option words `mount(8)` knows, and their effect.
/// Any other option is handed to the filesystem.
fn generic_effect(option: &str) -> Option<Effect> {
    use Effect::*;
    let effect = match option {
        "defaults" => Nothing,
        "ro" => Set(libc::MS_RDONLY),
        "rw" => Clear(libc::MS_RDONLY),
        "nosuid" => Set(libc::MS_NOSUID),
        "suid" => Clear(libc::MS_NOSUID),
        "nodev" => Set(libc::MS_NODEV),
        "dev" => Clear(libc::MS_NODEV),
        "noexec" => Set(libc::MS_NOEXEC),
        "exec" => Clear(libc::MS_NOEXEC),
        "sync" => Set(libc::MS_SYNCHRONOUS),
        "async" => Clear(libc::MS_SYNCHRONOUS),
        "dirsync" => Set(libc::MS_DIRSYNC),
        "noatime" => Set(libc::MS_NOATIME),
        "atime" => Clear(libc::MS_NOATIME),
        "nodiratime" => Set(libc::MS_NODIRATIME),
        "diratime" => Clear(libc::MS_NODIRATIME),
        "relatime" => Set(libc::MS_RELATIME),
        "norelatime" => Clear(libc::MS_RELATIME),
        "strictatime" => Set(libc::MS_STRICTATIME),
        "nostrictatime" => Clear(libc::MS_STRICTATIME),
        "lazytime" => Set(libc::MS_LAZYTIME),
        "nolazytime" => Clear(libc::MS_LAZYTIME),
        "mand" => Set(libc::MS_MANDLOCK),
        "nomand" => Clear(libc::MS_MANDLOCK),
        "bind" => Bind { recursive: false },
        "rbind" => Bind { recursive: true },
        "private" => Propagation(libc::MS_PRIVATE),
        "rprivate" => Propagation(libc::MS_PRIVATE | libc::MS_REC),
        "shared" => Propagation(libc::MS_SHARED),
        "rshared" => Propagation(libc::MS_SHARED | libc::MS_REC),
        "slave" => Propagation(libc::MS_SLAVE),
        "rslave" => Propagation(libc::MS_SLAVE | libc::MS_REC),
        "unbindable" => Propagation(libc::MS_UNBINDABLE),
        "runbindable" => Propagation(libc::MS_UNBINDABLE | libc::MS_REC),
        _ => return None,
    };
    Some(effect)
}

/// A parsed option list: the flags for `mount(2)`, a bind request, propagation changes to
/// apply afterwards, and the filesystem-specific options (`lowerdir=…`, `size=…`) in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MountOptions {
    /// `MS_*` flags (never `MS_BIND`, `MS_REC` or propagation bits: those are separate).
    pub flags: c_ulong,
    /// `Some(recursive)` when the options ask for a bind mount.
    pub bind: Option<bool>,
    /// Propagation changes (`MS_SHARED`, `MS_PRIVATE | MS_REC`, …) in the order given.
    pub propagation: Vec<c_ulong>,
    /// Options the filesystem itself interprets, in the order given.
    pub data: Vec<String>,
}

impl MountOptions {
    /// Splits `options` into generic flags and filesystem data. Later options win over
    /// earlier ones (`ro,rw` is read-write), as with `mount(8)`.
    pub fn parse(options: &[String]) -> Self {
        let mut parsed = MountOptions::default();
        for option in options {
            match generic_effect(option) {
                Some(Effect::Set(bits)) => parsed.flags |= bits,
                Some(Effect::Clear(bits)) => parsed.flags &= !bits,
                Some(Effect::Bind { recursive }) => {
                    parsed.bind = Some(parsed.bind.unwrap_or(false) || recursive)
                }
                Some(Effect::Propagation(bits)) => parsed.propagation.push(bits),
                Some(Effect::Nothing) => {}
                None => parsed.data.push(option.clone()),
            }
        }
        parsed
    }

    /// Whether the options ask for a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.bind.is_some()
    }

    /// The filesystem data as `mount(2)` takes it: options joined by `,`.
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }
}

/// Splits an overlay `lowerdir=` value into its directories: `:` separates them and a
/// backslash escapes the next character (so `a\:b` is one directory named `a:b`).
pub(crate) fn split_lowerdirs(value: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    current.push(escaped);
                }
            }
            ':' => dirs.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    dirs.push(current);
    dirs
}

/// Escapes a directory for use inside an overlay `lowerdir=` / `upperdir=` value in a
/// `mount(2)` option string: `\`, `:` and `,` get a backslash.
pub(crate) fn escape_overlay_path(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '\\' | ':' | ',') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> MountOptions {
        MountOptions::parse(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn generic_words_become_flags_and_the_rest_is_data() {
        let parsed = parse(&["ro", "nosuid", "nodev", "index=off", "lowerdir=/a:/b"]);
        assert_eq!(
            parsed.flags,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV
        );
        assert_eq!(parsed.data, vec!["index=off", "lowerdir=/a:/b"]);
        assert!(!parsed.is_bind());
        assert_eq!(parsed.data_string(), "index=off,lowerdir=/a:/b");
    }

    #[test]
    fn later_words_win() {
        assert_eq!(parse(&["ro", "rw"]).flags, 0);
        assert_eq!(parse(&["rw", "ro"]).flags, libc::MS_RDONLY);
        assert_eq!(parse(&["noexec", "exec"]).flags, 0);
    }

    #[test]
    fn bind_and_rbind() {
        assert_eq!(parse(&["bind"]).bind, Some(false));
        assert_eq!(parse(&["rw", "rbind"]).bind, Some(true));
        assert_eq!(parse(&["rbind", "bind"]).bind, Some(true));
        assert_eq!(parse(&["rbind"]).flags, 0, "bind is not a plain flag");
    }

    #[test]
    fn propagation_is_kept_apart() {
        let parsed = parse(&["rprivate", "shared"]);
        assert_eq!(
            parsed.propagation,
            vec![libc::MS_PRIVATE | libc::MS_REC, libc::MS_SHARED]
        );
        assert_eq!(parsed.flags, 0);
        assert!(parsed.data.is_empty());
    }

    #[test]
    fn lowerdir_splitting_honours_escapes() {
        assert_eq!(split_lowerdirs("/a:/b/c"), vec!["/a", "/b/c"]);
        assert_eq!(split_lowerdirs(r"/a\:b:/c\\d"), vec!["/a:b", r"/c\d"]);
        assert_eq!(split_lowerdirs("/only"), vec!["/only"]);
    }

    #[test]
    fn escaping_round_trips_through_splitting() {
        let odd = r"/x:y,z\w";
        let joined = format!("{}:{}", escape_overlay_path(odd), escape_overlay_path("/b"));
        assert_eq!(split_lowerdirs(&joined), vec![odd, "/b"]);
    }
}
