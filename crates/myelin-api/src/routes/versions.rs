use axum::{Json, extract::State};
use serde_json::{Value, json};

use crate::AppState;

pub async fn versions(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "versions": [
            "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
            "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
            "v1.11", "v1.12", "v1.13", "v1.14", "v1.15"
        ],
        "unstable_features": {
            "org.matrix.msc3814": true,
            "im.nheko.summary": true,
            "org.matrix.msc3266": true,
            "uk.half-shot.msc2666.query_mutual_rooms": true,
            "org.matrix.simplified_msc3575": true,
            "org.matrix.msc4140": state.config().rtc.max_event_delay_ms > 0,
            "org.matrix.msc4143": true,
            "org.matrix.msc4354": true,
        }
    }))
}

pub async fn well_known(State(state): State<AppState>) -> Json<Value> {
    let mut body = json!({ "m.homeserver": { "base_url": state.config().base_url() } });
    let transports = state.rtc_transports();
    if !transports.is_empty() {
        // Where clients before `rtc/transports` look for the call transports (MSC4143).
        body["org.matrix.msc4143.rtc_foci"] = Value::Array(transports);
    }
    Json(body)
}

/// `/.well-known/matrix/support`: the configured contacts and page; 404 when there are none.
pub async fn well_known_support(State(state): State<AppState>) -> crate::error::ApiResult<Json<Value>> {
    let support = &state.config().support;
    if support.page.is_empty() && support.contacts.is_empty() {
        return Err(myelin_core::MatrixError::not_found("No support information is published").into());
    }
    let contacts: Vec<Value> = support
        .contacts
        .iter()
        .map(|c| {
            let mut contact = json!({ "role": c.role });
            if !c.matrix_id.is_empty() {
                contact["matrix_id"] = c.matrix_id.clone().into();
            }
            if !c.email_address.is_empty() {
                contact["email_address"] = c.email_address.clone().into();
            }
            contact
        })
        .collect();
    let mut body = json!({ "contacts": contacts });
    if !support.page.is_empty() {
        body["support_page"] = support.page.clone().into();
    }
    Ok(Json(body))
}

pub async fn capabilities(_auth: crate::extract::Auth, State(state): State<AppState>) -> Json<Value> {
    let available: serde_json::Map<String, Value> = myelin_service::rooms::SUPPORTED_ROOM_VERSIONS
        .iter()
        .map(|v| ((*v).to_owned(), Value::from("stable")))
        .collect();
    Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": state.config().default_room_version, "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": state.config().email.enabled() },
            "m.get_login_token": { "enabled": true },
            "org.matrix.msc4140.delayed_events": {
                "max_delay_ms": state.config().rtc.max_event_delay_ms,
                "max_scheduled": state.config().rtc.max_delayed_events_per_user,
            },
        }
    }))
}
