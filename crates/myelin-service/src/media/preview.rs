//! URL previews (`/_matrix/client/v1/media/preview_url`): the Open Graph data of a page a user
//! posted, with its image stored here as media. Off unless `media.url_previews` is set (the
//! server then fetches what its users link to). Every fetch goes through the outbound address
//! policy (names as they resolve, addresses and redirects as they are given), reads a bounded
//! amount, and times out; previews are kept an hour per process.

use std::{sync::Arc, time::Duration};

use myelin_core::{ErrorCode, MatrixError, MatrixResult};
use myelin_storage::{MediaRecord, blob::PutOutcome};
use serde_json::{Map, Value};

use crate::Services;

/// How much of a page is read for its metadata.
pub const MAX_PAGE_BYTES: usize = 1 << 20;
/// How long a preview is kept.
pub const PREVIEW_MAX_AGE: Duration = Duration::from_secs(3600);
/// Previews kept per process.
pub const PREVIEWS_CACHED: usize = 4096;
/// Longest URL previewed, and longest value kept.
const MAX_URL_BYTES: usize = 2048;
const MAX_VALUE_CHARS: usize = 1000;

/// `&amp;` and friends, as pages write them in attributes and titles.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" | "#39" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The attributes of one tag's text (`meta property="og:title" content="…"`), names in lower case.
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' && bytes[i] != b'/' {
            i += 1;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let from = i + 1;
                let to = tag[from..].bytes().position(|b| b == quote).map_or(tag.len(), |p| from + p);
                i = (to + 1).min(tag.len());
                &tag[from..to]
            } else {
                let from = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                &tag[from..i]
            };
            if !name.is_empty() {
                out.push((name, decode_entities(value)));
            }
        } else if !name.is_empty() {
            out.push((name, String::new()));
        } else {
            i += 1;
        }
    }
    out
}

fn clipped(s: &str) -> String {
    s.trim().chars().take(MAX_VALUE_CHARS).collect()
}

/// The Open Graph data of a page: its `og:*` meta tags, with the title and description the page
/// gives otherwise when it has none; `og:image` made absolute against `base`.
pub fn open_graph(html: &str, base: &reqwest::Url) -> Map<String, Value> {
    let lower = html.to_ascii_lowercase();
    let mut og = Map::new();
    let mut description = None;
    let mut from = 0;
    while let Some(at) = lower[from..].find("<meta") {
        let start = from + at + 5;
        let Some(len) = lower[start..].find('>') else { break };
        let attrs = attributes(&html[start..start + len]);
        from = start + len;
        let get = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let content = get("content").unwrap_or_default();
        if let Some(property) = get("property").or_else(|| get("name")) {
            let property = property.to_ascii_lowercase();
            if property.starts_with("og:") && !og.contains_key(&property) {
                og.insert(property, clipped(content).into());
            } else if property == "description" {
                description = Some(clipped(content));
            }
        }
    }
    if !og.contains_key("og:title")
        && let Some(at) = lower.find("<title")
        && let Some(open_end) = lower[at..].find('>')
        && let Some(close) = lower[at + open_end..].find("</title")
    {
        let title = &html[at + open_end + 1..at + open_end + close];
        og.insert("og:title".into(), clipped(&decode_entities(title)).into());
    }
    if !og.contains_key("og:description")
        && let Some(description) = description
    {
        og.insert("og:description".into(), description.into());
    }
    if let Some(image) = og.get("og:image").and_then(Value::as_str).map(str::to_owned) {
        match base.join(&image) {
            Ok(absolute) if matches!(absolute.scheme(), "http" | "https") => {
                og.insert("og:image".into(), absolute.to_string().into());
            }
            _ => {
                og.remove("og:image");
            }
        }
    }
    og
}

impl Services {
    /// `GET /_matrix/client/v1/media/preview_url?url=…`.
    pub async fn preview_url(&self, url: &str) -> MatrixResult<Value> {
        if !self.config.media.url_previews {
            return Err(MatrixError::new(ErrorCode::Unrecognized, "URL previews are turned off on this server")
                .with_status(404));
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| MatrixError::invalid_param("url is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || url.len() > MAX_URL_BYTES {
            return Err(MatrixError::invalid_param("Only http(s) URLs are previewed"));
        }
        if let Some(kept) = self.url_previews.get(&url.to_owned()) {
            return Ok((*kept).clone());
        }
        let epoch = self.url_previews.epoch();
        let fetched = self.fetch_limited(&parsed, MAX_PAGE_BYTES).await.map_err(|e| {
            tracing::info!(url, error = %e, "URL preview failed");
            MatrixError::internal("The page could not be fetched").with_status(502)
        })?;
        let content_type = fetched.content_type.clone().unwrap_or_default().to_ascii_lowercase();
        let og = if content_type.starts_with("image/") {
            let mut og = Map::new();
            if fetched.complete
                && let Ok(mxc) = self.store_fetched_media(fetched.bytes.clone(), &content_type).await
            {
                og.insert("og:image".into(), mxc.into());
                og.insert("og:image:type".into(), content_type.clone().into());
                og.insert("matrix:image:size".into(), fetched.bytes.len().into());
            }
            og
        } else if content_type.starts_with("text/html") || content_type.starts_with("application/xhtml") {
            let html = String::from_utf8_lossy(&fetched.bytes);
            let mut og = open_graph(&html, &fetched.url);
            if let Some(image) = og.get("og:image").and_then(Value::as_str).and_then(|i| reqwest::Url::parse(i).ok()) {
                og.remove("og:image");
                let max = usize::try_from(self.config.media.max_upload_bytes).unwrap_or(usize::MAX);
                if let Ok(img) = self.fetch_limited(&image, max).await
                    && img.complete
                    && let Some(kind) = img.content_type.clone().filter(|t| t.starts_with("image/"))
                    && let Ok(mxc) = self.store_fetched_media(img.bytes.clone(), &kind).await
                {
                    og.insert("og:image".into(), mxc.into());
                    og.insert("og:image:type".into(), kind.into());
                    og.insert("matrix:image:size".into(), img.bytes.len().into());
                }
            }
            og
        } else {
            Map::new()
        };
        let preview = Value::Object(og);
        self.url_previews.insert_if_current(url.to_owned(), Arc::new(preview.clone()), 1, epoch);
        Ok(preview)
    }

    /// Keeps fetched bytes as this server's media; answers its `mxc://` URI.
    async fn store_fetched_media(&self, bytes: Vec<u8>, content_type: &str) -> MatrixResult<String> {
        let PutOutcome::Stored(content) =
            self.blobs.put(super::stream_of(bytes), self.config.media.max_upload_bytes).await?
        else {
            return Err(MatrixError::new(ErrorCode::TooLarge, "Too large"));
        };
        let media_id = self.random.alphanumeric(24);
        let record = MediaRecord {
            origin: self.server_name.to_string(),
            media_id: media_id.clone(),
            uploader: None,
            content_type: Some(content_type.to_owned()),
            upload_name: None,
            content: Some(content),
            created_ms: self.clock.now_ms(),
            unused_expires_ms: None,
        };
        self.store.put_media(&record).await?;
        Ok(format!("mxc://{}/{media_id}", self.server_name))
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_entities, open_graph};

    #[test]
    fn open_graph_tags_with_fallbacks_and_absolute_images() {
        let base = reqwest::Url::parse("https://example.org/blog/post.html").expect("url");
        let html = r#"<html><head><TITLE>Fallback &amp; title</TITLE>
            <meta property="og:title" content="Spring &quot;garden&quot; &#x2764;">
            <meta content='A walk' name=description>
            <meta property="og:image" content="/img/rose.png" />
            <meta property="og:title" content="second, ignored">
            <meta name="twitter:card" content="summary">
            </head><body>…</body></html>"#;
        let og = open_graph(html, &base);
        assert_eq!(og["og:title"], "Spring \"garden\" ❤");
        assert_eq!(og["og:description"], "A walk");
        assert_eq!(og["og:image"], "https://example.org/img/rose.png");
        assert!(!og.contains_key("twitter:card"));
        let bare =
            open_graph("<title>Only &lt;this&gt;</title><meta property=og:image content=javascript:alert(1)>", &base);
        assert_eq!(bare["og:title"], "Only <this>");
        assert!(!bare.contains_key("og:image"), "only http(s) images");
        assert!(open_graph("<meta", &base).is_empty(), "a broken page is no panic");
        assert!(open_graph("", &base).is_empty());
    }

    #[test]
    fn entities_decode_and_nonsense_stays() {
        assert_eq!(
            decode_entities("a &amp; b &lt;c&gt; &#65;&#x42; &unknown; & done"),
            "a & b <c> AB &unknown; & done"
        );
        assert_eq!(decode_entities("&#xFFFFFFFF; &"), "&#xFFFFFFFF; &");
    }
}
