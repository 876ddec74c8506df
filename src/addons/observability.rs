//! The checks of the monitoring bundle's structured setting, `receivers`: the
//! Alertmanager receivers, each naming the Kubernetes Secret that holds its
//! credential (never the credential itself). Whatever passes here is
//! interpolated into the bundle's YAML, so every string is limited to
//! characters that cannot break out of a double-quoted scalar.

use serde_yaml::Value;

type Bad = (String, String);

fn bad<T>(problem: impl Into<String>, fix: impl Into<String>) -> Result<T, Bad> {
    Err((problem.into(), fix.into()))
}

/// A DNS-1123 name: what a Secret and a receiver may be called.
fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Printable ASCII without quotes, backslashes or spaces.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'{' | b'}'))
}

fn email(s: &str) -> bool {
    plain(s)
        && s.split_once('@')
            .is_some_and(|(a, d)| !a.is_empty() && d.contains('.'))
}

/// An Alertmanager matcher: `label=value`, `label!=value`, `label=~regex`,
/// `label!~regex`, the value optionally double-quoted (without inner quotes).
fn matcher(s: &str) -> bool {
    let Some(i) = s.find(['=', '!']) else {
        return false;
    };
    let (label, rest) = s.split_at(i);
    let label_ok = label
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
        && !label.is_empty();
    let value = ["=~", "!~", "!=", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(op));
    let value_ok = value.is_some_and(|v| {
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        !v.contains(['"', '\'', '\\', '{', '}'])
    });
    label_ok && value_ok
}

fn string<'a>(m: &'a Value, key: &str, at: &str) -> Result<Option<&'a str>, Bad> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => bad(format!("{at}.{key} is not a string"), "quote it"),
    }
}

fn secret(m: &Value, at: &str, key: &str) -> Result<(), Bad> {
    match string(m, "secret", at)? {
        Some(s) if dns_name(s) => Ok(()),
        Some(s) => bad(
            format!("{at}.secret {s} is not a Secret's name"),
            "name a Secret in the monitoring namespace (lower-case letters, digits and -)",
        ),
        None => bad(
            format!("{at} names no secret"),
            format!(
                "add secret: NAME, a Secret in the monitoring namespace whose key `{key}` holds the credential (see addons/monitoring/README.md); never the credential itself"
            ),
        ),
    }
}

const KINDS: &[&str] = &["slack", "email", "webhook", "pagerduty"];
const FIELDS: &[&str] = &["name", "matchers", "slack", "email", "webhook", "pagerduty"];

/// `spec.addons.monitoring.receivers`.
pub fn receivers(v: &Value) -> Result<(), Bad> {
    let Value::Sequence(list) = v else {
        return bad(
            "is not a list",
            "give a list of receivers, e.g. [{name: ops, slack: {channel: '#alerts', secret: alertmanager-slack}}]",
        );
    };
    let mut names = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let at = format!("receivers[{i}]");
        let Value::Mapping(m) = r else {
            return bad(
                format!("{at} is not a mapping"),
                "give name and one of slack, email, webhook, pagerduty",
            );
        };
        for k in m.keys() {
            let k = k.as_str().unwrap_or_default();
            if !FIELDS.contains(&k) {
                return bad(
                    format!("{at}.{k} is not a field of a receiver"),
                    format!("use {}", FIELDS.join(", ")),
                );
            }
        }
        let name = match string(r, "name", &at)? {
            Some("null") => {
                return bad(
                    format!(
                        "{at}.name null is keelson's own (the receiver of alerts no one routes)"
                    ),
                    "choose another name",
                );
            }
            Some(n) if dns_name(n) => n,
            Some(n) => {
                return bad(
                    format!("{at}.name {n} is not a plain name"),
                    "use lower-case letters, digits and -",
                );
            }
            None => return bad(format!("{at} has no name"), "add name: NAME"),
        };
        if names.contains(&name) {
            return bad(
                format!("{at}.name {name} is given twice"),
                "give each receiver its own name",
            );
        }
        names.push(name);
        if let Some(ms) = r.get("matchers") {
            let Some(ms) = ms.as_sequence() else {
                return bad(
                    format!("{at}.matchers is not a list"),
                    "give a list such as ['severity=critical']",
                );
            };
            for m in ms {
                match m.as_str() {
                    Some(s) if matcher(s) => {}
                    _ => {
                        return bad(
                            format!(
                                "{at}.matchers has a bad matcher {}",
                                serde_yaml::to_string(m).unwrap_or_default().trim()
                            ),
                            "use label=value, label!=value, label=~regex or label!~regex",
                        );
                    }
                }
            }
        }
        let kinds: Vec<&&str> = KINDS.iter().filter(|k| r.get(**k).is_some()).collect();
        let [kind] = kinds[..] else {
            return bad(
                format!("{at} ({name}) has {} kinds", kinds.len()),
                format!("give exactly one of {}", KINDS.join(", ")),
            );
        };
        let c = &r[*kind];
        let at = format!("{at}.{kind}");
        if !c.is_mapping() {
            return bad(
                format!("{at} is not a mapping"),
                "give its fields, e.g. {secret: NAME}",
            );
        }
        let allowed: &[&str] = match *kind {
            "slack" => &["channel", "secret"],
            "pagerduty" => &["secret"],
            "webhook" => &["url", "secret"],
            _ => &["to", "from", "smarthost", "username", "secret"],
        };
        for k in c.as_mapping().expect("checked").keys() {
            let k = k.as_str().unwrap_or_default();
            if !allowed.contains(&k) {
                return bad(
                    format!("{at}.{k} is not a field here"),
                    format!(
                        "use {} (credentials go in the Secret named by secret)",
                        allowed.join(", ")
                    ),
                );
            }
        }
        match *kind {
            "slack" => {
                secret(c, &at, "url")?;
                match string(c, "channel", &at)? {
                    Some(ch) if ch.starts_with('#') && plain(ch) => {}
                    Some(ch) => {
                        return bad(format!("{at}.channel {ch} is not a channel"), "use #name");
                    }
                    None => return bad(format!("{at} has no channel"), "add channel: '#alerts'"),
                }
            }
            "pagerduty" => secret(c, &at, "routing-key")?,
            "webhook" => {
                match string(c, "url", &at)? {
                    Some(u)
                        if (u.starts_with("https://") || u.starts_with("http://")) && plain(u) => {}
                    Some(u) => {
                        return bad(
                            format!("{at}.url {u} is not an http(s) URL"),
                            "use https://HOST/PATH; a bearer token goes in the Secret",
                        );
                    }
                    None => return bad(format!("{at} has no url"), "add url: https://HOST/PATH"),
                }
                if c.get("secret").is_some() {
                    secret(c, &at, "token")?;
                }
            }
            _ => {
                secret(c, &at, "password")?;
                for k in ["to", "from"] {
                    match string(c, k, &at)? {
                        Some(a) if email(a) => {}
                        Some(a) => {
                            return bad(
                                format!("{at}.{k} {a} is not an email address"),
                                "use name@domain",
                            );
                        }
                        None => {
                            return bad(
                                format!("{at} has no {k}"),
                                format!("add {k}: name@domain"),
                            );
                        }
                    }
                }
                match string(c, "smarthost", &at)? {
                    Some(h)
                        if plain(h)
                            && h.rsplit_once(':')
                                .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) => {}
                    Some(h) => {
                        return bad(
                            format!("{at}.smarthost {h} is not HOST:PORT"),
                            "use e.g. smtp.example.com:587",
                        );
                    }
                    None => {
                        return bad(
                            format!("{at} has no smarthost"),
                            "add smarthost: smtp.example.com:587",
                        );
                    }
                }
                match string(c, "username", &at)? {
                    Some(u) if !plain(u) => {
                        return bad(
                            format!("{at}.username is not plain text"),
                            "use printable characters without quotes",
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// A cert-manager ClusterIssuer's name.
pub fn issuer(v: &Value) -> Result<(), Bad> {
    match v.as_str() {
        Some(s) if dns_name(s) => Ok(()),
        _ => bad(
            "is not a ClusterIssuer's name",
            "use the name of a cert-manager ClusterIssuer (lower-case letters, digits and -)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        for ok in [
            "severity=critical",
            "severity=\"critical\"",
            "team!=db",
            "alertname=~Etcd.*",
            "a_1!~x",
        ] {
            assert!(matcher(ok), "{ok}");
        }
        for no in ["severity", "=x", "1a=b", "a=\"b\"c\"", "a={x}", "a<b"] {
            assert!(!matcher(no), "{no}");
        }
    }
}
