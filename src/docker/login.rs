//! `POST /auth` (`docker login`): the credentials are checked against the registry
//! (its `/v2/` with basic auth, or the token service its challenge names), and nothing
//! is kept: the CLI stores them and sends them with each pull and push
//! (`X-Registry-Auth`).
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{DockerError, DockerResult};

const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    serveraddress: String,
}

/// `https://index.docker.io/v1/`, `http://host:5000` or `host:5000`: the registry host.
fn registry_host(address: &str) -> String {
    let bare = address.split_once("://").map(|(_, rest)| rest).unwrap_or(address);
    let host = bare.split('/').next().unwrap_or(bare);
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.into(),
        other => other.into(),
    }
}

pub async fn auth(State(docker): State<super::State>, body: Bytes) -> DockerResult<Json<Value>> {
    let body: AuthBody = serde_json::from_slice(&body).map_err(|e| DockerError::bad_request(format!("invalid JSON: {e}")))?;
    if body.username.is_empty() {
        return Err(DockerError::bad_request("Error: Non-null Username Required"));
    }
    let host = registry_host(&body.serveraddress);
    let registry = docker.core.config.registry_config();
    let endpoint = registry.endpoints(&host).pop().ok_or_else(|| DockerError::internal(format!("no endpoint for {host}")))?;
    let scheme = if endpoint.plain_http { "http" } else { "https" };
    let api_host = if endpoint.host == DOCKER_HUB { "registry-1.docker.io".to_string() } else { endpoint.host.clone() };
    let url = format!("{scheme}://{api_host}/v2/");
    check_login(&url, &body.username, &body.password).await?;
    Ok(Json(json!({"Status": "Login Succeeded", "IdentityToken": ""})))
}

fn refused(url: &str, status: reqwest::StatusCode) -> DockerError {
    DockerError::new(StatusCode::UNAUTHORIZED, format!("login attempt to {url} failed with status: {status}"))
}

/// Basic auth on `/v2/`; a bearer challenge sends the credentials to its realm.
async fn check_login(url: &str, username: &str, password: &str) -> DockerResult<()> {
    let client = reqwest::Client::builder().timeout(LOGIN_TIMEOUT).build().map_err(|e| DockerError::internal(format!("registry client: {e}")))?;
    let unreachable = |e: reqwest::Error| DockerError::internal(format!("Get \"{url}\": {e}"));
    let answer = client.get(url).basic_auth(username, Some(password)).send().await.map_err(unreachable)?;
    if answer.status().is_success() {
        return Ok(());
    }
    if answer.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(refused(url, answer.status()));
    }
    let challenge = answer.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let Some(parameters) = challenge.strip_prefix("Bearer ").or_else(|| challenge.strip_prefix("bearer ")) else {
        return Err(refused(url, answer.status()));
    };
    let pairs = challenge_pairs(parameters);
    let realm = pairs.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone()).ok_or_else(|| refused(url, answer.status()))?;
    let mut query: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k == "service").collect();
    query.push(("account".into(), username.into()));
    let token_url = format!("{realm}?{}", query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&"));
    let token = client.get(&token_url).basic_auth(username, Some(password)).send().await.map_err(unreachable)?;
    if token.status().is_success() {
        return Ok(());
    }
    Err(refused(url, token.status()))
}

/// `realm="...",service="..."` as pairs.
fn challenge_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        pairs.push((key, value.to_string()));
        rest = remaining.trim_start_matches(',').trim();
    }
    pairs
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_challenges() {
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("http://reg.example:5000/v2/"), "reg.example:5000");
        let pairs = challenge_pairs("realm=\"http://a/token\",service=\"reg, test\",scope=\"x\"");
        assert_eq!(pairs[0], ("realm".into(), "http://a/token".into()));
        assert_eq!(pairs[1], ("service".into(), "reg, test".into()));
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
