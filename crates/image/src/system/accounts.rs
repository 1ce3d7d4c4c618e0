//! Accounts, as base-passwd's postinst makes them on a fresh system:
//! `/etc/passwd` and `/etc/group` from `/usr/share/base-passwd/*.master`,
//! then each `[[accounts]]` entry (and a group of the same name when no
//! group has its gid). `/etc/shadow` and `/etc/gshadow` hold a locked `*`
//! entry for every account and group (as `pwconv`/`grpconv` would leave
//! them, with no last-change day so the files do not depend on the build
//! date), mode 0640 root:shadow; the password fields of `passwd` and
//! `group` are `x`. Only made when this layer installs base-passwd and the
//! lower layers have no `/etc/passwd` (the postinst's own condition).

use std::collections::BTreeSet;

use super::{Account, Installed, Notes, Over, SystemError, is_clean_abs, note, read_node};
use crate::debs::resolve_entry;
use crate::tarw::EntryType;
use crate::tree::{self, Lookup as _, Node, Origin, Tree};

const PASSWD_MASTER: &str = "/usr/share/base-passwd/passwd.master";
const GROUP_MASTER: &str = "/usr/share/base-passwd/group.master";
/// base-passwd's fixed gid of the `shadow` group.
const SHADOW_GID: u32 = 42;

/// A line of `passwd` (7 fields) or `group` (4 fields).
#[derive(Clone, Debug)]
struct Entry {
    fields: Vec<String>,
}

impl Entry {
    fn name(&self) -> &str {
        &self.fields[0]
    }
    fn id(&self) -> &str {
        &self.fields[2]
    }
}

fn parse(path: &str, text: &str, nfields: usize) -> Result<Vec<Entry>, SystemError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split(':').map(str::to_string).collect();
        if fields.len() != nfields || fields[2].parse::<u32>().is_err() {
            return Err(SystemError::Generated {
                path: path.to_string(),
                message: format!("line {}: not a {nfields}-field entry: {line:?}", i + 1),
            });
        }
        out.push(Entry { fields });
    }
    Ok(out)
}

fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    n.len() <= 32
        && cs
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Check the accounts against each other and base-passwd's, and add them
/// (with their groups) to `passwd` and `group`.
fn merge(
    accounts: &[Account],
    passwd: &mut Vec<Entry>,
    group: &mut Vec<Entry>,
) -> Result<(), SystemError> {
    for (index, a) in accounts.iter().enumerate() {
        let err = |message: String| SystemError::Account {
            index,
            name: a.name.clone(),
            message,
        };
        if !valid_name(&a.name) {
            return Err(err(
                "a name is 1 to 32 of a-z, 0-9, _ and -, starting with a letter or _".into(),
            ));
        }
        for (what, id) in [("uid", a.uid), ("gid", a.gid)] {
            if id == u32::MAX || id == 65535 {
                return Err(err(format!("{what} {id} is reserved")));
            }
        }
        let uid = a.uid.to_string();
        let gid = a.gid.to_string();
        if let Some(e) = passwd.iter().find(|e| e.name() == a.name) {
            return Err(err(format!(
                "the account {} already exists (uid {})",
                a.name,
                e.id()
            )));
        }
        if let Some(e) = passwd.iter().find(|e| e.id() == uid) {
            return Err(err(format!("uid {uid} is already {}'s", e.name())));
        }
        let home = a.home.as_deref().unwrap_or("/nonexistent");
        let shell = a.shell.as_deref().unwrap_or("/usr/sbin/nologin");
        for (what, p) in [("home", home), ("shell", shell)] {
            if !is_clean_abs(p) || p.contains(':') {
                return Err(err(format!(
                    "{what} {p:?} is not a clean absolute path without ':'"
                )));
            }
        }
        if !group.iter().any(|g| g.id() == gid) {
            if let Some(g) = group.iter().find(|g| g.name() == a.name) {
                return Err(err(format!(
                    "no group has gid {gid} and the group {} has gid {}",
                    a.name,
                    g.id()
                )));
            }
            group.push(Entry {
                fields: vec![a.name.clone(), "x".into(), gid.clone(), String::new()],
            });
        }
        passwd.push(Entry {
            fields: vec![
                a.name.clone(),
                "x".into(),
                uid,
                gid,
                String::new(),
                home.to_string(),
                shell.to_string(),
            ],
        });
    }
    Ok(())
}

fn render(entries: &[Entry]) -> Vec<u8> {
    let mut s = String::new();
    for e in entries {
        s.push_str(&e.fields.join(":"));
        s.push('\n');
    }
    s.into_bytes()
}

pub(super) fn apply(
    accounts: &[Account],
    layer: &mut Tree,
    lower: &dyn tree::Lookup,
    installed: &Installed<'_>,
    notes: &mut Notes,
) -> Result<(), SystemError> {
    let has_passwd = installed.names.contains("base-passwd");
    let master = layer.get(PASSWD_MASTER).zip(layer.get(GROUP_MASTER));
    let (Some((pm, gm)), true, None) = (master, has_passwd, lower.node("/etc/passwd")) else {
        if accounts.is_empty() {
            return Ok(());
        }
        return Err(SystemError::NoBasePasswd);
    };
    let ptext = read_node(PASSWD_MASTER, pm, 1 << 20)?;
    let gtext = read_node(GROUP_MASTER, gm, 1 << 20)?;
    let mut passwd = parse(PASSWD_MASTER, &String::from_utf8_lossy(&ptext), 7)?;
    let mut group = parse(GROUP_MASTER, &String::from_utf8_lossy(&gtext), 4)?;
    for e in passwd.iter_mut().chain(group.iter_mut()) {
        e.fields[1] = "x".into();
    }
    merge(accounts, &mut passwd, &mut group)?;
    let mut seen = BTreeSet::new();
    for e in &passwd {
        if !seen.insert(e.name().to_string()) {
            return Err(SystemError::Generated {
                path: PASSWD_MASTER.into(),
                message: format!("{} is listed twice", e.name()),
            });
        }
    }
    let shadow: Vec<Entry> = passwd
        .iter()
        .map(|e| Entry {
            fields: [e.name(), "*", "", "0", "99999", "7", "", "", ""]
                .map(str::to_string)
                .to_vec(),
        })
        .collect();
    let gshadow: Vec<Entry> = group
        .iter()
        .map(|e| Entry {
            fields: vec![
                e.name().into(),
                "*".into(),
                String::new(),
                e.fields[3].clone(),
            ],
        })
        .collect();
    let files = [
        ("/etc/passwd", render(&passwd), 0o644, 0),
        ("/etc/group", render(&group), 0o644, 0),
        ("/etc/shadow", render(&shadow), 0o640, SHADOW_GID),
        ("/etc/gshadow", render(&gshadow), 0o640, SHADOW_GID),
    ];
    for (path, data, mode, gid) in files {
        if Over(layer, lower).node(path).is_some() {
            return Err(SystemError::Generated {
                path: path.into(),
                message: "already in the image".into(),
            });
        }
        layer.insert(path.into(), Node::bytes(data, mode, 0, gid, Origin::Spec));
    }
    let mut homes = Vec::new();
    for a in accounts {
        let Some(home) = &a.home else { continue };
        let path = resolve_entry(&Over(layer, lower), home, true)?;
        match Over(layer, lower).node(&path) {
            Some(n) if n.kind == EntryType::Dir => continue,
            Some(_) => {
                return Err(SystemError::Generated {
                    path,
                    message: format!("home of {} is not a directory", a.name),
                });
            }
            None => {}
        }
        layer.insert(path.clone(), Node::dir(0o755, a.uid, a.gid, Origin::Spec));
        homes.push(path);
    }
    let mut text = "kiln: generated /etc/passwd, /etc/group, /etc/shadow, /etc/gshadow from base-passwd's master files".to_string();
    if !accounts.is_empty() {
        let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
        text.push_str(&format!(" with [[accounts]] {}", names.join(", ")));
    }
    if !homes.is_empty() {
        text.push_str(&format!("; created {}", homes.join(", ")));
    }
    note(notes, "base-passwd", text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const PM: &str = "root:*:0:0:root:/root:/bin/bash\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GM: &str = "root:*:0:\nshadow:*:42:\nstaff:*:50:\nnogroup:*:65534:\n";

    fn layer() -> Tree {
        let mut t = Tree::new();
        t.insert(
            PASSWD_MASTER.into(),
            Node::bytes(
                PM.into(),
                0o644,
                0,
                0,
                Origin::Package("base-passwd".into()),
            ),
        );
        t.insert(
            GROUP_MASTER.into(),
            Node::bytes(
                GM.into(),
                0o644,
                0,
                0,
                Origin::Package("base-passwd".into()),
            ),
        );
        t.insert("/home".into(), Node::dir(0o755, 0, 0, Origin::Base));
        t
    }

    fn acct(name: &str, uid: u32, gid: u32) -> Account {
        Account {
            name: name.into(),
            uid,
            gid,
            home: Some(format!("/home/{name}")),
            shell: None,
        }
    }

    fn run(accounts: &[Account], names: &[&str]) -> Result<(Tree, Notes), SystemError> {
        let mut t = layer();
        let names: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        let post = BTreeMap::new();
        let inst = Installed {
            names: &names,
            postinsts: &post,
        };
        let mut notes = Notes::new();
        apply(accounts, &mut t, &Tree::new(), &inst, &mut notes)?;
        Ok((t, notes))
    }

    fn text(t: &Tree, p: &str) -> String {
        String::from_utf8(read_node(p, &t[p], 1 << 20).unwrap()).unwrap()
    }

    #[test]
    fn base_passwd_then_accounts() {
        let (t, notes) = run(
            &[acct("app", 10001, 10001), acct("web", 10002, 50)],
            &["base-passwd"],
        )
        .unwrap();
        assert_eq!(
            text(&t, "/etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             app:x:10001:10001::/home/app:/usr/sbin/nologin\nweb:x:10002:50::/home/web:/usr/sbin/nologin\n"
        );
        // web joins staff (gid 50): no new group.
        assert_eq!(
            text(&t, "/etc/group"),
            "root:x:0:\nshadow:x:42:\nstaff:x:50:\nnogroup:x:65534:\napp:x:10001:\n"
        );
        assert!(text(&t, "/etc/shadow").starts_with("root:*::0:99999:7:::\n"));
        assert_eq!(text(&t, "/etc/gshadow").lines().count(), 5);
        let sh = &t["/etc/shadow"];
        assert_eq!((sh.mode, sh.uid, sh.gid), (0o640, 0, 42));
        let h = &t["/home/app"];
        assert_eq!(
            (h.kind, h.mode, h.uid, h.gid),
            (EntryType::Dir, 0o755, 10001, 10001)
        );
        assert!(notes["base-passwd"][0].contains("app, web"));
    }

    #[test]
    fn duplicates_and_bad_fields_are_errors() {
        let e = |a: &[Account]| run(a, &["base-passwd"]).unwrap_err().to_string();
        assert!(e(&[acct("root", 10001, 10001)]).contains("already exists"));
        assert!(e(&[acct("app", 65534, 10001)]).contains("already nobody's"));
        assert!(
            e(&[acct("app", 10001, 10001), acct("app", 10002, 10002)]).contains("already exists")
        );
        assert!(e(&[acct("a", 10001, 10001), acct("b", 10001, 10002)]).contains("uid 10001"));
        assert!(e(&[acct("Bad:name", 10001, 10001)]).contains("name"));
        assert!(e(&[acct("staff", 10001, 10001)]).contains("group staff has gid 50"));
        let mut a = acct("app", 10001, 10001);
        a.home = Some("/home/../etc".into());
        assert!(e(&[a]).contains("home"));
        let mut a = acct("app", 10001, 10001);
        a.shell = Some("/bin/sh:x".into());
        assert!(e(&[a]).contains("shell"));
    }

    #[test]
    fn accounts_need_base_passwd() {
        assert!(matches!(
            run(&[acct("app", 10001, 10001)], &[]),
            Err(SystemError::NoBasePasswd)
        ));
        // No accounts and no base-passwd: nothing to do.
        let (t, _) = run(&[], &[]).unwrap();
        assert!(!t.contains_key("/etc/passwd"));
    }
}
