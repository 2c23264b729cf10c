//! The web console: a small single-page application served at `/ui` on the
//! admin listener, every asset compiled into the binary.
//!
//! The pages hold no data, so they are served without the token; every
//! data call the browser makes goes to the `/v1` API with the bearer token
//! the operator types in (kept in the tab's `sessionStorage`). What this
//! module guarantees about the assets: the content type is right, a strict
//! Content-Security-Policy allows scripts, styles and connections from the
//! agent only (no inline script, nothing from elsewhere), and the browser
//! revalidates every asset (an ETag of its bytes), so a new agent build is
//! never shown through a stale cached script.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The policy every console answer carries: everything from the agent
/// itself, nothing inline, no frames, no forms posted anywhere.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the console as it is compiled in.
struct Asset {
    /// Its name under `/ui/`.
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file the console has; `/ui` and `/ui/` answer the first.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("console.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("favicon.svg"),
    },
    js("main.js", include_bytes!("main.js")),
    js("api.js", include_bytes!("api.js")),
    js("dom.js", include_bytes!("dom.js")),
    js("dialog.js", include_bytes!("dialog.js")),
    js("cluster.js", include_bytes!("cluster.js")),
    js("move.js", include_bytes!("move.js")),
    js("graph.js", include_bytes!("graph.js")),
    js("events.js", include_bytes!("events.js")),
    js("resource.js", include_bytes!("resource.js")),
    js("plugins.js", include_bytes!("plugins.js")),
];

const fn js(name: &'static str, bytes: &'static [u8]) -> Asset {
    Asset {
        name,
        content_type: "text/javascript; charset=utf-8",
        bytes,
    }
}

/// The console's routes, to be merged into the admin API's router (no
/// token layer: see the module's documentation).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], ETAGS.get_or_init(etags)[0].as_str(), &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(&ASSETS[i], ETAGS.get_or_init(etags)[i].as_str(), &headers),
        None => {
            let mut response = (
                StatusCode::NOT_FOUND,
                axum::Json(json!({ "error": format!("the console has no file {name:?}") })),
            )
                .into_response();
            secure(response.headers_mut());
            response
        }
    }
}

/// Each asset's ETag, in the order of [`ASSETS`], computed on first use.
static ETAGS: OnceLock<Vec<String>> = OnceLock::new();

fn etags() -> Vec<String> {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
}

fn serve(asset: &Asset, etag: &str, request: &HeaderMap) -> Response {
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| given.split(',').any(|tag| tag.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    secure(headers);
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// The headers every console answer has, found or not.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidate every time (the ETag makes that a 304): a new agent build
    // is never shown with an old script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn every_module_the_pages_import_is_served() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        for asset in ASSETS {
            let Ok(text) = std::str::from_utf8(asset.bytes) else {
                continue;
            };
            for piece in text.split(['"', '\'']) {
                let Some(name) = piece.strip_prefix("./").or(piece.strip_prefix("/ui/")) else {
                    continue;
                };
                if [".js", ".css", ".svg"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
                {
                    assert!(
                        names.contains(&name),
                        "{} refers to {name}, not served",
                        asset.name
                    );
                }
            }
        }
    }

    #[test]
    fn no_asset_has_inline_script_or_style() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            let text = std::str::from_utf8(asset.bytes).unwrap_or_default();
            assert!(!text.contains("<script>"), "{}: inline script", asset.name);
            assert!(!text.contains("style="), "{}: inline style", asset.name);
            let handler = text.split(" on").skip(1).any(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                !name.is_empty() && rest[name.len()..].starts_with('=')
            });
            assert!(!handler, "{}: an event handler attribute", asset.name);
        }
    }
}
