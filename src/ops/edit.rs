//! `edit cluster|ig`: the stored YAML in `$EDITOR`; invalid YAML or a failed
//! validation reopens the editor with the errors on top. The lock is not held while
//! a person edits (that can take an hour); instead the write takes it and refuses
//! if the object changed in the meantime, so no one's edit is silently lost.

use std::io::Write;
use std::process::Command;

use crate::spec::parse::{parse_cluster, parse_instance_group};
use crate::state::{StateError, StateStore, lock::with_lock};

use super::{ClusterSpecs, OpsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Cluster,
    Group(String),
}

impl Target {
    fn describe(&self, cluster: &str) -> String {
        match self {
            Target::Cluster => format!("cluster {cluster}"),
            Target::Group(g) => format!("instance group {g}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Unchanged,
    Saved,
}

const HEADER: &str = "# Please edit the object below. Lines beginning with '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving, this file
# will be reopened with the errors.
";

/// Drops the leading comment block, ours or the user's.
fn strip_header(text: &str) -> &str {
    let mut rest = text;
    while rest.starts_with('#') {
        rest = rest.split_once('\n').map_or("", |(_, r)| r);
    }
    rest
}

/// The editing loop, with the editor as a function so it can be tested: returns the
/// specs with the target replaced by the user's valid edit, and whether the text
/// came back unchanged.
pub fn edit_loop(
    specs: &ClusterSpecs,
    applied: Option<&crate::spec::ClusterStatus>,
    target: &Target,
    initial: &str,
    editor: &mut dyn FnMut(&str) -> Result<String, OpsError>,
) -> Result<(ClusterSpecs, bool), OpsError> {
    let mut shown = initial.to_string();
    let mut last_error: Option<String> = None;
    loop {
        let mut text = HEADER.to_string();
        if let Some(err) = &last_error {
            text.push_str("#\n");
            for line in err.lines() {
                text.push_str(&format!("# {line}\n"));
            }
            text.push_str("#\n");
        }
        text.push_str(&shown);
        let edited = editor(&text)?;
        let body = strip_header(&edited);
        if body.trim().is_empty() {
            return Err(OpsError::Usage(
                "edit cancelled: the file is empty; nothing was written".into(),
            ));
        }
        if body == shown
            && let Some(err) = &last_error
        {
            return Err(OpsError::Usage(format!(
                "edit cancelled: the file was saved unchanged with errors; nothing was written:\n{err}"
            )));
        }
        match apply(specs, applied, target, body) {
            Ok(new) => return Ok((new, body == initial)),
            Err(e) => {
                last_error = Some(e.to_string());
                shown = body.to_string();
            }
        }
    }
}

fn apply(
    specs: &ClusterSpecs,
    applied: Option<&crate::spec::ClusterStatus>,
    target: &Target,
    text: &str,
) -> Result<ClusterSpecs, OpsError> {
    let mut new = specs.clone();
    let origin = target.describe(specs.cluster.name());
    match target {
        Target::Cluster => {
            let c = parse_cluster(text, &origin)?;
            if c.name() != specs.cluster.name() {
                return Err(OpsError::Usage(format!(
                    "metadata.name: {} cannot be changed (it was {}); keep the name",
                    c.name(),
                    specs.cluster.name()
                )));
            }
            new.cluster = c;
        }
        Target::Group(name) => {
            let g = parse_instance_group(text, &origin)?;
            if g.name() != name {
                return Err(OpsError::Usage(format!(
                    "metadata.name: {} cannot be changed (it was {name}); keep the name, or create a new group with keelson create instancegroup",
                    g.name()
                )));
            }
            new.put_group(g);
        }
    }
    new.validate()?;
    super::upgrade::check_applied(applied, &new.cluster.spec.kubernetes_version)?;
    Ok(new)
}

/// Edits one object of a stored cluster and saves it if it changed.
pub async fn edit(
    store: &StateStore,
    cluster: &str,
    target: Target,
    editor: &mut dyn FnMut(&str) -> Result<String, OpsError>,
) -> Result<Outcome, OpsError> {
    // Fail before the editor opens, rather than after the user's work.
    if let Some(info) = store.read_lock(cluster).await? {
        return Err(StateError::Locked {
            cluster: cluster.to_string(),
            holder: info.describe(),
        }
        .into());
    }
    let specs = ClusterSpecs::read(store, cluster).await?;
    let original = stored_text(store, cluster, &target).await?;
    let applied = store.read_status(cluster).await?;
    let (new, unchanged) = edit_loop(&specs, applied.as_ref(), &target, &original, editor)?;
    if unchanged || new == specs {
        return Ok(Outcome::Unchanged);
    }
    let command = format!("keelson edit {}", target.describe(cluster));
    with_lock(store, cluster, &command, async {
        if stored_text(store, cluster, &target).await? != original {
            return Err(OpsError::Usage(format!(
                "{} was changed by someone else while you were editing; nothing was written: run the edit again",
                target.describe(cluster)
            )));
        }
        match &target {
            Target::Cluster => store.write_cluster(&new.cluster).await?,
            Target::Group(g) => store.write_group(cluster, new.group(g).expect("edited group exists")).await?,
        }
        Ok(Outcome::Saved)
    })
    .await
}

async fn stored_text(
    store: &StateStore,
    cluster: &str,
    target: &Target,
) -> Result<String, StateError> {
    Ok(match target {
        Target::Cluster => store.read_cluster_text(cluster).await?.0,
        Target::Group(g) => store.read_group_text(cluster, g).await?.0,
    })
}

/// Opens `$EDITOR` (else `$VISUAL`, else `vi`) on a temporary file holding `text`
/// and returns what was saved. The editor command may carry arguments
/// (`code --wait`), so it runs through the shell.
pub fn run_editor(text: &str) -> Result<String, OpsError> {
    let editor = std::env::var("EDITOR")
        .or_else(|_| std::env::var("VISUAL"))
        .unwrap_or_else(|_| "vi".into());
    let path = std::env::temp_dir().join(format!("keelson-edit-{}.yaml", std::process::id()));
    let io = |e: std::io::Error| OpsError::Editor(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::create(&path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    drop(f);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status();
    let result = match status {
        Ok(s) if s.success() => std::fs::read_to_string(&path).map_err(io),
        Ok(s) => Err(OpsError::Editor(format!(
            "{editor:?} exited with {s}; nothing was written"
        ))),
        Err(e) => Err(OpsError::Editor(format!(
            "could not run {editor:?}: {e}; set EDITOR"
        ))),
    };
    let _ = std::fs::remove_file(&path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::defaults::{NewCluster, new_cluster};
    use crate::spec::parse::to_yaml;

    fn specs() -> ClusterSpecs {
        let (cluster, groups) = new_cluster(&NewCluster {
            name: "t.k8s.local".into(),
            zones: vec!["us-east-1a".into()],
            ..Default::default()
        })
        .unwrap();
        ClusterSpecs { cluster, groups }
    }

    #[test]
    fn invalid_edit_reopens_with_the_error_then_saves() {
        let s = specs();
        let target = Target::Group("nodes-us-east-1a".into());
        let initial = to_yaml(s.group("nodes-us-east-1a").unwrap());
        let mut seen = Vec::new();
        let mut editor = |text: &str| {
            seen.push(text.to_string());
            Ok(match seen.len() {
                1 => text.replace("maxSize: 1", "maxSize: 0"),
                _ => text.replace("maxSize: 0", "maxSize: 4"),
            })
        };
        let (new, unchanged) = edit_loop(&s, None, &target, &initial, &mut editor).unwrap();
        assert!(!unchanged);
        assert_eq!(new.group("nodes-us-east-1a").unwrap().spec.max_size, 4);
        assert!(
            seen[1].contains("# invalid cluster specification:"),
            "{}",
            seen[1]
        );
        assert!(
            seen[1].contains("spec.minSize: 1 is greater than spec.maxSize 0"),
            "{}",
            seen[1]
        );
        assert!(
            strip_header(&seen[1]).contains("maxSize: 0"),
            "the user's text is kept"
        );
    }

    #[test]
    fn unchanged_and_empty() {
        let s = specs();
        let initial = to_yaml(&s.cluster);
        let (_, unchanged) = edit_loop(&s, None, &Target::Cluster, &initial, &mut |t| {
            Ok(t.to_string())
        })
        .unwrap();
        assert!(unchanged);
        let err = edit_loop(&s, None, &Target::Cluster, &initial, &mut |_| {
            Ok("# nothing\n".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("file is empty"));
    }

    #[test]
    fn saving_an_error_unchanged_aborts() {
        let s = specs();
        let initial = to_yaml(&s.cluster);
        let mut editor =
            |t: &str| Ok(t.replace("networkCIDR: 172.20.0.0/16", "networkCIDR: 10.0.0.0/33"));
        let err = edit_loop(&s, None, &Target::Cluster, &initial, &mut editor)
            .unwrap_err()
            .to_string();
        assert!(err.contains("saved unchanged with errors"), "{err}");
        assert!(err.contains("spec.networkCIDR"), "{err}");
    }

    #[test]
    fn renames_are_refused() {
        let s = specs();
        let initial = to_yaml(s.group("nodes-us-east-1a").unwrap());
        let mut n = 0;
        let mut editor = |t: &str| {
            n += 1;
            Ok(if n == 1 {
                t.replace("name: nodes-us-east-1a", "name: other")
            } else {
                t.to_string()
            })
        };
        let err = edit_loop(
            &s,
            None,
            &Target::Group("nodes-us-east-1a".into()),
            &initial,
            &mut editor,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot be changed"), "{err}");
    }
}
