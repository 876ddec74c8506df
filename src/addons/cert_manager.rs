//! The checks of the cert-manager bundle's settings: the ACME contact address
//! (required while the bundle is enabled: it is what Let's Encrypt writes to
//! about expiring certificates and account problems) and the ingress class of
//! HTTP-01 challenges. Both are interpolated into the bundle's YAML, so they are
//! limited to characters that cannot break out of a scalar.

use serde_yaml::Value;

use super::field;
use crate::spec::Cluster;
use crate::spec::validate::FieldError;

type Check = Result<(), (String, String)>;

/// `local@domain.tld`, without spaces, quotes or YAML's special characters.
pub fn email(v: &Value) -> Check {
    let ok = v.as_str().is_some_and(|s| {
        let Some((local, domain)) = s.split_once('@') else {
            return false;
        };
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && s.len() <= 254
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'-' | b'_' | b'+'))
    });
    if ok {
        Ok(())
    } else {
        Err((
            "is not an email address".into(),
            "use the address Let's Encrypt should write to, e.g. ops@example.com".into(),
        ))
    }
}

/// An IngressClass name (a DNS-1123 label).
pub fn ingress_class(v: &Value) -> Check {
    let ok = v.as_str().is_some_and(|s| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    });
    if ok {
        Ok(())
    } else {
        Err((
            "is not an IngressClass name".into(),
            "use the name of the IngressClass that serves HTTP-01 challenges, e.g. traefik".into(),
        ))
    }
}

/// The email is required once the bundle is enabled (a disabled bundle's
/// settings are still checked, but need not be complete).
pub fn required(c: &Cluster) -> Option<FieldError> {
    let b = super::bundle("cert-manager")?;
    if !b.enabled(c) {
        return None;
    }
    let set = c
        .spec
        .addons
        .get(b.name)
        .and_then(|a| a.settings.get("email"))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    (!set).then(|| {
        FieldError::new(
            &field(b.name, "email"),
            "",
            "is required when cert-manager is enabled: the Let's Encrypt account needs a contact address",
            "set spec.addons.cert-manager.email, e.g. ops@example.com",
        )
    })
}
