//! Server discovery through DNS SRV records: a server whose name has no port, no address and no
//! `.well-known` is found through `_matrix-fed._tcp.<name>`, as the specification orders. The
//! test answers those DNS questions itself (the other server is told to ask it).

use std::net::SocketAddr;

use anyhow::{Result, bail};
use myelin_e2e::{TestServer, enc};
use serde_json::json;
use tokio::net::UdpSocket;

/// The name of a DNS question (labels from byte 12), and where the question ends.
fn question_name(query: &[u8]) -> Option<(String, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(at)? as usize;
        if len == 0 {
            return Some((labels.join("."), at + 1 + 4));
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).into_owned());
        at += 1 + len;
    }
}

/// The answer to `query`: one SRV record (`port`, target 127.0.0.1) if it asks for `srv_name`,
/// else "no such name".
fn answer(query: &[u8], srv_name: &str, port: u16) -> Option<Vec<u8>> {
    let (name, end) = question_name(query)?;
    let mut out = query.get(..end)?.to_vec();
    out[2] = 0x81;
    if name != srv_name {
        out[3] = 0x83;
        return Some(out);
    }
    out[3] = 0x80;
    out[6..8].copy_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0xC0, 12, 0, 33, 0, 1, 0, 0, 1, 44]);
    let mut data = vec![0, 10, 0, 5];
    data.extend_from_slice(&port.to_be_bytes());
    for label in ["127", "0", "0", "1"] {
        data.push(label.len() as u8);
        data.extend_from_slice(label.as_bytes());
    }
    data.push(0);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(&data);
    Some(out)
}

/// A DNS server on a free 127.0.0.1 port that knows one SRV record.
async fn dns_server(srv_name: String, port: u16) -> Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            if let Some(reply) = buf.get(..len).and_then(|q| answer(q, &srv_name, port)) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    });
    Ok(addr)
}

/// Bob's server knows Alice's only as `srv.test`: it finds her server's port and address in
/// the SRV record, and Bob joins her room and talks with her.
#[tokio::test]
async fn a_server_is_found_through_its_srv_record() -> Result<()> {
    let a = TestServer::start_federating_as(Some("srv.test"), &[]).await?;
    let port: u16 = a.federation_url().and_then(|u| u.rsplit(':').next()?.parse().ok()).unwrap_or(0);
    let dns = dns_server("_matrix-fed._tcp.srv.test".to_owned(), port).await?;
    let b = TestServer::start_federating_with_env(&[("MYELIN_FEDERATION_DNS_SERVER", &dns.to_string())]).await?;
    let alice = a.register("alice").await?;
    let bob = b.register("bob").await?;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await?;
    let (status, body) =
        bob.post(&format!("/_matrix/client/v3/join/{}?server_name=srv.test", enc(&room)), &json!({})).await?;
    if status != 200 {
        bail!("joining through srv.test: {status} {body}\nA's log:\n{}\nB's log:\n{}", a.log(), b.log());
    }
    bob.send_message(&room, "found you").await?;
    for _ in 0..100 {
        let seen = myelin_e2e::bodies(&alice.all_messages(&room, 50).await?);
        if seen.iter().any(|b| b == "found you") {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("Alice never saw Bob's message\nB's log:\n{}", b.log())
}
