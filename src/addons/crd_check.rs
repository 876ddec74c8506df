//! Custom resources checked against the CRDs of the bundles: kubernetes-validate
//! knows only the built-in kinds and passes a ClusterIssuer silently, so every
//! rendered custom resource is checked here against the `openAPIV3Schema` of
//! its CRD's version, as the API server's structural-schema validation would
//! (apiextensions-apiserver pkg/apiserver/schema): types, `required`, `enum`,
//! `maxLength`, `items`, `additionalProperties`, and unknown fields (which the
//! server prunes, or refuses under `fieldValidation=Strict`) unless
//! `x-kubernetes-preserve-unknown-fields` keeps them. The subset keelson's
//! CRDs use, no more; `apiVersion`, `kind` and `metadata` are the server's.
//! Then the cert-manager bundle's own tests.

use serde_json::Value as Json;

use super::*;
use crate::spec::defaults::{NewCluster, new_cluster};

/// Every problem of `v` against `schema`, each naming the field's path.
fn check(schema: &Json, v: &Json, path: &str, out: &mut Vec<String>) {
    let ty = schema["type"].as_str();
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    let type_ok = match ty {
        _ if int_or_string => v.is_i64() || v.is_u64() || v.is_string(),
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !type_ok {
        out.push(format!("{path}: {v} is not of type {}", ty.unwrap_or("?")));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        out.push(format!("{path}: {v} is not one of {allowed:?}"));
    }
    if let (Some(max), Some(s)) = (schema["maxLength"].as_u64(), v.as_str())
        && s.chars().count() as u64 > max
    {
        out.push(format!("{path}: longer than {max} characters"));
    }
    if let Some(items) = v.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{path}[{i}]"), out);
        }
    }
    let Some(fields) = v.as_object() else {
        return;
    };
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap_or_default();
        if !fields.contains_key(r) {
            out.push(format!("{path}.{r}: Required value"));
        }
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    let root = path.is_empty();
    for (k, val) in fields {
        let p = format!("{path}.{k}");
        if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(s) = schema["properties"].get(k) {
            check(s, val, &p, out);
        } else if schema["additionalProperties"].is_object() {
            check(&schema["additionalProperties"], val, &p, out);
        } else if !preserve && schema["additionalProperties"] != true {
            out.push(format!("{p}: unknown field"));
        }
    }
}

/// API groups served by Kubernetes itself: no dot, or under `k8s.io`.
fn built_in(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io")
}

fn docs(manifest: &str) -> Vec<Json> {
    serde_yaml::Deserializer::from_str(manifest)
        .map(|d| serde_json::to_value(Value::deserialize(d).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The problems of every custom resource in `manifests` against the CRDs
/// among them; a custom kind without a CRD is one too.
fn check_custom_resources(manifests: &[String]) -> Vec<String> {
    let all: Vec<Json> = manifests.iter().flat_map(|m| docs(m)).collect();
    let crds: Vec<&Json> = all
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect();
    let mut problems = Vec::new();
    for o in &all {
        let api = o["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api.split_once('/').unwrap_or(("", api));
        if built_in(group) {
            continue;
        }
        let kind = o["kind"].as_str().unwrap_or_default();
        let what = format!("{kind}/{}", o["metadata"]["name"].as_str().unwrap_or("?"));
        let schema = crds
            .iter()
            .filter(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)
            .flat_map(|c| c["spec"]["versions"].as_array().into_iter().flatten())
            .find(|v| v["name"] == version && v["served"] == true)
            .map(|v| &v["schema"]["openAPIV3Schema"]);
        match schema {
            None => problems.push(format!("{what}: no CRD of the bundles serves {api} {kind}")),
            Some(s) => {
                let mut out = Vec::new();
                check(s, o, "", &mut out);
                problems.extend(out.into_iter().map(|p| format!("{what}: {p}")));
            }
        }
    }
    problems
}

fn cluster(name: &str, dns_zone: Option<&str>, addons: &str) -> Cluster {
    let mut c = new_cluster(&NewCluster {
        name: name.into(),
        zones: vec!["us-east-1a".into()],
        dns_zone: dns_zone.map(str::to_string),
        ..Default::default()
    })
    .unwrap()
    .0;
    c.spec.addons = serde_yaml::from_str(addons).unwrap();
    c
}

const CERT_MANAGER: &str = "{cert-manager: {enabled: true, email: ops@example.com}}";

fn gossip() -> Cluster {
    cluster("addons.k8s.local", None, CERT_MANAGER)
}

fn zoned() -> Cluster {
    cluster("prod.example.com", Some("example.com"), CERT_MANAGER)
}

fn cert_manager(c: &Cluster) -> String {
    render(bundle("cert-manager").unwrap(), c).unwrap().manifest
}

#[test]
fn the_checker_finds_what_the_api_server_would_refuse() {
    let schema = serde_json::json!({"type": "object", "properties": {"spec": {
        "type": "object", "required": ["server"],
        "properties": {"server": {"type": "string"}, "kind": {"type": "string", "enum": ["A", "B"]},
                       "n": {"type": "integer"}, "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                       "list": {"type": "array", "items": {"type": "string"}}}}}});
    let mut out = Vec::new();
    let o = serde_json::json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
        "spec": {"kind": "C", "n": "1", "free": {"any": 1}, "list": ["a", 2], "typo": true}});
    check(&schema, &o, "", &mut out);
    out.sort();
    assert_eq!(
        out,
        [
            ".spec.kind: \"C\" is not one of [String(\"A\"), String(\"B\")]",
            ".spec.list[1]: 2 is not of type string",
            ".spec.n: \"1\" is not of type integer",
            ".spec.server: Required value",
            ".spec.typo: unknown field",
        ]
    );
}

#[test]
fn every_custom_resource_matches_its_crd() {
    for c in [gossip(), zoned()] {
        let manifests: Vec<String> = BUNDLES
            .iter()
            .map(|b| render(b, &c).unwrap().manifest)
            .collect();
        let problems = check_custom_resources(&manifests);
        assert!(problems.is_empty(), "{}: {problems:#?}", c.name());
        // Not vacuous: the ClusterIssuers were checked.
        assert!(manifests.iter().any(|m| m.contains("kind: ClusterIssuer")));
    }
    // And a misspelled issuer is caught.
    let bad = cert_manager(&gossip()).replace(
        "privateKeySecretRef:\n      name: letsencrypt-account-key",
        "privateKeySecret:\n      name: letsencrypt-account-key",
    );
    let problems = check_custom_resources(&[bad]);
    assert!(
        problems
            .iter()
            .any(|p| p
                .contains("ClusterIssuer/letsencrypt: .spec.acme.privateKeySecret: unknown field")),
        "{problems:#?}"
    );
}

#[test]
fn cert_manager_renders_its_crds_first_and_both_issuers() {
    let m = cert_manager(&gossip());
    insta::assert_snapshot!("cert-manager_gossip", m);
    let kinds: Vec<String> = docs(&m)
        .iter()
        .map(|o| o["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds[..6].iter().all(|k| k == "CustomResourceDefinition"),
        "{kinds:?}"
    );
    assert_eq!(kinds.iter().filter(|k| *k == "ClusterIssuer").count(), 2);
    assert!(m.contains("https://acme-v02.api.letsencrypt.org/directory"));
    assert!(m.contains("https://acme-staging-v02.api.letsencrypt.org/directory"));
    assert!(m.contains("ingressClassName: traefik"));
    assert!(!m.contains("dnsZones:\n        - "), "no zone, no DNS-01");
    assert!(m.contains("image: quay.io/jetstack/cert-manager-controller:v1.19.2"));
    // Gossip: no AWS calls, no statements.
    let b = bundle("cert-manager").unwrap();
    assert!(b.iam_statements(&gossip()).unwrap().is_empty());

    let z = cert_manager(&zoned());
    insta::assert_snapshot!("cert-manager_dns01", z);
    assert!(z.contains("dnsZones:\n        - example.com\n      dns01:\n        route53:\n          region: us-east-1"));
    let one = cert_manager(&cluster(
        "addons.k8s.local",
        None,
        "{cert-manager: {enabled: true, email: ops@example.com, issuers: staging, ingressClass: nginx}}",
    ));
    assert_eq!(
        docs(&one)
            .iter()
            .filter(|o| o["kind"] == "ClusterIssuer")
            .count(),
        1
    );
    assert!(one.contains("name: letsencrypt-staging") && one.contains("ingressClassName: nginx"));
}

#[test]
fn cert_manager_policy_is_zone_scoped_and_only_while_enabled() {
    let statements = bundle("cert-manager")
        .unwrap()
        .iam_statements(&zoned())
        .unwrap();
    let text = serde_json::to_string(&statements).unwrap();
    assert!(text.contains("_acme-challenge.*.example.com"), "{text}");
    assert!(text.contains("\"route53:ChangeResourceRecordSetsRecordTypes\":[\"TXT\"]"));
    let joined = masters_statements(&zoned()).unwrap();
    assert!(joined.iter().any(|(b, _)| *b == "cert-manager"));
    let off = cluster("prod.example.com", Some("example.com"), "{}");
    assert!(
        !masters_statements(&off)
            .unwrap()
            .iter()
            .any(|(b, _)| *b == "cert-manager")
    );
}

#[test]
fn cert_manager_needs_an_email_and_checks_its_settings() {
    let errs = |addons: &str| -> Vec<String> {
        validate(&cluster("addons.k8s.local", None, addons))
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    let e = errs("{cert-manager: {enabled: true}}");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("spec.addons.cert-manager.email") && e[0].contains("ops@example.com"),
        "{e:?}"
    );
    // Disabled, the email may be missing.
    assert!(errs("{cert-manager: {enabled: false}}").is_empty());
    let e = errs("{cert-manager: {enabled: true, email: \"not an address\"}}");
    assert!(
        e.iter().any(|m| m.contains("is not an email address")),
        "{e:?}"
    );
    let e = errs("{cert-manager: {enabled: true, email: a@b.co, issuers: prod}}");
    assert!(e.iter().any(|m| m.contains("issuers")), "{e:?}");
    let e = errs("{cert-manager: {enabled: true, email: a@b.co, ingressClass: \"Bad Class\"}}");
    assert!(
        e.iter().any(|m| m.contains("is not an IngressClass name")),
        "{e:?}"
    );
}
