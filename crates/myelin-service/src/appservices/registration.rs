//! Application service registration files, in Synapse's YAML format: who the service is (`id`,
//! its `url`, the tokens each side presents), the users, aliases and rooms it is interested in
//! (`namespaces`, each regex `exclusive` or not), and the extensions it asks for (ephemeral
//! events and to-device messages (MSC2409), device lists and key counts (MSC3202), device
//! management (MSC4190)).

use std::path::Path;

use myelin_core::types::{RoomAliasId, RoomId, ServerName, UserId};
use regex::Regex;
use serde::Deserialize;

/// One namespace entry as the file writes it.
#[derive(Clone, Debug, Deserialize)]
struct NamespaceEntry {
    regex: String,
    #[serde(default)]
    exclusive: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct NamespacesFile {
    #[serde(default)]
    users: Vec<NamespaceEntry>,
    #[serde(default)]
    aliases: Vec<NamespaceEntry>,
    #[serde(default)]
    rooms: Vec<NamespaceEntry>,
}

/// A registration file as written.
#[derive(Clone, Debug, Deserialize)]
struct RegistrationFile {
    id: String,
    url: Option<String>,
    as_token: String,
    hs_token: String,
    sender_localpart: String,
    #[serde(default)]
    namespaces: NamespacesFile,
    #[serde(default)]
    rate_limited: Option<bool>,
    #[serde(default)]
    protocols: Vec<String>,
    #[serde(default)]
    receive_ephemeral: bool,
    #[serde(default, rename = "de.sorunome.msc2409.push_ephemeral")]
    push_ephemeral: bool,
    #[serde(default, rename = "org.matrix.msc3202")]
    msc3202: bool,
    #[serde(default, rename = "io.element.msc4190")]
    msc4190: bool,
}

/// A namespace's regex, matched from the start of the id (as Synapse does), and whether it is
/// the service's alone.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub regex: Regex,
    pub exclusive: bool,
}

/// The users, aliases and rooms a service is interested in.
#[derive(Clone, Debug, Default)]
pub struct Namespaces {
    pub users: Vec<Namespace>,
    pub aliases: Vec<Namespace>,
    pub rooms: Vec<Namespace>,
}

/// A loaded application service.
#[derive(Clone, Debug)]
pub struct Appservice {
    pub id: String,
    /// Where transactions and queries go; `None`: the service receives nothing.
    pub url: Option<String>,
    /// The service presents this to the homeserver.
    pub as_token: String,
    /// The homeserver presents this to the service.
    pub hs_token: String,
    /// The service's own user (`@{sender_localpart}:{server}`).
    pub sender: ruma::OwnedUserId,
    pub namespaces: Namespaces,
    /// Whether its users are rate-limited (default true, as the specification says).
    pub rate_limited: bool,
    pub protocols: Vec<String>,
    /// Typing, receipts and presence in transactions (MSC2409).
    pub receive_ephemeral: bool,
    /// Device lists, one-time key counts and fallback key types of its users (MSC3202), and
    /// `device_id` masquerading.
    pub msc3202: bool,
    /// Devices made by `PUT /devices/{deviceId}`, no login (MSC4190).
    pub msc4190: bool,
}

fn matches(namespaces: &[Namespace], value: &str, exclusive_only: bool) -> bool {
    namespaces.iter().any(|n| (!exclusive_only || n.exclusive) && n.regex.is_match(value))
}

impl Appservice {
    /// Whether the user is the service's own or in its user namespace.
    pub fn is_interested_in_user(&self, user_id: &UserId) -> bool {
        user_id == self.sender || matches(&self.namespaces.users, user_id.as_str(), false)
    }

    /// Whether the user is in one of its exclusive user namespaces (or is its own user).
    pub fn claims_user(&self, user_id: &UserId) -> bool {
        user_id == self.sender || matches(&self.namespaces.users, user_id.as_str(), true)
    }

    pub fn is_interested_in_alias(&self, alias: &RoomAliasId) -> bool {
        matches(&self.namespaces.aliases, alias.as_str(), false)
    }

    pub fn claims_alias(&self, alias: &RoomAliasId) -> bool {
        matches(&self.namespaces.aliases, alias.as_str(), true)
    }

    pub fn is_interested_in_room(&self, room_id: &RoomId) -> bool {
        matches(&self.namespaces.rooms, room_id.as_str(), false)
    }

    /// Whether it has alias namespaces (an event's room aliases matter to it).
    pub fn has_alias_namespaces(&self) -> bool {
        !self.namespaces.aliases.is_empty()
    }
}

/// Compiles a namespace list, anchored at the start of the id.
fn compile(entries: &[NamespaceEntry], kind: &str, problems: &mut Vec<String>) -> Vec<Namespace> {
    entries
        .iter()
        .filter_map(|entry| match Regex::new(&format!("^(?:{})", entry.regex)) {
            Ok(regex) => Some(Namespace { regex, exclusive: entry.exclusive }),
            Err(err) => {
                problems.push(format!("namespaces.{kind}: invalid regex {:?}: {err}", entry.regex));
                None
            }
        })
        .collect()
}

/// Parses one registration file's text for `server`; every problem found, if any.
pub fn parse_registration(text: &str, server: &ServerName) -> Result<Appservice, Vec<String>> {
    let file: RegistrationFile =
        serde_yaml_ng::from_str(text).map_err(|e| vec![format!("not a registration file: {e}")])?;
    let mut problems = Vec::new();
    if file.id.is_empty() {
        problems.push("id must not be empty".to_owned());
    }
    if file.as_token.is_empty() || file.hs_token.is_empty() {
        problems.push("as_token and hs_token must not be empty".to_owned());
    }
    if file.as_token == file.hs_token {
        problems.push("as_token and hs_token must differ".to_owned());
    }
    if let Some(url) = &file.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        problems.push(format!("url {url:?} must be an http:// or https:// URL (or null)"));
    }
    let valid_localpart = !file.sender_localpart.is_empty()
        && file.sender_localpart.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=-/+".contains(c));
    let sender = match UserId::parse(format!("@{}:{server}", file.sender_localpart)) {
        Ok(sender) if valid_localpart => Some(sender),
        _ => {
            problems.push(format!("sender_localpart {:?} is not a valid user name", file.sender_localpart));
            None
        }
    };
    let namespaces = Namespaces {
        users: compile(&file.namespaces.users, "users", &mut problems),
        aliases: compile(&file.namespaces.aliases, "aliases", &mut problems),
        rooms: compile(&file.namespaces.rooms, "rooms", &mut problems),
    };
    match sender {
        Some(sender) if problems.is_empty() => Ok(Appservice {
            id: file.id,
            url: file.url.map(|u| u.trim_end_matches('/').to_owned()),
            as_token: file.as_token,
            hs_token: file.hs_token,
            sender,
            namespaces,
            rate_limited: file.rate_limited.unwrap_or(true),
            protocols: file.protocols,
            receive_ephemeral: file.receive_ephemeral || file.push_ephemeral,
            msc3202: file.msc3202,
            msc4190: file.msc4190,
        }),
        _ => Err(problems),
    }
}

/// Loads every registration file named in the configuration; all problems found, each with its
/// file (ids and tokens must be unique across files too).
pub fn load_registrations(paths: &[String], server: &ServerName) -> Result<Vec<Appservice>, Vec<String>> {
    let mut services: Vec<Appservice> = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(Path::new(path)) {
            Ok(text) => text,
            Err(err) => {
                problems.push(format!("appservices: cannot read {path}: {err}"));
                continue;
            }
        };
        match parse_registration(&text, server) {
            Ok(service) => {
                if services.iter().any(|s| s.id == service.id) {
                    problems.push(format!("appservices: {path}: id {:?} is used by another registration", service.id));
                }
                if services.iter().any(|s| {
                    [&s.as_token, &s.hs_token].iter().any(|t| **t == service.as_token || **t == service.hs_token)
                }) {
                    problems.push(format!("appservices: {path}: a token is used by another registration"));
                }
                services.push(service);
            }
            Err(found) => problems.extend(found.into_iter().map(|p| format!("appservices: {path}: {p}"))),
        }
    }
    if problems.is_empty() { Ok(services) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r##"
id: irc
url: "http://127.0.0.1:9000/"
as_token: as-secret
hs_token: hs-secret
sender_localpart: _irc_bot
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_.*"
  aliases:
    - exclusive: false
      regex: "#_irc_.*"
  rooms: []
receive_ephemeral: true
org.matrix.msc3202: true
"##;

    fn server() -> &'static ServerName {
        <&ServerName>::try_from("example.org").expect("server name")
    }

    #[test]
    fn a_synapse_registration_file_is_read_and_matched_from_the_start() {
        let service = parse_registration(FILE, server()).expect("valid");
        assert_eq!(service.id, "irc");
        assert_eq!(service.url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(service.sender, "@_irc_bot:example.org");
        assert!(service.receive_ephemeral && service.msc3202 && !service.msc4190 && service.rate_limited);
        let user = |id: &str| UserId::parse(id).expect("user id");
        assert!(service.claims_user(&user("@_irc_alice:example.org")));
        assert!(service.claims_user(&user("@_irc_bot:example.org")), "its own user");
        assert!(!service.is_interested_in_user(&user("@alice_irc_x:example.org")), "anchored at the start");
        let alias = |a: &str| RoomAliasId::parse(a).expect("alias");
        assert!(service.is_interested_in_alias(&alias("#_irc_chan:example.org")));
        assert!(!service.claims_alias(&alias("#_irc_chan:example.org")), "not exclusive");
    }

    #[test]
    fn bad_registrations_say_what_is_wrong() {
        let bad = FILE.replace("as_token: as-secret", "as_token: hs-secret").replace("\"@_irc_.*\"", "\"@_irc_(\"");
        let problems = parse_registration(&bad, server()).expect_err("invalid");
        assert!(problems.iter().any(|p| p.contains("must differ")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("invalid regex")), "{problems:?}");
        assert!(parse_registration("id: [", server()).is_err());
        let no_sender = FILE.replace("sender_localpart: _irc_bot", "sender_localpart: \"bad name\"");
        assert!(parse_registration(&no_sender, server()).is_err());
    }
}
