//! A tenant's environments (production, staging) and feature flags per environment.
//! The operations are in [`crate::environments`]; these routes parse and render.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::Environment;
use crate::environments::{
    self, EnvironmentChange, EnvironmentList, EnvironmentView, Flag, FlagList,
};
use crate::http::{
    AppState,
    error::{ApiResult, ErrorBody},
    extract::{Admin, Json, Path, Query},
    routes::admin::EnvParam,
};

/// Environment and flag routes.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_environments))
        .routes(routes!(get_environment, put_environment))
        .routes(routes!(list_flags))
        .routes(routes!(get_flag, put_flag, delete_flag))
}

/// The tenant's environments (`settings:read`): production, and staging once created,
/// each with its widget key and settings.
#[utoipa::path(get, path = "/v1/admin/environments", tag = "environments", security(("api_key" = [])),
    responses((status = 200, body = EnvironmentList), (status = 403, body = ErrorBody)))]
async fn list_environments(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Json<EnvironmentList>> {
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        environments::list(&state.db, &admin.caller(), &tenant).await?,
    ))
}

fn env_of(name: &str) -> Result<Environment, crate::error::Error> {
    Environment::parse("env", name)
}

/// One environment of the tenant (`settings:read`): `production` or `staging` (404
/// before staging was created).
#[utoipa::path(get, path = "/v1/admin/environments/{env}", tag = "environments", security(("api_key" = [])),
    params(("env" = String, Path, description = "`production` or `staging`")),
    responses((status = 200, body = EnvironmentView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_environment(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(env): Path<String>,
) -> ApiResult<Json<EnvironmentView>> {
    let env = env_of(&env)?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        environments::get(&state.db, &admin.caller(), &tenant, env).await?,
    ))
}

/// Body of `PUT /v1/admin/environments/{env}` (`{}` creates staging, or changes
/// nothing): absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutEnvironment {
    /// Give the environment a new widget key (the old one stops working at once).
    #[serde(default)]
    pub rotate_widget_key: bool,
    /// Replace the environment's allowed origins.
    pub allowed_origins: Option<Vec<String>>,
    /// Staging only: a forum group of its own for its conversations (the tenant's bot
    /// must be an admin there); `null`: the tenant's group, topics prefixed `[staging] `.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub telegram_group_chat_id: Option<Option<i64>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// Create or change an environment (`settings:write`): `staging` is created on first
/// use (201, with a fresh widget key and default settings; 200 afterwards).
/// `rotate_widget_key` gives the environment a new key; `allowed_origins` replaces its
/// origins (a staging key only works from staging's origins); `telegram_group_chat_id`
/// sends staging's conversations to a forum group of its own, or (`null`) back to the
/// tenant's group with `[staging] ` topics.
#[utoipa::path(put, path = "/v1/admin/environments/{env}", tag = "environments", security(("api_key" = [])),
    params(("env" = String, Path, description = "`production` or `staging`")), request_body = PutEnvironment,
    responses((status = 200, body = EnvironmentView), (status = 201, body = EnvironmentView), (status = 422, body = ErrorBody)))]
async fn put_environment(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(env): Path<String>,
    Json(req): Json<PutEnvironment>,
) -> ApiResult<(StatusCode, Json<EnvironmentView>)> {
    let env = env_of(&env)?;
    let tenant = admin.tenant(&state, &headers).await?;
    let change = EnvironmentChange {
        rotate_widget_key: req.rotate_widget_key,
        allowed_origins: req.allowed_origins,
        telegram_group_chat_id: req.telegram_group_chat_id,
    };
    let (view, created) =
        environments::put(&state.db, &admin.caller(), &tenant, env, change).await?;
    state.origins.invalidate();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// The environment's feature flags (`settings:read`; `?env=`, default production):
/// its own, the plan's features, and the effective set the widget session carries
/// (the plan's features overridden by the environment's flags).
#[utoipa::path(get, path = "/v1/admin/flags", tag = "environments", security(("api_key" = [])), params(EnvParam),
    responses((status = 200, body = FlagList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn list_flags(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Query(q): Query<EnvParam>,
) -> ApiResult<Json<FlagList>> {
    let env = environments::parse_env("env", q.env.as_deref())?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        environments::flags(&state.db, &admin.caller(), &tenant, env).await?,
    ))
}

/// One feature flag of the environment (`settings:read`; `?env=`, default production):
/// its effective value and where it comes from. 404 when neither the environment nor
/// the plan has it.
#[utoipa::path(get, path = "/v1/admin/flags/{name}", tag = "environments", security(("api_key" = [])),
    params(("name" = String, Path, description = "Flag name: 1-64 of A-Z, a-z, 0-9, '_', '-', '.', ':'"), EnvParam),
    responses((status = 200, body = Flag), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_flag(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<EnvParam>,
) -> ApiResult<Json<Flag>> {
    let env = environments::parse_env("env", q.env.as_deref())?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        environments::flag(&state.db, &admin.caller(), &tenant, env, &name).await?,
    ))
}

/// Body of `PUT /v1/admin/flags/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutFlag {
    /// The flag's value in the environment (overrides the plan's feature of that name).
    pub value: bool,
}

/// Set a feature flag of the environment (`settings:write`; `?env=`, default
/// production). A bad name is 422 `validation_failed`; at most 100 flags.
#[utoipa::path(put, path = "/v1/admin/flags/{name}", tag = "environments", security(("api_key" = [])),
    params(("name" = String, Path, description = "Flag name: 1-64 of A-Z, a-z, 0-9, '_', '-', '.', ':'"), EnvParam),
    request_body = PutFlag,
    responses((status = 200, body = Flag), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn put_flag(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<EnvParam>,
    Json(req): Json<PutFlag>,
) -> ApiResult<Json<Flag>> {
    let env = environments::parse_env("env", q.env.as_deref())?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        environments::set_flag(
            &state.db,
            &admin.caller(),
            &tenant,
            env,
            &name,
            Some(req.value),
        )
        .await?,
    ))
}

/// Unset a feature flag of the environment (`settings:write`; `?env=`, default
/// production): the plan's feature of that name applies again. Unsetting a flag that
/// is not set changes nothing.
#[utoipa::path(delete, path = "/v1/admin/flags/{name}", tag = "environments", security(("api_key" = [])),
    params(("name" = String, Path, description = "Flag name"), EnvParam),
    responses((status = 200, body = Flag), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn delete_flag(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<EnvParam>,
) -> ApiResult<Json<Flag>> {
    let env = environments::parse_env("env", q.env.as_deref())?;
    let tenant = admin.tenant(&state, &headers).await?;
    Ok(Json(
        environments::set_flag(&state.db, &admin.caller(), &tenant, env, &name, None).await?,
    ))
}
