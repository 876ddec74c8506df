//! Strict parsing of specs: YAML (or JSON) in, typed objects out, with the path of
//! any unknown, missing or mistyped field in the error.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{API_VERSION, Cluster, InstanceGroup};

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{origin}: invalid YAML: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: {path}: {message}")]
    Field {
        origin: String,
        path: String,
        message: String,
    },
    #[error("{origin}: apiVersion {found:?} is not supported; use apiVersion: {API_VERSION}")]
    ApiVersion { origin: String, found: String },
    #[error("{origin}: kind {found:?} is not one of {expected}; fix the kind field")]
    Kind {
        origin: String,
        found: String,
        expected: String,
    },
    #[error(
        "{origin}: no object found; expected a YAML document with apiVersion, kind, metadata and spec"
    )]
    Empty { origin: String },
}

/// Either kind of object a user can hand to `replace -f`.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Cluster(Box<Cluster>),
    InstanceGroup(Box<InstanceGroup>),
}

/// Parses one object of type `T` whose `kind` must be `kind`.
pub fn parse_one<T: DeserializeOwned>(
    text: &str,
    kind: &str,
    origin: &str,
) -> Result<T, ParseError> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ParseError::Syntax {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    check_header(&value, &[kind], origin)?;
    typed(value, origin)
}

pub fn parse_cluster(text: &str, origin: &str) -> Result<Cluster, ParseError> {
    parse_one(text, "Cluster", origin)
}

pub fn parse_instance_group(text: &str, origin: &str) -> Result<InstanceGroup, ParseError> {
    parse_one(text, "InstanceGroup", origin)
}

/// Parses a stream of `---`-separated documents, each a Cluster or an InstanceGroup.
/// Empty documents (a leading `---`) are skipped.
pub fn parse_objects(text: &str, origin: &str) -> Result<Vec<Object>, ParseError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = format!("{origin} (document {})", i + 1);
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| ParseError::Syntax {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let kind = check_header(&value, &["Cluster", "InstanceGroup"], &origin)?;
        out.push(match kind.as_str() {
            "Cluster" => Object::Cluster(Box::new(typed(value, &origin)?)),
            _ => Object::InstanceGroup(Box::new(typed(value, &origin)?)),
        });
    }
    if out.is_empty() {
        return Err(ParseError::Empty {
            origin: origin.to_string(),
        });
    }
    Ok(out)
}

/// Checks apiVersion and kind first, so that a wrong version is reported as such
/// rather than as a confusing field error.
fn check_header(
    value: &serde_yaml::Value,
    kinds: &[&str],
    origin: &str,
) -> Result<String, ParseError> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    if !value.is_mapping() {
        return Err(ParseError::Empty {
            origin: origin.to_string(),
        });
    }
    match field("apiVersion") {
        Some(v) if v == API_VERSION => {}
        found => {
            return Err(ParseError::ApiVersion {
                origin: origin.to_string(),
                found: found.unwrap_or_default(),
            });
        }
    }
    let kind = field("kind").unwrap_or_default();
    if !kinds.contains(&kind.as_str()) {
        return Err(ParseError::Kind {
            origin: origin.to_string(),
            found: kind,
            expected: kinds.join(" or "),
        });
    }
    Ok(kind)
}

fn typed<T: DeserializeOwned>(value: serde_yaml::Value, origin: &str) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| ParseError::Field {
        origin: origin.to_string(),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

pub fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    serde_yaml::to_string(value).expect("specs always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    const IG: &str = "apiVersion: keelson.dev/v1alpha1
kind: InstanceGroup
metadata:
  name: nodes-us-east-1a
spec:
  role: Node
  image: ami-123
  machineType: t3.medium
  minSize: 1
  maxSize: 2
  subnets: [us-east-1a]
  rootVolume: {size: 128, type: gp3, encrypted: true}
";

    #[test]
    fn parses_a_valid_group() {
        let ig = parse_instance_group(IG, "test").unwrap();
        assert_eq!(ig.spec.max_size, 2);
    }

    #[test]
    fn unknown_field_names_its_path() {
        let bad = IG.replace("minSize", "minSise");
        let err = parse_instance_group(&bad, "test").unwrap_err().to_string();
        assert!(err.contains("spec.minSise"), "{err}");
        assert!(err.contains("unknown field `minSise`"), "{err}");
    }

    #[test]
    fn nested_type_error_names_its_path() {
        let bad = IG.replace("size: 128", "size: big");
        let err = parse_instance_group(&bad, "test").unwrap_err().to_string();
        assert!(err.contains("spec.rootVolume.size"), "{err}");
    }

    #[test]
    fn wrong_version_and_kind() {
        let err = parse_instance_group(&IG.replace("v1alpha1", "v9"), "t").unwrap_err();
        assert!(matches!(err, ParseError::ApiVersion { .. }));
        let err = parse_cluster(IG, "t").unwrap_err();
        assert!(
            err.to_string()
                .contains("kind \"InstanceGroup\" is not one of Cluster")
        );
    }

    #[test]
    fn streams_of_documents() {
        let two = format!("---\n{IG}---\n{}", IG.replace("us-east-1a\n", "b\n"));
        assert_eq!(parse_objects(&two, "t").unwrap().len(), 2);
        assert!(matches!(
            parse_objects("", "t"),
            Err(ParseError::Empty { .. })
        ));
        let err = parse_objects(
            &format!("{IG}---\nkind: Nope\napiVersion: keelson.dev/v1alpha1\n"),
            "f",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("f (document 2)"), "{err}");
    }
}
