//! `/containers/{id}/archive`: `docker cp` both ways. `HEAD` stats a path (the
//! `X-Docker-Container-Path-Stat` header), `GET` streams it as a tar, `PUT` extracts a
//! tar (plain or gzip) into a directory. Paths resolve inside the container's root.
//! `/containers/{id}/export` streams its whole filesystem (the merged layers) as a tar.
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path as FsPath, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::containers::{docker_id, find, truthy};
use super::create::Front;
use super::rootview::RootView;
use super::upload::Upload;
use super::{DockerError, DockerResult};

pub const STAT_HEADER: &str = "x-docker-container-path-stat";
const CHUNK: usize = 64 * 1024;

pub fn routes() -> Router<super::State> {
    Router::new()
        .route("/containers/{id}/archive", get(get_archive).head(head_archive).put(put_archive))
        .route("/containers/{id}/export", get(export))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ArchiveQuery {
    path: Option<String>,
    no_overwrite_dir_non_dir: Option<String>,
    #[serde(rename = "copyUIDGID")]
    copy_uid_gid: Option<String>,
}

impl ArchiveQuery {
    fn path(&self) -> DockerResult<String> {
        self.path.clone().filter(|p| !p.is_empty()).ok_or_else(|| DockerError::bad_request("path is required"))
    }
}

/// Go's `os.FileMode` bits, which the stat header carries.
fn go_file_mode(meta: &std::fs::Metadata) -> u32 {
    let kind = meta.file_type();
    let mut mode = meta.mode() & 0o777;
    use std::os::unix::fs::FileTypeExt;
    for (is, bit) in [
        (kind.is_dir(), 1 << 31),
        (kind.is_symlink(), 1 << 27),
        (kind.is_block_device(), 1 << 26),
        (kind.is_char_device(), (1 << 26) | (1 << 21)),
        (kind.is_fifo(), 1 << 25),
        (kind.is_socket(), 1 << 24),
        (meta.mode() & 0o4000 != 0, 1 << 23),
        (meta.mode() & 0o2000 != 0, 1 << 22),
        (meta.mode() & 0o1000 != 0, 1 << 20),
    ] {
        if is {
            mode |= bit;
        }
    }
    mode
}

/// The last name of a container path, as Go's `filepath.Base`.
fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn not_found(path: &str, record: &crate::core::ContainerRecord) -> DockerError {
    DockerError::not_found(format!("Could not find the file {path} in container {}", record.spec.name))
}

/// A path ending in `/` or `/.` means the directory itself, through a symlink.
fn follows_last(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.")
}

/// The stat of `path` in the container, as the header's base64 JSON.
fn stat_header(view: &RootView, path: &str, record: &crate::core::ContainerRecord) -> DockerResult<(PathBuf, String)> {
    let resolved = view.resolve(path, follows_last(path)).map_err(|_| not_found(path, record))?;
    let meta = std::fs::symlink_metadata(&resolved).map_err(|_| not_found(path, record))?;
    let link_target = if meta.file_type().is_symlink() {
        let followed = view.resolve(path, true).map_err(|_| not_found(path, record))?;
        format!("/{}", followed.strip_prefix(view.root()).unwrap_or(&followed).display())
    } else {
        String::new()
    };
    let mtime = chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32).unwrap_or_default();
    let stat = serde_json::json!({
        "name": base_name(path), "size": meta.len(), "mode": go_file_mode(&meta),
        "mtime": mtime.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), "linkTarget": link_target,
    });
    Ok((resolved, base64::engine::general_purpose::STANDARD.encode(stat.to_string())))
}

fn with_stat(mut response: Response, stat: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(stat) {
        response.headers_mut().insert(STAT_HEADER, value);
    }
    response
}

async fn head_archive(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<ArchiveQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let path = query.path()?;
    let view = RootView::open(&docker.core, &record)?;
    let (_, stat) = stat_header(&view, &path, &record)?;
    Ok(with_stat(StatusCode::OK.into_response(), &stat))
}

async fn get_archive(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<ArchiveQuery>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let path = query.path()?;
    let view = RootView::open(&docker.core, &record)?;
    let (resolved, stat) = stat_header(&view, &path, &record)?;
    let name = if path.ends_with("/.") { ".".to_string() } else { base_name(&path) };
    let response = tar_response(view, resolved, name)?;
    docker.publish_container(docker_id(&record), "archive-path", &record.spec.name, &record.spec.image);
    Ok(with_stat(response, &stat))
}

/// `docker export`: the container's merged layers, from its root, as dockerd streams them.
async fn export(State(docker): State<super::State>, Path(id): Path<String>) -> DockerResult<Response> {
    let record = find(&docker.core, &id)?;
    let view = RootView::open_layers(&docker.core, &record)?;
    let root = view.root().to_path_buf();
    let response = tar_response(view, root, String::new())?;
    docker.publish_container(docker_id(&record), "export", &record.spec.name, &record.spec.image);
    Ok(response)
}

/// A tar of `source` (named `name` in it; its entries straight under the root when
/// empty), written by a blocking task while `view` stays mounted, as a streamed body.
fn tar_response(view: RootView, source: PathBuf, name: String) -> DockerResult<Response> {
    let (reader, writer) = std::os::unix::net::UnixStream::pair().map_err(|e| DockerError::internal(format!("archive pipe: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let _view = view;
        if let Err(error) = write_tar(&source, &name, writer) {
            tracing::debug!(%error, "writing a container archive");
        }
    });
    reader.set_nonblocking(true).map_err(|e| DockerError::internal(e.to_string()))?;
    let reader = tokio::net::UnixStream::from_std(reader).map_err(|e| DockerError::internal(e.to_string()))?;
    Ok(([("content-type", "application/x-tar")], Body::from_stream(read_chunks(reader))).into_response())
}

fn write_tar(source: &FsPath, name: &str, out: impl std::io::Write) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    if std::fs::symlink_metadata(source)?.is_dir() {
        builder.append_dir_all(name, source)?;
    } else {
        builder.append_path_with_name(source, name)?;
    }
    builder.into_inner()?.flush()
}

/// The bytes of `reader` as a body stream, 64 KiB at a time.
fn read_chunks(reader: tokio::net::UnixStream) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buffer = vec![0u8; CHUNK];
        match reader.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), Some(reader)))
            }
            Err(error) => Some((Err(error), None)),
        }
    })
}

/// How much of a refused upload is read before answering (as Go's server does), so that
/// the client sees the answer rather than a broken pipe.
const REFUSED_BODY_READ: usize = 1 << 20;

async fn put_archive(State(docker): State<super::State>, Path(id): Path<String>, Query(query): Query<ArchiveQuery>, body: Body) -> DockerResult<Response> {
    let (record, view, destination) = match extraction_target(&docker, &id, &query) {
        Ok(target) => target,
        Err(error) => {
            let _ = axum::body::to_bytes(body, REFUSED_BODY_READ).await;
            return Err(error);
        }
    };
    let options = Extraction {
        no_overwrite_dir_non_dir: truthy(query.no_overwrite_dir_non_dir.as_deref()),
        owner: truthy(query.copy_uid_gid.as_deref()).then(|| record.identity.as_ref().map(|i| (i.uid, i.gid)).unwrap_or((0, 0))),
        inside: format!("/{}", destination.strip_prefix(view.root()).unwrap_or(FsPath::new("")).display()),
    };
    let upload = Upload::start(body)?;
    let reader = upload.reader_clone()?;
    let extracted = tokio::task::spawn_blocking(move || extract(&view, reader, &options)).await;
    upload.abandon().await;
    match extracted {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error),
        Err(error) => return Err(DockerError::internal(format!("extracting the archive: {error}"))),
    }
    docker.publish_container(docker_id(&record), "extract-to-dir", &record.spec.name, &record.spec.image);
    Ok(StatusCode::OK.into_response())
}

/// The container, a view of its root and the (existing, directory) destination in it.
fn extraction_target(docker: &super::Docker, id: &str, query: &ArchiveQuery) -> DockerResult<(crate::core::ContainerRecord, RootView, PathBuf)> {
    let record = find(&docker.core, id)?;
    let path = query.path()?;
    if Front::of(&record).host_config.get("ReadonlyRootfs").and_then(|v| v.as_bool()) == Some(true) {
        return Err(DockerError::new(StatusCode::FORBIDDEN, "container rootfs is marked read-only"));
    }
    let view = RootView::open(&docker.core, &record)?;
    let destination = view.resolve(&path, true).map_err(|_| not_found(&path, &record))?;
    let meta = std::fs::metadata(&destination).map_err(|_| not_found(&path, &record))?;
    if !meta.is_dir() {
        return Err(DockerError::bad_request("extraction point is not a directory"));
    }
    Ok((record, view, destination))
}

struct Extraction {
    no_overwrite_dir_non_dir: bool,
    /// `copyUIDGID`: everything belongs to the container's user; else the tar's owners.
    owner: Option<(u32, u32)>,
    /// The destination directory as the container names it.
    inside: String,
}

/// Extracts the tar (gzip-compressed or not) read from `input` under the destination.
fn extract(view: &RootView, input: impl Read + 'static, options: &Extraction) -> DockerResult<()> {
    let bad = |e: std::io::Error| DockerError::bad_request(format!("error extracting the archive: {e}"));
    let mut input = BufReader::new(input);
    let gzip = input.fill_buf().map_err(bad)?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(input)) } else { Box::new(input) };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    let extracted = extract_entries(view, &mut archive, options);
    // The client sends the archive's trailing blocks after the end the reader needs:
    // read them, so that the answer does not cut its upload short.
    let _ = std::io::copy(&mut archive.into_inner(), &mut std::io::sink());
    extracted
}

fn extract_entries(view: &RootView, archive: &mut tar::Archive<Box<dyn Read>>, options: &Extraction) -> DockerResult<()> {
    let bad = |e: std::io::Error| DockerError::bad_request(format!("error extracting the archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name: PathBuf = entry.path().map_err(bad)?.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        if name.as_os_str().is_empty() {
            continue;
        }
        extract_entry(view, &mut entry, &name, options)?;
    }
    Ok(())
}

fn extract_entry(view: &RootView, entry: &mut tar::Entry<'_, Box<dyn Read>>, name: &FsPath, options: &Extraction) -> DockerResult<()> {
    let failed = |e: std::io::Error| DockerError::internal(format!("extracting {}: {e}", name.display()));
    let inside = FsPath::new(&options.inside).join(name);
    let parent_inside = inside.parent().unwrap_or(FsPath::new("/"));
    let parent = view.resolve(&parent_inside.display().to_string(), true).map_err(failed)?;
    std::fs::create_dir_all(&parent).map_err(failed)?;
    let target = parent.join(name.file_name().unwrap_or_default());
    let kind = entry.header().entry_type();
    let existing = std::fs::symlink_metadata(&target).ok();
    if let Some(existing) = &existing {
        let overwrite_dir = existing.is_dir() && !kind.is_dir();
        if (overwrite_dir || (!existing.is_dir() && kind.is_dir())) && options.no_overwrite_dir_non_dir {
            let what = if overwrite_dir { "cannot overwrite directory" } else { "cannot overwrite non-directory" };
            return Err(DockerError::bad_request(format!("{what} \"{}\" with {}", inside.display(), if kind.is_dir() { "directory" } else { "non-directory" })));
        }
        if existing.is_dir() && !kind.is_dir() {
            std::fs::remove_dir_all(&target).map_err(failed)?;
        } else if !existing.is_dir() {
            std::fs::remove_file(&target).map_err(failed)?;
        }
    }
    if kind.is_hard_link() {
        let link = entry.link_name().map_err(failed)?.unwrap_or_default().into_owned();
        let link_inside: PathBuf = FsPath::new(&options.inside).join(link.components().filter(|c| matches!(c, Component::Normal(_))).collect::<PathBuf>());
        let source = view.resolve(&link_inside.display().to_string(), false).map_err(failed)?;
        std::fs::hard_link(source, &target).map_err(failed)?;
    } else if kind.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir()) {
        let mode = entry.header().mode().map_err(failed)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o7777)).map_err(failed)?;
    } else {
        entry.unpack(&target).map_err(failed)?;
    }
    let header = entry.header();
    let (uid, gid) = options.owner.unwrap_or((header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32));
    std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_are_gos() {
        assert_eq!(base_name("/etc/hosts"), "hosts");
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(base_name("/"), "/");
        assert!(follows_last("/etc/.") && follows_last("/etc/") && !follows_last("/etc"));
    }
}
