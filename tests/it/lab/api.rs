//! A Kubernetes API server for the integration tests.
//!
//! No real apiserver can run on a test machine, so this one speaks the REST API the way kube-rs,
//! the production client, uses it: bearer-token users with per-verb rules, objects of the kinds
//! egressor touches kept as JSON, lists with label and field selectors, streaming watches with
//! bookmarks and 410 expiry, server-side apply with managed fields and conflicts, and the pods
//! proxy the CLI reaches its agents through. Every error is a `Status` shaped like the real
//! server's, so the CLI's error handling runs as it would against a cluster.
//!
//! The HTTP/1.1 layer is written here on tokio instead of axum: a watch response is an endless
//! chunked body, and axum only streams from a `futures::Stream` or an `http_body::Body`, neither of
//! which this crate can name or implement without another dependency.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::http;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Pod, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// The bearer token of `admin`, who may do everything.
pub const ADMIN_TOKEN: &str = "admin-token";

/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// A watch without `timeoutSeconds` ends after this long (the real server's minimum request timeout).
const DEFAULT_WATCH_SECONDS: u64 = 1800;

/// A running test API server on `127.0.0.1` at a random port. It stops when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// Dropping the sender ends the server thread.
    _stop: oneshot::Sender<()>,
}

/// One request as the server saw it, for tests to assert on.
#[derive(Clone, Debug)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    /// The authenticated user, `None` when authentication failed.
    pub user: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    pub status: u16,
}

impl RequestLog {
    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    pub fn is_watch(&self) -> bool {
        self.param("watch").as_deref() == Some("true")
    }

    /// A plain collection read: a GET of `path` that is not a watch.
    pub fn is_list_of(&self, path: &str) -> bool {
        self.method == "GET" && self.path == path && !self.is_watch()
    }
}

impl ApiServer {
    /// Binds a port and serves on a background thread with its own tokio runtime, so both sync
    /// tests and tests with their own runtime can use it.
    pub fn start() -> ApiServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the test API server");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("the test API server's address");
        let shared = Arc::new(Shared::new());
        let (stop, stopped) = oneshot::channel();
        let serving = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("lab-apiserver".into())
            .spawn(move || run_server(serving, listener, stopped))
            .expect("start the test API server thread");
        ApiServer { shared, addr, _stop: stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig with one context, `context`, authenticating with `token`.
    pub fn write_kubeconfig(&self, path: &Path, token: &str, context: &str) {
        self.write_kubeconfig_multi(path, &[(context, token)], context);
    }

    /// Writes a kubeconfig with one context (and user of the same name) per `(context, token)`.
    pub fn write_kubeconfig_multi(&self, path: &Path, contexts: &[(&str, &str)], current: &str) {
        let users: Vec<Value> =
            contexts.iter().map(|(name, token)| json!({"name": name, "user": {"token": token}})).collect();
        let contexts: Vec<Value> = contexts
            .iter()
            .map(|(name, _)| json!({"name": name, "context": {"cluster": "lab", "user": name}}))
            .collect();
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {"server": self.url()}}],
            "users": users,
            "contexts": contexts,
            "current-context": current,
            "preferences": {},
        });
        let yaml = serde_yaml::to_string(&config).expect("kubeconfig as YAML");
        std::fs::write(path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// A user authenticated by `token`; it may do nothing until `allow`ed.
    pub fn add_user(&self, token: &str, name: &str) {
        self.shared.store().tokens.insert(token.into(), name.into());
    }

    /// Lets `user` do `verb` on `resource` (`pods`, `pods/proxy`, `pods/*`) of API `group` (`""`
    /// for core) in every namespace. Each of the three may be `*`.
    pub fn allow(&self, user: &str, verb: &str, group: &str, resource: &str) {
        let rule =
            Rule { user: user.into(), verb: verb.into(), group: group.into(), resource: resource.into() };
        self.shared.store().rules.push(rule);
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.store().log.clone()
    }

    pub fn count(&self, matches: impl Fn(&RequestLog) -> bool) -> usize {
        self.shared.store().log.iter().filter(|r| matches(r)).count()
    }

    /// Every stored object of a kind, ordered by namespace and name.
    pub fn objects(&self, group: &str, resource: &str) -> Vec<Value> {
        let kind = Kind::known(group, resource);
        self.shared
            .store()
            .objects
            .iter()
            .filter(|(key, _)| key.kind == kind)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// One object; `namespace` is ignored for cluster-scoped kinds.
    pub fn get(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = Key::new(Kind::known(group, resource), namespace, name);
        self.shared.store().objects.get(&key).cloned()
    }

    /// Creates or replaces an object directly (its kind from `apiVersion`/`kind`), bypassing
    /// authorization and field management, as a controller or the kubelet would write it. Watches
    /// see it. Returns the stored object.
    pub fn put(&self, object: &impl Serialize) -> Value {
        let object = serde_json::to_value(object).expect("an object as JSON");
        self.shared.store().put(object)
    }

    /// Deletes an object (a namespace with everything in it); returns it as it was deleted.
    pub fn delete(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = Key::new(Kind::known(group, resource), namespace, name);
        self.shared.store().remove(&key)
    }

    /// Sets a pod's `status.podIP` (and `podIPs`), as the kubelet does once the pod runs.
    pub fn set_pod_ip(&self, namespace: &str, name: &str, ip: &str) -> Value {
        let mut pod = self.get("", "pods", namespace, name).expect("set_pod_ip on an existing pod");
        pod["status"]["podIP"] = json!(ip);
        pod["status"]["podIPs"] = json!([{"ip": ip}]);
        self.put(&pod)
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv
    }

    /// Forgets the event history, as etcd compaction does: a watch or an exact list from an older
    /// resourceVersion then gets 410 Expired. Open watches end with an ERROR 410 event too (as on a
    /// watch cache reset), so watchers must relist.
    pub fn compact(&self) {
        self.shared.store().compact();
    }
}

// ---------------------------------------------------------------------------------------------
// Kinds

/// A resource the server knows: where it lives in the REST API and what its objects are called.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Kind {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
}

static KINDS: &[Kind] = &[
    Kind::new("", "v1", "namespaces", "Namespace", false),
    Kind::new("", "v1", "nodes", "Node", false),
    Kind::new("", "v1", "pods", "Pod", true),
    Kind::new("", "v1", "services", "Service", true),
    Kind::new("", "v1", "serviceaccounts", "ServiceAccount", true),
    Kind::new("", "v1", "secrets", "Secret", true),
    Kind::new("", "v1", "configmaps", "ConfigMap", true),
    Kind::new("apps", "v1", "daemonsets", "DaemonSet", true),
    Kind::new("apps", "v1", "deployments", "Deployment", true),
    Kind::new("apps", "v1", "replicasets", "ReplicaSet", true),
    Kind::new("apps", "v1", "statefulsets", "StatefulSet", true),
    Kind::new("batch", "v1", "jobs", "Job", true),
    Kind::new("batch", "v1", "cronjobs", "CronJob", true),
    Kind::new("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true),
    Kind::new("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
    Kind::new("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
    Kind::new("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    Kind::new("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
];

/// Pod fields the real server accepts in a field selector (besides `metadata.name`/`namespace`).
const POD_SELECTABLE_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];

impl Kind {
    const fn new(
        group: &'static str,
        version: &'static str,
        resource: &'static str,
        kind: &'static str,
        namespaced: bool,
    ) -> Kind {
        Kind { group, version, resource, kind, namespaced }
    }

    fn find(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
        KINDS.iter().find(|k| k.group == group && k.version == version && k.resource == resource)
    }

    /// A kind a test names; an unknown one is a bug in the test.
    fn known(group: &str, resource: &str) -> &'static Kind {
        KINDS
            .iter()
            .find(|k| k.group == group && k.resource == resource)
            .unwrap_or_else(|| panic!("the test API server has no resource {resource:?} in group {group:?}"))
    }

    fn namespace() -> &'static Kind {
        Kind::known("", "namespaces")
    }

    fn of_object(object: &Value) -> Option<&'static Kind> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        KINDS.iter().find(|k| k.api_version() == api_version && k.kind == kind)
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How Status messages name the resource: `pods`, `daemonsets.apps`.
    fn qualified(&self) -> String {
        qualified_resource(self.resource, self.group)
    }

    fn is_namespace(&self) -> bool {
        self.resource == "namespaces" && self.group.is_empty()
    }
}

fn qualified_resource(resource: &str, group: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}

/// Where an object is stored; cluster-scoped objects have an empty namespace. The order (kind,
/// namespace, name) is the order lists come back in, as from etcd.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    kind: &'static Kind,
    namespace: String,
    name: String,
}

impl Key {
    fn new(kind: &'static Kind, namespace: &str, name: &str) -> Key {
        let namespace = if kind.namespaced { namespace.to_string() } else { String::new() };
        Key { kind, namespace, name: name.to_string() }
    }
}

// ---------------------------------------------------------------------------------------------
// The store: objects, their history, users and rules, and the request log

struct Shared {
    store: Mutex<Store>,
    /// Forwards pods proxy requests to the pods.
    upstream: reqwest::Client,
}

impl Shared {
    fn new() -> Shared {
        let upstream = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client for the pods proxy");
        Shared { store: Mutex::new(Store::new()), upstream }
    }

    /// A test that panicked while holding the lock leaves a usable store behind.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One write, kept so watches can replay what happened after a resourceVersion.
struct Change {
    rv: u64,
    key: Key,
    event: EventType,
    /// The object after the write (as deleted, with the deletion's resourceVersion, for DELETED).
    object: Value,
    previous: Option<Value>,
}

struct Rule {
    user: String,
    verb: String,
    group: String,
    resource: String,
}

impl Rule {
    fn permits(&self, user: &str, verb: &str, group: &str, resource: &str) -> bool {
        self.user == user
            && (self.verb == "*" || self.verb == verb)
            && (self.group == "*" || self.group == group)
            && resource_matches(&self.resource, resource)
    }
}

/// RBAC resource matching: `*` is everything, `pods/*` every subresource of pods.
fn resource_matches(rule: &str, resource: &str) -> bool {
    rule == "*"
        || rule == resource
        || rule
            .strip_suffix("/*")
            .is_some_and(|base| resource.split_once('/').is_some_and(|(parent, _)| parent == base))
}

struct Store {
    /// The global resourceVersion counter: the version of the latest write.
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Every write after `compacted`, oldest first.
    history: Vec<Change>,
    compacted: u64,
    /// Bumped by `compact`: watches opened before it end with 410.
    epoch: u64,
    /// Carries the latest resourceVersion to open watches.
    changes: watch::Sender<u64>,
    /// Bearer token -> user name.
    tokens: HashMap<String, String>,
    rules: Vec<Rule>,
    log: Vec<RequestLog>,
}

impl Store {
    fn new() -> Store {
        let mut store = Store {
            rv: 0,
            objects: BTreeMap::new(),
            history: Vec::new(),
            compacted: 0,
            epoch: 0,
            changes: watch::Sender::new(0),
            tokens: HashMap::from([(ADMIN_TOKEN.to_string(), "admin".to_string())]),
            rules: vec![Rule {
                user: "admin".into(),
                verb: "*".into(),
                group: "*".into(),
                resource: "*".into(),
            }],
            log: Vec::new(),
        };
        // Every cluster has these.
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let key = Key::new(Kind::namespace(), "", name);
            store.create(key, json!({"metadata": {"name": name}}));
        }
        store
    }

    fn user(&self, token: Option<&str>) -> Option<String> {
        self.tokens.get(token?).cloned()
    }

    fn authorize(&self, user: &str, info: &RequestInfo) -> Result<(), HttpResponse> {
        let resource = info.rbac_resource();
        if self.rules.iter().any(|r| r.permits(user, &info.verb, &info.group, &resource)) {
            Ok(())
        } else {
            Err(forbidden(user, info))
        }
    }

    fn record(&mut self, request: &HttpRequest, user: Option<String>, status: u16) {
        self.log.push(RequestLog {
            method: request.method.clone(),
            path: request.path.clone(),
            query: request.query.clone(),
            user,
            content_type: request.header("content-type").map(str::to_string),
            body: String::from_utf8_lossy(&request.body).into_owned(),
            status,
        });
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        self.objects.contains_key(&Key::new(Kind::namespace(), "", namespace))
    }

    fn require_namespace(&self, kind: &Kind, namespace: &str) -> Result<(), HttpResponse> {
        if kind.namespaced && !self.namespace_exists(namespace) {
            return Err(not_found(Kind::namespace(), namespace));
        }
        Ok(())
    }

    /// Stores a new object with what the server sets on creation.
    fn create(&mut self, key: Key, mut object: Value) -> Value {
        stamp_new(&mut object, &key);
        self.commit(key, EventType::Added, object, None)
    }

    /// Replaces an existing object. An unchanged object keeps its resourceVersion and sends no
    /// event, as on a real server (so applying the same thing twice is a no-op).
    fn update(&mut self, key: Key, mut object: Value) -> Value {
        let old = self.objects.get(&key).cloned().expect("update an existing object");
        keep_server_fields(&old, &mut object);
        if object == old {
            return old;
        }
        self.commit(key, EventType::Modified, object, Some(old))
    }

    /// Deletes an object at once (no finalizers, no grace period); a namespace takes everything in
    /// it along.
    fn remove(&mut self, key: &Key) -> Option<Value> {
        let old = self.objects.get(key)?.clone();
        if key.kind.is_namespace() {
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|k| k.kind.namespaced && k.namespace == key.name)
                .cloned()
                .collect();
            for key in &inside {
                self.remove(key);
            }
        }
        Some(self.commit(key.clone(), EventType::Deleted, old.clone(), Some(old)))
    }

    /// Creates or replaces an object as it is given (the test backdoor).
    fn put(&mut self, mut object: Value) -> Value {
        let kind =
            Kind::of_object(&object).unwrap_or_else(|| panic!("put: no known apiVersion/kind in {object}"));
        let name = object.pointer("/metadata/name").and_then(Value::as_str).expect("put: metadata.name");
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
        let key = Key::new(kind, namespace, name);
        match self.objects.get(&key) {
            Some(old) => {
                let meta = metadata_mut(&mut object);
                if !meta.contains_key("managedFields")
                    && let Some(managed) = old.pointer("/metadata/managedFields")
                {
                    meta.insert("managedFields".into(), managed.clone());
                }
                self.update(key, object)
            }
            None => self.create(key, object),
        }
    }

    fn commit(&mut self, key: Key, event: EventType, mut object: Value, previous: Option<Value>) -> Value {
        self.rv += 1;
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        if event == EventType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        self.history.push(Change { rv: self.rv, key, event, object: object.clone(), previous });
        self.changes.send_replace(self.rv);
        object
    }

    fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
        self.epoch += 1;
        self.changes.send_replace(self.rv);
    }

    /// The objects as they were at `rv`, undoing later writes; `None` once compacted away.
    fn snapshot_at(&self, rv: u64) -> Option<BTreeMap<Key, Value>> {
        if rv < self.compacted {
            return None;
        }
        let mut objects = self.objects.clone();
        for change in self.history.iter().rev().take_while(|c| c.rv > rv) {
            match &change.previous {
                Some(previous) => objects.insert(change.key.clone(), previous.clone()),
                None => objects.remove(&change.key),
            };
        }
        Some(objects)
    }
}

/// The objects of `kind` in `objects` that `filter` selects.
fn select(objects: &BTreeMap<Key, Value>, kind: &Kind, filter: &Filter) -> Vec<Value> {
    objects
        .iter()
        .filter(|(key, o)| key.kind == kind && filter.matches(key, o))
        .map(|(_, o)| o.clone())
        .collect()
}

fn list_object(kind: &Kind, rv: u64, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

/// `metadata` of an object, created if missing.
fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    let meta = &mut object["metadata"];
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut().expect("metadata was just made an object")
}

/// Metadata only the server sets; what a client sends there is ignored.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// What the server sets on a new object: identity, uid, creation time, generation.
fn stamp_new(object: &mut Value, key: &Key) {
    object["apiVersion"] = json!(key.kind.api_version());
    object["kind"] = json!(key.kind.kind);
    let has_spec = object.get("spec").is_some();
    let meta = metadata_mut(object);
    for field in SERVER_METADATA.iter().filter(|f| **f != "managedFields") {
        meta.remove(*field);
    }
    meta.insert("name".into(), json!(key.name));
    if key.kind.namespaced {
        meta.insert("namespace".into(), json!(key.namespace));
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(random_uid()));
    meta.insert("creationTimestamp".into(), json!(now()));
    if has_spec {
        meta.insert("generation".into(), json!(1));
    }
    if key.kind.is_namespace() {
        default_namespace(object, &key.name);
    }
}

/// The defaults the real server gives a Namespace.
fn default_namespace(object: &mut Value, name: &str) {
    let meta = metadata_mut(object);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    labels["kubernetes.io/metadata.name"] = json!(name);
    object["spec"]["finalizers"] = json!(["kubernetes"]);
    object["status"]["phase"] = json!("Active");
}

/// An update keeps the object's identity and server-set metadata; generation counts changes
/// outside metadata and status.
fn keep_server_fields(old: &Value, new: &mut Value) {
    let spec_changed = without_metadata_and_status(old) != without_metadata_and_status(new);
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    let old_meta = &old["metadata"];
    let meta = metadata_mut(new);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "generation",
        "deletionTimestamp",
    ] {
        match old_meta.get(field) {
            Some(value) => meta.insert(field.into(), value.clone()),
            None => meta.remove(field),
        };
    }
    if spec_changed && let Some(generation) = old_meta.get("generation").and_then(Value::as_i64) {
        meta.insert("generation".into(), json!(generation + 1));
    }
}

fn without_metadata_and_status(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

// ---------------------------------------------------------------------------------------------
// Selectors

/// Which objects a list, watch or deletecollection is about.
#[derive(Debug, Default)]
struct Filter {
    namespace: Option<String>,
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl Filter {
    fn from_request(
        request: &HttpRequest,
        kind: &Kind,
        namespace: Option<String>,
    ) -> Result<Filter, HttpResponse> {
        let labels = parse_label_selector(&request.param("labelSelector").unwrap_or_default());
        let fields = parse_field_selector(kind, &request.param("fieldSelector").unwrap_or_default());
        Ok(Filter { namespace, labels: labels.map_err(bad_request)?, fields: fields.map_err(bad_request)? })
    }

    fn matches(&self, key: &Key, object: &Value) -> bool {
        self.namespace.as_ref().is_none_or(|ns| key.namespace == *ns)
            && self.labels.iter().all(|r| r.matches(object.pointer("/metadata/labels")))
            && self.fields.iter().all(|r| r.matches(object))
    }
}

#[derive(Debug)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl LabelRequirement {
    fn matches(&self, labels: Option<&Value>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        match self {
            LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
            LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            LabelRequirement::In(key, values) => label(key).is_some_and(|l| values.iter().any(|v| v == l)),
            LabelRequirement::NotIn(key, values) => label(key).is_none_or(|l| !values.iter().any(|v| v == l)),
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::NotExists(key) => label(key).is_none(),
        }
    }
}

/// `a=b,c!=d,e,!f,g in (h,i),j notin (k)`: every requirement must hold.
fn parse_label_selector(selector: &str) -> Result<Vec<LabelRequirement>, String> {
    split_outside_parentheses(selector).into_iter().map(parse_label_requirement).collect()
}

/// Splits at commas that are not inside a set like `(a,b)`; drops empty terms.
fn split_outside_parentheses(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

fn parse_label_requirement(term: &str) -> Result<LabelRequirement, String> {
    let invalid = || format!("unable to parse requirement: {term:?}");
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::NotExists(key.trim().to_string()));
    }
    if let Some(open) = term.find('(') {
        let (head, set) = term.split_at(open);
        let mut words = head.split_whitespace();
        let (Some(key), Some(operator), None) = (words.next(), words.next(), words.next()) else {
            return Err(invalid());
        };
        let set = set.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(invalid)?;
        let values = set.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).collect();
        return match operator {
            "in" => Ok(LabelRequirement::In(key.to_string(), values)),
            "notin" => Ok(LabelRequirement::NotIn(key.to_string(), values)),
            _ => Err(invalid()),
        };
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(key.trim().to_string(), value.trim().to_string()));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::Equals(key.trim().to_string(), value.trim().to_string()));
    }
    if term.contains(char::is_whitespace) {
        return Err(invalid());
    }
    Ok(LabelRequirement::Exists(term.to_string()))
}

#[derive(Debug)]
struct FieldRequirement {
    field: String,
    value: String,
    equal: bool,
}

impl FieldRequirement {
    fn matches(&self, object: &Value) -> bool {
        let pointer = format!("/{}", self.field.replace('.', "/"));
        let actual = match object.pointer(&pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        (actual == self.value) == self.equal
    }
}

/// `spec.nodeName=node-1,status.phase!=Failed`, only over fields the real server can select by.
fn parse_field_selector(kind: &Kind, selector: &str) -> Result<Vec<FieldRequirement>, String> {
    let terms = selector.split(',').map(str::trim).filter(|t| !t.is_empty());
    terms
        .map(|term| {
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, true)
            } else {
                return Err(format!("invalid selector: '{term}'; can't understand '{term}'"));
            };
            let field = field.trim();
            let selectable = matches!(field, "metadata.name" | "metadata.namespace")
                || (kind.kind == "Pod" && POD_SELECTABLE_FIELDS.contains(&field));
            if !selectable {
                return Err(format!("field label not supported: {field}"));
            }
            Ok(FieldRequirement { field: field.to_string(), value: value.trim().to_string(), equal })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Field management (server-side apply)

/// A field's path from the object's root, e.g. `["spec", "replicas"]`.
type FieldPath = Vec<String>;
type FieldSet = BTreeSet<FieldPath>;

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
struct FieldManager {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    fields: FieldSet,
}

impl FieldManager {
    fn is(&self, manager: &str, operation: &str) -> bool {
        self.manager == manager && self.operation == operation
    }

    fn from_json(entry: &Value) -> Option<FieldManager> {
        let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_string);
        let mut fields = FieldSet::new();
        if let Some(root) = entry.get("fieldsV1").and_then(Value::as_object) {
            collect_fields_v1(root, &mut Vec::new(), &mut fields);
        }
        Some(FieldManager {
            manager: text("manager")?,
            operation: text("operation")?,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time").unwrap_or_default(),
            fields,
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&self.fields),
        })
    }

    /// How the real server names a manager in a conflict message.
    fn describe(&self) -> String {
        if self.operation == "Update" {
            format!("{:?} using {} at {}", self.manager, self.api_version, self.time)
        } else {
            format!("{:?} using {}", self.manager, self.api_version)
        }
    }
}

fn managers_of(object: &Value) -> Vec<FieldManager> {
    let entries = object.pointer("/metadata/managedFields").and_then(Value::as_array);
    entries.into_iter().flatten().filter_map(FieldManager::from_json).collect()
}

/// Writes the managers back, dropping those that own nothing any more.
fn store_managers(object: &mut Value, managers: Vec<FieldManager>) {
    let entries: Vec<Value> =
        managers.iter().filter(|m| !m.fields.is_empty()).map(FieldManager::to_json).collect();
    let meta = metadata_mut(object);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(entries));
    }
}

/// The real `fieldsV1` shape: `{"f:spec": {"f:replicas": {}}}`; a field owned together with fields
/// inside it is marked `".": {}`. Lists are owned whole (atomic), as leaves.
fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for (depth, segment) in path.iter().enumerate() {
            let key = format!("f:{segment}");
            let existed = node.contains_key(&key);
            let child = node
                .entry(key)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are maps");
            // A leaf inserted earlier (paths come sorted, parents first) that now gets children.
            if existed && child.is_empty() && depth + 1 < path.len() {
                child.insert(".".into(), json!({}));
            }
            node = child;
        }
        if !node.is_empty() {
            node.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

/// Reads `fieldsV1` back; list entries (`k:`/`v:` keys, from a real server) count as their list.
fn collect_fields_v1(node: &Map<String, Value>, path: &mut FieldPath, out: &mut FieldSet) {
    let children: Vec<(&str, &Value)> =
        node.iter().filter_map(|(k, v)| k.strip_prefix("f:").map(|name| (name, v))).collect();
    if !path.is_empty() && (children.is_empty() || node.contains_key(".")) {
        out.insert(path.clone());
    }
    for (name, child) in children {
        path.push(name.to_string());
        if let Some(child) = child.as_object() {
            collect_fields_v1(child, path, out);
        }
        path.pop();
    }
}

/// The part of an object managers can own: not its type and identity, not what the server sets.
fn owned_view(object: &Value) -> Value {
    let mut view = object.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
            for field in SERVER_METADATA {
                meta.remove(*field);
            }
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    view
}

/// Every leaf (a scalar, a list, or an empty map) under `value`.
fn leaf_paths(value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect_leaves(value, &mut Vec::new(), &mut out);
    out
}

fn collect_leaves(value: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(key.clone());
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        _ if !path.is_empty() => {
            out.insert(path.clone());
        }
        _ => {}
    }
}

/// The leaves of `new` that a write set to a different value than `old` had.
fn changed_leaves(old: Option<&Value>, new: &Value) -> FieldSet {
    let new = owned_view(new);
    let old = old.map(owned_view);
    let before = |path: &FieldPath| old.as_ref().and_then(|o| value_at(o, path));
    leaf_paths(&new).into_iter().filter(|path| before(path) != value_at(&new, path)).collect()
}

fn value_at<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |node, key| node.get(key))
}

/// Two paths overlap when one is the other or inside it.
fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn display_path(path: &[String]) -> String {
    path.iter().map(|segment| format!(".{segment}")).collect()
}

/// Removes a field; maps it leaves empty below the top level go too.
fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let Some(parent) = parents.iter().try_fold(&mut *object, |node, key| node.get_mut(key)) else { return };
    let Some(map) = parent.as_object_mut() else { return };
    map.remove(last);
    if map.is_empty() && parents.len() > 1 {
        remove_at(object, parents);
    }
}

/// Apply semantics: maps merge, everything else (lists included) is replaced.
fn merge_applied(target: &mut Value, patch: &Value) {
    if let (Value::Object(target), Value::Object(patch)) = (&mut *target, patch) {
        for (key, value) in patch {
            match target.get_mut(key) {
                Some(existing) => merge_applied(existing, value),
                None => {
                    target.insert(key.clone(), value.clone());
                }
            }
        }
        return;
    }
    *target = patch.clone();
}

/// RFC 7386 JSON merge patch: maps merge, `null` deletes, the rest is replaced.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().expect("target was just made a map");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// A non-apply write (create, update, merge patch) makes `manager` (operation Update) the owner of
/// the fields it changed, taking them from everyone else.
fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str) {
    let changed = changed_leaves(old, new);
    let mut managers = old.map(managers_of).unwrap_or_default();
    if !changed.is_empty() {
        for other in managers.iter_mut().filter(|m| !m.is(manager, "Update")) {
            other.fields.retain(|owned| !changed.iter().any(|c| overlaps(owned, c)));
        }
        let entry = upsert_manager(&mut managers, manager, "Update");
        entry.fields.extend(changed);
        entry.api_version = api_version.to_string();
        entry.time = now();
    }
    forget_missing_fields(&mut managers, new);
    store_managers(new, managers);
}

fn upsert_manager<'m>(
    managers: &'m mut Vec<FieldManager>,
    manager: &str,
    operation: &str,
) -> &'m mut FieldManager {
    let index = match managers.iter().position(|m| m.is(manager, operation)) {
        Some(index) => index,
        None => {
            managers.push(FieldManager {
                manager: manager.to_string(),
                operation: operation.to_string(),
                api_version: String::new(),
                time: String::new(),
                fields: FieldSet::new(),
            });
            managers.len() - 1
        }
    };
    &mut managers[index]
}

/// Nobody owns a field the object no longer has.
fn forget_missing_fields(managers: &mut [FieldManager], object: &Value) {
    for manager in managers {
        manager.fields.retain(|path| value_at(object, path).is_some());
    }
}

/// A field another manager owns with a different value than an apply sets.
struct Conflict {
    manager: FieldManager,
    path: FieldPath,
}

/// A new object made by server-side apply.
fn new_applied(patch: &Value, manager: &str, kind: &Kind) -> Value {
    let mut object = patch.clone();
    let meta = metadata_mut(&mut object);
    for field in SERVER_METADATA {
        meta.remove(*field);
    }
    let fields = leaf_paths(&owned_view(patch));
    let entry = FieldManager {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: kind.api_version(),
        time: now(),
        fields,
    };
    store_managers(&mut object, vec![entry]);
    object
}

/// Server-side apply of `patch` by `manager` to an existing object.
fn apply_to(
    current: &Value,
    patch: &Value,
    manager: &str,
    force: bool,
    kind: &Kind,
) -> Result<Value, HttpResponse> {
    let intent = owned_view(patch);
    let applied = leaf_paths(&intent);
    let mut managers = managers_of(current);
    let conflicts = find_conflicts(&managers, manager, &applied, current, &intent);
    if !conflicts.is_empty() {
        if !force {
            return Err(apply_conflict(&conflicts));
        }
        take_conflicting_fields(&mut managers, &conflicts);
    }
    let mut object = current.clone();
    remove_dropped_fields(&mut object, &managers, manager, &applied);
    merge_applied(&mut object, &intent);
    let entry = upsert_manager(&mut managers, manager, "Apply");
    // The real server leaves the entry (and its time) alone when the manager's set is unchanged.
    if entry.fields != applied || entry.api_version != kind.api_version() {
        entry.fields = applied;
        entry.api_version = kind.api_version();
        entry.time = now();
    }
    forget_missing_fields(&mut managers, &object);
    store_managers(&mut object, managers);
    Ok(object)
}

fn find_conflicts(
    managers: &[FieldManager],
    manager: &str,
    applied: &FieldSet,
    current: &Value,
    intent: &Value,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for other in managers.iter().filter(|m| !m.is(manager, "Apply")) {
        for path in applied {
            let owned = other.fields.iter().any(|f| overlaps(f, path));
            if owned && value_at(current, path) != value_at(intent, path) {
                conflicts.push(Conflict { manager: other.clone(), path: path.clone() });
            }
        }
    }
    conflicts
}

/// A forced apply takes the conflicting fields from their owners.
fn take_conflicting_fields(managers: &mut [FieldManager], conflicts: &[Conflict]) {
    for conflict in conflicts {
        for owner in
            managers.iter_mut().filter(|m| m.is(&conflict.manager.manager, &conflict.manager.operation))
        {
            owner.fields.retain(|f| !overlaps(f, &conflict.path));
        }
    }
}

/// Fields the manager applied before but left out now are removed, unless someone else owns them.
fn remove_dropped_fields(object: &mut Value, managers: &[FieldManager], manager: &str, applied: &FieldSet) {
    let Some(previous) = managers.iter().find(|m| m.is(manager, "Apply")) else { return };
    for dropped in previous.fields.difference(applied) {
        let owned_elsewhere = managers
            .iter()
            .filter(|m| !m.is(manager, "Apply"))
            .any(|m| m.fields.iter().any(|f| overlaps(f, dropped)));
        if !owned_elsewhere {
            remove_at(object, dropped);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Status objects, as the real server sends them

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

type Outcome = Result<HttpResponse, HttpResponse>;

fn json_response(status: u16, body: &Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(body).expect("JSON values serialize"),
    }
}

fn status_object(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

fn status_response(code: u16, reason: &str, message: &str, details: Option<Value>) -> HttpResponse {
    json_response(code, &status_object(code, reason, message, details))
}

/// `details` naming an object: `{"name": .., "group": .., "kind": <resource>}`.
fn object_details(resource: &str, group: &str, name: &str) -> Value {
    let mut details = json!({"kind": resource});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    details
}

fn unauthorized() -> HttpResponse {
    status_response(401, "Unauthorized", "Unauthorized", None)
}

fn forbidden(user: &str, info: &RequestInfo) -> HttpResponse {
    let scope = match &info.namespace {
        Some(namespace) => format!("in the namespace {namespace:?}"),
        None => "at the cluster scope".to_string(),
    };
    let why = format!(
        "User {user:?} cannot {} resource {:?} in API group {:?} {scope}",
        info.verb,
        info.rbac_resource(),
        info.group
    );
    let resource = qualified_resource(&info.resource, &info.group);
    let name = info.name.clone().unwrap_or_default();
    let message = if name.is_empty() {
        format!("{resource} is forbidden: {why}")
    } else {
        format!("{resource} {name:?} is forbidden: {why}")
    };
    status_response(403, "Forbidden", &message, Some(object_details(&info.resource, &info.group, &name)))
}

fn not_found(kind: &Kind, name: &str) -> HttpResponse {
    let message = format!("{} {name:?} not found", kind.qualified());
    status_response(404, "NotFound", &message, Some(object_details(kind.resource, kind.group, name)))
}

fn no_such_resource() -> HttpResponse {
    status_response(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
}

fn already_exists(kind: &Kind, name: &str) -> HttpResponse {
    let message = format!("{} {name:?} already exists", kind.qualified());
    status_response(409, "AlreadyExists", &message, Some(object_details(kind.resource, kind.group, name)))
}

fn modified_since(kind: &Kind, name: &str) -> HttpResponse {
    let message = format!(
        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
        kind.qualified()
    );
    status_response(409, "Conflict", &message, Some(object_details(kind.resource, kind.group, name)))
}

fn apply_conflict(conflicts: &[Conflict]) -> HttpResponse {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager.describe()),
                "field": display_path(&c.path),
            })
        })
        .collect();
    status_response(409, "Conflict", &apply_conflict_message(conflicts), Some(json!({"causes": causes})))
}

/// The real wording: one conflict on one line, several grouped by manager (sorted).
fn apply_conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager.describe(),
            display_path(&only.path)
        );
    }
    let mut by_manager: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for conflict in conflicts {
        by_manager.entry(conflict.manager.describe()).or_default().push(display_path(&conflict.path));
    }
    let mut lines = Vec::new();
    for (manager, paths) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

fn bad_request(message: String) -> HttpResponse {
    status_response(400, "BadRequest", &message, None)
}

fn invalid(kind: &Kind, name: &str, field: &str, message: &str) -> HttpResponse {
    let text = format!("{} {name:?} is invalid: {field}: {message}", kind.kind);
    let mut details = object_details(kind.resource, kind.group, name);
    details["kind"] = json!(kind.kind);
    details["causes"] = json!([{"reason": "FieldValueRequired", "message": message, "field": field}]);
    status_response(422, "Invalid", &text, Some(details))
}

fn expired_status(rv: u64, oldest: u64) -> Value {
    status_object(410, "Expired", &format!("too old resource version: {rv} ({oldest})"), None)
}

fn too_large_resource_version(rv: u64, current: u64) -> HttpResponse {
    let details = json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    });
    let message = format!("Too large resource version: {rv}, current: {current}");
    status_response(504, "Timeout", &message, Some(details))
}

fn unsupported_media_type(content_type: &str) -> HttpResponse {
    let message = format!(
        "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    status_response(415, "UnsupportedMediaType", &message, None)
}

fn service_unavailable(message: &str) -> HttpResponse {
    status_response(503, "ServiceUnavailable", message, None)
}

// ---------------------------------------------------------------------------------------------
// Requests: parsing what kube-rs sends

struct HttpRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    peer: SocketAddr,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    fn bearer_token(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ").map(str::trim)
    }

    /// The media type without parameters.
    fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or_default().split(';').next().unwrap_or_default().trim()
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun").is_some()
    }

    /// Who an Update is recorded for: `fieldManager`, else the user agent's program name.
    fn update_manager(&self) -> String {
        let from_agent =
            || self.header("user-agent").map(|ua| ua.split('/').next().unwrap_or_default().to_string());
        self.param("fieldManager")
            .filter(|m| !m.is_empty())
            .or_else(from_agent)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (percent_decode(key) == name).then(|| percent_decode(value)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the apiserver derives from a resource request's path and method, for RBAC and routing.
struct RequestInfo {
    verb: String,
    group: String,
    version: String,
    resource: String,
    /// As the real server sees it: for `/api/v1/namespaces/x` this is `x` too.
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    /// The path after the subresource: what a pods proxy request forwards.
    rest: String,
}

impl RequestInfo {
    /// `None` for paths that are not about resources (`/version`, discovery).
    fn parse(request: &HttpRequest) -> Option<RequestInfo> {
        let segments: Vec<&str> = request.path.split('/').skip(1).collect();
        let (group, version, mut parts) = match segments.as_slice() {
            ["api", version, parts @ ..] => ("", *version, parts),
            ["apis", group, version, parts @ ..] => (*group, *version, parts),
            _ => return None,
        };
        let mut namespace = None;
        if parts.first() == Some(&"namespaces") && parts.len() > 1 {
            namespace = Some(parts[1].to_string());
            // Namespaces have subresources of their own; anything else is a namespaced resource.
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        let present = |i: usize| parts.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string());
        let resource = present(0)?;
        let name = present(1);
        let watch = request.param("watch").is_some_and(|w| w == "true" || w == "1");
        Some(RequestInfo {
            verb: verb_for(&request.method, name.is_some(), watch),
            group: group.to_string(),
            version: version.to_string(),
            resource,
            namespace,
            name,
            subresource: present(2),
            rest: parts.get(3..).map(|rest| rest.join("/")).unwrap_or_default(),
        })
    }

    /// `pods`, or `pods/proxy` for a subresource.
    fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }

    fn is_pod_proxy(&self) -> bool {
        self.group.is_empty() && self.resource == "pods" && self.subresource.as_deref() == Some("proxy")
    }
}

/// The verb as the apiserver derives it; `watch=true` only counts on collections.
fn verb_for(method: &str, named: bool, watch: bool) -> String {
    let verb = match method {
        "GET" | "HEAD" if named => "get",
        "GET" | "HEAD" if watch => "watch",
        "GET" | "HEAD" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" if named => "delete",
        "DELETE" => "deletecollection",
        other => return other.to_lowercase(),
    };
    verb.to_string()
}

// ---------------------------------------------------------------------------------------------
// Serving resource requests

enum Reply {
    Full(HttpResponse),
    Watch(Box<WatchPlan>),
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Full(response) => response.status,
            Reply::Watch(_) => 200,
        }
    }
}

/// A resource request after routing.
struct Call<'r> {
    kind: &'static Kind,
    /// The namespace to work in; `None` for cluster-scoped kinds and all-namespace lists.
    namespace: Option<String>,
    name: Option<String>,
    request: &'r HttpRequest,
}

impl Call<'_> {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    fn key(&self) -> Key {
        Key::new(self.kind, self.namespace.as_deref().unwrap_or_default(), self.name())
    }
}

async fn handle(shared: &Shared, request: &HttpRequest) -> Reply {
    let user = shared.store().user(request.bearer_token());
    let reply = match &user {
        None => Reply::Full(unauthorized()),
        Some(user) => route(shared, request, user).await,
    };
    shared.store().record(request, user, reply.status());
    reply
}

async fn route(shared: &Shared, request: &HttpRequest, user: &str) -> Reply {
    let Some(info) = RequestInfo::parse(request) else {
        return Reply::Full(discovery(request));
    };
    let denied = shared.store().authorize(user, &info).err();
    if let Some(denied) = denied {
        return Reply::Full(denied);
    }
    if info.is_pod_proxy() {
        return Reply::Full(proxy(shared, request, &info).await);
    }
    let call = match routed_call(request, &info) {
        Ok(call) => call,
        Err(error) => return Reply::Full(error),
    };
    shared.store().serve(&call)
}

fn routed_call<'r>(request: &'r HttpRequest, info: &RequestInfo) -> Result<Call<'r>, HttpResponse> {
    let kind = Kind::find(&info.group, &info.version, &info.resource).ok_or_else(no_such_resource)?;
    if info.subresource.is_some() {
        return Err(no_such_resource());
    }
    let namespace = match (kind.namespaced, &info.namespace) {
        (true, namespace) => namespace.clone(),
        // A namespace's own path names it as the namespace.
        (false, _) if kind.is_namespace() => None,
        (false, None) => None,
        (false, Some(_)) => return Err(no_such_resource()),
    };
    let across_namespaces = matches!(info.verb.as_str(), "list" | "watch");
    if kind.namespaced && namespace.is_none() && !across_namespaces {
        return Err(no_such_resource());
    }
    Ok(Call { kind, namespace, name: info.name.clone(), request })
}

impl Store {
    fn serve(&mut self, call: &Call) -> Reply {
        let outcome = match call.request.method.as_str() {
            "GET" | "HEAD" if call.name.is_some() => self.read(call),
            "GET" | "HEAD" if call.request.param("watch").is_some_and(|w| w == "true" || w == "1") => {
                return self.watch_plan(call).unwrap_or_else(Reply::Full);
            }
            "GET" | "HEAD" => self.list(call),
            "POST" if call.name.is_none() => self.create_from(call),
            "PUT" if call.name.is_some() => self.replace(call),
            "PATCH" if call.name.is_some() => self.patch(call),
            "DELETE" if call.name.is_some() => self.delete(call),
            "DELETE" => self.delete_collection(call),
            _ => Err(status_response(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                Some(json!({})),
            )),
        };
        Reply::Full(outcome.unwrap_or_else(|error| error))
    }

    fn read(&self, call: &Call) -> Outcome {
        let object = self.objects.get(&call.key()).ok_or_else(|| not_found(call.kind, call.name()))?;
        Ok(json_response(200, object))
    }

    fn list(&self, call: &Call) -> Outcome {
        let filter = Filter::from_request(call.request, call.kind, call.namespace.clone())?;
        let (rv, items) = self.list_at(call, &filter)?;
        Ok(json_response(200, &list_object(call.kind, rv, items)))
    }

    /// resourceVersion semantics of a list: unset or "0" is the latest state; `Exact` is the state
    /// at that version (410 once compacted); otherwise anything not older, i.e. the latest state.
    fn list_at(&self, call: &Call, filter: &Filter) -> Result<(u64, Vec<Value>), HttpResponse> {
        let requested = call.request.param("resourceVersion").unwrap_or_default();
        let exact = call.request.param("resourceVersionMatch").as_deref() == Some("Exact");
        if requested.is_empty() || (requested == "0" && !exact) {
            return Ok((self.rv, select(&self.objects, call.kind, filter)));
        }
        let rv = parse_resource_version(&requested)?;
        if rv > self.rv {
            return Err(too_large_resource_version(rv, self.rv));
        }
        if !exact {
            return Ok((self.rv, select(&self.objects, call.kind, filter)));
        }
        let snapshot =
            self.snapshot_at(rv).ok_or_else(|| json_response(410, &expired_status(rv, self.compacted)))?;
        Ok((rv, select(&snapshot, call.kind, filter)))
    }

    fn create_from(&mut self, call: &Call) -> Outcome {
        let mut object = json_body(call.request)?;
        check_type(call.kind, &mut object)?;
        let namespace = settle_namespace(call.kind, &mut object, call.namespace.as_deref())?;
        let name = settle_new_name(call.kind, &mut object)?;
        self.require_namespace(call.kind, &namespace)?;
        let key = Key::new(call.kind, &namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(already_exists(call.kind, &name));
        }
        record_update(None, &mut object, &call.request.update_manager(), &call.kind.api_version());
        if call.request.dry_run() {
            stamp_new(&mut object, &key);
            return Ok(json_response(201, &object));
        }
        Ok(json_response(201, &self.create(key, object)))
    }

    /// PUT: replaces the object; a resourceVersion in the body must be the current one.
    fn replace(&mut self, call: &Call) -> Outcome {
        let mut object = json_body(call.request)?;
        check_type(call.kind, &mut object)?;
        check_name(&mut object, call.name())?;
        settle_namespace(call.kind, &mut object, call.namespace.as_deref())?;
        let key = call.key();
        let current = self.objects.get(&key).cloned().ok_or_else(|| not_found(call.kind, call.name()))?;
        check_precondition(call, &current, &object)?;
        record_update(Some(&current), &mut object, &call.request.update_manager(), &call.kind.api_version());
        self.write(call, key, object, 200)
    }

    fn patch(&mut self, call: &Call) -> Outcome {
        match call.request.content_type() {
            "application/apply-patch+yaml" => self.apply(call),
            // Strategic merge differs only for lists with merge keys; a merge patch is close enough.
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => self.merge(call),
            other => Err(unsupported_media_type(other)),
        }
    }

    fn merge(&mut self, call: &Call) -> Outcome {
        let patch = json_body(call.request)?;
        let key = call.key();
        let current = self.objects.get(&key).cloned().ok_or_else(|| not_found(call.kind, call.name()))?;
        check_precondition(call, &current, &patch)?;
        let mut object = current.clone();
        merge_patch(&mut object, &patch);
        record_update(Some(&current), &mut object, &call.request.update_manager(), &call.kind.api_version());
        self.write(call, key, object, 200)
    }

    /// Server-side apply: creates the object when absent, else merges what the manager applies
    /// and tracks who owns which field.
    fn apply(&mut self, call: &Call) -> Outcome {
        let manager = call
            .request
            .param("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| bad_request("fieldManager is required for apply requests".into()))?;
        let force = call.request.param("force").as_deref() == Some("true");
        let mut patch = apply_body(call.request)?;
        check_type(call.kind, &mut patch)?;
        check_name(&mut patch, call.name())?;
        let namespace = settle_namespace(call.kind, &mut patch, call.namespace.as_deref())?;
        let key = Key::new(call.kind, &namespace, call.name());
        let Some(current) = self.objects.get(&key).cloned() else {
            self.require_namespace(call.kind, &namespace)?;
            let object = new_applied(&patch, &manager, call.kind);
            if call.request.dry_run() {
                return Ok(json_response(201, &object));
            }
            return Ok(json_response(201, &self.create(key, object)));
        };
        check_precondition(call, &current, &patch)?;
        let object = apply_to(&current, &patch, &manager, force, call.kind)?;
        self.write(call, key, object, 200)
    }

    /// Stores an updated object (unless it is a dry run) and answers with it.
    fn write(&mut self, call: &Call, key: Key, object: Value, status: u16) -> Outcome {
        if call.request.dry_run() {
            return Ok(json_response(status, &object));
        }
        Ok(json_response(status, &self.update(key, object)))
    }

    fn delete(&mut self, call: &Call) -> Outcome {
        let key = call.key();
        let deleted =
            if call.request.dry_run() { self.objects.get(&key).cloned() } else { self.remove(&key) };
        let deleted = deleted.ok_or_else(|| not_found(call.kind, call.name()))?;
        Ok(json_response(200, &deleted))
    }

    fn delete_collection(&mut self, call: &Call) -> Outcome {
        let filter = Filter::from_request(call.request, call.kind, call.namespace.clone())?;
        let keys: Vec<Key> = self
            .objects
            .iter()
            .filter(|(key, object)| key.kind == call.kind && filter.matches(key, object))
            .map(|(key, _)| key.clone())
            .collect();
        let deleted: Vec<Value> = keys.iter().filter_map(|key| self.remove(key)).collect();
        Ok(json_response(200, &list_object(call.kind, self.rv, deleted)))
    }
}

fn parse_resource_version(text: &str) -> Result<u64, HttpResponse> {
    text.parse().map_err(|_| bad_request(format!("invalid resource version: {text:?}")))
}

fn json_body(request: &HttpRequest) -> Result<Value, HttpResponse> {
    let value: Value = serde_json::from_slice(&request.body)
        .map_err(|e| bad_request(format!("couldn't get version/kind; json parse error: {e}")))?;
    if !value.is_object() {
        return Err(bad_request("the body of the request is not a JSON object".into()));
    }
    Ok(value)
}

/// An apply body is YAML (kube-rs sends JSON, which YAML reads too).
fn apply_body(request: &HttpRequest) -> Result<Value, HttpResponse> {
    let value: Value = match serde_json::from_slice(&request.body) {
        Ok(value) => value,
        Err(_) => serde_yaml::from_slice(&request.body)
            .map_err(|e| bad_request(format!("error decoding YAML: {e}")))?,
    };
    if !value.is_object() {
        return Err(bad_request("the body of the request is not an object".into()));
    }
    Ok(value)
}

/// The body's apiVersion and kind must be the endpoint's; missing ones are filled in.
fn check_type(kind: &Kind, object: &mut Value) -> Result<(), HttpResponse> {
    let expected = kind.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(api_version) if api_version != expected => {
            return Err(bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )));
        }
        Some(_) => {}
        None => object["apiVersion"] = json!(expected),
    }
    match object.get("kind").and_then(Value::as_str) {
        Some(found) if found != kind.kind => Err(bad_request(format!(
            "the kind in the data ({found}) does not match the expected kind ({})",
            kind.kind
        ))),
        Some(_) => Ok(()),
        None => {
            object["kind"] = json!(kind.kind);
            Ok(())
        }
    }
}

fn check_name(object: &mut Value, url_name: &str) -> Result<(), HttpResponse> {
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() && name != url_name => Err(bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({url_name})"
        ))),
        _ => {
            metadata_mut(object).insert("name".into(), json!(url_name));
            Ok(())
        }
    }
}

/// Puts the request's namespace into the object (clearing it for cluster-scoped kinds); returns it.
fn settle_namespace(
    kind: &Kind,
    object: &mut Value,
    namespace: Option<&str>,
) -> Result<String, HttpResponse> {
    let meta = metadata_mut(object);
    if !kind.namespaced {
        meta.remove("namespace");
        return Ok(String::new());
    }
    let namespace = namespace.unwrap_or_default();
    match meta.get("namespace").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != namespace => Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        )),
        _ => {
            meta.insert("namespace".into(), json!(namespace));
            Ok(namespace.to_string())
        }
    }
}

/// The name of an object to create, made from `generateName` when it has none.
fn settle_new_name(kind: &Kind, object: &mut Value) -> Result<String, HttpResponse> {
    let meta = metadata_mut(object);
    if let Some(name) = meta.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        return Ok(name.to_string());
    }
    let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) else {
        return Err(invalid(kind, "", "metadata.name", "Required value: name or generateName is required"));
    };
    let name = format!("{prefix}{}", name_suffix());
    meta.insert("name".into(), json!(name));
    Ok(name)
}

/// A resourceVersion in a write's body is a precondition: it must be the stored one.
fn check_precondition(call: &Call, current: &Value, body: &Value) -> Result<(), HttpResponse> {
    let wanted = body.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
    let stored = current.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
    if !wanted.is_empty() && wanted != stored {
        return Err(modified_since(call.kind, call.name()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Discovery and version

fn discovery(request: &HttpRequest) -> HttpResponse {
    let path = request.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => json_response(200, &version_info()),
        ["api"] => {
            let address = request.header("host").unwrap_or_default();
            json_response(
                200,
                &json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
                }),
            )
        }
        ["apis"] => json_response(200, &api_group_list()),
        ["api", version] => resource_list("", version),
        ["apis", group, version] => resource_list(group, version),
        _ => no_such_resource(),
    }
}

/// `version.Info` of a v1.33.0 server.
fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:07:48Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn api_group_list() -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for kind in KINDS.iter().filter(|k| !k.group.is_empty()) {
        if groups.iter().any(|g| g["name"] == kind.group) {
            continue;
        }
        let version = json!({"groupVersion": kind.api_version(), "version": kind.version});
        groups.push(json!({"name": kind.group, "versions": [version], "preferredVersion": version}));
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(group: &str, version: &str) -> HttpResponse {
    let kinds: Vec<&Kind> = KINDS.iter().filter(|k| k.group == group && k.version == version).collect();
    let Some(first) = kinds.first() else { return no_such_resource() };
    let verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
    let mut resources: Vec<Value> = kinds
        .iter()
        .map(|k| {
            json!({
                "name": k.resource,
                "singularName": k.kind.to_lowercase(),
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": verbs,
            })
        })
        .collect();
    if group.is_empty() {
        resources.push(json!({
            "name": "pods/proxy",
            "singularName": "",
            "namespaced": true,
            "kind": "PodProxyOptions",
            "verbs": ["create", "delete", "get", "patch", "update"],
        }));
    }
    let list = json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": first.api_version(),
        "resources": resources,
    });
    json_response(200, &list)
}

// ---------------------------------------------------------------------------------------------
// Watches

/// A watch, planned under the store's lock and then streamed without it.
struct WatchPlan {
    kind: &'static Kind,
    filter: Filter,
    /// Events after this resourceVersion are still to be sent.
    cursor: u64,
    epoch: u64,
    /// ADDED events for the current objects, when the watch starts from "now" (rv unset or "0").
    initial: Vec<Value>,
    /// `sendInitialEvents`: end the initial events with a marked bookmark.
    initial_end: bool,
    bookmarks: bool,
    timeout: Duration,
    changes: watch::Receiver<u64>,
}

enum WatchStep {
    Events(Vec<Value>, u64),
    Expired(Value),
}

impl Store {
    fn watch_plan(&mut self, call: &Call) -> Result<Reply, HttpResponse> {
        let request = call.request;
        let filter = Filter::from_request(request, call.kind, call.namespace.clone())?;
        let from = request.param("resourceVersion").unwrap_or_default();
        let initial_events = request.param("sendInitialEvents").as_deref() == Some("true");
        let bookmarks = request.param("allowWatchBookmarks").as_deref() == Some("true");
        let timeout =
            request.param("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(DEFAULT_WATCH_SECONDS);
        let (initial, cursor) = if from.is_empty() || from == "0" || initial_events {
            let current = select(&self.objects, call.kind, &filter);
            (current.into_iter().map(|o| watch_event("ADDED", o)).collect(), self.rv)
        } else {
            (Vec::new(), parse_resource_version(&from)?)
        };
        Ok(Reply::Watch(Box::new(WatchPlan {
            kind: call.kind,
            filter,
            cursor,
            epoch: self.epoch,
            initial,
            initial_end: initial_events && bookmarks,
            bookmarks,
            timeout: Duration::from_secs(timeout),
            changes: self.changes.subscribe(),
        })))
    }

    /// The events a watch has not seen yet, or its 410 once the history it needs is gone.
    fn watch_step(&self, plan: &WatchPlan) -> WatchStep {
        if plan.epoch != self.epoch || plan.cursor < self.compacted {
            let error = json!({"type": "ERROR", "object": expired_status(plan.cursor, self.compacted)});
            return WatchStep::Expired(error);
        }
        let start = self.history.partition_point(|c| c.rv <= plan.cursor);
        let events = self.history[start..]
            .iter()
            .filter(|c| c.key.kind == plan.kind)
            .filter_map(|c| filtered_event(c, &plan.filter))
            .collect();
        WatchStep::Events(events, self.rv)
    }
}

/// A change as a watch with selectors sees it: an object that starts matching is ADDED, one that
/// stops matching is DELETED (as it was, at the change's resourceVersion), as on the real server.
fn filtered_event(change: &Change, filter: &Filter) -> Option<Value> {
    let was = change.previous.as_ref().is_some_and(|p| filter.matches(&change.key, p));
    let is = change.event != EventType::Deleted && filter.matches(&change.key, &change.object);
    match (was, is) {
        (false, false) => None,
        (false, true) => Some(watch_event("ADDED", change.object.clone())),
        (true, true) => Some(watch_event("MODIFIED", change.object.clone())),
        (true, false) => {
            let mut gone = change.previous.clone().expect("a matching previous object");
            metadata_mut(&mut gone).insert("resourceVersion".into(), json!(change.rv.to_string()));
            Some(watch_event("DELETED", gone))
        }
    }
}

fn watch_event(event: &str, object: Value) -> Value {
    json!({"type": event, "object": object})
}

/// A bookmark: an object of the watched kind with only its resourceVersion.
fn bookmark(kind: &Kind, rv: u64, initial_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    watch_event(
        "BOOKMARK",
        json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": metadata}),
    )
}

enum Wake {
    Changed,
    Bookmark,
    Deadline,
    ClientGone,
}

/// Streams a watch as chunked newline-delimited JSON until its timeout, a 410, or the client
/// leaves. Returns whether the connection can serve another request.
async fn stream_watch(
    shared: &Shared,
    mut plan: WatchPlan,
    reader: &mut BufReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
) -> io::Result<bool> {
    writer
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await?;
    for event in std::mem::take(&mut plan.initial) {
        write_chunk(writer, &event).await?;
    }
    if plan.initial_end {
        write_chunk(writer, &bookmark(plan.kind, plan.cursor, true)).await?;
    }
    let deadline = Instant::now() + plan.timeout;
    let mut next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
    loop {
        let step = shared.store().watch_step(&plan);
        match step {
            WatchStep::Expired(error) => {
                write_chunk(writer, &error).await?;
                break;
            }
            WatchStep::Events(events, cursor) => {
                for event in &events {
                    write_chunk(writer, event).await?;
                }
                plan.cursor = cursor;
            }
        }
        let wake = tokio::select! {
            _ = plan.changes.changed() => Wake::Changed,
            _ = tokio::time::sleep_until(next_bookmark), if plan.bookmarks => Wake::Bookmark,
            _ = tokio::time::sleep_until(deadline) => Wake::Deadline,
            _ = client_gone(reader) => Wake::ClientGone,
        };
        match wake {
            Wake::Changed => {}
            Wake::Bookmark => {
                // Every event up to the cursor has been sent, so the client may resume from it.
                write_chunk(writer, &bookmark(plan.kind, plan.cursor, false)).await?;
                next_bookmark = Instant::now() + BOOKMARK_INTERVAL;
            }
            Wake::Deadline => break,
            Wake::ClientGone => return Ok(false),
        }
    }
    writer.write_all(b"0\r\n\r\n").await?;
    Ok(true)
}

/// Resolves when the client closes the connection (it sends nothing else during a watch).
async fn client_gone(reader: &mut BufReader<OwnedReadHalf>) {
    let mut buffer = [0u8; 256];
    while let Ok(read) = reader.read(&mut buffer).await {
        if read == 0 {
            return;
        }
    }
}

async fn write_chunk(writer: &mut OwnedWriteHalf, event: &Value) -> io::Result<()> {
    let mut line = serde_json::to_vec(event).expect("JSON values serialize");
    line.push(b'\n');
    let mut chunk = format!("{:x}\r\n", line.len()).into_bytes();
    chunk.extend_from_slice(&line);
    chunk.extend_from_slice(b"\r\n");
    writer.write_all(&chunk).await
}

// ---------------------------------------------------------------------------------------------
// The pods proxy

/// Forwards a request on `pods/{name}[:{port}]/proxy/{rest}` to the pod, as the real apiserver
/// does: without the caller's `Authorization` (consumed by authentication) or hop-by-hop headers.
async fn proxy(shared: &Shared, request: &HttpRequest, info: &RequestInfo) -> HttpResponse {
    let address = match shared.store().pod_address(info) {
        Ok(address) => address,
        Err(error) => return error,
    };
    let query = if request.query.is_empty() { String::new() } else { format!("?{}", request.query) };
    let url = format!("http://{address}/{}{query}", info.rest);
    match forward(&shared.upstream, request, &url).await {
        Ok(response) => response,
        Err(error) => {
            service_unavailable(&format!("error trying to reach service: {}", dial_failure(&error, &address)))
        }
    }
}

impl Store {
    /// `ip:port` of the pod a proxy request names: `name`, `name:port` or `scheme:name:port`.
    fn pod_address(&self, info: &RequestInfo) -> Result<String, HttpResponse> {
        let segment = info.name.as_deref().unwrap_or_default();
        let (name, port) = match segment.split(':').collect::<Vec<_>>().as_slice() {
            [name, port] | [_, name, port] => {
                (name.to_string(), Some(port.to_string()).filter(|p| !p.is_empty()))
            }
            _ => (segment.to_string(), None),
        };
        let pods = Kind::known("", "pods");
        let key = Key::new(pods, info.namespace.as_deref().unwrap_or_default(), &name);
        let pod = self.objects.get(&key).ok_or_else(|| not_found(pods, &name))?;
        let port = pod_port(pod, port.as_deref());
        let ip = pod.pointer("/status/podIP").and_then(Value::as_str).unwrap_or_default();
        if ip.is_empty() {
            return Err(service_unavailable("error trying to reach service: dial tcp: missing address"));
        }
        Ok(if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") })
    }
}

/// The port to dial: the given number, a container port's name, or else the first container port.
fn pod_port(pod: &Value, port: Option<&str>) -> String {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    let mut ports = containers.into_iter().flatten().filter_map(|c| c.get("ports")?.as_array()).flatten();
    let number = |p: &Value| p.get("containerPort").map(Value::to_string);
    match port {
        Some(port) if port.parse::<u16>().is_ok() => port.to_string(),
        Some(name) => ports
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(number)
            .unwrap_or(name.into()),
        None => ports.next().and_then(number).unwrap_or_else(|| "80".into()),
    }
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

async fn forward(
    client: &reqwest::Client,
    request: &HttpRequest,
    url: &str,
) -> Result<HttpResponse, reqwest::Error> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut upstream = client.request(method, url).body(request.body.clone());
    for (name, value) in &request.headers {
        let name = name.to_ascii_lowercase();
        if name != "authorization" && !HOP_BY_HOP.contains(&name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    let response = upstream.header("X-Forwarded-For", request.peer.ip().to_string()).send().await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body = response.bytes().await?.to_vec();
    Ok(HttpResponse { status, headers, body })
}

/// The Go dialer's wording for why the pod could not be reached.
fn dial_failure(error: &reqwest::Error, address: &str) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return match io.kind() {
                io::ErrorKind::ConnectionRefused => {
                    format!("dial tcp {address}: connect: connection refused")
                }
                io::ErrorKind::TimedOut => format!("dial tcp {address}: i/o timeout"),
                _ => format!("dial tcp {address}: {io}"),
            };
        }
        source = cause.source();
    }
    if error.is_timeout() { format!("dial tcp {address}: i/o timeout") } else { error.to_string() }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 on tokio

fn run_server(shared: Arc<Shared>, listener: std::net::TcpListener, stopped: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the test API server");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        tokio::select! {
            _ = accept_connections(shared, listener) => {}
            // The ApiServer was dropped; dropping the runtime closes every connection.
            _ = stopped => {}
        }
    });
}

async fn accept_connections(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        if let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(serve_connection(Arc::clone(&shared), stream, peer));
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    // A connection that breaks only ends itself.
    let _ = converse(&shared, stream, peer).await;
}

/// Requests one after another on a kept-alive connection (hyper does not pipeline).
async fn converse(shared: &Shared, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
    let (read, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader, peer).await? {
        let close = request.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        match handle(shared, &request).await {
            Reply::Full(response) => write_response(&mut writer, &request, &response).await?,
            Reply::Watch(plan) => {
                if !stream_watch(shared, *plan, &mut reader, &mut writer).await? {
                    return Ok(());
                }
            }
        }
        if close {
            break;
        }
    }
    Ok(())
}

async fn read_request(
    reader: &mut BufReader<OwnedReadHalf>,
    peer: SocketAddr,
) -> io::Result<Option<HttpRequest>> {
    let Some(head) = http::read_head(reader).await? else { return Ok(None) };
    let body = http::read_body(reader, &head).await?;
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    Ok(Some(HttpRequest {
        method: head.method.clone(),
        path: path.to_string(),
        query: query.to_string(),
        headers: head.headers,
        body,
        peer,
    }))
}

async fn write_response(
    writer: &mut OwnedWriteHalf,
    request: &HttpRequest,
    response: &HttpResponse,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, http::reason_phrase(response.status));
    for (name, value) in &response.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let bodiless = matches!(response.status, 204 | 304);
    if !bodiless {
        let _ = write!(head, "Content-Length: {}\r\n", response.body.len());
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !bodiless && request.method != "HEAD" {
        bytes.extend_from_slice(&response.body);
    }
    writer.write_all(&bytes).await
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    RandomState::new().hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A version-4-shaped UUID.
fn random_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// The five characters the real server appends to a `generateName`.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

// =============================================================================================
// Tests: the server through the real kube-rs client, configured from a kubeconfig it wrote

const NAMESPACE: &str = "egressor";

fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a test runtime")
}

/// A kube-rs client for `token`, built the way the CLI builds one: from a kubeconfig file.
async fn client_for(server: &ApiServer, token: &str) -> kube::Client {
    kube::Client::try_from(config_for(server, token).await).expect("a kube client")
}

async fn config_for(server: &ApiServer, token: &str) -> kube::Config {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path, token, "lab");
    config_from(&path, "lab").await
}

async fn config_from(path: &Path, context: &str) -> kube::Config {
    let kubeconfig = Kubeconfig::read_from(path).expect("read the kubeconfig");
    let options = KubeConfigOptions { context: Some(context.into()), ..Default::default() };
    kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("a kube config")
}

/// The next item of a stream. (This crate has no `futures`; kube's `WatchStreamExt` is a `Stream`.)
async fn next_item<S: WatchStreamExt + Unpin>(stream: &mut S) -> S::Item {
    let item = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx));
    let item = tokio::time::timeout(Duration::from_secs(10), item).await.expect("a stream item within 10 s");
    item.expect("the stream goes on")
}

fn api_error(error: kube::Error) -> Box<kube::core::Status> {
    match error {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn metadata(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        labels: (!labels.is_empty()).then_some(labels),
        ..Default::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() }
}

fn pod(name: &str, node: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: metadata(name, labels),
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "agent".into(),
                image: Some("egressor/agent:dev".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A running pod at `127.0.0.1` whose first container port is `port`.
fn local_pod(name: &str, port: u16) -> Pod {
    let mut pod = pod(name, "node-1", &[("app", "egressor-agent")]);
    let spec = pod.spec.as_mut().expect("pod spec");
    spec.containers[0].ports = Some(vec![ContainerPort {
        container_port: i32::from(port),
        name: Some("api".into()),
        ..Default::default()
    }]);
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some("127.0.0.1".into()),
        ..Default::default()
    });
    pod
}

fn agent_daemonset(labels: &[(&str, &str)], min_ready_seconds: Option<i32>) -> DaemonSet {
    let selector = BTreeMap::from([("app".to_string(), "egressor-agent".to_string())]);
    DaemonSet {
        metadata: metadata("egressor-agent", labels),
        spec: Some(DaemonSetSpec {
            min_ready_seconds,
            selector: LabelSelector { match_labels: Some(selector.clone()), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(selector), ..Default::default() }),
                spec: pod("unused", "node-1", &[]).spec,
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn lab_api_server_side_apply_is_idempotent_and_reports_conflicts() {
    let server = ApiServer::start();
    test_runtime().block_on(async {
        let client = client_for(&server, ADMIN_TOKEN).await;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace(NAMESPACE))
            .await
            .unwrap();
        let api: Api<DaemonSet> = Api::namespaced(client, NAMESPACE);
        let by_egressor = PatchParams::apply("egressor");
        let desired = agent_daemonset(&[("app", "egressor-agent"), ("tier", "node")], Some(5));

        let created = api.patch("egressor-agent", &by_egressor, &Patch::Apply(&desired)).await.unwrap();
        let version = server.resource_version();
        let again = api.patch("egressor-agent", &by_egressor, &Patch::Apply(&desired)).await.unwrap();
        assert_eq!(
            again.metadata.resource_version, created.metadata.resource_version,
            "apply twice is a no-op"
        );
        assert_eq!(server.resource_version(), version);
        assert_eq!(created.metadata.generation, Some(1));
        let managed = &again.metadata.managed_fields.as_ref().expect("managedFields")[0];
        assert_eq!(managed.manager.as_deref(), Some("egressor"));
        assert_eq!(managed.operation.as_deref(), Some("Apply"));
        assert_eq!(managed.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(managed.fields_type.as_deref(), Some("FieldsV1"));
        let fields = &managed.fields_v1.as_ref().expect("fieldsV1").0;
        assert_eq!(fields["f:spec"]["f:minReadySeconds"], json!({}));
        assert_eq!(fields["f:metadata"]["f:labels"]["f:tier"], json!({}));

        // Another manager setting a field egressor owns to another value conflicts...
        let scale = json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "egressor-agent", "namespace": NAMESPACE},
            "spec": {"minReadySeconds": 10},
        });
        let by_kubectl = PatchParams::apply("kubectl");
        let error = api.patch("egressor-agent", &by_kubectl, &Patch::Apply(&scale)).await.unwrap_err();
        let status = api_error(error);
        assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
        assert_eq!(
            status.message,
            r#"Apply failed with 1 conflict: conflict with "egressor" using apps/v1: .spec.minReadySeconds"#
        );
        let cause = &status.details.as_ref().expect("details").causes[0];
        assert_eq!(
            (cause.reason.as_str(), cause.field.as_str()),
            ("FieldManagerConflict", ".spec.minReadySeconds")
        );
        assert_eq!(server.resource_version(), version, "a conflict writes nothing");

        // ...unless forced, which moves the field to the new manager.
        let forced = api.patch("egressor-agent", &by_kubectl.force(), &Patch::Apply(&scale)).await.unwrap();
        assert_eq!(forced.spec.as_ref().unwrap().min_ready_seconds, Some(10));
        assert_eq!(forced.metadata.generation, Some(2));

        // egressor now leaves out a label and the field it lost: the label goes, the field stays.
        let trimmed = agent_daemonset(&[("app", "egressor-agent")], None);
        let applied = api.patch("egressor-agent", &by_egressor, &Patch::Apply(&trimmed)).await.unwrap();
        let labels = applied.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("tier"), None);
        assert_eq!(labels.get("app").map(String::as_str), Some("egressor-agent"));
        assert_eq!(applied.spec.as_ref().unwrap().min_ready_seconds, Some(10));
    });
    // kube-rs sends applies as JSON with `?&fieldManager=M` (and `force=true`) in the query.
    let applies: Vec<RequestLog> = server
        .requests()
        .into_iter()
        .filter(|r| r.content_type.as_deref() == Some("application/apply-patch+yaml"))
        .collect();
    assert_eq!(applies.len(), 5);
    let forced = &applies[3];
    assert_eq!(
        (forced.param("fieldManager").as_deref(), forced.param("force").as_deref()),
        (Some("kubectl"), Some("true"))
    );
    let body: Value = serde_json::from_str(&forced.body).expect("a JSON apply body");
    assert_eq!(body["spec"]["minReadySeconds"], 10);
}

#[test]
fn lab_api_lists_with_label_and_field_selectors() {
    let server = ApiServer::start();
    server.put(&namespace(NAMESPACE));
    test_runtime().block_on(async {
        let client = client_for(&server, ADMIN_TOKEN).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let params = PostParams::default();
        pods.create(&params, &pod("agent-a", "node-1", &[("app", "agent")])).await.unwrap();
        pods.create(&params, &pod("agent-b", "node-2", &[("app", "agent")])).await.unwrap();
        pods.create(&params, &pod("web-c", "node-1", &[("app", "web")])).await.unwrap();
        pods.create(&params, &pod("bare-d", "node-1", &[])).await.unwrap();

        let names = |labels: &str, fields: &str| {
            let all: Api<Pod> = Api::all(client.clone());
            let params = ListParams::default().labels(labels).fields(fields);
            async move {
                let list = all.list(&params).await.unwrap();
                list.items.into_iter().map(|p| p.metadata.name.unwrap()).collect::<Vec<_>>()
            }
        };
        assert_eq!(names("app=agent", "spec.nodeName=node-1").await, ["agent-a"]);
        assert_eq!(names("app in (agent,web)", "spec.nodeName=node-1").await, ["agent-a", "web-c"]);
        assert_eq!(names("app!=agent", "").await, ["bare-d", "web-c"]);
        assert_eq!(names("!app", "").await, ["bare-d"]);
        assert_eq!(names("app", "spec.nodeName!=node-1").await, ["agent-b"]);
        assert_eq!(names("", "metadata.name=web-c,metadata.namespace=egressor").await, ["web-c"]);

        // The list's own shape, as the real server sends it.
        let raw = axum::http::Request::get("/api/v1/namespaces/egressor/pods?labelSelector=app%3Dweb")
            .body(Vec::new())
            .unwrap();
        let list: Value = serde_json::from_str(&client.request_text(raw).await.unwrap()).unwrap();
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["metadata"]["resourceVersion"], server.resource_version().to_string());
        assert_eq!(list["items"][0]["kind"], "Pod");
        assert_eq!(list["items"][0]["metadata"]["generation"], 1);

        let error =
            Api::<Pod>::all(client).list(&ListParams::default().fields("spec.image=x")).await.unwrap_err();
        let status = api_error(error);
        assert_eq!((status.code, status.message.as_str()), (400, "field label not supported: spec.image"));
    });
}

#[test]
fn lab_api_watcher_sees_changes_and_relists_after_compaction() {
    let server = ApiServer::start();
    server.put(&namespace(NAMESPACE));
    server.put(&pod("agent-a", "node-1", &[]));
    test_runtime().block_on(async {
        let client = client_for(&server, ADMIN_TOKEN).await;
        let all: Api<Pod> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
        let config = watcher::Config::default().fields("spec.nodeName=node-1");
        let mut events = std::pin::pin!(watcher(all.clone(), config));
        let name = |pod: &Pod| pod.metadata.name.clone().unwrap();

        assert!(matches!(next_item(&mut events).await, Ok(watcher::Event::Init)));
        assert!(
            matches!(next_item(&mut events).await, Ok(watcher::Event::InitApply(p)) if name(&p) == "agent-a")
        );
        assert!(matches!(next_item(&mut events).await, Ok(watcher::Event::InitDone)));

        // Only node-1's pods come through the field selector.
        pods.create(&PostParams::default(), &pod("agent-b", "node-2", &[])).await.unwrap();
        pods.create(&PostParams::default(), &pod("agent-c", "node-1", &[])).await.unwrap();
        assert!(
            matches!(next_item(&mut events).await, Ok(watcher::Event::Apply(p)) if name(&p) == "agent-c")
        );
        let lists = |server: &ApiServer| server.count(|r| r.is_list_of("/api/v1/pods"));
        assert_eq!(lists(&server), 1);

        // After compaction the watch ends with 410 Expired; the watcher relists and goes on.
        server.compact();
        server.put(&pod("agent-c", "node-1", &[("moved", "yes")]));
        let mut expired = false;
        loop {
            match next_item(&mut events).await {
                Err(watcher::Error::WatchError(status)) => {
                    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
                    expired = true;
                }
                Ok(watcher::Event::InitApply(p) | watcher::Event::Apply(p))
                    if name(&p) == "agent-c" && p.metadata.labels.is_some() =>
                {
                    break;
                }
                Ok(_) => {}
                Err(other) => panic!("unexpected watcher error {other}"),
            }
        }
        assert!(expired, "the open watch ended with 410");
        assert_eq!(lists(&server), 2, "the watcher relisted");

        // A new watch from before the compaction gets the ERROR event; an exact list gets HTTP 410.
        let mut stale = std::pin::pin!(all.watch(&WatchParams::default(), "1").await.unwrap());
        match next_item(&mut stale).await.unwrap() {
            WatchEvent::Error(status) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        let exact = ListParams::default().at("1").matching(kube::api::VersionMatch::Exact);
        let status = api_error(all.list(&exact).await.unwrap_err());
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    });
}

#[test]
fn lab_api_rejects_unknown_tokens_and_unauthorized_verbs() {
    let server = ApiServer::start();
    server.put(&namespace(NAMESPACE));
    server.add_user("alice-token", "alice");
    server.allow("alice", "list", "", "pods");
    test_runtime().block_on(async {
        let stranger = client_for(&server, "wrong-token").await;
        let status = api_error(Api::<Pod>::all(stranger).list(&ListParams::default()).await.unwrap_err());
        assert_eq!((status.code, status.reason.as_str(), status.message.as_str()), (401, "Unauthorized", "Unauthorized"));

        let alice = client_for(&server, "alice-token").await;
        Api::<Pod>::namespaced(alice.clone(), NAMESPACE).list(&ListParams::default()).await.unwrap();
        let daemonsets: Api<DaemonSet> = Api::namespaced(alice.clone(), NAMESPACE);
        let desired = agent_daemonset(&[], None);
        let status = api_error(daemonsets.create(&PostParams::default(), &desired).await.unwrap_err());
        assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            status.message,
            r#"daemonsets.apps is forbidden: User "alice" cannot create resource "daemonsets" in API group "apps" in the namespace "egressor""#
        );
        let details = status.details.as_ref().expect("details");
        assert_eq!((details.group.as_str(), details.kind.as_str()), ("apps", "daemonsets"));

        let Err(error) = Api::<Pod>::all(alice.clone()).watch(&WatchParams::default(), "0").await else {
            panic!("alice may not watch pods");
        };
        let status = api_error(error);
        assert!(status.message.ends_with(r#"cannot watch resource "pods" in API group "" at the cluster scope"#));
        let status = api_error(Api::<Namespace>::all(alice).get(NAMESPACE).await.unwrap_err());
        assert_eq!(
            status.message,
            r#"namespaces "egressor" is forbidden: User "alice" cannot get resource "namespaces" in API group "" in the namespace "egressor""#
        );
    });
    assert_eq!(server.count(|r| r.status == 401 && r.user.is_none()), 1);
    assert_eq!(server.count(|r| r.user.as_deref() == Some("alice") && r.status == 403), 3);
}

/// A tiny upstream that answers with what it received.
async fn echo_upstream() -> u16 {
    use axum::http::{HeaderMap, Method, Uri};
    async fn echo(
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::Json<Value> {
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or_default().to_string());
        axum::Json(json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "authorization": header("authorization"),
            "token": header("x-egressor-token"),
            "body": String::from_utf8_lossy(&body),
        }))
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the upstream");
    let port = listener.local_addr().expect("upstream address").port();
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(echo)).await });
    port
}

#[test]
fn lab_api_proxies_to_pods_without_the_callers_credentials() {
    let server = ApiServer::start();
    server.put(&namespace(NAMESPACE));
    server.add_user("viewer-token", "viewer");
    server.allow("viewer", "get", "", "pods/proxy");
    test_runtime().block_on(async {
        let port = echo_upstream().await;
        server.put(&local_pod("agent-1", port));
        let client = client_for(&server, ADMIN_TOKEN).await;
        let send = |request: axum::http::Request<Vec<u8>>| {
            let client = client.clone();
            async move { client.request_text(request).await }
        };

        let get = axum::http::Request::get(format!(
            "/api/v1/namespaces/egressor/pods/agent-1:{port}/proxy/v1/flows?after=5&limit=2"
        ))
        .header("X-Egressor-Token", "agent-secret")
        .body(Vec::new())
        .unwrap();
        let seen: Value = serde_json::from_str(&send(get).await.unwrap()).unwrap();
        assert_eq!(seen["method"], "GET");
        assert_eq!(seen["path"], "/v1/flows");
        assert_eq!(seen["query"], "after=5&limit=2");
        assert_eq!(seen["authorization"], Value::Null, "the agent never sees the caller's credentials");
        assert_eq!(seen["token"], "agent-secret");

        // `name/proxy` goes to the first container port; POST bodies pass through.
        let post = axum::http::Request::post("/api/v1/namespaces/egressor/pods/agent-1/proxy/v1/ack")
            .header("Content-Type", "application/json")
            .body(br#"{"cursor":7}"#.to_vec())
            .unwrap();
        let seen: Value = serde_json::from_str(&send(post).await.unwrap()).unwrap();
        assert_eq!((seen["method"].as_str(), seen["body"].as_str()), (Some("POST"), Some(r#"{"cursor":7}"#)));

        // A port nothing listens on: the real server's 503. kube-rs retries 503s (15 times, with
        // backoff from 5 ms) unless `default_retry` is off.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        server.put(&local_pod("agent-2", closed));
        let mut config = config_for(&server, ADMIN_TOKEN).await;
        config.default_retry = false;
        let once = kube::Client::try_from(config).unwrap();
        let get = axum::http::Request::get("/api/v1/namespaces/egressor/pods/agent-2/proxy/metrics")
            .body(Vec::new())
            .unwrap();
        let status = api_error(once.request_text(get).await.unwrap_err());
        assert_eq!((status.code, status.reason.as_str()), (503, "ServiceUnavailable"));
        assert_eq!(
            status.message,
            format!("error trying to reach service: dial tcp 127.0.0.1:{closed}: connect: connection refused")
        );
        let missing = axum::http::Request::get("/api/v1/namespaces/egressor/pods/agent-9/proxy/").body(Vec::new());
        let status = api_error(send(missing.unwrap()).await.unwrap_err());
        assert_eq!((status.code, status.message.as_str()), (404, r#"pods "agent-9" not found"#));

        // Proxy rights are per verb: get lets a GET through, a POST needs create.
        let viewer = client_for(&server, "viewer-token").await;
        let get = axum::http::Request::get(format!("/api/v1/namespaces/egressor/pods/http:agent-1:{port}/proxy/x"))
            .body(Vec::new())
            .unwrap();
        viewer.request_text(get).await.unwrap();
        let post = axum::http::Request::post("/api/v1/namespaces/egressor/pods/agent-1/proxy/x").body(Vec::new());
        let status = api_error(viewer.request_text(post.unwrap()).await.unwrap_err());
        assert_eq!(
            status.message,
            r#"pods "agent-1" is forbidden: User "viewer" cannot create resource "pods/proxy" in API group "" in the namespace "egressor""#
        );
    });
}

#[test]
fn lab_api_creates_patches_and_deletes_like_the_real_server() {
    let server = ApiServer::start();
    test_runtime().block_on(async {
        let client = client_for(&server, ADMIN_TOKEN).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        let params = PostParams::default();

        let status = api_error(pods.create(&params, &pod("a", "node-1", &[])).await.unwrap_err());
        assert_eq!((status.code, status.message.as_str()), (404, r#"namespaces "egressor" not found"#));
        Api::<Namespace>::all(client.clone()).create(&params, &namespace(NAMESPACE)).await.unwrap();
        let created = pods.create(&params, &pod("a", "node-1", &[("app", "x")])).await.unwrap();
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
        let status = api_error(pods.create(&params, &pod("a", "node-1", &[])).await.unwrap_err());
        assert_eq!((status.code, status.reason.as_str()), (409, "AlreadyExists"));
        assert_eq!(status.message, r#"pods "a" already exists"#);
        let status = api_error(pods.get("zz").await.unwrap_err());
        assert_eq!((status.code, status.message.as_str()), (404, r#"pods "zz" not found"#));

        let patch = json!({"metadata": {"labels": {"team": "net"}}});
        let patched = pods.patch("a", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        assert_ne!(patched.metadata.resource_version, created.metadata.resource_version);
        assert_eq!(patched.metadata.labels.unwrap()["team"], "net");

        pods.create(&params, &pod("b", "node-1", &[("app", "y")])).await.unwrap();
        let deleted =
            pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels("app=x")).await;
        let deleted = deleted.unwrap().left().expect("the deleted pods");
        assert_eq!(deleted.items.len(), 1);
        assert_eq!(server.objects("", "pods").len(), 1);

        let version = client.apiserver_version().await.unwrap();
        assert_eq!(version.git_version, "v1.33.0");

        // Deleting the namespace deletes what is in it.
        Api::<Namespace>::all(client).delete(NAMESPACE, &DeleteParams::default()).await.unwrap();
        assert!(server.objects("", "pods").is_empty());
        assert!(server.get("", "namespaces", "", NAMESPACE).is_none());
    });
}

#[test]
fn lab_api_kubeconfig_holds_several_contexts() {
    let server = ApiServer::start();
    server.add_user("alice-token", "alice");
    server.allow("alice", "*", "", "pods");
    server.put(&namespace(NAMESPACE));
    server.put(&pod("agent-1", "node-1", &[]));
    server.set_pod_ip(NAMESPACE, "agent-1", "10.77.0.12");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig_multi(&path, &[("admin", ADMIN_TOKEN), ("alice", "alice-token")], "admin");
    test_runtime().block_on(async {
        let alice = kube::Client::try_from(config_from(&path, "alice").await).unwrap();
        let pod = Api::<Pod>::namespaced(alice, NAMESPACE).get("agent-1").await.unwrap();
        assert_eq!(pod.status.unwrap().pod_ip.as_deref(), Some("10.77.0.12"));
    });
    assert_eq!(server.requests().last().and_then(|r| r.user.clone()).as_deref(), Some("alice"));
    assert!(server.delete("", "pods", NAMESPACE, "agent-1").is_some());
    assert!(server.url().starts_with("http://127.0.0.1:"));
}
