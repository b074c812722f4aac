//! Turning an image's `USER` (`name`, `uid`, `name:group`, `uid:gid`, ...) into the uid, gid
//! and supplementary groups of the container process, using the rootfs's own `/etc/passwd`
//! and `/etc/group` (read with [`read_rootfs_file`], never the host's).
//!
//! The supplementary groups are every group of `/etc/group` that lists the user as a member,
//! whichever form `USER` takes (CVE-2023-25173: leaving them out let a process keep access
//! that a group was meant to deny).

use std::path::Path;

use oci_spec::runtime::{Spec, User};

use super::options::process_mut;
use super::rootfs_file::read_rootfs_file;
use crate::error::{Error, Result};

/// Largest `/etc/passwd` or `/etc/group` read from an image.
const MAX_DATABASE_BYTES: u64 = 4 * 1024 * 1024;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Login names of the members.
    pub members: Vec<String>,
}

/// The ids a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids, in `/etc/group` order, without duplicates.
    pub additional_gids: Vec<u32>,
}

/// Parses `/etc/passwd` (`name:password:uid:gid:gecos:home:shell`); malformed lines, comments
/// and NIS `+`/`-` lines are skipped.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    database_lines(text)
        .filter_map(|fields| {
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// Parses `/etc/group` (`name:password:gid:member,member`); malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    database_lines(text)
        .filter_map(|fields| {
            Some(GroupEntry {
                name: fields.first()?.to_string(),
                gid: fields.get(2)?.parse().ok()?,
                members: fields
                    .get(3)
                    .map(|list| {
                        list.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn database_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(['+', '-']))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| !fields[0].is_empty())
}

fn numeric_id(text: &str) -> Result<Option<u32>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| Error::InvalidArgument(format!("id {text:?} is out of range")))
}

/// Resolves `user` against parsed databases (pure; see [`resolve_user`] for the rules).
pub fn resolve_user_in(
    user: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<ResolvedUser> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((user_part, group_part)) => (user_part, Some(group_part)),
        None => (user, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(Error::InvalidArgument(format!(
            "user {user:?} is malformed"
        )));
    }

    // The user: a name must exist; a number need not (it then has primary group 0).
    let (uid, mut gid, name) = match numeric_id(user_part)? {
        Some(uid) => match passwd.iter().find(|entry| entry.uid == uid) {
            Some(entry) => (uid, entry.gid, Some(entry.name.as_str())),
            None => (uid, 0, None),
        },
        None => match passwd.iter().find(|entry| entry.name == user_part) {
            Some(entry) => (entry.uid, entry.gid, Some(entry.name.as_str())),
            None => {
                return Err(Error::UserNotFound {
                    user: user_part.to_string(),
                })
            }
        },
    };

    // The group, when given, replaces the primary group: a name must exist, a number need not.
    if let Some(group_part) = group_part {
        gid = match numeric_id(group_part)? {
            Some(gid) => gid,
            None => groups
                .iter()
                .find(|group| group.name == group_part)
                .map(|group| group.gid)
                .ok_or_else(|| Error::GroupNotFound {
                    group: group_part.to_string(),
                })?,
        };
    }

    let mut additional_gids: Vec<u32> = Vec::new();
    if let Some(name) = name {
        for group in groups {
            if group.members.iter().any(|member| member == name)
                && !additional_gids.contains(&group.gid)
            {
                additional_gids.push(group.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// Resolves `user` (`name`, `uid`, `name:group`, `uid:gid`, `name:gid`, `uid:group`) with the
/// `/etc/passwd` and `/etc/group` of `rootfs`. A name that is not there is
/// [`Error::UserNotFound`] / [`Error::GroupNotFound`]; a number is used as is. A user that has a
/// name gets every group listing that name as supplementary group.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser> {
    let passwd = read_rootfs_file(rootfs, "/etc/passwd", MAX_DATABASE_BYTES)?
        .map(|text| parse_passwd(&text))
        .unwrap_or_default();
    let groups = read_rootfs_file(rootfs, "/etc/group", MAX_DATABASE_BYTES)?
        .map(|text| parse_group(&text))
        .unwrap_or_default();
    resolve_user_in(user, &passwd, &groups)
}

/// Sets the process user of `spec` from `user` resolved against `rootfs` (see
/// [`resolve_user`]).
pub fn with_user(spec: &mut Spec, rootfs: &Path, user: &str) -> Result<()> {
    let resolved = resolve_user(rootfs, user)?;
    let mut process_user = User::default();
    process_user
        .set_uid(resolved.uid)
        .set_gid(resolved.gid)
        .set_additional_gids(
            (!resolved.additional_gids.is_empty()).then_some(resolved.additional_gids),
        );
    process_mut(spec).set_user(process_user);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
broken line without fields
+nis:x:5:5::/:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
wheel:x:10:root,app
audio:x:29:app
app:x:1000:
secret:x:2000:
video:x:44: app , other
";

    fn rootfs_with(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    fn resolve(user: &str) -> Result<ResolvedUser> {
        resolve_user_in(user, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    fn ids(uid: u32, gid: u32, additional: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
        }
    }

    #[test]
    fn parsing_skips_comments_and_malformed_lines() {
        let passwd = parse_passwd(PASSWD);
        let names: Vec<_> = passwd.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "daemon", "app"]);
        let groups = parse_group(GROUP);
        let video = groups.iter().find(|g| g.name == "video").unwrap();
        assert_eq!(video.members, ["app", "other"]);
    }

    #[test]
    fn a_name_gets_its_ids_and_supplementary_groups() {
        assert_eq!(resolve("app").unwrap(), ids(1000, 1000, &[10, 29, 44]));
        assert_eq!(resolve("root").unwrap(), ids(0, 0, &[10]));
        assert_eq!(resolve("daemon").unwrap(), ids(1, 1, &[]));
    }

    #[test]
    fn a_uid_is_looked_up_and_unknown_uids_are_allowed() {
        assert_eq!(resolve("1000").unwrap(), ids(1000, 1000, &[10, 29, 44]));
        assert_eq!(resolve("4242").unwrap(), ids(4242, 0, &[]));
    }

    #[test]
    fn an_explicit_group_keeps_the_supplementary_groups() {
        assert_eq!(
            resolve("app:secret").unwrap(),
            ids(1000, 2000, &[10, 29, 44])
        );
        assert_eq!(
            resolve("1000:2000").unwrap(),
            ids(1000, 2000, &[10, 29, 44])
        );
        assert_eq!(resolve("app:7").unwrap(), ids(1000, 7, &[10, 29, 44]));
        assert_eq!(resolve("4242:4343").unwrap(), ids(4242, 4343, &[]));
    }

    #[test]
    fn unknown_names_and_malformed_users_are_errors() {
        assert!(matches!(resolve("nobody"), Err(Error::UserNotFound { user }) if user == "nobody"));
        assert!(
            matches!(resolve("app:nogroup"), Err(Error::GroupNotFound { group }) if group == "nogroup")
        );
        for bad in [":", "app:", ":0", "99999999999"] {
            assert!(
                matches!(resolve(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolution_reads_the_rootfs_files() {
        let rootfs = rootfs_with(PASSWD, GROUP);
        assert_eq!(
            resolve_user(rootfs.path(), "app").unwrap(),
            ids(1000, 1000, &[10, 29, 44])
        );

        let mut spec = crate::spec::default_spec();
        with_user(&mut spec, rootfs.path(), "app:secret").unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (1000, 2000));
        assert_eq!(user.additional_gids().as_deref(), Some(&[10, 29, 44][..]));

        // Without any databases only numbers work.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(resolve_user(empty.path(), "5:6").unwrap(), ids(5, 6, &[]));
        assert!(matches!(
            resolve_user(empty.path(), "app"),
            Err(Error::UserNotFound { .. })
        ));
    }

    #[test]
    fn a_symlinked_passwd_never_reads_the_hosts() {
        // The host surely has root and, on Debian, daemon; a rootfs whose passwd and group
        // point at the host's files must not see either.
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        symlink("/etc/passwd", rootfs.join("etc/passwd")).unwrap();
        symlink("../../../../../../etc/group", rootfs.join("etc/group")).unwrap();
        assert!(std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("root:"));

        match resolve_user(&rootfs, "root") {
            Err(Error::UserNotFound { .. }) | Err(Error::Io { .. }) => {}
            other => panic!("the host's /etc/passwd was read: {other:?}"),
        }
        // A file outside the rootfs reached through `..` is not read either.
        std::fs::write(
            tmp.path().join("passwd"),
            "escapee:x:4242:4242::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
        std::fs::remove_file(rootfs.join("etc/group")).unwrap();
        symlink("../../passwd", rootfs.join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(&rootfs, "escapee"),
            Err(Error::UserNotFound { .. })
        ));
    }
}
