//! The settings checks and cross-setting rules of the platform bundles:
//! external-dns, traefik and headlamp (with oauth2-proxy).

use serde_yaml::{Mapping, Value};

use super::{Bundle, field};
use crate::spec::Cluster;
use crate::spec::validate::FieldError;

/// oauth2-proxy's image tag, in front of Headlamp when `oauth2Proxy` is on.
pub const OAUTH2_PROXY_TAG: &str = "v7.11.0";

type Check = Result<(), (String, String)>;

fn text(v: &Value) -> Option<&str> {
    v.as_str()
}

/// A DNS name such as `headlamp.example.com` (lowercase labels, at least two).
pub fn hostname(v: &Value) -> Check {
    if v.is_null() {
        return Ok(());
    }
    let ok = text(v).is_some_and(|h| {
        h.len() <= 253
            && h.contains('.')
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    });
    if ok {
        Ok(())
    } else {
        Err((
            format!("{} is not a DNS name", shown(v)),
            "use a lowercase host name such as headlamp.example.com".into(),
        ))
    }
}

/// An `https://` URL without spaces (an OIDC issuer).
pub fn https_url(v: &Value) -> Check {
    if v.is_null() {
        return Ok(());
    }
    let ok = text(v).is_some_and(|u| {
        u.strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
            && !u.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if ok {
        Ok(())
    } else {
        Err((
            format!("{} is not an https URL", shown(v)),
            "use the issuer's https URL, e.g. https://accounts.google.com".into(),
        ))
    }
}

fn word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\\')
}

/// An OAuth client id: one word of printable characters.
pub fn client_id(v: &Value) -> Check {
    if v.is_null() || text(v).is_some_and(word) {
        return Ok(());
    }
    Err((
        format!("{} is not a client id", shown(v)),
        "use the client id your identity provider gave (one word, no spaces or quotes)".into(),
    ))
}

/// A list of group names.
pub fn groups(v: &Value) -> Check {
    let fix = "use a list of group names, e.g. [platform-team, sre]";
    let Some(list) = v.as_sequence() else {
        return Err((format!("{} is not a list", shown(v)), fix.into()));
    };
    for (i, g) in list.iter().enumerate() {
        if !text(g).is_some_and(word) {
            return Err((
                format!("item {i} ({}) is not a group name", shown(g)),
                fix.into(),
            ));
        }
    }
    Ok(())
}

/// A Route53 hosted zone id (`Z` and upper-case letters and digits).
pub fn zone_id(v: &Value) -> Check {
    if v.is_null() {
        return Ok(());
    }
    let ok = text(v).is_some_and(|z| {
        let z = z.strip_prefix("/hostedzone/").unwrap_or(z);
        z.len() >= 2
            && z.len() <= 32
            && z.starts_with('Z')
            && z.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    });
    if ok {
        Ok(())
    } else {
        Err((
            format!("{} is not a Route53 hosted zone id", shown(v)),
            "use the zone's id, e.g. Z0123456789ABCDEFGHIJ (aws route53 list-hosted-zones-by-name --dns-name ZONE)".into(),
        ))
    }
}

fn shown(v: &Value) -> String {
    serde_yaml::to_string(v)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The rules that tie a bundle's settings to each other or to the cluster,
/// checked once the settings are typed.
pub fn check(b: &Bundle, c: &Cluster, settings: &Mapping) -> Result<(), FieldError> {
    let set = |name: &str| settings.get(name).filter(|v| !v.is_null());
    match b.name {
        "external-dns" if b.enabled(c) && (c.is_gossip() || c.spec.dns_zone.is_none()) => {
            Err(FieldError::new(
                &field(b.name, "enabled"),
                "true",
                format!(
                    "needs a Route53 zone, and cluster {} has none (a gossip cluster, .k8s.local, without spec.dnsZone)",
                    c.name()
                ),
                "disable external-dns, or create the cluster with a name in a Route53 zone (--dns-zone, spec.dnsZone)",
            ))
        }
        "headlamp" => {
            let proxy = settings
                .get("oauth2Proxy")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if proxy {
                for need in ["issuerURL", "clientID"] {
                    if set(need).is_none() {
                        return Err(FieldError::new(
                            &field(b.name, need),
                            "",
                            "is required with oauth2Proxy: true",
                            format!(
                                "set {need} to your identity provider's {}",
                                if need == "clientID" {
                                    "client id"
                                } else {
                                    "issuer URL"
                                }
                            ),
                        ));
                    }
                }
            } else {
                for only in ["issuerURL", "clientID", "host"] {
                    if let Some(v) = set(only) {
                        return Err(FieldError::new(
                            &field(b.name, only),
                            shown(v),
                            "is set but oauth2Proxy is false (the dashboard is exposed only behind single sign-on)",
                            format!("set oauth2Proxy: true, or remove {only}"),
                        ));
                    }
                }
                if settings
                    .get("allowedGroups")
                    .and_then(Value::as_sequence)
                    .is_some_and(|l| !l.is_empty())
                {
                    return Err(FieldError::new(
                        &field(b.name, "allowedGroups"),
                        shown(&settings["allowedGroups"]),
                        "is set but oauth2Proxy is false",
                        "set oauth2Proxy: true, or remove allowedGroups",
                    ));
                }
            }
            Ok(())
        }
        // The templates render the Ingress only with a zone (its host is
        // grafana.ZONE or logs.ZONE), served by traefik with cert-manager's
        // certificate: `ingress: true` without them would silently expose
        // nothing, or serve without TLS.
        "monitoring" | "logging"
            if b.enabled(c) && settings.get("ingress").and_then(Value::as_bool) == Some(true) =>
        {
            let host = if b.name == "monitoring" {
                "grafana"
            } else {
                "logs"
            };
            if c.spec.dns_zone.is_none() {
                return Err(FieldError::new(
                    &field(b.name, "ingress"),
                    "true",
                    format!(
                        "needs a DNS zone for the host {host}.ZONE, and cluster {} has no spec.dnsZone",
                        c.name()
                    ),
                    format!(
                        "remove ingress and reach it with `kubectl port-forward` (addons/{}/README.md), or set spec.dnsZone",
                        b.name
                    ),
                ));
            }
            for need in ["traefik", "cert-manager"] {
                if !super::bundle(need).is_some_and(|n| n.enabled(c)) {
                    return Err(FieldError::new(
                        &field(b.name, "ingress"),
                        "true",
                        format!(
                            "needs the {need} bundle (the Ingress is served by traefik, with a certificate from cert-manager)"
                        ),
                        format!("enable spec.addons.{need}, or remove ingress"),
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
