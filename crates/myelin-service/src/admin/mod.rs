//! The server admins' view, in the shapes of Synapse's admin API (`/_synapse/admin`, which admin
//! UIs speak): accounts, rooms, media, reports, registration tokens and federation
//! destinations. The admin CLI calls the same functions (`myelin user …`, `myelin room …`).
//! Every action that removes something is written to the log with the admin who did it.

mod destinations;
mod media;
mod registration_tokens;
mod reports;
mod rooms;
mod users;

use myelin_core::{MatrixError, MatrixResult, types::UserId};

pub use media::MediaDeletion;
pub use registration_tokens::NewRegistrationToken;
pub use reports::ReportQuery;
pub use rooms::{RoomDeletionRequest, RoomListQuery};
pub use users::UserListQuery;

use crate::{Services, accounts::Requester};

/// Entries listed per page unless asked otherwise, and at most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// A page asked for: its offset (the previous page's `next_token`) and size.
#[derive(Clone, Copy, Debug, Default)]
pub struct Page {
    pub from: u64,
    pub limit: Option<usize>,
}

impl Page {
    /// The page's size: the asked limit within bounds, or the default.
    pub fn size(self) -> usize {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }
}

/// The `next_token` after a page of `count` entries from `from` out of `total`, if more follow.
fn next_token(page: Page, count: usize, total: u64) -> Option<String> {
    let next = page.from + count as u64;
    (next < total).then(|| next.to_string())
}

impl Services {
    /// `M_FORBIDDEN` unless the requester is a server admin.
    pub fn require_admin(requester: &Requester) -> MatrixResult<()> {
        if requester.is_admin { Ok(()) } else { Err(MatrixError::forbidden("You are not a server admin")) }
    }

    /// A user of this server named in an admin request (`M_INVALID_PARAM` for another server's).
    fn local_user_for_admin(&self, user_id: &UserId) -> MatrixResult<()> {
        if self.is_local_user(user_id) {
            Ok(())
        } else {
            Err(MatrixError::invalid_param("Only local users can be administered"))
        }
    }
}
