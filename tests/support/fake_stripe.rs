//! A fake Stripe API for tests, on 127.0.0.1, driven by the real async-stripe client.
//!
//! Test binaries include it with
//!
//! ```ignore
//! #[path = "../support/fake_stripe.rs"] // from tests/<dir>/main.rs
//! mod fake_stripe;
//! ```
//!
//! and point the server under test at it (`billing.stripe.api_base = fake.url()`,
//! `billing.stripe.secret_key = fake_stripe::SECRET_KEY`).
//!
//! # Wire format (as async-stripe 1.0 sends it, and as Stripe answers)
//!
//! Requests are `{api_base}/v1/<resource>`; `GET` carries its parameters in the query
//! string, `POST` in an `application/x-www-form-urlencoded` body, both in Stripe's
//! bracket syntax (`metadata[chatorical_plan]=pro`, `recurring[interval]=month`,
//! `lookup_keys[0]=a&lookup_keys[1]=b`, `line_items[0][price]=price_1`), which the fake
//! parses into nested JSON ([`Call::params`]). Every request needs
//! `Authorization: Bearer <SECRET_KEY>` (else 401). A parameter an endpoint does not
//! know is refused (400 `parameter_unknown`), like Stripe does.
//!
//! Answers are JSON objects with their `object` field and every field async-stripe
//! requires; lists are `{"object":"list","data":[…],"has_more":…,"url":…}`, newest
//! first; errors are Stripe's envelope `{"error":{"type","code","message","param"}}`.
//!
//! `Idempotency-Key` is honoured as Stripe documents it: the first answer to a key
//! (once the endpoint ran) is saved and replayed for the same key and the same request
//! (with `Idempotent-Replayed: true`); the same key with other parameters (compared
//! parsed: their order on the wire does not matter) is 400 `idempotency_error`.
//!
//! # Resources
//! - products: create (optional custom `id`), update (`name`, `active`, `metadata`),
//!   retrieve, list (`active`, `ids`, `limit`, `starting_after`), search
//!   (`metadata['key']:'value'`);
//! - prices: create (`lookup_key` unique: taken from another price only with
//!   `transfer_lookup_key=true`, else 400), update (`active`, `lookup_key`,
//!   `transfer_lookup_key`, `metadata`), retrieve, list (`lookup_keys`, `active`,
//!   `product`, `limit`, `starting_after`);
//! - customers: create, retrieve;
//! - checkout sessions: create (mode `subscription` needs active recurring prices and
//!   a known customer), returns `url`;
//! - billing portal sessions: create (known customer), returns `url`;
//! - subscriptions: retrieve (seeded with [`FakeStripe::put_subscription`]).
//!
//! # Faults
//! - [`FakeStripe::fail_writes`]: after `after` more write calls, the next `count`
//!   writes answer 500 `api_error` before the endpoint runs (nothing is saved under
//!   their idempotency key, as Stripe does for a request that never started).
//! - [`FakeStripe::time_out_write`]: after `after` more writes, the next write is
//!   carried out (and its answer saved under its key) but the answer is held back for
//!   [`FakeStripe::set_hang`] (default 5 s), past the client's timeout: the response
//!   "lost on the way back".
//!
//! Every request is recorded ([`FakeStripe::calls`]); [`FakeStripe::write_count`] counts
//! the `POST`s.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

/// The secret key the fake accepts.
pub(crate) const SECRET_KEY: &str = "sk_test_fake_0123456789abcdef";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// `GET` or `POST`.
    pub(crate) method: String,
    /// `/v1/prices`.
    pub(crate) path: String,
    /// The raw query string or form body.
    pub(crate) raw: String,
    /// The parameters, bracket syntax parsed into nested JSON.
    pub(crate) params: Value,
    /// The `Idempotency-Key` header.
    pub(crate) idempotency_key: Option<String>,
    /// Whether the answer was a replay of a saved one.
    pub(crate) replayed: bool,
    /// The answer's status.
    pub(crate) status: u16,
}

impl Call {
    /// Whether this was a write (`POST`).
    pub(crate) fn is_write(&self) -> bool {
        self.method == "POST"
    }
}

#[derive(Debug, Clone)]
struct Saved {
    method: String,
    path: String,
    params: Value,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct State {
    seq: u64,
    clock: i64,
    products: BTreeMap<String, Value>,
    prices: BTreeMap<String, Value>,
    customers: BTreeMap<String, Value>,
    checkout_sessions: BTreeMap<String, Value>,
    portal_sessions: BTreeMap<String, Value>,
    subscriptions: BTreeMap<String, Value>,
    /// Creation order of every object, by id.
    order: BTreeMap<String, u64>,
    idempotent: BTreeMap<String, Saved>,
    calls: Vec<Call>,
    /// Writes to let through before failing, and how many to fail.
    fail: Option<(usize, usize)>,
    /// Writes to let through before holding one back.
    time_out: Option<usize>,
    hang: Duration,
}

/// The fake server.
#[derive(Clone)]
pub(crate) struct FakeStripe {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

/// An error in Stripe's envelope.
struct StripeError {
    status: StatusCode,
    body: Value,
}

impl StripeError {
    fn new(
        status: u16,
        kind: &str,
        code: Option<&str>,
        message: &str,
        param: Option<&str>,
    ) -> Self {
        let mut error = json!({ "type": kind, "message": message });
        if let Some(code) = code {
            error["code"] = code.into();
        }
        if let Some(param) = param {
            error["param"] = param.into();
        }
        StripeError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            body: json!({ "error": error }),
        }
    }

    fn invalid(message: &str, param: &str) -> Self {
        Self::new(400, "invalid_request_error", None, message, Some(param))
    }

    fn missing(kind: &str, id: &str, param: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such {kind}: '{id}'"),
            Some(param),
        )
    }
}

type Answer = Result<Value, StripeError>;

impl FakeStripe {
    /// Start the fake on a free port of 127.0.0.1.
    pub(crate) async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            clock: 1_780_000_000,
            hang: Duration::from_secs(5),
            ..State::default()
        }));
        let shared = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                async move { handle(state, method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Stripe");
        let addr = listener.local_addr().expect("fake Stripe address");
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("fake Stripe stopped: {err}");
            }
        });
        FakeStripe { addr, state }
    }

    /// The API base to configure (`http://127.0.0.1:PORT`).
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// How many writes (`POST`s) arrived so far.
    pub(crate) fn write_count(&self) -> usize {
        self.lock().calls.iter().filter(|c| c.is_write()).count()
    }

    /// Forget the recorded calls (the objects stay).
    pub(crate) fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// After `after` more writes, answer the next `count` writes with 500 before they run.
    pub(crate) fn fail_writes(&self, after: usize, count: usize) {
        self.lock().fail = Some((after, count));
    }

    /// After `after` more writes, carry out the next one but hold its answer back past
    /// the client's timeout.
    pub(crate) fn time_out_write(&self, after: usize) {
        self.lock().time_out = Some(after);
    }

    /// How long a held-back answer waits.
    pub(crate) fn set_hang(&self, hang: Duration) {
        self.lock().hang = hang;
    }

    /// Products, oldest first.
    pub(crate) fn products(&self) -> Vec<Value> {
        let s = self.lock();
        sorted(&s, &s.products)
    }

    /// Prices, oldest first.
    pub(crate) fn prices(&self) -> Vec<Value> {
        let s = self.lock();
        sorted(&s, &s.prices)
    }

    /// Customers, oldest first.
    pub(crate) fn customers(&self) -> Vec<Value> {
        let s = self.lock();
        sorted(&s, &s.customers)
    }

    /// Checkout Sessions, oldest first.
    pub(crate) fn checkout_sessions(&self) -> Vec<Value> {
        let s = self.lock();
        sorted(&s, &s.checkout_sessions)
    }

    /// Customer-portal sessions, oldest first.
    pub(crate) fn portal_sessions(&self) -> Vec<Value> {
        let s = self.lock();
        sorted(&s, &s.portal_sessions)
    }

    /// The price holding `lookup_key`, if any.
    pub(crate) fn price_by_lookup_key(&self, lookup_key: &str) -> Option<Value> {
        self.lock()
            .prices
            .values()
            .find(|p| p["lookup_key"] == lookup_key)
            .cloned()
    }

    /// Seed (or replace) a subscription; `subscription_object` builds a complete one.
    pub(crate) fn put_subscription(&self, subscription: Value) {
        let id = subscription["id"].as_str().unwrap_or_default().to_string();
        let mut s = self.lock();
        let n = next(&mut s);
        s.order.insert(id.clone(), n);
        s.subscriptions.insert(id, subscription);
    }
}

fn sorted(s: &State, map: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut items: Vec<&Value> = map.values().collect();
    items.sort_by_key(|v| s.order.get(v["id"].as_str().unwrap_or_default()).copied());
    items.into_iter().cloned().collect()
}

fn next(s: &mut State) -> u64 {
    s.seq += 1;
    s.clock += 1;
    s.seq
}

fn new_id(s: &mut State, prefix: &str) -> String {
    let n = next(s);
    format!("{prefix}_fake{n:06}")
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let raw = if method == Method::GET {
        uri.query().unwrap_or_default().to_string()
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let params = parse_form(&raw);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {SECRET_KEY}"));
    let write = method == Method::POST;

    let (status, body, replayed, hang) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let (status, body, replayed, hang) = if !authorized {
            let e = StripeError::new(
                401,
                "invalid_request_error",
                None,
                "Invalid API Key provided",
                None,
            );
            (e.status.as_u16(), e.body, false, None)
        } else if let Some(saved) = key.as_ref().and_then(|k| s.idempotent.get(k)).cloned() {
            // Stripe compares the parameters, not their order on the wire.
            if saved.method == method.as_str() && saved.path == path && saved.params == params {
                (saved.status, saved.body, true, None)
            } else {
                let e = StripeError::new(
                    400,
                    "idempotency_error",
                    None,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    None,
                );
                (e.status.as_u16(), e.body, false, None)
            }
        } else if write && take_failure(&mut s) {
            let e = StripeError::new(
                500,
                "api_error",
                None,
                "An unknown error occurred (injected by the fake).",
                None,
            );
            (e.status.as_u16(), e.body, false, None)
        } else {
            let hang = (write && take_time_out(&mut s)).then_some(s.hang);
            let (status, body) = match route(&mut s, &method, &path, &params) {
                Ok(v) => (200, v),
                Err(e) => (e.status.as_u16(), e.body),
            };
            if let (Some(k), true) = (&key, write) {
                s.idempotent.insert(
                    k.clone(),
                    Saved {
                        method: method.as_str().to_string(),
                        path: path.clone(),
                        params: params.clone(),
                        status,
                        body: body.clone(),
                    },
                );
            }
            (status, body, false, hang)
        };
        s.calls.push(Call {
            method: method.as_str().to_string(),
            path: path.clone(),
            raw,
            params,
            idempotency_key: key,
            replayed,
            status,
        });
        (status, body, replayed, hang)
    };
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("request-id", HeaderValue::from_static("req_fake"));
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn take_failure(s: &mut State) -> bool {
    match s.fail {
        Some((0, 0)) | None => {
            s.fail = None;
            false
        }
        Some((0, count)) => {
            s.fail = Some((0, count - 1));
            true
        }
        Some((after, count)) => {
            s.fail = Some((after - 1, count));
            false
        }
    }
}

fn take_time_out(s: &mut State) -> bool {
    match s.time_out {
        Some(0) => {
            s.time_out = None;
            true
        }
        Some(after) => {
            s.time_out = Some(after - 1);
            false
        }
        None => false,
    }
}

fn route(s: &mut State, method: &Method, path: &str, p: &Value) -> Answer {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["v1", "products"]) => create_product(s, p),
        ("GET", ["v1", "products"]) => list_products(s, p),
        ("GET", ["v1", "products", "search"]) => search_products(s, p),
        ("GET", ["v1", "products", id]) => {
            known(p, &["expand"])?;
            get(&s.products, "product", id)
        }
        ("POST", ["v1", "products", id]) => update_product(s, id, p),
        ("POST", ["v1", "prices"]) => create_price(s, p),
        ("GET", ["v1", "prices"]) => list_prices(s, p),
        ("GET", ["v1", "prices", id]) => {
            known(p, &["expand"])?;
            get(&s.prices, "price", id)
        }
        ("POST", ["v1", "prices", id]) => update_price(s, id, p),
        ("POST", ["v1", "customers"]) => create_customer(s, p),
        ("GET", ["v1", "customers", id]) => {
            known(p, &["expand"])?;
            get(&s.customers, "customer", id)
        }
        ("POST", ["v1", "checkout", "sessions"]) => create_checkout_session(s, p),
        ("POST", ["v1", "billing_portal", "sessions"]) => create_portal_session(s, p),
        ("GET", ["v1", "subscriptions", id]) => {
            known(p, &["expand"])?;
            get(&s.subscriptions, "subscription", id)
        }
        _ => Err(StripeError::new(
            404,
            "invalid_request_error",
            None,
            &format!("Unrecognized request URL ({method} {path})."),
            None,
        )),
    }
}

/// 400 `parameter_unknown` for a top-level parameter the endpoint does not take.
fn known(p: &Value, allowed: &[&str]) -> Result<(), StripeError> {
    if let Some(map) = p.as_object()
        && let Some(bad) = map.keys().find(|k| !allowed.contains(&k.as_str()))
    {
        return Err(StripeError::new(
            400,
            "invalid_request_error",
            Some("parameter_unknown"),
            &format!("Received unknown parameter: {bad}"),
            Some(bad),
        ));
    }
    Ok(())
}

fn get(map: &BTreeMap<String, Value>, kind: &str, id: &str) -> Answer {
    map.get(id)
        .cloned()
        .ok_or_else(|| StripeError::missing(kind, id, "id"))
}

fn text<'a>(p: &'a Value, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

fn flag(p: &Value, key: &str) -> Result<Option<bool>, StripeError> {
    match text(p, key) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(StripeError::invalid(
            &format!("Invalid boolean: {other}"),
            key,
        )),
    }
}

fn integer(p: &Value, key: &str) -> Result<Option<i64>, StripeError> {
    text(p, key)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| StripeError::invalid(&format!("Invalid integer: {v}"), key))
        })
        .transpose()
}

/// Stripe's metadata update: a key set to "" is removed.
fn merge_metadata(target: &mut Value, p: &Value) -> Result<(), StripeError> {
    let Some(update) = p.get("metadata") else {
        return Ok(());
    };
    let update = update
        .as_object()
        .ok_or_else(|| StripeError::invalid("Invalid hash", "metadata"))?;
    if !target["metadata"].is_object() {
        target["metadata"] = json!({});
    }
    for (k, v) in update {
        let v = v.as_str().unwrap_or_default();
        if v.is_empty() {
            target["metadata"].as_object_mut().map(|m| m.remove(k));
        } else {
            target["metadata"][k] = v.into();
        }
    }
    Ok(())
}

fn list(data: Vec<Value>, url: &str, p: &Value) -> Answer {
    let limit = integer(p, "limit")?.unwrap_or(10).clamp(1, 100) as usize;
    let start = match text(p, "starting_after") {
        Some(after) => match data.iter().position(|v| v["id"] == after) {
            Some(i) => i + 1,
            None => return Err(StripeError::missing("object", after, "starting_after")),
        },
        None => 0,
    };
    let rest: Vec<Value> = data.into_iter().skip(start).collect();
    let has_more = rest.len() > limit;
    Ok(json!({
        "object": "list",
        "data": rest.into_iter().take(limit).collect::<Vec<_>>(),
        "has_more": has_more,
        "url": url,
    }))
}

/// Objects newest first, as Stripe lists them.
fn newest_first(s: &State, map: &BTreeMap<String, Value>) -> Vec<Value> {
    let mut items = sorted(s, map);
    items.reverse();
    items
}

fn strings(p: &Value, key: &str) -> Option<Vec<String>> {
    p.get(key).map(|v| match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Value::String(one) => vec![one.clone()],
        _ => Vec::new(),
    })
}

fn create_product(s: &mut State, p: &Value) -> Answer {
    known(
        p,
        &["name", "active", "id", "metadata", "description", "expand"],
    )?;
    let name = text(p, "name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| StripeError::invalid("Missing required param: name.", "name"))?;
    let id = match text(p, "id") {
        Some(id) if s.products.contains_key(id) => {
            return Err(StripeError::new(
                400,
                "invalid_request_error",
                Some("resource_already_exists"),
                "Product already exists.",
                Some("id"),
            ));
        }
        Some(id) => {
            let id = id.to_string();
            let n = next(s);
            s.order.insert(id.clone(), n);
            id
        }
        None => {
            let id = new_id(s, "prod");
            let n = s.seq;
            s.order.insert(id.clone(), n);
            id
        }
    };
    let mut product = json!({
        "id": id,
        "object": "product",
        "active": flag(p, "active")?.unwrap_or(true),
        "created": s.clock,
        "updated": s.clock,
        "default_price": null,
        "description": text(p, "description"),
        "images": [],
        "livemode": false,
        "marketing_features": [],
        "metadata": {},
        "name": name,
        "package_dimensions": null,
        "shippable": null,
        "statement_descriptor": null,
        "tax_code": null,
        "type": "service",
        "unit_label": null,
        "url": null,
    });
    merge_metadata(&mut product, p)?;
    s.products.insert(id, product.clone());
    Ok(product)
}

fn update_product(s: &mut State, id: &str, p: &Value) -> Answer {
    known(p, &["name", "active", "metadata", "description", "expand"])?;
    let clock = {
        s.clock += 1;
        s.clock
    };
    let product = s
        .products
        .get_mut(id)
        .ok_or_else(|| StripeError::missing("product", id, "id"))?;
    if let Some(name) = text(p, "name") {
        product["name"] = name.into();
    }
    if let Some(active) = flag(p, "active")? {
        product["active"] = active.into();
    }
    merge_metadata(product, p)?;
    product["updated"] = clock.into();
    Ok(product.clone())
}

fn list_products(s: &mut State, p: &Value) -> Answer {
    known(p, &["active", "ids", "limit", "starting_after", "expand"])?;
    let active = flag(p, "active")?;
    let ids = strings(p, "ids");
    let data = newest_first(s, &s.products)
        .into_iter()
        .filter(|v| active.is_none_or(|a| v["active"] == a))
        .filter(|v| {
            ids.as_ref()
                .is_none_or(|ids| ids.iter().any(|i| v["id"] == i.as_str()))
        })
        .collect();
    list(data, "/v1/products", p)
}

/// `metadata['key']:'value'` (the one query form the fake understands).
fn search_products(s: &mut State, p: &Value) -> Answer {
    known(p, &["query", "limit", "page", "expand"])?;
    let query = text(p, "query").unwrap_or_default();
    let parsed = query
        .strip_prefix("metadata['")
        .and_then(|rest| rest.split_once("']:'"))
        .and_then(|(k, v)| v.strip_suffix('\'').map(|v| (k.to_string(), v.to_string())));
    let Some((key, value)) = parsed else {
        return Err(StripeError::invalid(
            "The fake only searches metadata['key']:'value'.",
            "query",
        ));
    };
    let data: Vec<Value> = newest_first(s, &s.products)
        .into_iter()
        .filter(|v| v["metadata"][&key] == value.as_str())
        .collect();
    Ok(json!({
        "object": "search_result",
        "data": data,
        "has_more": false,
        "next_page": null,
        "url": "/v1/products/search",
    }))
}

fn recurring_interval(p: &Value) -> Result<String, StripeError> {
    let interval = p
        .get("recurring")
        .and_then(|r| r.get("interval"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            StripeError::invalid("Missing required param: recurring[interval].", "recurring")
        })?;
    if !["day", "week", "month", "year"].contains(&interval) {
        return Err(StripeError::invalid(
            &format!("Invalid recurring[interval]: {interval}"),
            "recurring[interval]",
        ));
    }
    Ok(interval.to_string())
}

/// Give `lookup_key` to `to`: refused when another price holds it, unless `transfer`.
fn take_lookup_key(s: &mut State, key: &str, to: &str, transfer: bool) -> Result<(), StripeError> {
    let holder = s
        .prices
        .values()
        .find(|v| v["lookup_key"] == key && v["id"] != to)
        .map(|v| v["id"].as_str().unwrap_or_default().to_string());
    if let Some(holder) = holder {
        if !transfer {
            return Err(StripeError::invalid(
                &format!(
                    "A price (`{holder}`) already uses that lookup key. Set `transfer_lookup_key` to move it."
                ),
                "lookup_key",
            ));
        }
        if let Some(old) = s.prices.get_mut(&holder) {
            old["lookup_key"] = Value::Null;
        }
    }
    Ok(())
}

fn create_price(s: &mut State, p: &Value) -> Answer {
    known(
        p,
        &[
            "currency",
            "product",
            "unit_amount",
            "recurring",
            "lookup_key",
            "transfer_lookup_key",
            "metadata",
            "active",
            "nickname",
            "expand",
        ],
    )?;
    let currency = text(p, "currency")
        .ok_or_else(|| StripeError::invalid("Missing required param: currency.", "currency"))?
        .to_string();
    let product = text(p, "product")
        .ok_or_else(|| StripeError::invalid("Missing required param: product.", "product"))?
        .to_string();
    if !s.products.contains_key(&product) {
        return Err(StripeError::missing("product", &product, "product"));
    }
    let amount = integer(p, "unit_amount")?.ok_or_else(|| {
        StripeError::invalid("Missing required param: unit_amount.", "unit_amount")
    })?;
    if amount < 0 {
        return Err(StripeError::invalid(
            "This value must be greater than or equal to 0.",
            "unit_amount",
        ));
    }
    let interval = recurring_interval(p)?;
    let id = new_id(s, "price");
    let lookup_key = text(p, "lookup_key").map(str::to_string);
    if let Some(key) = &lookup_key {
        take_lookup_key(
            s,
            key,
            &id,
            flag(p, "transfer_lookup_key")?.unwrap_or(false),
        )?;
    }
    let n = s.seq;
    s.order.insert(id.clone(), n);
    let mut price = json!({
        "id": id,
        "object": "price",
        "active": flag(p, "active")?.unwrap_or(true),
        "billing_scheme": "per_unit",
        "created": s.clock,
        "currency": currency,
        "custom_unit_amount": null,
        "livemode": false,
        "lookup_key": lookup_key,
        "metadata": {},
        "nickname": text(p, "nickname"),
        "product": product,
        "recurring": {
            "interval": interval,
            "interval_count": 1,
            "meter": null,
            "trial_period_days": null,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": null,
        "transform_quantity": null,
        "type": "recurring",
        "unit_amount": amount,
        "unit_amount_decimal": amount.to_string(),
    });
    merge_metadata(&mut price, p)?;
    s.prices.insert(id, price.clone());
    Ok(price)
}

fn update_price(s: &mut State, id: &str, p: &Value) -> Answer {
    known(
        p,
        &[
            "active",
            "lookup_key",
            "transfer_lookup_key",
            "metadata",
            "nickname",
            "expand",
        ],
    )?;
    if !s.prices.contains_key(id) {
        return Err(StripeError::missing("price", id, "id"));
    }
    if let Some(key) = text(p, "lookup_key") {
        take_lookup_key(s, key, id, flag(p, "transfer_lookup_key")?.unwrap_or(false))?;
    }
    let active = flag(p, "active")?;
    let price = s
        .prices
        .get_mut(id)
        .ok_or_else(|| StripeError::missing("price", id, "id"))?;
    if let Some(key) = text(p, "lookup_key") {
        price["lookup_key"] = key.into();
    }
    if let Some(active) = active {
        price["active"] = active.into();
    }
    merge_metadata(price, p)?;
    Ok(price.clone())
}

fn list_prices(s: &mut State, p: &Value) -> Answer {
    known(
        p,
        &[
            "active",
            "lookup_keys",
            "product",
            "limit",
            "starting_after",
            "expand",
        ],
    )?;
    let active = flag(p, "active")?;
    let keys = strings(p, "lookup_keys");
    if keys.as_ref().is_some_and(|k| k.len() > 10) {
        return Err(StripeError::invalid(
            "You may only specify up to 10 lookup_keys.",
            "lookup_keys",
        ));
    }
    let product = text(p, "product");
    let data = newest_first(s, &s.prices)
        .into_iter()
        .filter(|v| active.is_none_or(|a| v["active"] == a))
        .filter(|v| product.is_none_or(|prod| v["product"] == prod))
        .filter(|v| {
            keys.as_ref()
                .is_none_or(|keys| keys.iter().any(|k| v["lookup_key"] == k.as_str()))
        })
        .collect();
    list(data, "/v1/prices", p)
}

fn create_customer(s: &mut State, p: &Value) -> Answer {
    known(p, &["name", "email", "metadata", "description", "expand"])?;
    let id = new_id(s, "cus");
    let n = s.seq;
    s.order.insert(id.clone(), n);
    let mut customer = json!({
        "id": id,
        "object": "customer",
        "created": s.clock,
        "livemode": false,
        "metadata": {},
        "name": text(p, "name"),
        "email": text(p, "email"),
        "description": text(p, "description"),
    });
    merge_metadata(&mut customer, p)?;
    s.customers.insert(id, customer.clone());
    Ok(customer)
}

fn create_checkout_session(s: &mut State, p: &Value) -> Answer {
    known(
        p,
        &[
            "mode",
            "customer",
            "client_reference_id",
            "line_items",
            "success_url",
            "cancel_url",
            "metadata",
            "subscription_data",
            "expand",
        ],
    )?;
    let mode = text(p, "mode")
        .ok_or_else(|| StripeError::invalid("Missing required param: mode.", "mode"))?
        .to_string();
    let success_url = text(p, "success_url").ok_or_else(|| {
        StripeError::invalid("Missing required param: success_url.", "success_url")
    })?;
    let customer = text(p, "customer").map(str::to_string);
    if let Some(c) = &customer
        && !s.customers.contains_key(c)
    {
        return Err(StripeError::missing("customer", c, "customer"));
    }
    let items = p
        .get("line_items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        return Err(StripeError::invalid(
            "Missing required param: line_items.",
            "line_items",
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let param = format!("line_items[{i}][price]");
        let price_id = item["price"]
            .as_str()
            .ok_or_else(|| StripeError::invalid("Missing required param: price.", &param))?;
        let price = s
            .prices
            .get(price_id)
            .ok_or_else(|| StripeError::missing("price", price_id, &param))?;
        if price["active"] != true {
            return Err(StripeError::invalid(
                &format!("The price specified is inactive: {price_id}"),
                &param,
            ));
        }
        if mode == "subscription" && price["type"] != "recurring" {
            return Err(StripeError::invalid(
                "In subscription mode, every price must be recurring.",
                &param,
            ));
        }
    }
    let id = new_id(s, "cs_test");
    let n = s.seq;
    s.order.insert(id.clone(), n);
    let mut session = json!({
        "id": id,
        "object": "checkout.session",
        "automatic_tax": { "enabled": false, "liability": null, "provider": null, "status": null },
        "cancel_url": text(p, "cancel_url"),
        "client_reference_id": text(p, "client_reference_id"),
        "created": s.clock,
        "custom_fields": [],
        "custom_text": {
            "after_submit": null,
            "shipping_address": null,
            "submit": null,
            "terms_of_service_acceptance": null,
        },
        "customer": customer,
        "expires_at": s.clock + 86_400,
        "livemode": false,
        "metadata": {},
        "mode": mode,
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "shipping_options": [],
        "status": "open",
        "subscription": null,
        "success_url": success_url,
        "url": format!("https://checkout.stripe.test/c/pay/{id}"),
    });
    merge_metadata(&mut session, p)?;
    s.checkout_sessions.insert(id, session.clone());
    Ok(session)
}

fn create_portal_session(s: &mut State, p: &Value) -> Answer {
    known(p, &["customer", "return_url", "configuration", "expand"])?;
    let customer = text(p, "customer")
        .ok_or_else(|| StripeError::invalid("Missing required param: customer.", "customer"))?
        .to_string();
    if !s.customers.contains_key(&customer) {
        return Err(StripeError::missing("customer", &customer, "customer"));
    }
    let id = new_id(s, "bps");
    let n = s.seq;
    s.order.insert(id.clone(), n);
    let session = json!({
        "id": id,
        "object": "billing_portal.session",
        "configuration": "bpc_fake_default",
        "created": s.clock,
        "customer": customer,
        "flow": null,
        "livemode": false,
        "locale": null,
        "on_behalf_of": null,
        "return_url": text(p, "return_url"),
        "url": format!("https://billing.stripe.test/p/session/{id}"),
    });
    s.portal_sessions.insert(id, session.clone());
    Ok(session)
}

/// A complete subscription object (every field async-stripe requires): one item of
/// `price` (a price object as the fake stores it), `status`, the current period.
pub(crate) fn subscription_object(
    id: &str,
    customer: &str,
    price: &Value,
    status: &str,
    period_start: i64,
    period_end: i64,
    metadata: Value,
) -> Value {
    let interval = price["recurring"]["interval"].clone();
    let plan = json!({
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "billing_scheme": "per_unit",
        "created": price["created"],
        "currency": price["currency"],
        "interval": interval,
        "interval_count": 1,
        "livemode": false,
        "metadata": {},
        "product": price["product"],
        "usage_type": "licensed",
    });
    let item = json!({
        "id": format!("si_{id}"),
        "object": "subscription_item",
        "created": period_start,
        "current_period_end": period_end,
        "current_period_start": period_start,
        "discounts": [],
        "metadata": {},
        "plan": plan,
        "price": price,
        "quantity": 1,
        "subscription": id,
        "tax_rates": [],
    });
    let mut subscription = json!({
        "id": id,
        "object": "subscription",
        "automatic_tax": { "enabled": false, "disabled_reason": null, "liability": null },
        "billing_cycle_anchor": period_start,
        "billing_cycle_anchor_config": null,
        "billing_mode": { "type": "classic" },
        "billing_schedules": [],
        "cancel_at": null,
        "cancel_at_period_end": false,
        "canceled_at": null,
        "collection_method": "charge_automatically",
        "created": period_start,
        "currency": price["currency"],
        "customer": customer,
        "discounts": [],
        "ended_at": null,
    });
    let rest = json!({
        "invoice_settings": { "account_tax_ids": null, "issuer": { "type": "self" } },
        "items": {
            "object": "list",
            "data": [item],
            "has_more": false,
            "url": format!("/v1/subscription_items?subscription={id}"),
        },
        "latest_invoice": null,
        "livemode": false,
        "metadata": metadata,
        "start_date": period_start,
        "status": status,
        "trial_end": null,
        "trial_start": null,
    });
    if let (Some(map), Value::Object(rest)) = (subscription.as_object_mut(), rest) {
        map.extend(rest);
    }
    subscription
}

/// Parse `a[b][0][c]=v&…` (URL-encoded) into nested JSON: objects for names, arrays for
/// numeric or empty (`a[]`) indexes, strings for values.
pub(crate) fn parse_form(raw: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let mut path: Vec<String> = Vec::new();
        let (head, mut rest) = match key.find('[') {
            Some(i) => (&key[..i], &key[i..]),
            None => (&key[..], ""),
        };
        path.push(head.to_string());
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            path.push(stripped[..end].to_string());
            rest = &stripped[end + 1..];
        }
        insert(&mut root, &path, Value::String(value.into_owned()));
    }
    arrays(root)
}

/// Insert with every level as an object; indexes stay keys until [`arrays`].
fn insert(node: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    let Some(map) = node.as_object_mut() else {
        return;
    };
    let key = if first.is_empty() {
        // `a[]`: the next index.
        format!("{:020}", map.len())
    } else if first.bytes().all(|b| b.is_ascii_digit()) {
        format!("{:0>20}", first)
    } else {
        first.clone()
    };
    if rest.is_empty() {
        map.insert(key, value);
    } else {
        let child = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
        insert(child, rest, value);
    }
}

/// Objects whose keys are all (padded) indexes become arrays, in index order.
fn arrays(node: Value) -> Value {
    match node {
        Value::Object(map) => {
            let all_indexes = !map.is_empty()
                && map
                    .keys()
                    .all(|k| k.len() == 20 && k.bytes().all(|b| b.is_ascii_digit()));
            if all_indexes {
                let mut items: Vec<(String, Value)> = map.into_iter().collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Array(items.into_iter().map(|(_, v)| arrays(v)).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, arrays(v))).collect())
            }
        }
        other => other,
    }
}
