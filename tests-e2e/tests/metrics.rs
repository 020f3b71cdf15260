//! Prometheus metrics on their own listener, parsed by the reference client library's parser
//! (PyPI prometheus-client): the names dashboards know (Synapse's where Myelin measures the same),
//! their types, what they count, and no user ids or room ids in labels. `GET /health`.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{NO_RATE_LIMITS, TestServer, enc, free_port, room_path, run_tools_python};
use serde_json::{Value, json};

/// The families the scrape has, by name.
async fn scrape(port: u16) -> Result<Vec<Value>> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await?.error_for_status()?.text().await?;
    let families = run_tools_python("parse_metrics.py", &json!({ "text": text }))?;
    families.as_array().cloned().context("a list of families")
}

fn family<'a>(families: &'a [Value], name: &str) -> Result<&'a Value> {
    families.iter().find(|f| f["name"] == name).with_context(|| format!("no family {name}"))
}

/// The value of the family's sample named `sample` whose labels include `labels`.
fn sample(families: &[Value], name: &str, sample: &str, labels: &Value) -> Result<f64> {
    let family = family(families, name)?;
    family["samples"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            s["name"] == sample && labels.as_object().into_iter().flatten().all(|(k, v)| s["labels"].get(k) == Some(v))
        })
        .and_then(|s| s["value"].as_f64())
        .with_context(|| format!("no sample {sample} {labels} in {family}"))
}

#[tokio::test]
async fn metrics_are_scraped_parsed_and_name_no_users() -> Result<()> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let server = TestServer::start_with_env(NO_RATE_LIMITS, &[("MYELIN_METRICS_LISTEN", &listen)]).await?;
    let alice = server.register("alice").await?;
    let room = alice.create_room(json!({ "name": "Metrics" })).await?;
    for i in 0..3 {
        alice.send_message(&room, &format!("message {i}")).await?;
    }
    alice.sync(None, 0, None).await?;
    let (status, _) = alice.get(&room_path(&room, &format!("event/{}", enc("$missing")))).await?;
    ensure!(status == 404, "{status}");

    let families = scrape(port).await?;
    // Types as dashboards expect them (the parser drops counters' `_total` from family names).
    for (name, kind) in [
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("synapse_http_server_requests_received", "counter"),
        ("synapse_http_server_responses", "counter"),
        ("synapse_http_server_response_time_seconds", "histogram"),
        ("synapse_storage_events_persisted_events", "counter"),
        ("synapse_federation_client_sent_transactions", "counter"),
        ("synapse_federation_server_received_pdus", "counter"),
        ("synapse_http_httppusher_http_pushes_processed", "counter"),
        ("synapse_util_caches_cache_hits", "gauge"),
        ("myelin_sync_build_seconds", "histogram"),
        ("myelin_jobs_queued", "gauge"),
        ("myelin_jobs_lag_seconds", "gauge"),
    ] {
        ensure!(family(&families, name)?["type"] == kind, "{name} is not a {kind}");
    }
    ensure!(sample(&families, "process_resident_memory_bytes", "process_resident_memory_bytes", &json!({}))? > 1e6);
    ensure!(sample(&families, "process_open_fds", "process_open_fds", &json!({}))? >= 3.0);

    // Requests by route template and status: three sends, one 404.
    let send = "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}";
    let sent = json!({ "method": "PUT", "servlet": send, "code": "200" });
    ensure!(sample(&families, "synapse_http_server_responses", "synapse_http_server_responses_total", &sent)? == 3.0);
    let missing = json!({ "servlet": "/_matrix/client/v3/rooms/{room_id}/event/{event_id}", "code": "404" });
    ensure!(
        sample(&families, "synapse_http_server_responses", "synapse_http_server_responses_total", &missing)? == 1.0
    );
    let timed = json!({ "method": "PUT", "servlet": send, "code": "200", "le": "+Inf" });
    ensure!(
        sample(
            &families,
            "synapse_http_server_response_time_seconds",
            "synapse_http_server_response_time_seconds_bucket",
            &timed
        )? == 3.0
    );
    // Creating the room wrote its initial state; the sends three more.
    let persisted = sample(
        &families,
        "synapse_storage_events_persisted_events",
        "synapse_storage_events_persisted_events_total",
        &json!({}),
    )?;
    ensure!(persisted >= 8.0, "{persisted}");
    ensure!(
        sample(&families, "myelin_sync_build_seconds", "myelin_sync_build_seconds_count", &json!({ "api": "v2" }))?
            >= 1.0
    );
    ensure!(
        sample(&families, "synapse_util_caches_cache", "synapse_util_caches_cache", &json!({ "name": "events" }))?
            >= 0.0,
        "the caches are listed by name"
    );

    // No user, room or event ids anywhere in labels.
    for f in &families {
        for s in f["samples"].as_array().into_iter().flatten() {
            for (key, value) in s["labels"].as_object().into_iter().flatten() {
                let value = value.as_str().unwrap_or_default();
                ensure!(
                    !value.contains('@')
                        && !value.contains('!')
                        && !value.contains('$')
                        && !value.contains("localhost"),
                    "label {key}={value:?} of {} names a user, room, event or server",
                    s["name"]
                );
            }
        }
    }

    // Metrics are not on the client listener; health is.
    let (status, body) = alice.get("/metrics").await?;
    ensure!(status == 404 && body["errcode"] == "M_UNRECOGNIZED", "{status} {body}");
    let health = reqwest::get(format!("{}/health", server.base_url())).await?;
    ensure!(health.status() == 200 && health.text().await? == "OK");
    Ok(())
}

/// The configuration check refuses a metrics listener on the client listener's address.
#[tokio::test]
async fn a_metrics_listener_on_the_client_address_is_refused() -> Result<()> {
    let server = TestServer::start_with(NO_RATE_LIMITS).await?;
    let client = format!("127.0.0.1:{}", server.port());
    let out = std::process::Command::new(myelin_e2e::server_binary())
        .args([
            "--data-dir",
            &server.data_dir().display().to_string(),
            "--listen",
            &client,
            "--metrics-listen",
            &client,
        ])
        .args(["config", "check"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && stderr.contains("metrics.listen"), "{stderr}");
    Ok(())
}
