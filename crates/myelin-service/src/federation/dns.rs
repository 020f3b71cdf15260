//! DNS SRV lookups for server discovery (`_matrix-fed._tcp.<host>`, then the deprecated
//! `_matrix._tcp.<host>`): one question over UDP to the configured name server, or the first
//! `nameserver` of `/etc/resolv.conf`. Only SRV is asked here; addresses are the system
//! resolver's.

use std::{net::SocketAddr, time::Duration};

use tokio::net::UdpSocket;

/// How long one SRV question may take.
const SRV_TIMEOUT: Duration = Duration::from_secs(3);
/// The record type of SRV, and the class IN.
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, without the final dot.
    pub target: String,
}

/// The name server of a `resolv.conf` text: its first `nameserver` line, port 53.
pub fn nameserver_of(resolv_conf: &str) -> Option<SocketAddr> {
    resolv_conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next())
            .flatten()?
            .parse()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// A DNS query for the SRV records of `name`, with id `id`. `None` if the name cannot be one.
pub fn srv_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend_from_slice(&id.to_be_bytes());
    // Recursion desired; one question.
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&TYPE_SRV.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(out)
}

/// Reads a (possibly compressed) name at `at`; answers it and the offset after it in place.
fn read_name(buf: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *buf.get(at)? as usize;
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(at + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let pointer = ((len & 0x3F) << 8) | *buf.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            at = pointer;
            continue;
        }
        let label = buf.get(at + 1..at + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += 1 + len;
    }
    None
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

/// The SRV records of an answer to the query of id `id`. `Err` for a malformed answer or one to
/// another query; no records (or NXDOMAIN) is `Ok(empty)`.
pub fn parse_srv_answer(id: u16, buf: &[u8]) -> Result<Vec<SrvRecord>, String> {
    if u16_at(buf, 0) != Some(id) {
        return Err("an answer to another query".into());
    }
    let flags = u16_at(buf, 2).ok_or("truncated header")?;
    if flags & 0x8000 == 0 {
        return Err("not an answer".into());
    }
    let rcode = flags & 0x000F;
    if rcode == 3 {
        return Ok(Vec::new());
    }
    if rcode != 0 {
        return Err(format!("the name server answered code {rcode}"));
    }
    let questions = u16_at(buf, 4).ok_or("truncated header")?;
    let answers = u16_at(buf, 6).ok_or("truncated header")?;
    let mut at = 12;
    for _ in 0..questions {
        let (_, after) = read_name(buf, at).ok_or("bad question")?;
        at = after + 4;
    }
    let mut records = Vec::new();
    for _ in 0..answers {
        let (_, after) = read_name(buf, at).ok_or("bad answer name")?;
        let kind = u16_at(buf, after).ok_or("truncated answer")?;
        let len = u16_at(buf, after + 8).ok_or("truncated answer")? as usize;
        let data = after + 10;
        if buf.len() < data + len {
            return Err("truncated record".into());
        }
        if kind == TYPE_SRV && len >= 7 {
            let (target, _) = read_name(buf, data + 6).ok_or("bad SRV target")?;
            records.push(SrvRecord {
                priority: u16_at(buf, data).ok_or("truncated SRV")?,
                weight: u16_at(buf, data + 2).ok_or("truncated SRV")?,
                port: u16_at(buf, data + 4).ok_or("truncated SRV")?,
                target,
            });
        }
        at = data + len;
    }
    // The most preferred first: lowest priority, then highest weight.
    records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
    // "." as target means the service is not offered there.
    records.retain(|r| !r.target.is_empty());
    Ok(records)
}

/// Asks `nameserver` for the SRV records of `name`.
pub async fn lookup_srv(nameserver: SocketAddr, name: &str) -> Result<Vec<SrvRecord>, String> {
    let id: u16 = rand::random();
    let query = srv_query(id, name).ok_or_else(|| format!("{name:?} is no DNS name"))?;
    let bind: SocketAddr = if nameserver.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(nameserver).await.map_err(|e| e.to_string())?;
    socket.send(&query).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(SRV_TIMEOUT, socket.recv(&mut buf))
        .await
        .map_err(|_| format!("no answer from {nameserver}"))?
        .map_err(|e| e.to_string())?;
    parse_srv_answer(id, buf.get(..len).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` with SRV records (priority, weight, port, target), the name of each
    /// a pointer to the question's.
    fn answer(query: &[u8], records: &[(u16, u16, u16, &str)], rcode: u8) -> Vec<u8> {
        let mut out = query.to_vec();
        out[2] = 0x81;
        out[3] = 0x80 | rcode;
        out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (priority, weight, port, target) in records {
            out.extend_from_slice(&[0xC0, 12]);
            out.extend_from_slice(&TYPE_SRV.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&300u32.to_be_bytes());
            let mut data = Vec::new();
            data.extend_from_slice(&priority.to_be_bytes());
            data.extend_from_slice(&weight.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            for label in target.split('.').filter(|l| !l.is_empty()) {
                data.push(label.len() as u8);
                data.extend_from_slice(label.as_bytes());
            }
            data.push(0);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(&data);
        }
        out
    }

    #[test]
    fn srv_answers_are_read_most_preferred_first() {
        let query = srv_query(7, "_matrix-fed._tcp.example.org").expect("query");
        assert_eq!(&query[12..13], &[11], "the first label's length");
        let buf = answer(
            &query,
            &[(20, 5, 8448, "b.example.org."), (10, 1, 443, "a.example.org."), (10, 9, 444, "c.example.org")],
            0,
        );
        let records = parse_srv_answer(7, &buf).expect("parsed");
        let order: Vec<(&str, u16)> = records.iter().map(|r| (r.target.as_str(), r.port)).collect();
        assert_eq!(order, vec![("c.example.org", 444), ("a.example.org", 443), ("b.example.org", 8448)]);
        assert_eq!(parse_srv_answer(7, &answer(&query, &[], 3)), Ok(Vec::new()), "no such name");
        assert!(parse_srv_answer(8, &buf).is_err(), "an answer to another query");
        assert!(parse_srv_answer(7, &buf[..buf.len() - 3]).is_err(), "truncated");
        assert!(parse_srv_answer(7, &query).is_err(), "a question is no answer");
        assert_eq!(parse_srv_answer(7, &answer(&query, &[(0, 0, 0, ".")], 0)), Ok(Vec::new()), "no service");
        assert!(srv_query(1, "bad..name").is_none());
    }

    #[test]
    fn the_name_server_comes_from_resolv_conf() {
        let conf = "# comment\nsearch example.org\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        assert_eq!(nameserver_of(conf), Some("10.0.0.2:53".parse().expect("addr")));
        assert_eq!(nameserver_of("nameserver ::1"), Some("[::1]:53".parse().expect("addr")));
        assert_eq!(nameserver_of("search x"), None);
    }
}
