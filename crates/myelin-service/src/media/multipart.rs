//! `multipart/mixed`, as federation media (`/_matrix/federation/v1/media/…`) carries it: a JSON
//! part (metadata, `{}` today) and then the file — its bytes, or a `Location` header saying
//! where to fetch them. Both ways stream: the file part is never held whole in memory.

use bytes::Bytes;
use futures_util::StreamExt;
use myelin_storage::blob::ByteStream;

/// The most bytes of headers (and the JSON part) read before the file starts.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A multipart body carrying `bytes` as its file part, after an empty JSON part.
pub fn body(boundary: &str, content_type: &str, content_disposition: &str, bytes: ByteStream) -> ByteStream {
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {content_type}\r\nContent-Disposition: {content_disposition}\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let head = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
    let tail = futures_util::stream::once(async move { Ok(Bytes::from(tail)) });
    Box::pin(head.chain(bytes).chain(tail))
}

/// Where a remote file's bytes are.
pub enum FileBody {
    Bytes(ByteStream),
    /// Fetch them from this URL.
    Location(String),
}

/// The file part of a federation media answer.
pub struct FilePart {
    pub content_type: Option<String>,
    pub content_disposition: Option<String>,
    pub body: FileBody,
}

fn bad(reason: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason.into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The boundary of a `multipart/…; boundary=…` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let (essence, params) = content_type.split_once(';')?;
    if !essence.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (key, value) = p.split_once('=')?;
        (key.trim().eq_ignore_ascii_case("boundary"))
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// Reads the stream until `buf` holds `needle` at or after `from`; its position.
async fn fill_until(stream: &mut ByteStream, buf: &mut Vec<u8>, from: usize, needle: &[u8]) -> std::io::Result<usize> {
    loop {
        if let Some(at) = find(&buf[from.min(buf.len())..], needle) {
            return Ok(from + at);
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(bad("multipart headers too long"));
        }
        match stream.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk?),
            None => return Err(bad("multipart body ended early")),
        }
    }
}

/// Parses the answer up to the file part's headers; the file's bytes stream on from there.
pub async fn file_part(boundary: &str, mut stream: ByteStream) -> std::io::Result<FilePart> {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut buf = Vec::new();
    // The first part (JSON metadata): skipped.
    let first = fill_until(&mut stream, &mut buf, 0, &delimiter).await?;
    let first_headers_end = fill_until(&mut stream, &mut buf, first, b"\r\n\r\n").await?;
    let next = format!("\r\n--{boundary}").into_bytes();
    let second = fill_until(&mut stream, &mut buf, first_headers_end, &next).await?;
    let headers_start = fill_until(&mut stream, &mut buf, second + next.len(), b"\r\n").await? + 2;
    let headers_end = fill_until(&mut stream, &mut buf, headers_start.saturating_sub(2), b"\r\n\r\n").await?;
    let headers = String::from_utf8_lossy(&buf[headers_start.min(headers_end)..headers_end]).into_owned();
    let header = |name: &str| {
        headers.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    };
    let (content_type, content_disposition) = (header("content-type"), header("content-disposition"));
    if let Some(location) = header("location") {
        return Ok(FilePart { content_type, content_disposition, body: FileBody::Location(location) });
    }
    let rest = buf.split_off(headers_end + 4);
    Ok(FilePart { content_type, content_disposition, body: FileBody::Bytes(until_delimiter(next, rest, stream)) })
}

/// The bytes of `pending` and then `stream`, up to (not including) `delimiter`; an error if the
/// stream ends first.
fn until_delimiter(delimiter: Vec<u8>, pending: Vec<u8>, stream: ByteStream) -> ByteStream {
    struct State {
        delimiter: Vec<u8>,
        pending: Vec<u8>,
        stream: ByteStream,
        done: bool,
    }
    let state = State { delimiter, pending, stream, done: false };
    Box::pin(futures_util::stream::try_unfold(state, |mut s| async move {
        loop {
            if s.done {
                return Ok(None);
            }
            if let Some(at) = find(&s.pending, &s.delimiter) {
                s.done = true;
                let out = Bytes::copy_from_slice(&s.pending[..at]);
                s.pending.clear();
                if out.is_empty() {
                    continue;
                }
                return Ok(Some((out, s)));
            }
            // Everything but a tail that could be the start of the delimiter is file bytes.
            let keep = s.delimiter.len().saturating_sub(1).min(s.pending.len());
            let ready = s.pending.len() - keep;
            if ready > 0 {
                let out = Bytes::copy_from_slice(&s.pending[..ready]);
                s.pending.drain(..ready);
                return Ok(Some((out, s)));
            }
            match s.stream.next().await {
                Some(chunk) => s.pending.extend_from_slice(&chunk?),
                None => return Err(bad("multipart file part ended without its boundary")),
            }
        }
    }))
}

/// The file name a `Content-Disposition` gives (`filename*=utf-8''…` first, then `filename=`).
pub fn disposition_filename(disposition: &str) -> Option<String> {
    let params: Vec<(String, &str)> = disposition
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim())))
        .collect();
    if let Some((_, value)) = params.iter().find(|(k, _)| k == "filename*") {
        let encoded = value.split_once("''").map_or(*value, |(_, rest)| rest);
        let mut bytes = Vec::new();
        let mut it = encoded.bytes();
        while let Some(b) = it.next() {
            if b == b'%' {
                let hex: String = it.by_ref().take(2).map(char::from).collect();
                bytes.push(u8::from_str_radix(&hex, 16).ok()?);
            } else {
                bytes.push(b);
            }
        }
        return String::from_utf8(bytes).ok().filter(|n| !n.is_empty());
    }
    params.iter().find(|(k, _)| k == "filename").map(|(_, v)| v.trim_matches('"').to_owned()).filter(|n| !n.is_empty())
}

/// RFC 6266 / 5987: `inline` or `attachment`, with `filename*=utf-8''…` (everything but
/// unreserved characters escaped) when there is a name.
pub fn content_disposition(inline: bool, file_name: Option<&str>) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    match file_name {
        Some(name) => {
            let mut escaped = String::new();
            for b in name.bytes() {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    escaped.push(char::from(b));
                } else {
                    escaped.push_str(&format!("%{b:02X}"));
                }
            }
            format!("{kind}; filename*=utf-8''{escaped}")
        }
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;
    use myelin_storage::blob::ByteStream;

    use super::{FileBody, body, boundary_of, content_disposition, disposition_filename, file_part};

    fn chunked(data: &[u8], size: usize) -> ByteStream {
        let chunks: Vec<std::io::Result<Bytes>> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    async fn collect(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn what_is_served_parses_back_whatever_the_chunking() {
        // File bytes that contain pieces of the boundary and CRLFs.
        let file: Vec<u8> = b"\r\n--abc not it\r\n--ab\r\n-".iter().copied().cycle().take(5_000).collect();
        let disposition = content_disposition(true, Some("a b.png"));
        let served = collect(body("abcdef", "image/png", &disposition, chunked(&file, 1000))).await.expect("body");
        for size in [1, 2, 7, 64, 100_000] {
            let part = file_part("abcdef", chunked(&served, size)).await.expect("parse");
            assert_eq!(part.content_type.as_deref(), Some("image/png"));
            assert_eq!(part.content_disposition.as_deref().and_then(disposition_filename).as_deref(), Some("a b.png"));
            let FileBody::Bytes(bytes) = part.body else { panic!("bytes expected") };
            assert_eq!(collect(bytes).await.expect("file"), file, "chunks of {size}");
        }
    }

    #[tokio::test]
    async fn a_location_part_and_broken_bodies() {
        let answer = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--b--\r\n";
        let part = file_part("b", chunked(answer, 5)).await.expect("parse");
        assert!(matches!(part.body, FileBody::Location(ref l) if l == "https://cdn.example/x"));
        let truncated =
            b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nContent-Type: text/plain\r\n\r\nhalf a fi";
        let part = file_part("b", chunked(truncated, 4)).await.expect("headers parse");
        let FileBody::Bytes(bytes) = part.body else { panic!("bytes expected") };
        assert!(collect(bytes).await.is_err(), "a file part without its closing boundary is an error");
        assert!(file_part("b", chunked(b"no multipart here", 3)).await.is_err());
    }

    #[test]
    fn boundaries_and_file_names_are_read_as_servers_write_them() {
        assert_eq!(
            boundary_of("multipart/mixed; boundary=6067d4698f8d40a0a794ea7d7379d53a").as_deref(),
            Some("6067d4698f8d40a0a794ea7d7379d53a")
        );
        assert_eq!(boundary_of("multipart/mixed; boundary=\"q\"").as_deref(), Some("q"));
        assert_eq!(boundary_of("application/json"), None);
        assert_eq!(disposition_filename("inline; filename=\"cat.png\"").as_deref(), Some("cat.png"));
        assert_eq!(disposition_filename("attachment; filename*=utf-8''%C3%A9t%C3%A9.txt").as_deref(), Some("été.txt"));
        assert_eq!(disposition_filename("inline"), None);
        assert_eq!(content_disposition(true, None), "inline");
        assert_eq!(content_disposition(false, Some("a b.png")), "attachment; filename*=utf-8''a%20b.png");
        assert_eq!(
            content_disposition(true, Some("\"x\";\r\nSet-Cookie: y é")),
            "inline; filename*=utf-8''%22x%22%3B%0D%0ASet-Cookie%3A%20y%20%C3%A9"
        );
    }
}
