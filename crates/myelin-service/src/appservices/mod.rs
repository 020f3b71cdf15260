//! Application services (bridges and bots): registration files loaded at start
//! (`registration.rs`), the services' tokens and masquerading (`?user_id=`, `device_id`), the
//! namespaces they hold alone (`M_EXCLUSIVE` for anyone else), which events each is interested
//! in (written to its outbox with the event), and the transactions that carry them
//! (`sender.rs`), with the user and alias queries and the ping.

pub mod registration;
mod sender;

use std::sync::Arc;

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{OwnedDeviceId, RoomAliasId, RoomId, UserId},
};
use myelin_storage::MemberRecord;

pub use registration::{Appservice, load_registrations};
pub(crate) use sender::APPSERVICE_TIMEOUT;
pub use sender::appservice_retry_at;

use crate::{Services, accounts::Requester};

/// Who an application service's request acts as (its query parameters).
#[derive(Clone, Debug, Default)]
pub struct Masquerade {
    /// `user_id`: one of its users (its own user if absent).
    pub user_id: Option<String>,
    /// `device_id` or `org.matrix.msc3202.device_id`: one of that user's devices.
    pub device_id: Option<String>,
}

/// The device an application service's request without `device_id` stands on: none of the
/// user's real devices (transaction ids are scoped by it).
fn appservice_device(appservice: &Appservice) -> OwnedDeviceId {
    OwnedDeviceId::from(format!("appservice:{}", appservice.id))
}

fn exclusive(what: &str) -> MatrixError {
    MatrixError::new(ErrorCode::Exclusive, format!("This {what} is reserved by an application service"))
}

impl Services {
    /// The configured application services (as last loaded: at start or on SIGHUP).
    pub fn appservices(&self) -> Arc<Vec<Arc<Appservice>>> {
        self.appservices.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn appservice_by_id(&self, id: &str) -> Option<Arc<Appservice>> {
        self.appservices().iter().find(|a| a.id == id).cloned()
    }

    /// The service whose `as_token` this is.
    pub(crate) fn appservice_by_token(&self, token: &str) -> Option<Arc<Appservice>> {
        self.appservices().iter().find(|a| a.as_token == token).cloned()
    }

    /// Loads the registration files of `paths` again and uses them from now on (SIGHUP); the
    /// ones in use stay if any file is wrong. Answers how many services there are.
    pub fn reload_appservices(&self, paths: &[String]) -> Result<usize, Vec<String>> {
        let loaded: Vec<Arc<Appservice>> =
            load_registrations(paths, &self.server_name)?.into_iter().map(Arc::new).collect();
        let count = loaded.len();
        *self.appservices.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(count)
    }

    /// The requester of an application service's token, as the user (and device) it names.
    pub(crate) async fn appservice_requester(
        &self,
        appservice: &Appservice,
        token: &str,
        masquerade: &Masquerade,
    ) -> MatrixResult<Requester> {
        let user_id = match &masquerade.user_id {
            None => appservice.sender.clone(),
            Some(raw) => {
                let user_id =
                    UserId::parse(raw.as_str()).map_err(|_| MatrixError::invalid_param("user_id is not a user id"))?;
                if !self.is_local_user(&user_id) || !appservice.is_interested_in_user(&user_id) {
                    return Err(MatrixError::forbidden("Application service cannot masquerade as this user"));
                }
                user_id
            }
        };
        let user = self.store.get_user(&user_id).await?;
        let Some(user) = user.filter(|u| !u.deactivated) else {
            return Err(MatrixError::forbidden("Application service has not registered this user"));
        };
        let device_id = match &masquerade.device_id {
            None => appservice_device(appservice),
            Some(device) => {
                let device = OwnedDeviceId::from(device.as_str());
                if self.store.get_device(&user_id, &device).await?.is_none() {
                    return Err(MatrixError::new(
                        ErrorCode::Other("M_UNKNOWN_DEVICE"),
                        "Application service trying to use a device that doesn't exist",
                    )
                    .with_status(400));
                }
                device
            }
        };
        Ok(Requester {
            user_id,
            device_id,
            is_admin: user.is_admin,
            is_guest: false,
            access_token: token.to_owned(),
            appservice: Some(appservice.id.clone()),
        })
    }

    /// `M_EXCLUSIVE` for a user another service holds, or one outside the registering
    /// service's namespace (`by`: the service registering it, if any).
    pub(crate) fn check_user_namespace(&self, user_id: &UserId, by: Option<&str>) -> MatrixResult<()> {
        match by.and_then(|id| self.appservice_by_id(id)) {
            Some(service) if !service.is_interested_in_user(user_id) => Err(exclusive("user id")),
            by_service => {
                let held_elsewhere = self
                    .appservices()
                    .iter()
                    .any(|a| a.claims_user(user_id) && by_service.as_ref().is_none_or(|s| s.id != a.id));
                if held_elsewhere { Err(exclusive("user id")) } else { Ok(()) }
            }
        }
    }

    /// `M_EXCLUSIVE` for an alias a service holds, unless that service asks.
    pub(crate) fn check_alias_namespace(&self, alias: &RoomAliasId, by: Option<&str>) -> MatrixResult<()> {
        if self.appservices().iter().any(|a| a.claims_alias(alias) && by != Some(a.id.as_str())) {
            return Err(exclusive("room alias"));
        }
        Ok(())
    }

    /// Whether requests as this user skip the rate limits: users a service registered with
    /// `rate_limited: false` holds exclusively (its own user, its exclusive namespaces; a broad
    /// non-exclusive namespace exempts nobody).
    pub(crate) fn exempt_from_rate_limits(&self, user_id: &str) -> bool {
        let services = self.appservices();
        !services.is_empty()
            && UserId::parse(user_id).is_ok_and(|u| services.iter().any(|a| !a.rate_limited && a.claims_user(&u)))
    }

    /// The services interested in an event of `room_id` sent by `sender` (with `state_key`),
    /// given the room's joined members: the sender, the state key's user, the room id, one of
    /// the room's aliases, or a joined member in a service's namespace.
    pub(crate) async fn appservices_interested(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        state_key: Option<&str>,
        joined: &[MemberRecord],
    ) -> MatrixResult<Vec<String>> {
        if self.appservices().is_empty() {
            return Ok(Vec::new());
        }
        let aliases = if self.appservices().iter().any(|a| a.has_alias_namespaces()) {
            self.store.room_aliases(room_id).await?
        } else {
            Vec::new()
        };
        let target = state_key.and_then(|k| UserId::parse(k).ok());
        Ok(self
            .appservices()
            .iter()
            .filter(|a| a.url.is_some())
            .filter(|a| {
                a.is_interested_in_user(sender)
                    || target.as_deref().is_some_and(|t| a.is_interested_in_user(t))
                    || a.is_interested_in_room(room_id)
                    || aliases.iter().any(|alias| a.is_interested_in_alias(alias))
                    || joined.iter().any(|m| a.is_interested_in_user(&m.user_id))
            })
            .map(|a| a.id.clone())
            .collect())
    }

    /// The services that receive ephemeral events (MSC2409) and are interested in the room.
    pub(crate) async fn appservices_for_ephemeral(&self, room_id: &RoomId) -> MatrixResult<Vec<String>> {
        if !self.appservices().iter().any(|a| a.receive_ephemeral && a.url.is_some()) {
            return Ok(Vec::new());
        }
        let joined = self.store.room_members(room_id, Some(myelin_storage::Membership::Join)).await?;
        let aliases = self.store.room_aliases(room_id).await?;
        Ok(self
            .appservices()
            .iter()
            .filter(|a| a.receive_ephemeral && a.url.is_some())
            .filter(|a| {
                a.is_interested_in_room(room_id)
                    || aliases.iter().any(|alias| a.is_interested_in_alias(alias))
                    || joined.iter().any(|m| a.is_interested_in_user(&m.user_id))
            })
            .map(|a| a.id.clone())
            .collect())
    }

    /// Each service's own user, registered if it is not yet (at start).
    pub async fn register_appservice_users(&self) -> MatrixResult<()> {
        for service in self.appservices().iter() {
            if self.store.get_user(&service.sender).await?.is_none() {
                match self.create_user(service.sender.localpart(), None, false).await {
                    Ok(_) => {
                        tracing::info!(appservice = %service.id, user = %service.sender, "application service user registered")
                    }
                    Err(err) if err.code == ErrorCode::UserInUse => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(())
    }
}
