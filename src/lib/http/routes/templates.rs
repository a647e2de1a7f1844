//! Templates and i18n: a tenant's overrides of the widget's strings (admin), and the
//! merged strings the widget loads (public, by widget key).
//!
//! Rules shared by every route here: a key outside the catalogue (`crate::i18n::CATALOGUE`)
//! is 404 `not_found` naming the key; a locale that is not `ll` or `ll-RR` is 422
//! `validation_failed` (`field: "locale"`); a body with a syntax error or a variable
//! the key does not allow is 422 `validation_failed` with
//! `details: {"field": "body", "position": N, "variable"?: "…"}` (`N`: 0-based character
//! offset of the offending `{{`).

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::sha256_hex;
use crate::error::Error;
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Path, Query, check_origin, origin},
};
use crate::i18n::{self, Locale, Preview, Strings, Template};
use crate::tenancy;

/// Template and i18n routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates))
        .routes(routes!(get_template, put_template, delete_template))
        .routes(routes!(preview))
        .routes(routes!(widget_strings))
}

/// Body of `PUT /v1/admin/templates/{key}/{locale}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetTemplate {
    /// The template: text with `{{variable}}` placeholders the key allows (at most 2000 characters).
    pub body: String,
}

/// Path of one template.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TemplatePath {
    /// String key, e.g. `widget.title`.
    pub key: String,
    /// Locale, `ll` or `ll-RR` (any case; stored normalised, e.g. `de-AT`).
    pub locale: String,
}

/// Store (create or replace) the tenant's text for a key in a locale (`templates:write`).
/// Unknown key: 404 `not_found`. Syntax error or a variable the key does not allow:
/// 422 `validation_failed` with `details.position` (0-based character offset) and
/// `details.variable`.
#[utoipa::path(put, path = "/v1/admin/templates/{key}/{locale}", tag = "templates", security(("api_key" = [])),
    params(TemplatePath), request_body = SetTemplate,
    responses((status = 200, body = Template), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_template(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(p): Path<TemplatePath>,
    Json(req): Json<SetTemplate>,
) -> ApiResult<Json<Template>> {
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        i18n::set(
            &state.db,
            &admin.caller(),
            &tenant,
            &p.key,
            &p.locale,
            &req.body,
        )
        .await?,
    ))
}

/// The tenant's text for a key in exactly this locale (`templates:read`); 404 when the
/// tenant has none there (built-in texts are not templates: see the preview).
#[utoipa::path(get, path = "/v1/admin/templates/{key}/{locale}", tag = "templates", security(("api_key" = [])),
    params(TemplatePath),
    responses((status = 200, body = Template), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_template(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(p): Path<TemplatePath>,
) -> ApiResult<Json<Template>> {
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        i18n::get(&state.db, &admin.caller(), &tenant, &p.key, &p.locale).await?,
    ))
}

/// Delete the tenant's text for a key in a locale (`templates:write`); the widget falls
/// back along the chain again. Returns what was deleted; 404 when there was none.
#[utoipa::path(delete, path = "/v1/admin/templates/{key}/{locale}", tag = "templates", security(("api_key" = [])),
    params(TemplatePath),
    responses((status = 200, body = Template), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_template(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(p): Path<TemplatePath>,
) -> ApiResult<Json<Template>> {
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        i18n::delete(&state.db, &admin.caller(), &tenant, &p.key, &p.locale).await?,
    ))
}

/// Template list filter.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct TemplateFilter {
    /// Only this key (404 if it is not a known key).
    pub key: Option<String>,
    /// Only this exact locale (no fallback).
    pub locale: Option<String>,
}

/// A list of templates.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TemplateList {
    /// The tenant's templates, by key and locale.
    pub templates: Vec<Template>,
}

/// The tenant's templates (`templates:read`), optionally of one key and/or locale.
#[utoipa::path(get, path = "/v1/admin/templates", tag = "templates", security(("api_key" = [])),
    params(TemplateFilter),
    responses((status = 200, body = TemplateList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_templates(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(f): Query<TemplateFilter>,
) -> ApiResult<Json<TemplateList>> {
    let tenant = admin.tenant(&state, &headers).await?;
    let templates = i18n::list(
        &state.db,
        &admin.caller(),
        &tenant,
        f.key.as_deref().filter(|k| !k.is_empty()),
        f.locale.as_deref().filter(|l| !l.is_empty()),
    )
    .await?;
    Ok(Json(TemplateList { templates }))
}

/// Body of `POST /v1/admin/templates/preview`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewRequest {
    /// String key, e.g. `widget.rate_limited`.
    pub key: String,
    /// Locale to render for, e.g. `de-AT`.
    pub locale: String,
    /// Values of the placeholders: strings as they are, numbers and booleans as text,
    /// `null` as empty. Names the key does not use are ignored.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: BTreeMap<String, serde_json::Value>,
    /// A template to try instead of the stored or built-in text (validated like a PUT).
    pub body: Option<String>,
}

/// Render a string as the widget would show it (`templates:read`): the tenant's or the
/// built-in text found along the fallback chain (exact locale → language → the tenant's
/// `default_locale` → `en`), or the given `body`, with `variables` filled in. Unknown
/// variables are ignored; variables the text uses but the request lacks render as the
/// empty string. `locale_used` says where the text was found.
#[utoipa::path(post, path = "/v1/admin/templates/preview", tag = "templates", security(("api_key" = [])),
    request_body = PreviewRequest,
    responses((status = 200, body = Preview), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn preview(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Json(req): Json<PreviewRequest>,
) -> ApiResult<Json<Preview>> {
    let tenant = admin.tenant(&state, &headers).await?;
    let vars = req
        .variables
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    Ok(Json(
        i18n::preview(
            &state.db,
            &admin.caller(),
            &tenant,
            &req.key,
            &req.locale,
            &vars,
            req.body.as_deref(),
        )
        .await?,
    ))
}

/// Query of `GET /v1/i18n/{locale}`.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct I18nParams {
    /// The tenant's public widget key (`wk_…`).
    pub widget_key: String,
}

/// The widget's strings for a locale: every key of the catalogue, each the tenant's or
/// the built-in text found along the fallback chain (exact → language → the tenant's
/// `default_locale` → `en`). Texts are templates: the widget fills in `{{variable}}`.
/// Cacheable for 60 s; `ETag` is a hash of the body and `If-None-Match` with it answers
/// 304. Unknown widget key: 401; an `Origin` the tenant does not allow: 403; a locale
/// that is not `ll` or `ll-RR`: 422.
#[utoipa::path(get, path = "/v1/i18n/{locale}", tag = "widget",
    params(("locale" = String, Path, description = "Locale, e.g. `de-AT`"), I18nParams),
    responses((status = 200, body = Strings, headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified (the `If-None-Match` ETag is current)"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn widget_strings(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(locale): Path<String>,
    Query(q): Query<I18nParams>,
) -> ApiResult<Response> {
    let locale = Locale::parse(&locale)?;
    let tenant = tenancy::tenant_by_widget_key(&state.db, &q.widget_key).await?;
    tracing::Span::current().record("tenant", tenant.id.as_str());
    if let Some(o) = origin(&headers) {
        check_origin(&tenant, o)?;
    }
    let strings = i18n::strings(&state.db, &tenant, &locale).await?;
    let body = serde_json::to_string(&strings).map_err(|e| Error::internal(e.to_string()))?;
    let etag = format!("\"{}\"", &sha256_hex(&body)[..32]);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == etag || t == "*")
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(resp)
}
