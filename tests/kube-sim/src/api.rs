//! The HTTP side: authentication, discovery, the REST verbs on the objects of
//! [`crate::world`], tables for kubectl, and the `/sim/` knobs.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::world::{ApiError, Resource, World, parse_rfc3339};

pub struct Shared {
    pub world: Mutex<World>,
    pub token: String,
    pub address: String,
}

type Reply = Response<Full<Bytes>>;

fn reply(code: u16, body: &Value) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("a response")
}

fn error(e: ApiError) -> Reply {
    reply(e.code, &e.status())
}

pub async fn handle(shared: Arc<Shared>, client_cert: bool, req: Request<Incoming>) -> Reply {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    if !client_cert && bearer.as_deref() != Some(shared.token.as_str()) {
        return error(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let accept = header(&req, "accept");
    let content_type = header(&req, "content-type");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(ApiError::bad(format!("reading the body: {e}"))),
    };
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if q("watch").is_some_and(|w| w == "true" || w == "1") {
        return error(ApiError::new(
            405,
            "MethodNotAllowed",
            "watch is not simulated",
        ));
    }
    if q("dryRun").is_some() {
        return error(ApiError::bad("dryRun is not simulated"));
    }
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let result = match (segs.as_slice(), &method) {
        (["version"], &Method::GET) => Ok(reply(200, &version(&shared))),
        (["healthz" | "readyz" | "livez"], &Method::GET) => {
            Ok(Response::new(Full::new(Bytes::from("ok"))))
        }
        (["api"], &Method::GET) => Ok(reply(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.address}]}),
        )),
        (["apis"], &Method::GET) => Ok(reply(200, &groups(&world(&shared)))),
        (["api", "v1"], &Method::GET) => Ok(reply(200, &resource_list(&world(&shared), "", "v1"))),
        (["apis", g, v], &Method::GET)
            if world(&shared)
                .resources()
                .any(|r| r.group == *g && r.version == *v) =>
        {
            Ok(reply(200, &resource_list(&world(&shared), g, v)))
        }
        (["openapi", "v3"], &Method::GET) => Ok(reply(200, &openapi_index(&world(&shared)))),
        (["openapi", "v3", "api", "v1"], &Method::GET) => {
            Ok(reply(200, &openapi_doc(&world(&shared), "", "v1")))
        }
        (["openapi", "v3", "apis", g, v], &Method::GET) => {
            Ok(reply(200, &openapi_doc(&world(&shared), g, v)))
        }
        (["sim", rest @ ..], _) => knob(&shared, rest, &query),
        (["api", "v1", rest @ ..], _) => rest_call(
            &shared,
            "",
            "v1",
            rest,
            &method,
            &query,
            &accept,
            &content_type,
            &body,
        ),
        (["apis", g, v, rest @ ..], _) => rest_call(
            &shared,
            g,
            v,
            rest,
            &method,
            &query,
            &accept,
            &content_type,
            &body,
        ),
        _ => Err(ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({method} {path})"),
        )),
    };
    result.unwrap_or_else(error)
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn version(shared: &Shared) -> Value {
    let w = shared.world.lock().expect("world");
    let v = w.kubernetes_version.trim_start_matches('v').to_string();
    let mut parts = v.split('.');
    json!({"major": parts.next().unwrap_or("1"), "minor": parts.next().unwrap_or("0"),
           "gitVersion": w.kubernetes_version, "gitCommit": "kube-sim", "gitTreeState": "clean",
           "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"})
}

fn world(shared: &Shared) -> std::sync::MutexGuard<'_, World> {
    shared.world.lock().expect("world")
}

/// Kubernetes' version priority (k8s.io/apimachinery pkg/version/helpers.go
/// CompareKubeAwareVersionStrings): GA before beta before alpha, higher
/// numbers first; discovery lists a group's versions in this order and
/// prefers the first.
fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (level, n) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (level, major, n)
}

/// Every group with its versions, as `/apis` lists them: the built-in groups
/// in their order, then the CRDs' groups, as they appear.
fn groups(w: &World) -> Value {
    let mut names: Vec<&str> = Vec::new();
    for r in w.resources().filter(|r| !r.group.is_empty()) {
        if !names.contains(&r.group) {
            names.push(r.group);
        }
    }
    let groups: Vec<Value> = names
        .iter()
        .map(|g| {
            let mut versions: Vec<&str> = Vec::new();
            for r in w.resources().filter(|r| r.group == *g) {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            let gvs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": gvs.clone(), "preferredVersion": gvs[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The legacy (non-aggregated) discovery document: clients that ask for the
/// aggregated form get this plain JSON and fall back to it.
fn resource_list(w: &World, group: &str, version: &str) -> Value {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut list: Vec<Value> = Vec::new();
    for r in w
        .resources()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
            "kind": r.kind, "shortNames": r.short,
            "verbs": ["create", "delete", "get", "list", "patch", "update"],
        }));
        if r.plural == "pods" {
            // kubectl drain looks for this entry before it uses the eviction API.
            list.push(json!({"name": "pods/eviction", "singularName": "", "namespaced": true,
                             "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

/// The OpenAPI v3 index. kubectl reads it only to learn that PATCH takes the
/// `fieldValidation` parameter (server-side validation); without it kubectl
/// insists on validating client-side against schemas the simulator lacks.
fn openapi_index(w: &World) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1?hash=0"}),
    );
    for r in w.resources().filter(|r| !r.group.is_empty()) {
        let (g, v) = (r.group, r.version);
        paths.insert(
            format!("apis/{g}/{v}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash=0")}),
        );
    }
    json!({"paths": paths})
}

/// One group-version's document: only each resource's PATCH operation and its
/// parameters, which is all kubectl looks at (no schemas).
fn openapi_doc(w: &World, group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for r in w
        .resources()
        .filter(|r| r.group == group && r.version == version)
    {
        let prefix = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}}))
            .collect();
        paths.insert(path, json!({"patch": {
            "operationId": format!("patch{}", r.kind),
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
        }}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "kube-sim"}, "paths": paths, "components": {"schemas": {}}})
}

#[allow(clippy::too_many_arguments)]
fn rest_call(
    shared: &Shared,
    group: &str,
    version: &str,
    rest: &[&str],
    method: &Method,
    query: &[(String, String)],
    accept: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let mut w = shared.world.lock().expect("world");
    // /namespaces/NS/PLURAL[/NAME[/SUB]] or /PLURAL[/NAME[/SUB]].
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && w.resource(group, version, rest[2])
            .is_some_and(|r| r.namespaced);
    let (ns, rest) = if namespaced_path {
        (Some(rest[1]), &rest[2..])
    } else {
        (None, rest)
    };
    let Some(plural) = rest.first() else {
        return Err(ApiError::new(404, "NotFound", "no resource named"));
    };
    let r = w.resource(group, version, plural).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("the server doesn't have a resource type \"{plural}\""),
        )
    })?;
    let name = rest.get(1).copied();
    let sub = rest.get(2).copied();
    if rest.len() > 3 || (r.namespaced && name.is_some() && ns.is_none()) {
        return Err(ApiError::new(404, "NotFound", "no such path"));
    }
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ns_str = ns.unwrap_or("");
    let table = accept.contains("as=Table");
    match (method, name, sub) {
        (&Method::GET, None, _) => {
            let items = w.list(r, ns, q("labelSelector"), q("fieldSelector"))?;
            let rv = w.resource_version();
            if table {
                return Ok(reply(200, &to_table(r, &items, &rv, q("includeObject"))));
            }
            Ok(reply(
                200,
                &json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(),
                                  "metadata": {"resourceVersion": rv}, "items": items}),
            ))
        }
        (&Method::GET, Some(n), None) => {
            let obj = w.get(r, ns_str, n)?;
            if table {
                return Ok(reply(
                    200,
                    &to_table(r, &[obj], &w.resource_version(), q("includeObject")),
                ));
            }
            Ok(reply(200, &obj))
        }
        (&Method::POST, None, _) => Ok(reply(201, &w.create(r, ns_str, parse_json(body)?)?)),
        (&Method::POST, Some(n), Some("eviction")) if r.plural == "pods" => {
            let ev = parse_json(body)?;
            if ev["kind"] != "Eviction" {
                return Err(ApiError::bad("the body of an eviction must be an Eviction"));
            }
            w.evict(ns_str, n)?;
            Ok(reply(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        (&Method::PUT, Some(n), None) => {
            Ok(reply(200, &w.replace(r, ns_str, n, parse_json(body)?)?))
        }
        (&Method::PATCH, Some(n), None) => {
            let ct = content_type.split(';').next().unwrap_or("").trim();
            match ct {
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    Ok(reply(200, &w.patch(r, ns_str, n, &parse_json(body)?)?))
                }
                "application/apply-patch+yaml" => {
                    if q("fieldManager").is_none_or(str::is_empty) {
                        return Err(ApiError::new(
                            422,
                            "Invalid",
                            "fieldManager: Required value: is required for apply patch",
                        ));
                    }
                    let obj: Value = serde_yaml::from_slice(body)
                        .map_err(|e| ApiError::bad(format!("the apply patch is not YAML: {e}")))?;
                    let (obj, created) = w.apply(r, ns_str, n, obj)?;
                    Ok(reply(if created { 201 } else { 200 }, &obj))
                }
                other => Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the simulator does not handle patches of type {other:?} (it handles merge, strategic-merge and apply patches)"
                    ),
                )),
            }
        }
        (&Method::DELETE, Some(n), None) => Ok(reply(200, &w.delete(r, ns_str, n)?)),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not simulated on this path"),
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))
}

type Cells<'a> = Box<dyn Fn(&Value) -> Vec<Value> + 'a>;

/// The server-side printing kubectl asks for (`as=Table`).
fn to_table(r: &Resource, items: &[Value], rv: &str, include: Option<&str>) -> Value {
    let col = |name: &str, priority: u8| json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": priority});
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let age = |o: &Value| {
        let t = o["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(now);
        human_age(now - t)
    };
    let (columns, cells): (Vec<Value>, Cells<'_>) = match r.plural {
        "nodes" => (
            vec![
                col("Name", 0),
                col("Status", 0),
                col("Roles", 0),
                col("Age", 0),
                col("Version", 0),
            ],
            Box::new(|n: &Value| {
                let mut status = if crate::world::node_ready(n) {
                    "Ready"
                } else {
                    "NotReady"
                }
                .to_string();
                if n["spec"]["unschedulable"] == true {
                    status.push_str(",SchedulingDisabled");
                }
                let roles: Vec<&str> = n["metadata"]["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                    .collect();
                let roles = if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                };
                vec![
                    n["metadata"]["name"].clone(),
                    json!(status),
                    json!(roles),
                    json!(age(n)),
                    n["status"]["nodeInfo"]["kubeletVersion"].clone(),
                ]
            }),
        ),
        "pods" => (
            vec![
                col("Name", 0),
                col("Ready", 0),
                col("Status", 0),
                col("Restarts", 0),
                col("Age", 0),
                col("Node", 1),
            ],
            Box::new(|p: &Value| {
                let ready = if crate::world::pod_ready(p) {
                    "1/1"
                } else {
                    "0/1"
                };
                vec![
                    p["metadata"]["name"].clone(),
                    json!(ready),
                    p["status"]["phase"].clone(),
                    json!(0),
                    json!(age(p)),
                    json!(p["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                ]
            }),
        ),
        _ => (
            vec![col("Name", 0), col("Age", 0)],
            Box::new(|o: &Value| vec![o["metadata"]["name"].clone(), json!(age(o))]),
        ),
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let object = if include == Some("Object") {
                o.clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
            };
            json!({"cells": cells(o), "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
           "columnDefinitions": columns, "rows": rows})
}

fn human_age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The knobs, for tests and the demo (authenticated like the API).
fn knob(shared: &Shared, rest: &[&str], query: &[(String, String)]) -> Result<Reply, ApiError> {
    let mut w = shared.world.lock().expect("world");
    match rest {
        ["nodes"] => return Ok(reply(200, &json!(w.node_names()))),
        ["nodes", n, "not-ready"] => {
            w.forced_not_ready.insert(n.to_string());
        }
        ["nodes", n, "ready"] => {
            w.forced_not_ready.remove(*n);
        }
        ["nodes", n, "static-pods", c, "remove"] => {
            if !w.remove_static_pod(n, c) {
                return Err(ApiError::new(
                    404,
                    "NotFound",
                    format!("node {n:?} runs no static pod {c:?}"),
                ));
            }
        }
        ["pending-critical-pod", name] => w.add_pending_critical_pod(name),
        ["blocking-pdb", ns, name] => {
            let sel = query
                .iter()
                .find(|(k, _)| k == "selector")
                .map(|(_, v)| v.as_str())
                .unwrap_or("");
            let labels: serde_json::Map<String, Value> = sel
                .split(',')
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            w.add_blocking_pdb(ns, name, Value::Object(labels));
        }
        [
            kind @ ("deployments" | "daemonsets" | "statefulsets"),
            ns,
            name,
            state @ ("unavailable" | "available"),
        ] => {
            w.set_unavailable(kind, ns, name, *state == "unavailable");
        }
        ["joins", "pause"] => w.joins_paused = true,
        ["joins", "resume"] => w.joins_paused = false,
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("no knob /sim/{}", rest.join("/")),
            ));
        }
    }
    w.tick();
    Ok(reply(200, &json!({"ok": true})))
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
