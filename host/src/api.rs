//! The admin API: HTTP/JSON on a loopback address, every call but the
//! metrics and the OpenAPI document behind a bearer token.
//!
//! Handlers only translate: requests into [`Node`] changes and operations,
//! answers and refusals into JSON. The OpenAPI document that describes the
//! routes lives in `docs/openapi.json` and is served as it is. The web
//! console (`crate::console`) is served on the same listener at `/ui`.
//!
//! The API answers from the first moments of the agent's start
//! ([`Serving`]): the status from the start's progress until the node's
//! loop runs, every other call refused (503, nothing done) until then.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_service::Service;

use crate::components::{Component, Requester, State as ComponentState};
use crate::config::{GroupConfig, PropertyValue, ResourceConfig};
use crate::history::{Filter, History, Start};
use crate::metrics::Metrics;
use crate::node::{Change, Node, Operation, Refused, RefusedKind, Summary};
use crate::rollout::Rollout;
use crate::starting::StartProgress;

/// The OpenAPI document of this API.
pub(crate) const OPENAPI: &str = include_str!("../../docs/openapi.json");

#[derive(Clone)]
struct Api {
    node: Node,
    token: Arc<str>,
    history: History,
    metrics: Arc<Metrics>,
    /// In a cluster: what every node runs (`GET /v1/plugins`).
    rollout: Option<Arc<Rollout>>,
}

/// The admin API, served from the moment it is bound: while the agent
/// starts, `GET /v1/status` and `/v1/status/summary` answer from the
/// start's progress (`crate::starting`), the OpenAPI document and the
/// console are served, and every other call is refused with 503 and the
/// progress; once [`Serving::started`] is called, every route is the
/// node's. A request is answered whole by one or the other, never by both.
pub(crate) struct Serving {
    ready: watch::Sender<Option<Router>>,
    token: Arc<str>,
    /// The serving task, until the node runs; a start that fails stops
    /// it (dropping this), so its port is free again.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Serving {
    /// Serve on `listener` at once, in a task of its own (an error ends the
    /// API, not the agent), answering from `progress` until
    /// [`Serving::started`].
    pub(crate) fn start(
        listener: tokio::net::TcpListener,
        token: String,
        progress: Arc<StartProgress>,
    ) -> Result<Serving> {
        let addr = listener
            .local_addr()
            .context("reading the admin API's bound address")?;
        tracing::info!(
            "admin API on http://{addr}/ (OpenAPI at /v1/openapi.json, metrics at /metrics); \
             answering the start's progress until the node runs"
        );
        let token: Arc<str> = token.into();
        let (ready, switch_to) = watch::channel(None);
        let switch = Switch {
            starting: starting_router(Starting {
                token: token.clone(),
                progress,
            }),
            ready: switch_to,
        };
        let app = Router::new().fallback_service(switch);
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app)
                .await
                .context("serving the admin API")
            {
                tracing::error!("{err:#}");
            }
        });
        Ok(Serving {
            ready,
            token,
            task: Some(task),
        })
    }

    /// The node runs: from now on every request goes to it, for as long
    /// as the process runs.
    pub(crate) fn started(
        mut self,
        node: Node,
        history: History,
        metrics: Arc<Metrics>,
        rollout: Option<Arc<Rollout>>,
    ) {
        let api = Api {
            node,
            token: self.token.clone(),
            history,
            metrics,
            rollout,
        };
        self.ready.send_replace(Some(node_router(api)));
        // Detached: it serves until the process ends.
        drop(self.task.take());
        tracing::info!("admin API: the node runs, every route served");
    }
}

/// The router a request goes to: the node's once it runs, the start's
/// until then.
#[derive(Clone)]
struct Switch {
    starting: Router,
    ready: watch::Receiver<Option<Router>>,
}

impl Service<Request> for Switch {
    type Response = Response;
    type Error = Infallible;
    type Future = axum::routing::future::RouteFuture<Infallible>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        // Both routers are always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let mut router = self
            .ready
            .borrow()
            .clone()
            .unwrap_or_else(|| self.starting.clone());
        router.call(request)
    }
}

/// What the API answers from while the agent starts.
#[derive(Clone)]
struct Starting {
    token: Arc<str>,
    progress: Arc<StartProgress>,
}

/// The routes served while the agent starts: the status and its summary
/// from the start's progress, the OpenAPI document, the console; anything
/// else is refused (503) with the progress, behind the token as it will be.
fn starting_router(starting: Starting) -> Router {
    let guarded = Router::new()
        .route("/v1/status", get(starting_status))
        .route("/v1/status/summary", get(starting_summary))
        .route_layer(middleware::from_fn_with_state(
            starting.token.clone(),
            require_token,
        ));
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .merge(guarded)
        .merge(crate::console::routes())
        .fallback(still_starting)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(json_errors))
        .with_state(starting)
}

async fn starting_status(State(starting): State<Starting>) -> Response {
    Json(starting.progress.status()).into_response()
}

async fn starting_summary(State(starting): State<Starting>) -> Response {
    Json(starting.progress.summary()).into_response()
}

/// How long a client refused while the agent starts is told to wait.
const RETRY_AFTER_S: &str = "1";

/// Any other request while the agent starts: refused, nothing done, with
/// the start's progress (`starting`) and `Retry-After`, so a client can
/// tell this refusal from any other 503 and ask again safely. `/metrics`
/// needs no token, as once started; everything else does, so the progress
/// tells nothing to a client without it.
async fn still_starting(State(starting): State<Starting>, request: Request) -> Response {
    if request.uri().path() != "/metrics"
        && let Some(refused) = token_refusal(request.headers(), &starting.token)
    {
        return refused;
    }
    let body = json!({
        "error": starting.progress.refusal(),
        "starting": starting.progress.view(),
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_S)],
        Json(body),
    )
        .into_response()
}

/// Every route, answered by the running node.
fn node_router(api: Api) -> Router {
    let guarded = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/status/summary", get(status_summary))
        .route("/v1/config", get(config))
        .route("/v1/groups", post(create_group))
        .route("/v1/groups/{name}", axum::routing::delete(delete_group))
        .route("/v1/groups/{name}/{verb}", post(group_verb))
        .route("/v1/resources", post(create_resource))
        .route(
            "/v1/resources/{name}",
            axum::routing::delete(delete_resource),
        )
        .route(
            "/v1/resources/{name}/properties",
            get(get_properties).put(set_properties),
        )
        .route("/v1/resources/{name}/fail", post(fail_resource))
        .route("/v1/resources/{name}/cancel", post(cancel_resource))
        .route("/v1/resources/{name}/control", post(control))
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/plugins/{name}/versions", get(plugin_versions))
        .route("/v1/plugins/{name}/{verb}", post(plugin_verb))
        .route("/v1/components", get(list_components).post(set_component))
        .route("/v1/node/{verb}", post(node_verb))
        .route("/v1/what-if", post(what_if))
        .route("/v1/events", get(events))
        .route("/v1/events/stream", get(event_stream))
        .route_layer(middleware::from_fn_with_state(
            api.token.clone(),
            require_token,
        ));
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/v1/openapi.json", get(openapi))
        .merge(guarded)
        .merge(crate::console::routes())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(json_errors))
        .with_state(api)
}

/// Bind the API's address; a separate step so that the agent can report a
/// taken port before it starts anything.
pub(crate) async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin API to {addr}"))
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    match token_refusal(request.headers(), &token) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// The 401 for a request without the bearer token `token`; none if it
/// carries it.
fn token_refusal(headers: &HeaderMap, token: &str) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => None,
        Some(_) => Some(error(StatusCode::UNAUTHORIZED, "wrong token".to_string())),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token>".to_string(),
        )),
    }
}

/// Compare without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The largest request body the API reads; a configuration change is a
/// few KiB, so this only stops a client from making the agent buffer
/// without end.
const BODY_LIMIT: usize = 1 << 20;

/// The most of a plain-text refusal of axum's that is kept as the message.
const MAX_REJECTION_TEXT: usize = 4 * 1024;

/// Every refusal in the one documented shape, `{"error": message}`. What
/// axum answers by itself before a handler runs (a path or a body its
/// extractors cannot read, a body over [`BODY_LIMIT`], a method a route
/// lacks, a path no route has) is plain text or empty; it is rewritten
/// here, so a client never has to guess how to read an error.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the request body is larger than the limit of {BODY_LIMIT} bytes")
        }
        // axum adds the Allow header after this layer has run.
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on {path}: the Allow header names what is")
        }
        StatusCode::NOT_FOUND if text.is_empty() => {
            format!("no route {method} {path}: the routes are in /v1/openapi.json")
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("refused").to_string(),
        _ => text,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json!({ "error": message }).to_string()))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A node refusal or failure as an HTTP answer.
fn refusal(err: anyhow::Error) -> Response {
    let status = match err.downcast_ref::<Refused>().map(|r| r.kind) {
        Some(RefusedKind::NotFound) => StatusCode::NOT_FOUND,
        Some(RefusedKind::Conflict) => StatusCode::CONFLICT,
        Some(RefusedKind::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(RefusedKind::Invalid) | None => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, format!("{err:#}"))
}

fn done(result: Result<String>) -> Response {
    match result {
        Ok(message) => Json(json!({ "ok": message })).into_response(),
        Err(err) => refusal(err),
    }
}

fn stopped() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the node is shutting down".to_string(),
    )
}

async fn status(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(status) => Json(status).into_response(),
        Err(_) => stopped(),
    }
}

/// Counts per state and the groups not Online: what a person reads on a
/// node of thousands of groups, where the whole status is megabytes.
async fn status_summary(State(api): State<Api>) -> Response {
    match api.node.status().await {
        Ok(status) => Json(Summary::of(status)).into_response(),
        Err(_) => stopped(),
    }
}

async fn config(State(api): State<Api>) -> Response {
    match api.node.desired().await {
        Ok(desired) => Json(desired).into_response(),
        Err(_) => stopped(),
    }
}

/// Parse a JSON body ourselves, so a bad body gets our error shape and a
/// message that names the field.
fn parse<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("invalid {what}: {e}"))
}

fn bad_request(message: String) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

async fn create_group(State(api): State<Api>, body: String) -> Response {
    match parse::<GroupConfig>(&body, "group") {
        Ok(group) => done(api.node.change(Change::AddGroup(group)).await),
        Err(message) => bad_request(message),
    }
}

async fn delete_group(State(api): State<Api>, Path(name): Path<String>) -> Response {
    done(api.node.change(Change::RemoveGroup(name)).await)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    #[serde(default)]
    to: Option<String>,
}

/// The body of `accept-data-loss`: where to activate.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    #[serde(default)]
    node: Option<String>,
}

async fn group_verb(
    State(api): State<Api>,
    Path((name, verb)): Path<(String, String)>,
    body: String,
) -> Response {
    let operation = match verb.as_str() {
        "online" => Operation::GroupOnline(name),
        "offline" => Operation::GroupOffline(name),
        "move" => {
            let target = if body.trim().is_empty() {
                MoveBody::default()
            } else {
                match parse::<MoveBody>(&body, "move") {
                    Ok(target) => target,
                    Err(message) => return bad_request(message),
                }
            };
            Operation::Move {
                group: name,
                to: target.to,
            }
        }
        "accept-data-loss" => {
            let target = if body.trim().is_empty() {
                AcceptBody::default()
            } else {
                match parse::<AcceptBody>(&body, "accept-data-loss") {
                    Ok(target) => target,
                    Err(message) => return bad_request(message),
                }
            };
            Operation::AcceptDataLoss {
                group: name,
                node: target.node,
            }
        }
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown group operation {other:?}: online, offline, move or accept-data-loss"
                ),
            );
        }
    };
    done(api.node.operate(operation).await)
}

async fn create_resource(State(api): State<Api>, body: String) -> Response {
    match parse::<ResourceConfig>(&body, "resource") {
        Ok(resource) => done(
            api.node
                .change(Change::AddResource(Box::new(resource)))
                .await,
        ),
        Err(message) => bad_request(message),
    }
}

async fn delete_resource(State(api): State<Api>, Path(name): Path<String>) -> Response {
    done(api.node.change(Change::RemoveResource(name)).await)
}

async fn get_properties(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.node.desired().await {
        Ok(desired) => match desired.resource(&name) {
            Some(resource) => Json(&resource.properties).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no resource {name:?}")),
        },
        Err(_) => stopped(),
    }
}

async fn set_properties(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: String,
) -> Response {
    match parse::<BTreeMap<String, PropertyValue>>(&body, "properties") {
        Ok(properties) => done(
            api.node
                .change(Change::SetProperties {
                    resource: name,
                    properties,
                })
                .await,
        ),
        Err(message) => bad_request(message),
    }
}

async fn fail_resource(State(api): State<Api>, Path(name): Path<String>) -> Response {
    done(api.node.operate(Operation::Fail { resource: name }).await)
}

/// Cut off a resource's pending online or offline (409 if none is).
async fn cancel_resource(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.node.resource(&name).await {
        Ok(Some(handle)) => match handle.cancel() {
            Ok(message) => Json(json!({ "ok": message })).into_response(),
            Err(refused) => error(StatusCode::CONFLICT, refused),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no resource {name:?}")),
        Err(_) => stopped(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlBody {
    code: String,
    #[serde(default)]
    payload: String,
}

async fn control(State(api): State<Api>, Path(name): Path<String>, body: String) -> Response {
    let request = match parse::<ControlBody>(&body, "control request") {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    let handle = match api.node.resource(&name).await {
        Ok(Some(handle)) => handle,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no resource {name:?}")),
        Err(_) => return stopped(),
    };
    match handle.control(&request.code, &request.payload).await {
        Ok(Ok(answer)) => Json(json!({ "ok": answer })).into_response(),
        Ok(Err(refused)) => error(StatusCode::UNPROCESSABLE_ENTITY, refused),
        Err(gone) => error(StatusCode::NOT_FOUND, gone.to_string()),
    }
}

async fn list_plugins(State(api): State<Api>) -> Response {
    // Ask the node: types dropped into the plugins directory after start
    // are there too.
    let Ok(plugins) = api.node.plugins().await else {
        return stopped();
    };
    let nodes = api.rollout.as_ref().map(|rollout| rollout.nodes());
    let list: Vec<Value> = plugins
        .iter()
        .map(|p| {
            let info = p.info();
            let properties: Vec<Value> = info
                .properties
                .iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "kind": crate::runtime::kind_name(s.kind),
                        "required": s.required,
                        "default": s.default_value,
                        "description": s.description,
                    })
                })
                .collect();
            let mut plugin = json!({
                "name": info.name,
                "version": info.version,
                "description": info.description,
                "properties": properties,
                "contract": p.contract().to_string(),
                "sha256": p.source_sha256(),
            });
            if let Some(nodes) = &nodes {
                plugin["nodes"] = nodes_running(nodes, &info.name);
            }
            plugin
        })
        .collect();
    Json(list).into_response()
}

/// Each node's build of `type_name`, by node name (a node that does not
/// run the type is absent).
fn nodes_running(
    nodes: &std::collections::BTreeMap<String, crate::cluster::plugins::NodePlugins>,
    type_name: &str,
) -> Value {
    let mut map = serde_json::Map::new();
    for (node, record) in nodes {
        if let Some(t) = record.types.iter().find(|t| t.type_name == type_name) {
            map.insert(
                node.clone(),
                json!({
                    "version": t.version,
                    "contract": t.contract,
                    "sha256": t.sha256,
                    "source": t.source,
                    "pinned": t.pinned,
                }),
            );
        }
    }
    Value::Object(map)
}

async fn plugin_versions(State(api): State<Api>, Path(name): Path<String>) -> Response {
    match api.node.versions(&name).await {
        Ok(list) => Json(list).into_response(),
        Err(err) => refusal(err),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PinBody {
    #[serde(default)]
    version: Option<String>,
}

async fn plugin_verb(
    State(api): State<Api>,
    Path((name, verb)): Path<(String, String)>,
    body: String,
) -> Response {
    match verb.as_str() {
        "rollback" => done(api.node.rollback(&name).await),
        "unpin" => {
            let local = api.node.unpin(&name).await;
            let cluster = api.rollout.as_ref().map(|r| r.unpin_everywhere(&name));
            done(on_every_node(local, cluster).await)
        }
        "pin" => {
            let pin = if body.trim().is_empty() {
                PinBody::default()
            } else {
                match parse::<PinBody>(&body, "pin") {
                    Ok(pin) => pin,
                    Err(message) => return bad_request(message),
                }
            };
            let local = api.node.pin(&name, pin.version).await;
            let cluster = api.rollout.as_ref().map(|r| r.pin_everywhere(&name));
            done(on_every_node(local, cluster).await)
        }
        other => error(
            StatusCode::NOT_FOUND,
            format!("unknown plugin operation {other:?}: rollback, pin or unpin"),
        ),
    }
}

/// In a cluster, a pin or unpin done on this node is recorded for every
/// node (`crate::rollout`). If that fails the answer is 503, saying this
/// node did it: asking again is safe.
async fn on_every_node(
    local: Result<String>,
    cluster: Option<impl std::future::Future<Output = Result<()>>>,
) -> Result<String> {
    let message = local?;
    let Some(cluster) = cluster else {
        return Ok(message);
    };
    match cluster.await {
        Ok(()) => Ok(format!("{message}, on every node of the cluster")),
        Err(err) => Err(Refused {
            kind: RefusedKind::Unavailable,
            message: format!("{message} on this node, but not for the cluster: {err:#}; ask again"),
        }
        .into()),
    }
}

async fn list_components(State(api): State<Api>) -> Response {
    match api.node.components().await {
        Ok(list) => Json(list).into_response(),
        Err(_) => stopped(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentBody {
    component: String,
    requester: String,
    state: String,
}

async fn set_component(State(api): State<Api>, body: String) -> Response {
    let request = match parse::<ComponentBody>(&body, "component state") {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    let Ok(plugins) = api.node.plugins().await else {
        return stopped();
    };
    let types = plugins.iter().map(|p| p.name());
    let parsed = Component::parse_with_types(&request.component, types).and_then(|component| {
        Ok((
            component,
            request.requester.parse::<Requester>()?,
            request.state.parse::<ComponentState>()?,
        ))
    });
    match parsed {
        Ok((component, requester, state)) => {
            done(api.node.set_component(component, requester, state).await)
        }
        Err(err) => error(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()),
    }
}

async fn node_verb(State(api): State<Api>, Path(verb): Path<String>) -> Response {
    let operation = match verb.as_str() {
        "pause" => Operation::Pause,
        "resume" => Operation::Resume,
        "drain" => Operation::Drain,
        "recovery-on" => Operation::RecoveryActions(true),
        "recovery-off" => Operation::RecoveryActions(false),
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "unknown node operation {other:?}: pause, resume, drain, recovery-on or recovery-off"
                ),
            );
        }
    };
    done(api.node.operate(operation).await)
}

async fn what_if(State(api): State<Api>, body: String) -> Response {
    let event = match parse::<warden_policy::Event>(&body, "policy event") {
        Ok(event) => event,
        Err(message) => return bad_request(message),
    };
    match api.node.what_if(event).await {
        Ok(actions) => {
            let lines: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
            Json(json!({ "actions": lines })).into_response()
        }
        Err(_) => stopped(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    resource: Option<String>,
    event: Option<String>,
    since_ms: Option<u64>,
    limit: Option<usize>,
}

/// The limit of `GET /v1/events` and of a stream's backlog when none is given.
const DEFAULT_EVENT_LIMIT: usize = 200;

/// A query string that does not parse, answered in our error shape (axum's
/// own rejection is plain text).
fn bad_query(rejection: QueryRejection) -> Response {
    bad_request(format!("invalid query: {}", rejection.body_text()))
}

fn unreadable_history(err: anyhow::Error) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"))
}

async fn events(
    State(api): State<Api>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_query(rejection),
    };
    let filter = Filter {
        resource: query.resource,
        event: query.event,
        since_ms: query.since_ms,
    };
    let limit = query.limit.unwrap_or(DEFAULT_EVENT_LIMIT);
    match api.history.matching(&filter, limit).await {
        Ok(events) => Json(events).into_response(),
        Err(err) => unreadable_history(err),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    resource: Option<String>,
    event: Option<String>,
    since_ms: Option<u64>,
    limit: Option<usize>,
    after: Option<u64>,
}

/// How often an idle stream sends a comment, so proxies and clients see
/// the connection alive.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// The history as Server-Sent Events, then every new event as it is
/// written: each event's `id` is its sequence number, so a client that
/// reconnects with `after` (or `Last-Event-ID`) misses nothing.
async fn event_stream(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return bad_query(rejection),
    };
    let last_event_id = match headers.get("last-event-id").map(|v| {
        v.to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    }) {
        None => None,
        Some(Some(seq)) => Some(seq),
        Some(None) => {
            return bad_request(
                "invalid Last-Event-ID header: expected a sequence number".to_string(),
            );
        }
    };
    let start = match query.after.or(last_event_id) {
        Some(seq) => Start::After(seq),
        None => Start::Last(query.limit.unwrap_or(DEFAULT_EVENT_LIMIT)),
    };
    let filter = Filter {
        resource: query.resource,
        event: query.event,
        since_ms: query.since_ms,
    };
    let events = match api.history.follow(filter, start).await {
        Ok(events) => events,
        Err(err) => return unreadable_history(err),
    };
    let events = futures_util::StreamExt::map(events, |(seq, event)| {
        Ok::<_, std::convert::Infallible>(
            SseEvent::default()
                .id(seq.to_string())
                .data(event.to_string()),
        )
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

async fn render_metrics(State(api): State<Api>) -> Response {
    let status = api.node.status().await.ok();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics.render(status.as_ref()),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
