//! Changes to a running container: new resource limits (written to its cgroup by the
//! runtime, through the shim, and kept in its record) and reopening its CRI log file.
use containerd_shim_protos::api::UpdateTaskRequest;
use protobuf::well_known_types::any::Any;

use super::*;
use crate::task::context;

const RESOURCES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
const REOPEN_LOG_ANNOTATION: &str = "io.berth.cri.reopen-log";

impl Core {
    pub async fn update_container_resources(&self, namespace: &str, id: &str, resources: Resources) -> CoreResult<()> {
        let _guard = self.write_lock.lock().await;
        let mut record = self.container(namespace, id)?;
        if record.state == ContainerState::Running {
            let spec = ContainerSpec { resources: resources.clone(), ..record.spec.clone() };
            let mut linux = crate::spec::resources_section(&spec);
            if let Some(object) = linux.as_object_mut() {
                object.remove("devices");
            }
            let request = UpdateTaskRequest {
                id: record.id.clone(),
                resources: Some(Any { type_url: RESOURCES_TYPE_URL.into(), value: linux.to_string().into_bytes(), ..Default::default() }).into(),
                ..Default::default()
            };
            let client = self.shims.client(&record.shim_address).await?;
            client.update(context(), &request).await?;
        } else if record.state != ContainerState::Created {
            return Err(CoreError::FailedPrecondition(format!("container {} is not running", record.id)));
        }
        record.spec.resources = resources;
        self.save_container(&record)
    }

    pub async fn reopen_container_log(&self, namespace: &str, id: &str) -> CoreResult<()> {
        let record = self.container(namespace, id)?;
        if record.state != ContainerState::Running {
            return Err(CoreError::FailedPrecondition(format!("container {} is not running", record.id)));
        }
        let mut request = UpdateTaskRequest { id: record.id.clone(), ..Default::default() };
        request.annotations.insert(REOPEN_LOG_ANNOTATION.into(), "true".into());
        let client = self.shims.client(&record.shim_address).await?;
        client.update(context(), &request).await?;
        Ok(())
    }
}
