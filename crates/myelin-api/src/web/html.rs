//! The pages' HTML: one layout, every value escaped, no scripts.

use axum::{
    http::header,
    response::{IntoResponse, Response},
};

/// Scripts, styles, images and requests from this site only (the one script is the passkeys'),
/// no frames, forms to this site only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of a page whose form's answer redirects to `target` (a client's redirect URI):
/// `form-action` names it too, as browsers check redirects after a form against it.
pub fn csp_allowing_redirect_to(target: &str) -> String {
    let source = match url::Url::parse(target) {
        Ok(url) if url.scheme() == "http" || url.scheme() == "https" => url.origin().ascii_serialization(),
        Ok(url) => format!("{}:", url.scheme()),
        Err(_) => String::new(),
    };
    CSP.replace("form-action 'self'", &format!("form-action 'self' {source}"))
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; background: #f4f6fa; color: #17191c; margin: 0; }
main { max-width: 28rem; margin: 3rem auto; background: #fff; padding: 2rem; border-radius: 12px;
       box-shadow: 0 1px 4px rgba(0,0,0,.12); }
main.wide { max-width: 44rem; }
h1 { font-size: 1.4rem; margin-top: 0; }
h2 { font-size: 1.1rem; margin-top: 2rem; }
label { display: block; margin: 1rem 0 .3rem; font-weight: 600; }
input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .6rem;
       border: 1px solid #8d97a5; border-radius: 6px; font-size: 1rem; }
button { margin-top: 1.2rem; padding: .6rem 1.2rem; font-size: 1rem; border-radius: 6px; border: 0;
         background: #0d7d5f; color: #fff; cursor: pointer; }
button.secondary { background: #e1e6ec; color: #17191c; }
button.danger { background: #c4262e; }
button:focus, input:focus { outline: 3px solid #2a6fd6; outline-offset: 2px; }
.error { background: #fde8e8; color: #8b1a1a; padding: .7rem; border-radius: 6px; }
.note { color: #4b5563; }
.code { font-family: ui-monospace, monospace; font-size: 1.3rem; letter-spacing: .15em; }
table { width: 100%; border-collapse: collapse; }
td, th { text-align: left; padding: .4rem; border-bottom: 1px solid #e1e6ec; }
ul.scopes li { margin: .3rem 0; }
form.inline { display: inline; }
";

pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLE)
        .into_response()
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The layout: `body` is HTML already escaped where needed.
pub fn layout(title: &str, body: &str, wide: bool) -> String {
    let class = if wide { " class=\"wide\"" } else { "" };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/auth/style.css\">\
         <script src=\"/auth/passkeys.js\" defer></script></head>\
         <body><main{class}>{body}</main></body></html>",
        title = escape(title),
    )
}

pub fn message_page(title: &str, message: &str) -> String {
    layout(title, &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(message)), false)
}

pub fn error_box(error: Option<&str>) -> String {
    error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default()
}

pub fn csrf_field(token: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", escape(token))
}

pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value))
}
