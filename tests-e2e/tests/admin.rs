//! The admin API under `/_synapse/admin` as an admin UI drives it: admins only (403 otherwise),
//! Synapse's shapes, paging and errors; the admin CLI beside it.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{NO_RATE_LIMITS, TestServer, enc, errcode};
use serde_json::{Value, json};

fn names(body: &Value) -> Vec<String> {
    body["users"].as_array().into_iter().flatten().filter_map(|u| u["name"].as_str().map(str::to_owned)).collect()
}

/// Users as synapse-admin lists and changes them: the list in pages with `total` and
/// `next_token`, filtered by name, guests and deactivated users; one user's details; a password
/// reset that logs the user out; deactivation with erasure; whois. Non-admins get 403, other
/// servers' and unknown users 400 and 404; `server_version` needs no token.
#[tokio::test]
async fn admins_list_inspect_reset_and_deactivate_users() -> Result<()> {
    let server = TestServer::start_with(&format!("{NO_RATE_LIMITS}[registration]\nallow_guests = true\n")).await?;
    let out = server.admin(&["user", "create", "root", "--admin", "--password", "root-password"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = server.login("root").await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let (status, guest) = server.anonymous().post("/_matrix/client/v3/register?kind=guest", &json!({})).await?;
    ensure!(status == 200, "{status} {guest}");
    let guest_id = guest["user_id"].as_str().context("guest id")?.to_owned();

    let (status, body) = server.anonymous().get("/_synapse/admin/v1/server_version").await?;
    ensure!(status == 200 && body["server_version"].as_str().is_some_and(|v| v.starts_with("Myelin")), "{body}");
    let (status, body) = alice.get("/_synapse/admin/v2/users").await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "{status} {body}");
    let (status, body) = server.anonymous().get("/_synapse/admin/v2/users").await?;
    ensure!(status == 401 && errcode(&body) == "M_MISSING_TOKEN", "{status} {body}");

    // Pages in user id order.
    let (status, first) = root.get("/_synapse/admin/v2/users?limit=2").await?;
    ensure!(status == 200 && first["total"] == 4 && first["next_token"] == "2", "{status} {first}");
    let (_, rest) = root.get("/_synapse/admin/v2/users?from=2&limit=2").await?;
    ensure!(rest.get("next_token").is_none(), "the last page: {rest}");
    let mut all = names(&first);
    all.extend(names(&rest));
    let mut expected = vec![alice.user_id.clone(), bob.user_id.clone(), guest_id.clone(), root.user_id.clone()];
    expected.sort();
    ensure!(all == expected, "{all:?}");
    let alice_listed = &first["users"][0];
    ensure!(alice_listed["admin"] == 0 && alice_listed["is_guest"] == 0 && alice_listed["deactivated"] == 0, "{first}");
    let (_, filtered) = root.get("/_synapse/admin/v2/users?name=ALI").await?;
    ensure!(names(&filtered) == [alice.user_id.clone()] && filtered["total"] == 1, "{filtered}");
    let (_, no_guests) = root.get("/_synapse/admin/v2/users?guests=false").await?;
    ensure!(!names(&no_guests).contains(&guest_id) && no_guests["total"] == 3, "{no_guests}");
    let (status, body) = root.get("/_synapse/admin/v2/users?limit=x").await?;
    ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{status} {body}");

    let user_path = |id: &str| format!("/_synapse/admin/v2/users/{}", enc(id));
    let (status, details) = root.get(&user_path(&alice.user_id)).await?;
    ensure!(status == 200 && details["name"] == alice.user_id.as_str() && details["admin"] == false, "{details}");
    ensure!(details["deactivated"] == false && details["threepids"] == json!([]), "{details}");
    let (status, body) = root.get(&user_path("@nobody:localhost")).await?;
    ensure!(status == 404 && errcode(&body) == "M_NOT_FOUND", "{status} {body}");
    let (status, body) = root.get(&user_path("@someone:elsewhere.example")).await?;
    ensure!(status == 400, "{status} {body}");
    let (status, whois) = root.get(&format!("/_synapse/admin/v1/whois/{}", enc(&alice.user_id))).await?;
    ensure!(status == 200 && whois["devices"].as_object().is_some_and(|d| d.len() == 1), "{status} {whois}");

    // A password reset logs alice out; the new password works.
    let reset = format!("/_synapse/admin/v1/reset_password/{}", enc(&alice.user_id));
    let (status, body) = alice.post(&reset, &json!({ "new_password": "mine-now" })).await?;
    ensure!(status == 403, "not for non-admins: {status} {body}");
    let (status, body) = root.post(&reset, &json!({ "new_password": "reset-by-admin" })).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401 && errcode(&body) == "M_UNKNOWN_TOKEN", "logged out: {status} {body}");
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" },
                        "password": "reset-by-admin" });
    let (status, body) = server.anonymous().post("/_matrix/client/v3/login", &login).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = root.post(&reset, &json!({})).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "{status} {body}");

    // Deactivation with erasure; listed only when asked for.
    let deactivate = format!("/_synapse/admin/v1/deactivate/{}", enc(&bob.user_id));
    let (status, body) = root.post(&deactivate, &json!({ "erase": true })).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = bob.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "{status} {body}");
    let (_, details) = root.get(&user_path(&bob.user_id)).await?;
    ensure!(details["deactivated"] == true && details["erased"] == true, "{details}");
    let (_, listed) = root.get("/_synapse/admin/v2/users").await?;
    ensure!(!names(&listed).contains(&bob.user_id), "{listed}");
    let (_, listed) = root.get("/_synapse/admin/v2/users?deactivated=true").await?;
    ensure!(names(&listed).contains(&bob.user_id), "{listed}");
    let (status, body) = root
        .raw(reqwest::Method::POST, &format!("/_synapse/admin/v1/deactivate/{}", enc(&guest_id)), b"not json".to_vec())
        .await?;
    ensure!(status == 400 && errcode(&body) == "M_NOT_JSON", "{status} {body}");

    // The CLI lists the same users.
    let out = server.admin(&["user", "list"])?;
    let printed = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && printed.contains(&alice.user_id) && !printed.contains(&bob.user_id), "{printed}");
    Ok(())
}
