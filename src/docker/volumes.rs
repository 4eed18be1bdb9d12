//! `/volumes`: list, create, inspect, remove and prune Docker's named volumes, and the
//! volume side of a container: which volumes it uses, the anonymous ones it makes for
//! its image's `VOLUME`s, and the first-use copy of the image's content.
use std::collections::HashMap;
use std::path::PathBuf;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::containers::{docker_containers, label_matches, no_content, parse_filters, truthy};
use super::error::{DockerError, DockerResult};
use super::volume_store::{VolumeRecord, ANONYMOUS_LABEL};
use crate::core::records::ContainerRecord;
use crate::core::Core;

pub fn routes() -> Router<super::State> {
    Router::new()
        .route("/volumes", get(list))
        .route("/volumes/create", post(create))
        .route("/volumes/prune", post(prune))
        .route("/volumes/{name}", get(inspect).delete(remove))
}

impl super::Docker {
    pub fn publish_volume(&self, name: &str, action: &str, container: Option<&str>) {
        let mut attributes = json!({"driver": "local"});
        if let Some(container) = container {
            attributes["container"] = json!(container);
        }
        self.publish("volume", action, name, attributes, "");
    }

    /// dockerd's `volume mount` for each volume of a container that started (with its
    /// destination, `read/write` and a propagation left empty, as dockerd leaves a
    /// volume's), or `volume unmount` once it stopped.
    pub fn publish_volume_mounts(&self, record: &ContainerRecord, mounted: bool) {
        let container = super::containers::docker_id(record);
        for mount in &record.spec.mounts {
            let Some(name) = self.volumes.name_of(std::path::Path::new(&mount.host_path)) else { continue };
            if !mounted {
                self.publish_volume(&name, "unmount", Some(container));
                continue;
            }
            let attributes = json!({
                "driver": "local", "container": container, "destination": mount.container_path,
                "read/write": (!mount.readonly).to_string(), "propagation": "",
            });
            self.publish("volume", "mount", &name, attributes, "");
        }
    }
}

pub fn volume_json(docker: &super::Docker, volume: &VolumeRecord) -> Value {
    json!({
        "Name": volume.name,
        "Driver": "local",
        "Mountpoint": docker.volumes.data_dir(&volume.name),
        "CreatedAt": super::logs::format_time(volume.created_nanos),
        "Labels": volume.labels,
        "Options": if volume.options.is_empty() { Value::Null } else { json!(volume.options) },
        "Scope": "local",
    })
}

/// The volumes each Docker container mounts: volume name to container ids.
pub fn users(docker: &super::Docker) -> DockerResult<HashMap<String, Vec<String>>> {
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    for record in docker_containers(&docker.core)? {
        for name in volumes_of(docker, &record) {
            users.entry(name).or_default().push(record.spec.sandbox_id.clone());
        }
    }
    Ok(users)
}

pub fn volumes_of(docker: &super::Docker, record: &ContainerRecord) -> Vec<String> {
    record.spec.mounts.iter().filter_map(|mount| docker.volumes.name_of(std::path::Path::new(&mount.host_path))).collect()
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct FilterQuery {
    filters: Option<String>,
}

fn passes(volume: &VolumeRecord, in_use: bool, filters: &HashMap<String, Vec<String>>) -> DockerResult<bool> {
    for (key, values) in filters {
        let matched = match key.as_str() {
            "name" => values.iter().any(|v| volume.name.contains(v.as_str())),
            "driver" => values.iter().any(|v| v == "local"),
            "label" => values.iter().all(|v| label_matches(&volume.labels, v)),
            "dangling" => values.iter().any(|v| truthy(Some(v)) != in_use),
            "all" => true,
            other => return Err(DockerError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(State(docker): State<super::State>, Query(query): Query<FilterQuery>) -> DockerResult<Json<Value>> {
    let filters = parse_filters(query.filters.as_deref())?;
    let users = users(&docker)?;
    let mut shown = Vec::new();
    for volume in docker.volumes.list()? {
        if passes(&volume, users.contains_key(&volume.name), &filters)? {
            shown.push(volume_json(&docker, &volume));
        }
    }
    Ok(Json(json!({"Volumes": shown, "Warnings": Value::Null})))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<std::collections::BTreeMap<String, String>>,
    labels: Option<std::collections::BTreeMap<String, String>>,
}

async fn create(State(docker): State<super::State>, body: Bytes) -> DockerResult<(StatusCode, Json<Value>)> {
    let body: CreateBody = serde_json::from_slice(&body).map_err(|e| DockerError::bad_request(format!("invalid JSON: {e}")))?;
    if !body.driver.is_empty() && body.driver != "local" {
        return Err(DockerError::not_found(format!("plugin \"{}\" not found", body.driver)));
    }
    let name = if body.name.is_empty() { crate::core::ids::new_id()? } else { body.name };
    let record = VolumeRecord { name, labels: body.labels.unwrap_or_default(), options: body.driver_opts.unwrap_or_default(), created_nanos: crate::core::now_nanos() };
    let (volume, new) = docker.volumes.create(record)?;
    if new {
        docker.publish_volume(&volume.name, "create", None);
    }
    Ok((StatusCode::CREATED, Json(volume_json(&docker, &volume))))
}

async fn inspect(State(docker): State<super::State>, Path(name): Path<String>) -> DockerResult<Json<Value>> {
    Ok(Json(volume_json(&docker, &docker.volumes.get(&name)?)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RemoveQuery {
    force: Option<String>,
}

async fn remove(State(docker): State<super::State>, Path(name): Path<String>, Query(query): Query<RemoveQuery>) -> DockerResult<Response> {
    let _guard = docker.volume_lock.lock().await;
    if let Err(error) = docker.volumes.get(&name) {
        return if truthy(query.force.as_deref()) && error.status == StatusCode::NOT_FOUND { Ok(no_content()) } else { Err(error) };
    }
    if let Some(containers) = users(&docker)?.get(&name) {
        return Err(DockerError::conflict(format!("remove {name}: volume is in use - [{}]", containers.join(", "))));
    }
    docker.volumes.remove(&name)?;
    docker.publish_volume(&name, "destroy", None);
    Ok(no_content())
}

async fn prune(State(docker): State<super::State>, Query(query): Query<FilterQuery>) -> DockerResult<Json<Value>> {
    let filters = parse_filters(query.filters.as_deref())?;
    let every_volume = filters.get("all").is_some_and(|values| values.iter().any(|v| truthy(Some(v))));
    let _guard = docker.volume_lock.lock().await;
    let users = users(&docker)?;
    let (mut deleted, mut reclaimed) = (Vec::new(), 0u64);
    for volume in docker.volumes.list()? {
        let unused = !users.contains_key(&volume.name);
        if unused && (every_volume || volume.anonymous()) && passes(&volume, false, &filters)? {
            let size = docker.volumes.size(&volume.name);
            docker.volumes.remove(&volume.name)?;
            docker.publish_volume(&volume.name, "destroy", None);
            reclaimed += size;
            deleted.push(volume.name);
        }
    }
    Ok(Json(json!({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})))
}

/// A container's volume mount, before the container exists.
pub struct VolumeMount {
    pub name: String,
    pub container_path: String,
    pub readonly: bool,
    pub no_copy: bool,
    /// Made for a `VOLUME` or an unnamed `--mount`: labelled so, and removed with the
    /// container by `rm -v` and `--rm`.
    pub anonymous: bool,
}

/// The volumes a create needs, made if missing. Returns the names this create made, for
/// [`discard_new`] if the create fails and for [`fill_new`] once it succeeds.
pub fn provide(docker: &super::Docker, wanted: &[VolumeMount]) -> DockerResult<Vec<String>> {
    let mut made = Vec::new();
    for mount in wanted {
        let mut labels = std::collections::BTreeMap::new();
        if mount.anonymous {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
        }
        let record = VolumeRecord { name: mount.name.clone(), labels, created_nanos: crate::core::now_nanos(), ..Default::default() };
        match docker.volumes.create(record) {
            Ok((_, true)) => made.push(mount.name.clone()),
            Ok((_, false)) => {}
            Err(error) => {
                discard_new(docker, &made);
                return Err(error);
            }
        }
    }
    Ok(made)
}

pub fn discard_new(docker: &super::Docker, made: &[String]) {
    for name in made {
        if let Err(error) = docker.volumes.remove(name) {
            tracing::warn!(volume = %name, error = %error.message, "removing a volume a failed create made");
        }
    }
}

/// Copies the image's content into the volumes this create made (unless `nocopy`).
pub async fn fill_new(docker: &super::Docker, core: &Core, record: &ContainerRecord, mounts: &[VolumeMount], made: &[String]) -> DockerResult<()> {
    let layers = core.images.active_mounts(&record.snapshot_key).map_err(DockerError::from)?.lowerdirs;
    for mount in mounts.iter().filter(|m| made.contains(&m.name) && !m.no_copy) {
        let scratch: PathBuf = core.paths.state.join("docker").join(format!("volume-copy-{}", crate::core::ids::new_id()?));
        super::volume_copy::populate(layers.clone(), scratch, mount.container_path.clone(), docker.volumes.data_dir(&mount.name))
            .await
            .map_err(|error| DockerError::internal(format!("copying the image's {} into volume {}: {error}", mount.container_path, mount.name)))?;
    }
    Ok(())
}

/// Removes the anonymous ones of `names`, the volumes of a container just removed
/// (`rm -v`, `--rm`), unless another container still uses them.
pub fn remove_anonymous(docker: &super::Docker, names: &[String]) {
    let in_use = users(docker).unwrap_or_default();
    for name in names {
        let anonymous = docker.volumes.get(name).is_ok_and(|volume| volume.anonymous());
        if anonymous && !in_use.contains_key(name) {
            match docker.volumes.remove(name) {
                Ok(()) => docker.publish_volume(name, "destroy", None),
                Err(error) => tracing::warn!(volume = %name, error = %error.message, "removing an anonymous volume"),
            }
        }
    }
}

/// The volumes' mounts, for the core.
pub fn mount_specs(docker: &super::Docker, wanted: &[VolumeMount]) -> Vec<crate::core::MountSpec> {
    wanted
        .iter()
        .map(|mount| crate::core::MountSpec {
            container_path: mount.container_path.clone(),
            host_path: docker.volumes.data_dir(&mount.name).display().to_string(),
            readonly: mount.readonly,
            propagation: "private".into(),
            recursive_read_only: false,
        })
        .collect()
}
