//! Image routes over the images service the CRI also uses (so the registry mirrors
//! apply): list, inspect, history, pull with Docker's JSON progress, push, tag,
//! remove, prune, save, load, import and commit.
use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::containers::{docker_containers, find, parse_filters, truthy};
use super::create::{familiar, with_tag};
use super::upload::Upload;
use super::{DockerError, DockerResult};
use crate::image::{Credentials, Image, ImageError, LayerState, PullProgress};

pub fn routes() -> Router<super::State> {
    Router::new()
        .route("/images/json", get(list))
        .route("/images/create", post(create))
        .route("/images/prune", post(prune))
        .route("/images/load", post(load))
        .route("/images/get", get(save_many))
        .route("/commit", post(commit))
        .route("/images/{*rest}", get(get_dispatch).post(post_dispatch).delete(remove))
}

fn created_seconds(image: &Image) -> i64 {
    image.created.as_deref().and_then(super::logs::parse_time).map(|n| n / 1_000_000_000).unwrap_or(0)
}

fn find_image(docker: &super::Docker, name: &str) -> DockerResult<Image> {
    docker.core.images.get(name).map_err(|error| match error {
        ImageError::NotFound(_) | ImageError::InvalidReference { .. } => DockerError::no_such_image(name),
        other => other.into(),
    })
}

fn summary(image: &Image) -> Value {
    json!({
        "Id": image.id, "ParentId": "", "RepoTags": image.repo_tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": image.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "Created": created_seconds(image), "Size": image.size, "SharedSize": -1, "VirtualSize": image.size,
        "Labels": image.config.labels.clone().unwrap_or_default(), "Containers": -1,
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    all: Option<String>,
    filters: Option<String>,
}

fn image_passes(image: &Image, filters: &HashMap<String, Vec<String>>, all: &[Image]) -> DockerResult<bool> {
    for (key, values) in filters {
        let ok = match key.as_str() {
            "dangling" => values.iter().any(|v| (v == "true") == image.repo_tags.is_empty()),
            "label" => values.iter().all(|v| {
                let labels = image.config.labels.clone().unwrap_or_default();
                match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|l| l == val),
                    None => labels.contains_key(v),
                }
            }),
            "reference" => values.iter().any(|v| image.repo_tags.iter().any(|t| reference_matches(&familiar(t), v))),
            "before" | "since" => {
                let other = all.iter().find(|i| values.iter().any(|v| i.id.contains(v.as_str()) || i.repo_tags.iter().any(|t| familiar(t) == with_tag(v))));
                let other = other.ok_or_else(|| DockerError::no_such_image(values.first().map(String::as_str).unwrap_or("")))?;
                if key == "before" { created_seconds(image) < created_seconds(other) } else { created_seconds(image) > created_seconds(other) }
            }
            _ => return Err(DockerError::bad_request(format!("invalid filter '{key}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `busybox`, `busybox:*`, `*box:latest`: shell-style `*` over the familiar name.
fn reference_matches(name: &str, pattern: &str) -> bool {
    let (repo, _) = name.rsplit_once(':').unwrap_or((name, ""));
    glob(pattern, name) || glob(pattern, repo)
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => text.starts_with(head) && (0..=text.len() - head.len()).any(|i| glob(tail, &text[head.len() + i..])),
    }
}

async fn list(State(docker): State<super::State>, Query(query): Query<ListQuery>) -> DockerResult<Json<Vec<Value>>> {
    let _ = query.all;
    let filters = parse_filters(query.filters.as_deref())?;
    let mut images = docker.core.images.list()?;
    images.sort_by_key(|i| std::cmp::Reverse(created_seconds(i)));
    let mut listed = Vec::new();
    for image in &images {
        if image_passes(image, &filters, &images)? {
            let mut entry = summary(image);
            if let Some(patterns) = filters.get("reference") {
                let tags: Vec<String> = image.repo_tags.iter().map(|t| familiar(t)).filter(|t| patterns.iter().any(|p| reference_matches(t, p))).collect();
                entry["RepoTags"] = json!(tags);
                let repos: Vec<String> = tags.iter().map(|t| t.rsplit_once(':').map(|(r, _)| r.to_string()).unwrap_or_default()).collect();
                let digests: Vec<String> = image.repo_digests.iter().map(|d| familiar(d)).filter(|d| repos.iter().any(|r| d.split('@').next() == Some(r.as_str()))).collect();
                entry["RepoDigests"] = json!(digests);
            }
            listed.push(entry);
        }
    }
    Ok(Json(listed))
}

fn inspect_json(image: &Image) -> Value {
    json!({
        "Id": image.id, "RepoTags": image.repo_tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "RepoDigests": image.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
        "Parent": "", "Comment": "", "Created": image.created.clone().unwrap_or_default(), "DockerVersion": "",
        "Author": image.author.clone().unwrap_or_default(), "Config": image.config, "Architecture": image.architecture,
        "Variant": image.variant, "Os": image.os, "Size": image.size,
        "GraphDriver": {"Name": "overlayfs", "Data": null},
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    })
}

fn history_json(image: &Image) -> Vec<Value> {
    let mut layers = image.layers.iter();
    let mut rows: Vec<Value> = image
        .history
        .iter()
        .map(|entry| {
            let size = if entry.empty_layer { 0 } else { layers.next().map(|l| l.size).unwrap_or(0) };
            let created = entry.created.as_deref().and_then(super::logs::parse_time).map(|n| n / 1_000_000_000).unwrap_or(0);
            json!({"Id": "<missing>", "Created": created, "CreatedBy": entry.created_by.clone().unwrap_or_default(), "Tags": null, "Size": size, "Comment": entry.comment.clone().unwrap_or_default()})
        })
        .collect();
    rows.reverse();
    if let Some(first) = rows.first_mut() {
        first["Id"] = json!(image.id);
        first["Tags"] = json!(image.repo_tags.iter().map(|t| familiar(t)).collect::<Vec<_>>());
    }
    rows
}

async fn get_dispatch(State(docker): State<super::State>, Path(rest): Path<String>) -> DockerResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        return Ok(Json(inspect_json(&find_image(&docker, name)?)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return Ok(Json(history_json(&find_image(&docker, name)?)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(&docker, vec![name.to_string()]).await;
    }
    Err(DockerError::not_found(format!("page not found: /images/{rest}")))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RefQuery {
    repo: Option<String>,
    tag: Option<String>,
    force: Option<String>,
    noprune: Option<String>,
}

async fn post_dispatch(State(docker): State<super::State>, Path(rest): Path<String>, Query(query): Query<RefQuery>, headers: HeaderMap) -> DockerResult<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        let image = find_image(&docker, name)?;
        let repo = query.repo.unwrap_or_default();
        let target = match query.tag.as_deref().filter(|t| !t.is_empty()) {
            Some(tag) => format!("{repo}:{tag}"),
            None => with_tag(&repo),
        };
        docker.core.images.tag(&image.id, &target)?;
        docker.publish_image(&image.id, "tag", &familiar(&target));
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let target = match query.tag.as_deref().filter(|t| !t.is_empty()) {
            Some(tag) => format!("{name}:{tag}"),
            None => with_tag(name),
        };
        return push(docker, target, credentials(&headers)?).await;
    }
    Err(DockerError::not_found(format!("page not found: /images/{rest}")))
}

async fn remove(State(docker): State<super::State>, Path(name): Path<String>, Query(query): Query<RefQuery>) -> DockerResult<Json<Vec<Value>>> {
    // `noprune` keeps untagged parent images; berth's images have no parents (each is its
    // own manifest and layers), so there is nothing to prune either way.
    let _ = query.noprune;
    let image = find_image(&docker, &name)?;
    let force = truthy(query.force.as_deref());
    let users: Vec<String> = docker_containers(&docker.core)?.into_iter().filter(|c| c.image_id == image.id).map(|c| c.spec.sandbox_id).collect();
    let by_id = image.id.trim_start_matches("sha256:").starts_with(name.trim_start_matches("sha256:"));
    let last_name = image.repo_tags.len() <= 1 || by_id;
    if let (Some(user), false, true) = (users.first(), force, last_name) {
        return Err(DockerError::conflict(format!(
            "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
            &user[..12.min(user.len())],
            &image.id.trim_start_matches("sha256:")[..12]
        )));
    }
    let removed = docker.core.images.remove(if by_id { &image.id } else { &name })?;
    let mut answer: Vec<Value> = removed.untagged.iter().map(|n| json!({"Untagged": familiar(n)})).collect();
    for name in &removed.untagged {
        docker.publish_image(&image.id, "untag", &familiar(name));
    }
    if let Some(id) = removed.deleted {
        answer.push(json!({"Deleted": id}));
        docker.publish_image(&image.id, "delete", &image.id);
    }
    Ok(Json(answer))
}

/// Docker's X-Registry-Auth: base64url JSON with username and password (or a token).
fn credentials(headers: &HeaderMap) -> DockerResult<Option<Credentials>> {
    use base64::Engine;
    let Some(value) = headers.get("x-registry-auth").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()) else { return Ok(None) };
    let bytes = base64::engine::general_purpose::URL_SAFE.decode(value.trim()).or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value.trim())).map_err(|_| DockerError::bad_request("invalid X-Registry-Auth header"))?;
    let auth: Value = serde_json::from_slice(&bytes).map_err(|_| DockerError::bad_request("invalid X-Registry-Auth header"))?;
    let field = |key: &str| auth.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
    if !field("identitytoken").is_empty() {
        return Ok(Some(Credentials::IdentityToken(field("identitytoken"))));
    }
    if field("username").is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::Basic { username: field("username"), password: field("password") }))
}

fn line(value: Value) -> Bytes {
    Bytes::from(value.to_string() + "\r\n")
}

fn short_digest(digest: &str) -> String {
    digest.trim_start_matches("sha256:").chars().take(12).collect()
}

fn progress_line(progress: &PullProgress) -> Value {
    let id = short_digest(&progress.layer);
    match progress.state {
        LayerState::Waiting => json!({"status": "Pulling fs layer", "progressDetail": {}, "id": id}),
        LayerState::Downloading => json!({"status": "Downloading", "progressDetail": {"current": progress.done, "total": progress.total}, "id": id}),
        LayerState::Extracting => json!({"status": "Extracting", "progressDetail": {"current": progress.total, "total": progress.total}, "id": id}),
        LayerState::Exists => json!({"status": "Already exists", "progressDetail": {}, "id": id}),
        LayerState::Done => json!({"status": "Pull complete", "progressDetail": {}, "id": id}),
    }
}

fn pull_error(reference: &str, error: ImageError) -> DockerError {
    match error {
        // A registry that refuses the credentials: its error, as dockerd passes it on, but not
        // as a 401, on which the docker CLI would prompt for a login.
        ImageError::Unauthorized(_) => DockerError::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        ImageError::NotFound(message) if message.contains("ManifestUnknown") || message.contains("manifest unknown") => {
            let name = super::create::familiar(reference);
            DockerError::not_found(format!("manifest for {name} not found: manifest unknown: manifest unknown"))
        }
        ImageError::NotFound(_) => {
            let repo = reference.rsplit_once(':').map(|(r, _)| r).unwrap_or(reference);
            DockerError::not_found(format!("pull access denied for {repo}, repository does not exist or may require 'docker login'"))
        }
        other => other.into(),
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CreateQuery {
    from_image: Option<String>,
    from_src: Option<String>,
    repo: Option<String>,
    tag: Option<String>,
    platform: Option<String>,
}

async fn create(
    State(docker): State<super::State>,
    Query(query): Query<CreateQuery>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Body,
) -> DockerResult<Response> {
    if let Some(source) = query.from_src.as_deref() {
        let changes: Vec<String> = url_pairs(raw.as_deref().unwrap_or("")).into_iter().filter(|(k, _)| k == "changes").map(|(_, v)| v).collect();
        return import(&docker, source, query.repo.as_deref(), query.tag.as_deref(), &changes, body).await;
    }
    let name = query.from_image.clone().filter(|n| !n.is_empty()).ok_or_else(|| DockerError::bad_request("fromImage or fromSrc is required"))?;
    let _ = query.platform;
    let reference = match query.tag.as_deref().filter(|t| !t.is_empty()) {
        Some(tag) if tag.starts_with("sha256:") => format!("{name}@{tag}"),
        Some(tag) => format!("{name}:{tag}"),
        None => with_tag(&name),
    };
    pull(docker, reference, credentials(&headers)?).await
}

/// Pulls, answering with an error status when the pull fails before any progress,
/// else with Docker's JSON progress stream (an error then ends the stream).
async fn pull(docker: super::State, reference: String, auth: Option<Credentials>) -> DockerResult<Response> {
    let existed = docker.core.images.get(&reference).ok().map(|i| i.id);
    let (progress_sender, mut progress) = mpsc::channel::<PullProgress>(64);
    let task_docker = docker.clone();
    let task_reference = reference.clone();
    let pulling = tokio::spawn(async move { task_docker.core.images.pull(&task_reference, auth, Some(progress_sender)).await });
    // The progress channel closes only when the pull is over: no progress at all means
    // it ended (often failed) before any layer, and its error is the answer's status.
    let Some(first) = progress.recv().await else {
        return match pulling.await {
            Ok(Err(error)) => Err(pull_error(&reference, error)),
            Err(join) => Err(DockerError::internal(format!("pull: {join}"))),
            Ok(Ok(image)) => Ok(finished_pull_response(&docker, &reference, vec![], Ok(image), existed)),
        };
    };
    let first = Some(first);
    let (output, pending) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((&reference, "latest"));
        let _ = output.send(line(json!({"status": format!("Pulling from {}", familiar(repo)), "id": tag}))).await;
        let mut update = first;
        while let Some(current) = update {
            let _ = output.send(line(progress_line(&current))).await;
            update = progress.recv().await;
        }
        let outcome = match pulling.await {
            Ok(outcome) => outcome,
            Err(join) => Err(ImageError::Unsupported(join.to_string())),
        };
        for chunk in final_lines(&docker, &reference, outcome, existed) {
            let _ = output.send(chunk).await;
        }
    });
    Ok(stream_response(pending))
}

fn final_lines(docker: &super::Docker, reference: &str, outcome: Result<Image, ImageError>, existed: Option<String>) -> Vec<Bytes> {
    match outcome {
        Ok(image) => {
            docker.publish_image(&image.id, "pull", &familiar(reference));
            let status = if existed.as_deref() == Some(image.id.as_str()) { "Image is up to date for" } else { "Downloaded newer image for" };
            vec![
                line(json!({"status": format!("Digest: {}", image.manifest_digest)})),
                line(json!({"status": format!("Status: {status} {}", familiar(reference))})),
            ]
        }
        Err(error) => {
            let message = pull_error(reference, error).message;
            vec![line(json!({"errorDetail": {"message": message}, "error": message}))]
        }
    }
}

fn finished_pull_response(docker: &super::Docker, reference: &str, mut lines: Vec<Bytes>, outcome: Result<Image, ImageError>, existed: Option<String>) -> Response {
    lines.extend(final_lines(docker, reference, outcome, existed));
    let body = Body::from(lines.concat());
    ([("content-type", "application/json")], body).into_response()
}

fn stream_response(pending: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(pending), Ok::<_, std::convert::Infallible>);
    ([("content-type", "application/json")], Body::from_stream(stream)).into_response()
}

async fn push(docker: super::State, target: String, auth: Option<Credentials>) -> DockerResult<Response> {
    let image = find_image(&docker, &target).map_err(|_| DockerError::not_found(format!("An image does not exist locally with the tag: {}", target.rsplit_once(':').map(|(r, _)| r).unwrap_or(&target))))?;
    let (output, pending) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let (repo, tag) = target.rsplit_once(':').unwrap_or((&target, "latest"));
        let _ = output.send(line(json!({"status": format!("The push refers to repository [{}]", repo)}))).await;
        for layer in image.layers.iter().rev() {
            let _ = output.send(line(json!({"status": "Preparing", "progressDetail": {}, "id": short_digest(&layer.digest)}))).await;
        }
        match docker.core.images.push(&target, &target, auth).await {
            Ok(digest) => {
                for layer in image.layers.iter().rev() {
                    let _ = output.send(line(json!({"status": "Pushed", "progressDetail": {}, "id": short_digest(&layer.digest)}))).await;
                }
                let size = image.size;
                // Two messages, as dockerd sends them: the CLI prints a status but hands one
                // with `aux` to its callback without printing it.
                let _ = output.send(line(json!({"status": format!("{tag}: digest: {digest} size: {size}")}))).await;
                let _ = output.send(line(json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": size}}))).await;
                docker.publish_image(&image.id, "push", &familiar(&target));
            }
            Err(error) => {
                let message = error.to_string();
                let _ = output.send(line(json!({"errorDetail": {"message": message}, "error": message}))).await;
            }
        }
    });
    Ok(stream_response(pending))
}

async fn save_many(State(docker): State<super::State>, axum::extract::RawQuery(query): axum::extract::RawQuery) -> DockerResult<Response> {
    let names: Vec<String> = url_pairs(query.as_deref().unwrap_or("")).into_iter().filter(|(k, _)| k == "names").map(|(_, v)| v).collect();
    save(&docker, names).await
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn save(docker: &super::Docker, names: Vec<String>) -> DockerResult<Response> {
    for name in &names {
        find_image(docker, name)?;
    }
    let images = docker.core.images.clone();
    let archive = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        images.export(&refs, &mut out).map(|_| out)
    })
    .await
    .map_err(|e| DockerError::internal(e.to_string()))??;
    Ok(([("content-type", "application/x-tar")], archive).into_response())
}

async fn load(State(docker): State<super::State>, body: Body) -> DockerResult<Response> {
    let upload = Upload::start(body)?;
    let imported = docker.core.images.import(upload.reader_clone()?).await;
    // The rest (a tar's trailing blocks, or what a failed import did not read) is read,
    // so that the client sees the answer rather than a broken pipe.
    upload.drain().await;
    let images = imported?;
    let mut lines = Vec::new();
    for image in &images {
        docker.publish_image(&image.id, "load", &image.id);
        let names: Vec<String> = image.repo_tags.iter().map(|t| familiar(t)).collect();
        let stream = if names.is_empty() { format!("Loaded image ID: {}\n", image.id) } else { names.iter().map(|n| format!("Loaded image: {n}\n")).collect() };
        lines.push(line(json!({"stream": stream})));
    }
    Ok(([("content-type", "application/json")], lines.concat()).into_response())
}

async fn import(docker: &super::Docker, source: &str, repo: Option<&str>, tag: Option<&str>, changes: &[String], body: Body) -> DockerResult<Response> {
    if source != "-" {
        return Err(DockerError::bad_request("import from a URL is not supported; send the tarball in the body (fromSrc=-)"));
    }
    let name = repo.filter(|r| !r.is_empty()).map(|r| match tag.filter(|t| !t.is_empty()) {
        Some(tag) => format!("{r}:{tag}"),
        None => with_tag(r),
    });
    let mut config = crate::image::ImageConfig::default();
    for change in changes.iter().flat_map(|c| c.lines()).filter(|l| !l.trim().is_empty()) {
        apply_change(&mut config, change)?;
    }
    let upload = Upload::start(body)?;
    let imported = docker.core.images.import_rootfs(upload.reader_clone()?, config, name.as_deref()).await;
    // The rest (a tar's trailing blocks, or what a failed import did not read) is read,
    // so that the client sees the answer rather than a broken pipe.
    upload.drain().await;
    let image = imported?;
    docker.publish_image(&image.id, "import", &image.id);
    Ok(([("content-type", "application/json")], line(json!({"status": image.id}))).into_response())
}

async fn prune(State(docker): State<super::State>, Query(query): Query<ListQuery>) -> DockerResult<Json<Value>> {
    let filters = parse_filters(query.filters.as_deref())?;
    let dangling_only = filters.get("dangling").is_none_or(|v| v.iter().any(|d| d == "true" || d == "1"));
    let used: Vec<String> = docker_containers(&docker.core)?.into_iter().map(|c| c.image_id).collect();
    let mut deleted = Vec::new();
    for image in docker.core.images.list()? {
        if used.contains(&image.id) || (dangling_only && !image.repo_tags.is_empty()) {
            continue;
        }
        let removed = docker.core.images.remove(&image.id)?;
        deleted.extend(removed.untagged.iter().map(|n| json!({"Untagged": familiar(n)})));
        if let Some(id) = removed.deleted {
            deleted.push(json!({"Deleted": id}));
        }
    }
    Ok(Json(json!({"ImagesDeleted": deleted, "SpaceReclaimed": 0})))
}

/// A Dockerfile instruction's words: a JSON array, or shell form.
fn instruction_words(text: &str) -> Vec<String> {
    serde_json::from_str::<Vec<String>>(text).unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), text.to_string()])
}

/// Applies `docker commit --change` instructions (CMD, ENTRYPOINT, ENV, WORKDIR, USER,
/// LABEL, EXPOSE, VOLUME) to an image config.
fn apply_change(config: &mut crate::image::ImageConfig, change: &str) -> DockerResult<()> {
    let (instruction, rest) = change.trim().split_once(char::is_whitespace).unwrap_or((change.trim(), ""));
    let rest = rest.trim();
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(instruction_words(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(instruction_words(rest)),
        "WORKDIR" => config.working_dir = Some(rest.to_string()),
        "USER" => config.user = Some(rest.to_string()),
        "ENV" => {
            let (key, value) = rest.split_once('=').or_else(|| rest.split_once(' ')).unwrap_or((rest, ""));
            let env = config.env.get_or_insert_with(Vec::new);
            env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(format!("{key}={}", value.trim_matches('"')));
        }
        "LABEL" => {
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            config.labels.get_or_insert_with(Default::default).insert(key.trim_matches('"').into(), value.trim_matches('"').into());
        }
        "VOLUME" => {
            let paths = serde_json::from_str::<Vec<String>>(rest).unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
            let volumes = config.volumes.get_or_insert_with(Default::default);
            volumes.extend(paths.into_iter().map(|path| (path, json!({}))));
        }
        "EXPOSE" => {
            for port in rest.split_whitespace() {
                let key = if port.contains('/') { port.to_string() } else { format!("{port}/tcp") };
                config.exposed_ports.get_or_insert_with(Default::default).insert(key, json!({}));
            }
        }
        other => return Err(DockerError::bad_request(format!("{other} is not a valid change command"))),
    }
    Ok(())
}

async fn commit(State(docker): State<super::State>, axum::extract::RawQuery(query): axum::extract::RawQuery) -> DockerResult<(StatusCode, Json<Value>)> {
    let pairs = url_pairs(query.as_deref().unwrap_or(""));
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    let record = find(&docker.core, &get("container").unwrap_or_default())?;
    let parent = docker.core.images.get(&record.image_id)?;
    let mut config = parent.config.clone();
    for (_, change) in pairs.iter().filter(|(k, _)| k == "changes") {
        for line in change.lines().filter(|l| !l.trim().is_empty()) {
            apply_change(&mut config, line)?;
        }
    }
    let name = get("repo").map(|repo| match get("tag") {
        Some(tag) => format!("{repo}:{tag}"),
        None => with_tag(&repo),
    });
    let comment = get("comment").unwrap_or_default();
    let image = docker.core.images.commit_active(&record.snapshot_key, &record.image_id, Some(config), &comment, name.as_deref()).await?;
    docker.publish_image(&image.id, "commit", &image.id);
    Ok((StatusCode::CREATED, Json(json!({"Id": image.id}))))
}
