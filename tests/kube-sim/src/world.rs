//! The simulated cluster: every object as JSON, keyed by resource, namespace and
//! name, plus the little behaviour the tests need (nodes joining and turning Ready,
//! a scheduler for ReplicaSet pods, PodDisruptionBudgets guarding evictions).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// A resource the simulator serves, as discovery lists it.
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short: &'static [&'static str],
}

const fn res(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        kind,
        namespaced,
        short,
    }
}

/// What discovery announces; any of these can be created and server-side applied.
pub const RESOURCES: &[Resource] = &[
    res("", "namespaces", "Namespace", false, &["ns"]),
    res("", "nodes", "Node", false, &["no"]),
    res("", "pods", "Pod", true, &["po"]),
    res("", "configmaps", "ConfigMap", true, &["cm"]),
    res("", "secrets", "Secret", true, &[]),
    res("", "services", "Service", true, &["svc"]),
    res("", "serviceaccounts", "ServiceAccount", true, &["sa"]),
    res("apps", "daemonsets", "DaemonSet", true, &["ds"]),
    res("apps", "deployments", "Deployment", true, &["deploy"]),
    res("apps", "replicasets", "ReplicaSet", true, &["rs"]),
    res(
        "policy",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
    ),
    res(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
    ),
    res("rbac.authorization.k8s.io", "roles", "Role", true, &[]),
    res(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
    ),
    res(
        "storage.k8s.io",
        "storageclasses",
        "StorageClass",
        false,
        &["sc"],
    ),
    res("storage.k8s.io", "csidrivers", "CSIDriver", false, &[]),
    res(
        "scheduling.k8s.io",
        "priorityclasses",
        "PriorityClass",
        false,
        &["pc"],
    ),
    // The aggregation layer's registrations (metrics-server's
    // v1beta1.metrics.k8s.io): stored, never proxied to.
    res(
        "apiregistration.k8s.io",
        "apiservices",
        "APIService",
        false,
        &[],
    ),
    res("batch", "jobs", "Job", true, &[]),
    res("apps", "statefulsets", "StatefulSet", true, &["sts"]),
    res("networking.k8s.io", "ingresses", "Ingress", true, &["ing"]),
    res(
        "networking.k8s.io",
        "ingressclasses",
        "IngressClass",
        false,
        &[],
    ),
    // Admission webhooks (cert-manager's): stored, never called.
    res(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
    ),
    res(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
    ),
    res(
        "networking.k8s.io",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
    ),
    // Stored; no webhook is ever called.
    res(
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
    ),
    res(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
    ),
    // Creating one makes the simulator serve its kind (see `World::crd_status`).
    res(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
    ),
];

/// The group and resource of CustomResourceDefinitions.
const CRDS: (&str, &str) = ("apiextensions.k8s.io", "customresourcedefinitions");

pub fn resource(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// An API error, answered as a `Status` object.
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub causes: Vec<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            causes: vec![],
        }
    }
    pub fn not_found(r: &Resource, name: &str) -> ApiError {
        let what = if r.group.is_empty() {
            r.plural.to_string()
        } else {
            format!("{}.{}", r.plural, r.group)
        };
        ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
    }
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.causes.is_empty() {
            s["details"] = json!({ "causes": self.causes });
        }
        s
    }
}

/// One EC2 instance of the cluster, as the mirror saw it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub private_dns: String,
    pub zone: String,
    pub instance_type: String,
    /// `master`, `node` or `bastion` (from the `k8s.io/role/...` tag).
    pub role: String,
    pub group: String,
    /// The private IPv4 address ("" when unknown: loopback stands in).
    pub private_ip: String,
}

/// The control plane's static pods, as kubeadm writes them on every master
/// (cmd/kubeadm/app/phases/controlplane/manifests.go GetStaticPodSpecs and
/// cmd/kubeadm/app/phases/etcd/local.go GetEtcdPodSpec).
pub const CONTROL_PLANE_COMPONENTS: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

type Key = (&'static str, &'static str, String, String);

pub struct World {
    pub kubernetes_version: String,
    pub ready_after: Duration,
    /// kubeadm's `clusterName` and `controlPlaneEndpoint` (host:port), for the
    /// kubeadm-config ConfigMap.
    pub cluster: String,
    pub control_plane_endpoint: String,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    uid: u64,
    /// Node name -> (instance id, when it joined).
    joined: BTreeMap<String, (String, Instant)>,
    /// Knobs.
    pub forced_not_ready: BTreeSet<String>,
    pub joins_paused: bool,
    /// The kinds the CRDs define, one per served version, after [`RESOURCES`].
    /// Leaked: a test's simulator defines a handful and lives as long as the test.
    custom: Vec<&'static Resource>,
    /// Knob: workloads (`deployments/NS/NAME`, ...) reported unavailable.
    pub unavailable: BTreeSet<String>,
}

const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

impl World {
    pub fn new(kubernetes_version: &str, ready_after: Duration) -> World {
        let mut w = World {
            kubernetes_version: kubernetes_version.to_string(),
            ready_after,
            cluster: String::new(),
            control_plane_endpoint: String::new(),
            objects: BTreeMap::new(),
            rv: 0,
            uid: 0,
            joined: BTreeMap::new(),
            forced_not_ready: BTreeSet::new(),
            joins_paused: false,
            custom: Vec::new(),
            unavailable: BTreeSet::new(),
        };
        for ns in SYSTEM_NAMESPACES {
            w.put(
                "namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            );
        }
        // The workloads drain has to move: a DaemonSet on every node, and two
        // ReplicaSets whose pods the scheduler below places on worker nodes.
        w.put(
            "daemonsets",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "metadata": {"name": "cilium", "namespace": "kube-system"},
                   "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}}}}),
        );
        for (ns, rs, app, replicas) in [
            ("kube-system", "coredns-5d78c9869d", "kube-dns", 2),
            ("default", "web-7c5ddbdf54", "web", 3),
        ] {
            w.put(
                "replicasets",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                       "metadata": {"name": rs, "namespace": ns},
                       "spec": {"replicas": replicas, "selector": {"matchLabels": {"k8s-app": app}}}}),
            );
            for _ in 0..replicas {
                w.new_replica(ns, rs, app);
            }
        }
        w
    }

    /// Every resource served now: the built-in ones, then those of the CRDs.
    pub fn resources(&self) -> impl Iterator<Item = &'static Resource> + '_ {
        RESOURCES.iter().chain(self.custom.iter().copied())
    }

    /// A served resource by group, version and plural.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        self.resources()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// What the API server's CRD handling does when a CustomResourceDefinition
    /// is written. The object is checked as the apiextensions validation does
    /// (apiextensions-apiserver pkg/apis/apiextensions/validation/validation.go
    /// ValidateCustomResourceDefinition: the name is `PLURAL.GROUP`, a scope of
    /// Namespaced or Cluster, at least one version, exactly one storage
    /// version), defaulted (pkg/apis/apiextensions/v1/defaults.go: singular is
    /// the lower-case kind, listKind KIND + "List") and given the status its
    /// controllers write: the naming controller's `NamesAccepted`
    /// (pkg/controller/status/naming_controller.go: reason NoConflicts, "no
    /// conflicts found", acceptedNames = the names) and the establishing
    /// controller's `Established` (pkg/controller/establish/establishing_controller.go:
    /// reason InitialNamesAccepted, "the initial names have been accepted"),
    /// with storedVersions (pkg/registry/customresourcedefinition/strategy.go).
    /// Both controllers act within moments of the write; here at once. Name
    /// conflicts between CRDs are not simulated. Conditions already set keep
    /// their transition time, so a repeated apply stays a no-op.
    fn crd_status(&self, crd: &mut Value) -> Result<(), ApiError> {
        let invalid = |m: String| ApiError::new(422, "Invalid", m);
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or("");
        let plural = spec["names"]["plural"].as_str().unwrap_or("");
        let kind = spec["names"]["kind"].as_str().unwrap_or("");
        let name = crd["metadata"]["name"].as_str().unwrap_or("");
        if group.is_empty() || plural.is_empty() || kind.is_empty() {
            return Err(invalid(
                "spec.group, spec.names.plural and spec.names.kind: Required value".into(),
            ));
        }
        if name != format!("{plural}.{group}") {
            return Err(invalid(format!(
                "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            )));
        }
        if !matches!(spec["scope"].as_str(), Some("Namespaced" | "Cluster")) {
            return Err(invalid(format!(
                "spec.scope: Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                spec["scope"]
            )));
        }
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        let storage: Vec<&str> = versions
            .iter()
            .filter(|v| v["storage"] == true)
            .filter_map(|v| v["name"].as_str())
            .collect();
        if versions.is_empty() || storage.len() != 1 {
            return Err(invalid(
                "spec.versions: Invalid value: must have exactly one version marked as storage version"
                    .into(),
            ));
        }
        let mut names = spec["names"].clone();
        names["singular"] = json!(
            names["singular"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| kind.to_lowercase())
        );
        names["listKind"] = json!(
            names["listKind"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{kind}List"))
        );
        crd["spec"]["names"] = names.clone();
        let old = crd["status"].clone();
        let kept = |t: &str| {
            old["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == t && c["status"] == "True")
                .and_then(|c| c["lastTransitionTime"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| rfc3339(SystemTime::now()))
        };
        let mut stored: Vec<Value> = old["storedVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !stored.contains(&json!(storage[0])) {
            stored.push(json!(storage[0]));
        }
        crd["status"] = json!({
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": kept("NamesAccepted")},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": kept("Established")},
            ],
            "storedVersions": stored,
        });
        Ok(())
    }

    /// Serves the kind of an established CRD, one resource per served version
    /// (`served: false` versions are not served, as the API server's
    /// crdHandler; discovery follows from [`World::resources`]).
    fn serve_crd(&mut self, crd: &Value) {
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or("");
        let plural = spec["names"]["plural"].as_str().unwrap_or("");
        self.custom
            .retain(|r| !(r.group == group && r.plural == plural));
        let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
        let short: Vec<&'static str> = spec["names"]["shortNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(leak)
            .collect();
        let short: &'static [&'static str] = Box::leak(short.into_boxed_slice());
        for v in spec["versions"].as_array().into_iter().flatten() {
            if v["served"] != true {
                continue;
            }
            let r = Resource {
                group: leak(group),
                version: leak(v["name"].as_str().unwrap_or("")),
                plural: leak(plural),
                kind: leak(spec["names"]["kind"].as_str().unwrap_or("")),
                namespaced: spec["scope"] == "Namespaced",
                short,
            };
            self.custom.push(Box::leak(Box::new(r)));
        }
    }

    fn resource_of(plural: &str) -> &'static Resource {
        RESOURCES
            .iter()
            .find(|r| r.plural == plural)
            .expect("a served resource")
    }

    fn key(r: &Resource, ns: &str, name: &str) -> Key {
        let ns = if r.namespaced { ns } else { "" };
        (r.group, r.plural, ns.to_string(), name.to_string())
    }

    /// Stores an object as is, filling in the server-owned metadata.
    fn put(&mut self, plural: &str, obj: Value) -> Value {
        self.put_in(Self::resource_of(plural), obj)
    }

    fn put_in(&mut self, r: &Resource, mut obj: Value) -> Value {
        self.stamp(&mut obj, true);
        let m = &obj["metadata"];
        let key = Self::key(
            r,
            m["namespace"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or(""),
        );
        self.objects.insert(key, obj.clone());
        obj
    }

    fn stamp(&mut self, obj: &mut Value, new: bool) {
        self.rv += 1;
        let m = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        m.insert("resourceVersion".into(), json!(self.rv.to_string()));
        if new {
            self.uid += 1;
            m.insert(
                "uid".into(),
                json!(format!("00000000-0000-4000-8000-{:012x}", self.uid)),
            );
            m.insert(
                "creationTimestamp".into(),
                json!(rfc3339(SystemTime::now())),
            );
            m.entry("generation").or_insert(json!(1));
        }
    }

    pub fn get(&self, r: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(r, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(r, name))
    }

    pub fn list(
        &self,
        r: &Resource,
        ns: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        let labels = labels.map(parse_label_selector).transpose()?;
        let fields = fields.map(parse_field_selector).transpose()?;
        Ok(self
            .objects
            .iter()
            .filter(|((g, p, n, _), _)| {
                *g == r.group && *p == r.plural && ns.is_none_or(|ns| ns == n)
            })
            .map(|(_, o)| o)
            .filter(|o| {
                labels
                    .as_ref()
                    .is_none_or(|s| s.iter().all(|t| t.matches(o)))
            })
            .filter(|o| {
                fields
                    .as_ref()
                    .is_none_or(|s| s.iter().all(|t| t.matches_field(o)))
            })
            .cloned()
            .collect())
    }

    pub fn resource_version(&self) -> String {
        self.rv.to_string()
    }

    fn check(&self, r: &Resource, ns: &str, obj: &Value) -> Result<(), ApiError> {
        if obj["kind"].as_str() != Some(r.kind)
            || obj["apiVersion"].as_str() != Some(&r.api_version())
        {
            return Err(ApiError::bad(format!(
                "the object is a {} {}, this endpoint serves {} {}",
                obj["apiVersion"],
                obj["kind"],
                r.api_version(),
                r.kind
            )));
        }
        if obj["metadata"]["name"].as_str().unwrap_or("").is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "metadata.name: Required value",
            ));
        }
        if r.namespaced
            && !self
                .objects
                .contains_key(&("", "namespaces", String::new(), ns.to_string()))
        {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("namespaces \"{ns}\" not found"),
            ));
        }
        Ok(())
    }

    pub fn create(&mut self, r: &Resource, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        self.check(r, ns, &obj)?;
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        if self.objects.contains_key(&Self::key(r, ns, &name)) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.plural),
            ));
        }
        if r.namespaced {
            obj["metadata"]["namespace"] = json!(ns);
        }
        if (r.group, r.plural) == CRDS {
            self.crd_status(&mut obj)?;
            self.serve_crd(&obj);
        }
        let obj = self.put_in(r, obj);
        self.written(r);
        Ok(obj)
    }

    /// After a write: the workload controllers react at once, so that their
    /// status is settled before the next request (and a later tick finds
    /// nothing to change).
    fn written(&mut self, r: &Resource) {
        if r.group == "apps" {
            self.report_workloads();
        }
    }

    pub fn replace(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        self.check(r, ns, &obj)?;
        let old = self.get(r, ns, name)?;
        for k in ["uid", "creationTimestamp", "namespace"] {
            if let Some(v) = old["metadata"].get(k) {
                obj["metadata"][k] = v.clone();
            }
        }
        if (r.group, r.plural) == CRDS {
            obj["status"] = old["status"].clone();
            self.crd_status(&mut obj)?;
            self.serve_crd(&obj);
        }
        self.stamp(&mut obj, false);
        self.objects.insert(Self::key(r, ns, name), obj.clone());
        self.written(r);
        Ok(obj)
    }

    /// JSON merge patch (RFC 7386); strategic merge patches are treated the same,
    /// minus their `$` directives, which is exact for the maps kubectl patches
    /// (cordon's `spec.unschedulable`, labels, annotations) and replaces lists whole.
    pub fn patch(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let live = self.get(r, ns, name)?;
        let mut obj = live.clone();
        merge(&mut obj, patch);
        obj["metadata"]["name"] = json!(name);
        if (r.group, r.plural) == CRDS {
            self.crd_status(&mut obj)?;
        }
        // A write that changes nothing is not persisted: the object keeps its
        // resourceVersion, as the API server skips no-op updates ("If the
        // update is a no-op, the resourceVersion is not changed",
        // https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions;
        // the apiserver's GuaranteedUpdate compares the bytes before it writes).
        if obj == live {
            return Ok(live);
        }
        if (r.group, r.plural) == CRDS {
            self.serve_crd(&obj);
        }
        self.stamp(&mut obj, false);
        self.objects.insert(Self::key(r, ns, name), obj.clone());
        self.written(r);
        Ok(obj)
    }

    /// Server-side apply: create, or merge the applied fields into the live object.
    /// Field ownership is not tracked (no conflicts are ever reported).
    pub fn apply(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        obj: Value,
    ) -> Result<(Value, bool), ApiError> {
        self.check(r, ns, &obj)?;
        if obj["metadata"]["name"].as_str() != Some(name) {
            return Err(ApiError::bad(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                obj["metadata"]["name"]
            )));
        }
        if self.objects.contains_key(&Self::key(r, ns, name)) {
            Ok((self.patch(r, ns, name, &obj)?, false))
        } else {
            Ok((self.create(r, ns, obj)?, true))
        }
    }

    pub fn delete(&mut self, r: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        let obj = self
            .objects
            .remove(&Self::key(r, ns, name))
            .ok_or_else(|| ApiError::not_found(r, name))?;
        if r.plural == "pods" {
            self.replace_if_replicated(&obj);
        }
        if r.plural == "nodes" {
            self.joined.remove(name);
        }
        if (r.group, r.plural) == CRDS {
            // The API server stops serving the kind and deletes its objects
            // (the customresourcecleanup finalizer,
            // pkg/controller/finalizer/crd_finalizer.go).
            let group = obj["spec"]["group"].as_str().unwrap_or("").to_string();
            let plural = obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.custom
                .retain(|r| !(r.group == group && r.plural == plural));
            self.objects
                .retain(|(g, p, _, _), _| !(*g == group && *p == plural));
        }
        Ok(obj)
    }

    /// The eviction subresource: a delete that a PodDisruptionBudget may refuse (429).
    pub fn evict(&mut self, ns: &str, name: &str) -> Result<(), ApiError> {
        let pods = Self::resource_of("pods");
        let pod = self.get(pods, ns, name)?;
        let pdbs = self.list(
            Self::resource_of("poddisruptionbudgets"),
            Some(ns),
            None,
            None,
        )?;
        for pdb in &pdbs {
            let sel = &pdb["spec"]["selector"];
            if !selector_matches(sel, &pod["metadata"]["labels"]) {
                continue;
            }
            let covered: Vec<Value> = self
                .list(pods, Some(ns), None, None)?
                .into_iter()
                .filter(|p| selector_matches(sel, &p["metadata"]["labels"]))
                .collect();
            let expected = covered.len() as i64;
            let healthy = covered.iter().filter(|p| pod_ready(p)).count() as i64;
            let resolve = |v: &Value| -> i64 {
                match v {
                    Value::String(s) if s.ends_with('%') => {
                        let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(100);
                        (expected * pct + 99) / 100
                    }
                    v => v.as_i64().unwrap_or(0),
                }
            };
            let spec = &pdb["spec"];
            let desired = if !spec["minAvailable"].is_null() {
                resolve(&spec["minAvailable"])
            } else if !spec["maxUnavailable"].is_null() {
                expected - resolve(&spec["maxUnavailable"])
            } else {
                continue;
            };
            if healthy - desired < 1 {
                let mut e = ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
                e.causes.push(json!({
                    "reason": "DisruptionBudget",
                    "message": format!(
                        "The disruption budget {} needs {desired} healthy pods and has {healthy} currently",
                        pdb["metadata"]["name"].as_str().unwrap_or("")
                    ),
                }));
                return Err(e);
            }
        }
        self.delete(pods, ns, name).map(|_| ())
    }

    /// A ReplicaSet replaces a pod that went away with a new, unscheduled one.
    fn replace_if_replicated(&mut self, pod: &Value) {
        let owner = &pod["metadata"]["ownerReferences"][0];
        if owner["kind"] == "ReplicaSet" {
            let ns = pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let rs = owner["name"].as_str().unwrap_or("").to_string();
            let app = pod["metadata"]["labels"]["k8s-app"]
                .as_str()
                .unwrap_or("")
                .to_string();
            self.new_replica(&ns, &rs, &app);
        }
    }

    fn suffix(&mut self) -> String {
        self.uid += 1;
        // Five lower-case characters, as Kubernetes' generated names have.
        let mut n = self.uid.wrapping_mul(2_654_435_761) % 26u64.pow(5);
        (0..5)
            .map(|_| {
                let c = (b'a' + (n % 26) as u8) as char;
                n /= 26;
                c
            })
            .collect()
    }

    fn new_replica(&mut self, ns: &str, rs: &str, app: &str) {
        let name = format!("{rs}-{}", self.suffix());
        let mut spec = json!({
            "containers": [{"name": app, "image": format!("registry.k8s.io/{app}:1.0")}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        });
        if ns == "kube-system" {
            spec["priorityClassName"] = json!("system-cluster-critical");
        }
        self.put(
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": ns, "labels": {"k8s-app": app},
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                     "name": rs, "uid": "rs-uid", "controller": true}]},
                   "spec": spec,
                   "status": {"phase": "Pending",
                              "conditions": [{"type": "PodScheduled", "status": "False",
                                              "reason": "Unschedulable"}]}}),
        );
    }

    /// Makes the running instances of the cluster the nodes of the cluster.
    pub fn sync_instances(&mut self, instances: &[Instance]) {
        let live: BTreeSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        let gone: Vec<String> = self
            .joined
            .iter()
            .filter(|(_, (id, _))| !live.contains(id.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        for node in gone {
            self.remove_node(&node);
        }
        if self.joins_paused {
            return;
        }
        let known: BTreeSet<String> = self.joined.values().map(|(id, _)| id.clone()).collect();
        for i in instances {
            // kops' bastions never join the cluster.
            if i.role == "bastion" || known.contains(&i.id) {
                continue;
            }
            self.join(i);
        }
    }

    fn join(&mut self, i: &Instance) {
        let name = if i.private_dns.is_empty() {
            i.id.clone()
        } else {
            i.private_dns.clone()
        };
        let master = i.role == "master";
        // What the kubelet registers the Node with
        // (pkg/kubelet/kubelet_node_status.go initialNode).
        let mut labels = json!({
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            // keelson's bootstrap passes these through kubelet --node-labels
            // (src/node/kubeadm.rs, nodeRegistration).
            "keelson.dev/role": i.role,
            "keelson.dev/instance-group": i.group,
        });
        // The cloud controller's node controller, stable and beta keys alike
        // (k8s.io/cloud-provider controllers/node/node_controller.go
        // getNodeModifiersFromCloudProvider); only what the cloud reports.
        if !i.instance_type.is_empty() {
            labels["node.kubernetes.io/instance-type"] = json!(i.instance_type);
            labels["beta.kubernetes.io/instance-type"] = json!(i.instance_type);
        }
        if !i.zone.is_empty() {
            let region = i.zone.trim_end_matches(|c: char| c.is_ascii_lowercase());
            labels["topology.kubernetes.io/zone"] = json!(i.zone);
            labels["failure-domain.beta.kubernetes.io/zone"] = json!(i.zone);
            labels["topology.kubernetes.io/region"] = json!(region);
            labels["failure-domain.beta.kubernetes.io/region"] = json!(region);
        }
        let mut spec = json!({"providerID": format!("aws:///{}/{}", i.zone, i.id)});
        if master {
            // kubeadm's mark-control-plane phase: these two labels, and the
            // default control-plane taint when nodeRegistration.taints is unset
            // (cmd/kubeadm/app/phases/markcontrolplane/markcontrolplane.go,
            // cmd/kubeadm/app/constants/constants.go ControlPlaneTaint). kubeadm
            // gives workers no node-role label at all.
            labels["node-role.kubernetes.io/control-plane"] = json!("");
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
            spec["taints"] =
                json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
        }
        // The addresses the AWS cloud controller reports.
        let mut addresses = vec![];
        if !i.private_ip.is_empty() {
            addresses.push(json!({"type": "InternalIP", "address": i.private_ip}));
        }
        addresses.push(json!({"type": "InternalDNS", "address": name}));
        addresses.push(json!({"type": "Hostname", "address": name}));
        let node = self.put(
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": name, "labels": labels},
                   "spec": spec,
                   "status": {
                       "conditions": [ready_condition(false)],
                       "addresses": addresses,
                       "nodeInfo": {"kubeletVersion": self.kubernetes_version, "kubeProxyVersion": self.kubernetes_version,
                                    "operatingSystem": "linux", "architecture": "amd64",
                                    "containerRuntimeVersion": "containerd://2.0.0"}}}),
        );
        self.joined
            .insert(name.clone(), (i.id.clone(), Instant::now()));
        if master {
            // The control plane runs as static pods, which the API shows as mirror pods.
            let uid = node["metadata"]["uid"].clone();
            let ip = if i.private_ip.is_empty() {
                "127.0.0.1"
            } else {
                &i.private_ip
            };
            for c in CONTROL_PLANE_COMPONENTS {
                let pod = self.mirror_pod(&name, &uid, c, ip);
                self.put("pods", pod);
            }
            self.upload_kubeadm_config();
        }
        let ds = format!("cilium-{}", self.suffix());
        self.put(
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": ds, "namespace": "kube-system", "labels": {"k8s-app": "cilium"},
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "cilium", "uid": "ds-uid", "controller": true}]},
                   "spec": {"nodeName": name, "priorityClassName": "system-node-critical",
                            "containers": [{"name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.16"}]},
                   "status": running_status()}),
        );
    }

    /// kubeadm's image tag for the Kubernetes components (`v` and the version).
    fn version_tag(&self) -> String {
        if self.kubernetes_version.starts_with('v') {
            self.kubernetes_version.clone()
        } else {
            format!("v{}", self.kubernetes_version)
        }
    }

    /// The mirror pod of one of kubeadm's static pods on `node` (advertising `ip`).
    fn mirror_pod(&self, node: &str, node_uid: &Value, component: &str, ip: &str) -> Value {
        // kubeadm's per-component annotations: the API server's advertise
        // endpoint (manifests.go, KubeAPIServerAdvertiseAddressEndpointAnnotationKey;
        // keelson's bindPort is 443) and etcd's client URL (etcd/local.go,
        // EtcdAdvertiseClientUrlsAnnotationKey); none on the other two.
        let mut annotations = match component {
            "kube-apiserver" => {
                json!({"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": format!("{ip}:443")})
            }
            "etcd" => {
                json!({"kubeadm.kubernetes.io/etcd.advertise-client-urls": format!("https://{ip}:2379")})
            }
            _ => json!({}),
        };
        // The kubelet's file source hashes the manifest into config.hash and
        // records config.seen and config.source (pkg/kubelet/config/common.go
        // applyDefaults, pkg/kubelet/config/config.go); its mirror client copies
        // the hash into config.mirror and makes the Node the owner
        // (pkg/kubelet/pod/mirror_client.go CreateMirrorPod). The hash here is
        // FNV-128a, as the kubelet's, of the source only.
        let hash = fnv1a_128(&format!(
            "host:{node}file:/etc/kubernetes/manifests/{component}.yaml"
        ));
        for (k, v) in [
            ("kubernetes.io/config.hash", hash.clone()),
            ("kubernetes.io/config.mirror", hash),
            ("kubernetes.io/config.seen", rfc3339_nano(SystemTime::now())),
            ("kubernetes.io/config.source", "file".to_string()),
        ] {
            annotations[k] = json!(v);
        }
        // etcd's image is kubeadm's DefaultEtcdVersion (constants.go).
        let image = if component == "etcd" {
            "registry.k8s.io/etcd:3.6.5-0".to_string()
        } else {
            format!("registry.k8s.io/{component}:{}", self.version_tag())
        };
        let mut status = running_status();
        status["hostIP"] = json!(ip);
        status["podIP"] = json!(ip);
        // The pod itself is kubeadm's ComponentPod: labels component and tier,
        // system-node-critical at priority 2000001000, host network, the
        // RuntimeDefault seccomp profile (cmd/kubeadm/app/util/staticpod/utils.go);
        // the kubelet names it after the node and tolerates every NoExecute
        // taint for a file pod (common.go generatePodName, applyDefaults).
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": format!("{component}-{}", node.to_lowercase()), "namespace": "kube-system",
                            "labels": {"component": component, "tier": "control-plane"},
                            "annotations": annotations,
                            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}]},
               "spec": {"nodeName": node, "hostNetwork": true,
                        "priorityClassName": "system-node-critical", "priority": 2_000_001_000,
                        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                        "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                        "containers": [{"name": component, "image": image, "imagePullPolicy": "IfNotPresent"}]},
               "status": status})
    }

    /// `kubeadm init` stores its ClusterConfiguration in the kubeadm-config
    /// ConfigMap (cmd/kubeadm/app/phases/uploadconfig/uploadconfig.go;
    /// constants.go KubeadmConfigConfigMap, ClusterConfigurationConfigMapKey).
    /// Keys sorted, as kubeadm marshals them; only what the simulator knows
    /// (keelson's subnets and certSANs are not mirrored) and kubeadm's defaults.
    fn upload_kubeadm_config(&mut self) {
        let key: Key = (
            "",
            "configmaps",
            "kube-system".into(),
            "kubeadm-config".into(),
        );
        if self.objects.contains_key(&key) {
            return;
        }
        let config = json!({
            "apiServer": {},
            "apiVersion": "kubeadm.k8s.io/v1beta4",
            "certificatesDir": "/etc/kubernetes/pki",
            "clusterName": self.cluster,
            "controlPlaneEndpoint": self.control_plane_endpoint,
            "controllerManager": {},
            "dns": {},
            "etcd": {"local": {"dataDir": "/var/lib/etcd"}},
            "imageRepository": "registry.k8s.io",
            "kind": "ClusterConfiguration",
            "kubernetesVersion": self.version_tag(),
            "networking": {"dnsDomain": "cluster.local"},
            "proxy": {},
            "scheduler": {},
        });
        let yaml = serde_yaml::to_string(&config).expect("YAML");
        self.put(
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
                   "data": {"ClusterConfiguration": yaml}}),
        );
    }

    /// A static pod's manifest was taken away: the kubelet stops it and
    /// deletes its mirror pod. Returns whether there was one.
    pub fn remove_static_pod(&mut self, node: &str, component: &str) -> bool {
        let key: Key = (
            "",
            "pods",
            "kube-system".into(),
            format!("{component}-{}", node.to_lowercase()),
        );
        self.objects.remove(&key).is_some()
    }

    fn remove_node(&mut self, node: &str) {
        self.objects
            .remove(&("", "nodes", String::new(), node.to_string()));
        self.joined.remove(node);
        let on_node: Vec<Key> = self
            .objects
            .iter()
            .filter(|((_, p, _, _), o)| *p == "pods" && o["spec"]["nodeName"] == node)
            .map(|(k, _)| k.clone())
            .collect();
        for k in on_node {
            if let Some(pod) = self.objects.remove(&k) {
                self.replace_if_replicated(&pod);
            }
        }
    }

    /// Time passes: joined nodes turn Ready, unscheduled replicas get a node.
    pub fn tick(&mut self) {
        let updates: Vec<(String, bool)> = self
            .joined
            .iter()
            .map(|(n, (_, at))| {
                (
                    n.clone(),
                    at.elapsed() >= self.ready_after && !self.forced_not_ready.contains(n),
                )
            })
            .collect();
        for (node, ready) in updates {
            let key = ("", "nodes", String::new(), node);
            let Some(mut obj) = self.objects.get(&key).cloned() else {
                continue;
            };
            if node_ready(&obj) != ready {
                obj["status"]["conditions"] = json!([ready_condition(ready)]);
                self.stamp(&mut obj, false);
                self.objects.insert(key, obj);
            }
        }
        self.schedule();
        self.report_workloads();
    }

    /// The workload controllers' status, as each reports it (written only
    /// when it changed, as the controllers' UpdateStatus after a comparison).
    /// The simulator runs no pods for them: every wanted pod counts as ready
    /// and available unless the `workloads/.../unavailable` knob says none is.
    /// - Deployment (pkg/controller/deployment/sync.go calculateStatus,
    ///   util/deployment_util.go): replicas, updatedReplicas, readyReplicas,
    ///   availableReplicas, unavailableReplicas, the `Available` condition
    ///   (True MinimumReplicasAvailable "Deployment has minimum availability."
    ///   or False MinimumReplicasUnavailable "Deployment does not have minimum
    ///   availability.") and `Progressing`.
    /// - DaemonSet (pkg/controller/daemon/daemon_controller.go
    ///   updateDaemonSetStatus): desiredNumberScheduled is the nodes whose labels
    ///   match the pod template's nodeSelector and whose NoSchedule/NoExecute
    ///   taints it tolerates; numberReady/numberAvailable are those Ready.
    /// - StatefulSet (pkg/controller/statefulset/stateful_set_control.go):
    ///   replicas, readyReplicas, currentReplicas, updatedReplicas, availableReplicas.
    fn report_workloads(&mut self) {
        let nodes: Vec<Value> = self
            .objects
            .iter()
            .filter(|((g, p, _, _), _)| g.is_empty() && *p == "nodes")
            .map(|(_, n)| n.clone())
            .collect();
        let keys: Vec<Key> = self
            .objects
            .keys()
            .filter(|(g, p, _, _)| {
                *g == "apps" && matches!(*p, "deployments" | "daemonsets" | "statefulsets")
            })
            .cloned()
            .collect();
        for k in keys {
            let mut obj = self.objects[&k].clone();
            let down = self
                .unavailable
                .contains(&format!("{}/{}/{}", k.1, k.2, k.3));
            let generation = obj["metadata"]["generation"].clone();
            let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let up = if down { 0 } else { replicas };
            let status = match k.1 {
                "deployments" => {
                    let now = rfc3339(SystemTime::now());
                    let old = &obj["status"]["conditions"];
                    let since = |t: &str, st: &str| {
                        old.as_array()
                            .into_iter()
                            .flatten()
                            .find(|c| c["type"] == t && c["status"] == st)
                            .map(|c| c["lastTransitionTime"].clone())
                            .unwrap_or_else(|| json!(now))
                    };
                    let (st, reason, message) = if down {
                        (
                            "False",
                            "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability.",
                        )
                    } else {
                        (
                            "True",
                            "MinimumReplicasAvailable",
                            "Deployment has minimum availability.",
                        )
                    };
                    let mut status = json!({
                        "observedGeneration": generation, "replicas": replicas,
                        "updatedReplicas": replicas, "readyReplicas": up, "availableReplicas": up,
                        "conditions": [
                            {"type": "Available", "status": st, "reason": reason, "message": message,
                             "lastUpdateTime": since("Available", st), "lastTransitionTime": since("Available", st)},
                            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                             "message": format!("ReplicaSet \"{}\" has successfully progressed.", k.3),
                             "lastUpdateTime": since("Progressing", "True"), "lastTransitionTime": since("Progressing", "True")},
                        ],
                    });
                    if down {
                        status["unavailableReplicas"] = json!(replicas);
                    }
                    status
                }
                "daemonsets" => {
                    let pod = &obj["spec"]["template"]["spec"];
                    let wanted: Vec<&Value> =
                        nodes.iter().filter(|n| daemon_fits(pod, n)).collect();
                    let desired = wanted.len() as i64;
                    let ready = if down {
                        0
                    } else {
                        wanted.iter().filter(|n| node_ready(n)).count() as i64
                    };
                    let mut status = json!({
                        "observedGeneration": generation, "desiredNumberScheduled": desired,
                        "currentNumberScheduled": desired, "updatedNumberScheduled": desired,
                        "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
                    });
                    if desired > ready {
                        status["numberUnavailable"] = json!(desired - ready);
                    }
                    status
                }
                _ => json!({
                    "observedGeneration": generation, "replicas": replicas,
                    "readyReplicas": up, "availableReplicas": up,
                    "currentReplicas": replicas, "updatedReplicas": replicas,
                }),
            };
            if obj["status"] != status {
                obj["status"] = status;
                self.stamp(&mut obj, false);
                self.objects.insert(k, obj);
            }
        }
    }

    /// Knob: reports a workload (`deployments`, `daemonsets` or `statefulsets`)
    /// with no available pod, or available again.
    pub fn set_unavailable(&mut self, resource: &str, ns: &str, name: &str, unavailable: bool) {
        let key = format!("{resource}/{ns}/{name}");
        if unavailable {
            self.unavailable.insert(key);
        } else {
            self.unavailable.remove(&key);
        }
        self.report_workloads();
    }

    fn schedule(&mut self) {
        let pending: Vec<Key> = self
            .objects
            .iter()
            .filter(|((_, p, _, _), o)| {
                *p == "pods"
                    && o["spec"]["nodeName"].is_null()
                    && o["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in pending {
            // Schedulable nodes, fewest pods first (a spread, as the scheduler
            // does). These pods tolerate no taint: the control plane's
            // NoSchedule taint keeps them on the workers.
            let mut load: BTreeMap<String, usize> = self
                .objects
                .iter()
                .filter(|((_, p, _, _), n)| {
                    *p == "nodes"
                        && node_ready(n)
                        && n["spec"]["unschedulable"] != true
                        && !n["spec"]["taints"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
                })
                .map(|((_, _, _, name), _)| (name.clone(), 0))
                .collect();
            for ((_, p, _, _), o) in &self.objects {
                if *p == "pods"
                    && let Some(c) = o["spec"]["nodeName"].as_str().and_then(|n| load.get_mut(n))
                {
                    *c += 1;
                }
            }
            let Some((node, _)) = load.into_iter().min_by_key(|(n, c)| (*c, n.clone())) else {
                return;
            };
            let mut pod = self.objects[&k].clone();
            pod["spec"]["nodeName"] = json!(node);
            pod["status"] = running_status();
            self.stamp(&mut pod, false);
            self.objects.insert(k, pod);
        }
    }

    // Knobs.

    /// A system-cluster-critical pod that no node will ever run.
    pub fn add_pending_critical_pod(&mut self, name: &str) {
        self.put(
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": name}},
                   "spec": {"priorityClassName": "system-cluster-critical",
                            "containers": [{"name": name, "image": "registry.k8s.io/pause:3.10"}]},
                   "status": {"phase": "Pending",
                              "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}),
        );
    }

    /// A PodDisruptionBudget that allows no disruption of the pods it selects.
    pub fn add_blocking_pdb(&mut self, ns: &str, name: &str, match_labels: Value) {
        self.put(
            "poddisruptionbudgets",
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": name, "namespace": ns},
                   "spec": {"maxUnavailable": 0, "selector": {"matchLabels": match_labels}}}),
        );
    }

    pub fn node_names(&self) -> Vec<String> {
        self.joined.keys().cloned().collect()
    }
}

fn ready_condition(ready: bool) -> Value {
    let now = rfc3339(SystemTime::now());
    json!({"type": "Ready", "status": if ready { "True" } else { "False" },
           "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
           "message": if ready { "kubelet is posting ready status" } else { "container runtime network not ready" },
           "lastHeartbeatTime": now, "lastTransitionTime": now})
}

fn running_status() -> Value {
    json!({"phase": "Running",
           "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
           "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                                  "state": {"running": {"startedAt": rfc3339(SystemTime::now())}}}]})
}

/// Whether the DaemonSet controller wants a pod of `pod` (a template's spec) on
/// node `n`: its nodeSelector matches and it tolerates the node's NoSchedule
/// and NoExecute taints (pkg/controller/daemon/daemon_controller.go
/// NodeShouldRunDaemonPod; node affinity is not simulated).
fn daemon_fits(pod: &Value, n: &Value) -> bool {
    let labels = &n["metadata"]["labels"];
    let selected = pod["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| &labels[k] == v);
    let tolerations: Vec<&Value> = pod["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let tolerated = n["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
        .all(|t| {
            tolerations.iter().any(|tol| {
                let key_ok = tol["key"].is_null() && tol["operator"] == "Exists"
                    || tol["key"] == t["key"]
                        && (tol["operator"] == "Exists" || tol["value"] == t["value"]);
                key_ok && (tol["effect"].is_null() || tol["effect"] == t["effect"])
            })
        });
    selected && tolerated
}

pub fn node_ready(n: &Value) -> bool {
    condition(n, "Ready")
}

pub fn pod_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && condition(p, "Ready")
}

fn condition(o: &Value, kind: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == kind && c["status"] == "True")
}

/// RFC 7386, ignoring strategic-merge `$` directives.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// One term of a label or field selector.
#[derive(Debug)]
pub enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

impl Term {
    fn matches(&self, o: &Value) -> bool {
        let labels = &o["metadata"]["labels"];
        match self {
            Term::Eq(k, v) => labels[k].as_str() == Some(v),
            Term::Ne(k, v) => labels[k].as_str() != Some(v),
            Term::Exists(k) => labels.get(k).is_some(),
            Term::Absent(k) => labels.get(k).is_none(),
        }
    }

    fn matches_field(&self, o: &Value) -> bool {
        let field = |path: &str| {
            let mut v = o;
            for part in path.split('.') {
                v = &v[part];
            }
            match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            }
        };
        match self {
            Term::Eq(k, v) => field(k) == *v,
            Term::Ne(k, v) => field(k) != *v,
            Term::Exists(_) | Term::Absent(_) => false,
        }
    }
}

fn split_term(t: &str) -> Option<Term> {
    let t = t.trim();
    if let Some((k, v)) = t.split_once("!=") {
        return Some(Term::Ne(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Some(Term::Eq(k.trim().into(), v.trim().into()));
    }
    None
}

pub fn parse_label_selector(s: &str) -> Result<Vec<Term>, ApiError> {
    if s.contains('(') {
        return Err(ApiError::bad(format!(
            "label selector {s:?}: set-based selectors (in, notin) are not simulated"
        )));
    }
    Ok(s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            split_term(t).unwrap_or_else(|| match t.trim().strip_prefix('!') {
                Some(k) => Term::Absent(k.into()),
                None => Term::Exists(t.trim().into()),
            })
        })
        .collect())
}

pub fn parse_field_selector(s: &str) -> Result<Vec<Term>, ApiError> {
    s.split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            split_term(t).ok_or_else(|| ApiError::bad(format!("invalid field selector term {t:?}")))
        })
        .collect()
}

/// A `LabelSelector` (matchLabels and matchExpressions with In/NotIn/Exists/DoesNotExist).
pub fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let ml = sel["matchLabels"].as_object().into_iter().flatten();
    let exprs = sel["matchExpressions"].as_array().into_iter().flatten();
    ml.into_iter().all(|(k, v)| &labels[k] == v)
        && exprs.into_iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&Value> = e["values"].as_array().into_iter().flatten().collect();
            match e["operator"].as_str() {
                Some("In") => values.contains(&&labels[key]),
                Some("NotIn") => !values.contains(&&labels[key]),
                Some("Exists") => labels.get(key).is_some(),
                Some("DoesNotExist") => labels.get(key).is_none(),
                _ => false,
            }
        })
}

/// UTC, seconds, as Kubernetes writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// UTC with nanoseconds (Go's RFC3339Nano, trailing zeros dropped), as the
/// kubelet writes `kubernetes.io/config.seen`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let secs = rfc3339(t);
    if nanos == 0 {
        return secs;
    }
    let frac = format!("{nanos:09}");
    format!(
        "{}.{}Z",
        secs.trim_end_matches('Z'),
        frac.trim_end_matches('0')
    )
}

/// FNV-1a, 128 bits, in hex: the kubelet's hash for a static pod's UID and
/// config.hash (pkg/kubelet/config/common.go, fnv.New128a).
fn fnv1a_128(s: &str) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let h = s
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    format!("{h:032x}")
}

/// Seconds since the epoch of a timestamp this module wrote.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // 2025-12-31T23:59:59Z
        assert_eq!(rfc3339(t), "2025-12-31T23:59:59Z");
        assert_eq!(parse_rfc3339("2025-12-31T23:59:59Z"), Some(1_767_225_599));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    }

    #[test]
    fn fnv1a_128_matches_the_reference_vectors() {
        assert_eq!(fnv1a_128(""), "6c62272e07bb014262b821756295c58d");
        assert_eq!(fnv1a_128("a"), "d228cb696f1a8caf78912b704e4a8964");
    }

    #[test]
    fn nanosecond_timestamps_drop_trailing_zeros() {
        let t = UNIX_EPOCH + Duration::new(1_767_225_599, 120_000_000);
        assert_eq!(rfc3339_nano(t), "2025-12-31T23:59:59.12Z");
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH + Duration::from_secs(1_767_225_599)),
            "2025-12-31T23:59:59Z"
        );
    }

    fn joined(role: &str, group: &str) -> World {
        let mut w = World::new("v1.35.0", Duration::ZERO);
        w.cluster = "sim.k8s.local".into();
        w.control_plane_endpoint = "127.0.0.1:6443".into();
        w.sync_instances(&[Instance {
            id: "i-1".into(),
            private_dns: "ip-10-0-1-1.ec2.internal".into(),
            zone: "us-east-1a".into(),
            instance_type: "t3.medium".into(),
            role: role.into(),
            group: group.into(),
            private_ip: "10.0.1.1".into(),
        }]);
        w
    }

    #[test]
    fn a_master_joins_as_kubeadm_and_the_kubelet_make_it() {
        let mut w = joined("master", "master-us-east-1a");
        let node = w
            .get(World::resource_of("nodes"), "", "ip-10-0-1-1.ec2.internal")
            .unwrap();
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "");
        assert_eq!(
            labels["node.kubernetes.io/exclude-from-external-load-balancers"],
            ""
        );
        assert_eq!(labels["keelson.dev/role"], "master");
        assert_eq!(labels["keelson.dev/instance-group"], "master-us-east-1a");
        assert_eq!(labels["topology.kubernetes.io/region"], "us-east-1");
        assert!(labels.get("kops.k8s.io/instancegroup").is_none());

        let pods = w
            .list(
                World::resource_of("pods"),
                Some("kube-system"),
                Some("tier=control-plane"),
                None,
            )
            .unwrap();
        let names: Vec<&str> = pods
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "etcd-ip-10-0-1-1.ec2.internal",
                "kube-apiserver-ip-10-0-1-1.ec2.internal",
                "kube-controller-manager-ip-10-0-1-1.ec2.internal",
                "kube-scheduler-ip-10-0-1-1.ec2.internal",
            ]
        );
        for (p, c) in pods.iter().zip(CONTROL_PLANE_COMPONENTS) {
            let m = &p["metadata"];
            assert_eq!(
                m["labels"],
                json!({"component": c, "tier": "control-plane"}),
                "exactly kubeadm's labels"
            );
            let a = &m["annotations"];
            assert_eq!(a["kubernetes.io/config.source"], "file");
            assert_eq!(
                a["kubernetes.io/config.mirror"],
                a["kubernetes.io/config.hash"]
            );
            assert_eq!(a["kubernetes.io/config.hash"].as_str().unwrap().len(), 32);
            assert_eq!(m["ownerReferences"][0]["uid"], node["metadata"]["uid"]);
            assert_eq!(p["spec"]["priority"], 2_000_001_000);
            assert_eq!(p["spec"]["priorityClassName"], "system-node-critical");
        }
        assert_eq!(
            pods[0]["metadata"]["annotations"]["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
            "https://10.0.1.1:2379"
        );
        assert_eq!(
            pods[1]["metadata"]["annotations"]["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"],
            "10.0.1.1:443"
        );

        let cm = w
            .get(
                World::resource_of("configmaps"),
                "kube-system",
                "kubeadm-config",
            )
            .unwrap();
        let config: Value =
            serde_yaml::from_str(cm["data"]["ClusterConfiguration"].as_str().unwrap()).unwrap();
        assert_eq!(config["kind"], "ClusterConfiguration");
        assert_eq!(config["kubernetesVersion"], "v1.35.0");
        assert_eq!(config["clusterName"], "sim.k8s.local");
        assert_eq!(config["controlPlaneEndpoint"], "127.0.0.1:6443");

        assert!(w.remove_static_pod("ip-10-0-1-1.ec2.internal", "etcd"));
        assert!(!w.remove_static_pod("ip-10-0-1-1.ec2.internal", "etcd"));
    }

    #[test]
    fn a_worker_gets_no_node_role_label_and_no_control_plane() {
        let w = joined("node", "nodes-us-east-1a");
        let node = w
            .get(World::resource_of("nodes"), "", "ip-10-0-1-1.ec2.internal")
            .unwrap();
        let labels = node["metadata"]["labels"].as_object().unwrap();
        assert!(
            !labels
                .keys()
                .any(|k| k.starts_with("node-role.kubernetes.io/")),
            "{labels:?}"
        );
        assert_eq!(labels["keelson.dev/role"], "node");
        assert_eq!(labels["keelson.dev/instance-group"], "nodes-us-east-1a");
        assert!(
            w.list(
                World::resource_of("pods"),
                Some("kube-system"),
                Some("tier=control-plane"),
                None
            )
            .unwrap()
            .is_empty()
        );
        assert!(
            w.get(
                World::resource_of("configmaps"),
                "kube-system",
                "kubeadm-config"
            )
            .is_err(),
            "no master has run kubeadm init"
        );
    }

    #[test]
    fn merge_patch_sets_and_removes() {
        let mut o = json!({"spec": {"a": 1, "b": 2}, "x": [1]});
        merge(
            &mut o,
            &json!({"spec": {"a": null, "unschedulable": true}, "x": [2], "$setElementOrder/x": []}),
        );
        assert_eq!(
            o,
            json!({"spec": {"b": 2, "unschedulable": true}, "x": [2]})
        );
    }

    #[test]
    fn a_pdb_that_allows_no_disruption_refuses_eviction() {
        let mut w = World::new("v1.32.0", Duration::ZERO);
        w.sync_instances(&[Instance {
            id: "i-1".into(),
            private_dns: "ip-1".into(),
            zone: "us-east-1a".into(),
            instance_type: "t3.medium".into(),
            role: "node".into(),
            group: "nodes".into(),
            private_ip: "10.0.1.1".into(),
        }]);
        w.tick();
        let pods = w
            .list(
                World::resource_of("pods"),
                Some("default"),
                Some("k8s-app=web"),
                Some("spec.nodeName=ip-1"),
            )
            .unwrap();
        assert_eq!(pods.len(), 3);
        let first = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
        w.add_blocking_pdb("default", "web", json!({"k8s-app": "web"}));
        let e = w.evict("default", &first).unwrap_err();
        assert_eq!(e.code, 429);
        assert!(
            e.causes[0]["message"]
                .as_str()
                .unwrap()
                .contains("needs 3 healthy pods and has 3")
        );
        w.delete(World::resource_of("poddisruptionbudgets"), "default", "web")
            .unwrap();
        w.evict("default", &first).unwrap();
        // The ReplicaSet replaced it with an unscheduled pod; the only node is cordoned-free, so it lands there.
        w.tick();
        assert_eq!(
            w.list(
                World::resource_of("pods"),
                Some("default"),
                Some("k8s-app=web"),
                None
            )
            .unwrap()
            .len(),
            3
        );
        // The instance went away: its node and its DaemonSet pod go too.
        w.sync_instances(&[]);
        assert!(w.node_names().is_empty());
        assert!(
            w.list(
                World::resource_of("pods"),
                Some("kube-system"),
                Some("k8s-app=cilium"),
                None
            )
            .unwrap()
            .is_empty()
        );
    }
}
