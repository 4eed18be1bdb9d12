//! The ttrpc events service that shims publish to (`TTRPC_ADDRESS`, containerd's
//! `Events/Forward`): it decodes the task events berthd acts on and hands them to the
//! daemon through a channel.
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{create_events, Events};
use protobuf::well_known_types::empty::Empty;
use protobuf::Message;
use tokio::sync::mpsc;
use ttrpc::asynchronous::TtrpcContext;

/// What a shim told the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum ShimEvent {
    /// A container's init (empty `exec_id`, or equal to the container id) or an exec exited.
    Exit {
        container_id: String,
        exec_id: String,
        pid: u32,
        exit_status: u32,
        exited_at_nanos: i64,
    },
    /// The kernel's OOM killer struck in the container's cgroup.
    OutOfMemory { container_id: String },
}

fn decode(topic: &str, type_url: &str, value: &[u8]) -> Option<ShimEvent> {
    match (topic, type_url.rsplit('.').next()) {
        ("/tasks/exit", _) | (_, Some("TaskExit")) => {
            let exit = TaskExit::parse_from_bytes(value).ok()?;
            let at = exit.exited_at.as_ref();
            Some(ShimEvent::Exit {
                exec_id: if exit.id == exit.container_id { String::new() } else { exit.id.clone() },
                container_id: exit.container_id,
                pid: exit.pid,
                exit_status: exit.exit_status,
                exited_at_nanos: at.map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos)).unwrap_or(0),
            })
        }
        ("/tasks/oom", _) | (_, Some("TaskOOM")) => {
            let oom = TaskOOM::parse_from_bytes(value).ok()?;
            Some(ShimEvent::OutOfMemory { container_id: oom.container_id })
        }
        _ => None,
    }
}

struct Receiver(mpsc::UnboundedSender<ShimEvent>);

#[async_trait]
impl Events for Receiver {
    async fn forward(&self, _: &TtrpcContext, request: ForwardRequest) -> ttrpc::Result<Empty> {
        if let Some(envelope) = request.envelope.as_ref() {
            let event = envelope.event.as_ref();
            let (type_url, value) = event.map(|any| (any.type_url.as_str(), any.value.as_slice())).unwrap_or_default();
            match decode(&envelope.topic, type_url, value) {
                Some(decoded) => {
                    let _ = self.0.send(decoded);
                }
                None => tracing::trace!(topic = %envelope.topic, "shim event ignored"),
            }
        }
        Ok(Empty::new())
    }
}

/// The running events service; stops when dropped.
pub struct EventsServer {
    _server: ttrpc::asynchronous::Server,
}

impl EventsServer {
    /// Listens on `socket` (replacing a stale one) and sends decoded events to `sink`.
    pub async fn start(socket: &Path, sink: mpsc::UnboundedSender<ShimEvent>) -> std::io::Result<EventsServer> {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)?;
        crate::private_fs::set_mode(socket, crate::private_fs::PRIVATE_FILE)?;
        let mut server = ttrpc::asynchronous::Server::new()
            .add_listener(listener.into())
            .register_service(create_events(Arc::new(Receiver(sink))));
        server.start().await.map_err(|error| std::io::Error::other(error.to_string()))?;
        Ok(EventsServer { _server: server })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_of_inits_and_execs_decode() {
        let mut exit = TaskExit::new();
        exit.container_id = "c1".into();
        exit.id = "c1".into();
        exit.exit_status = 3;
        let bytes = exit.write_to_bytes().expect("encode");
        let decoded = decode("/tasks/exit", "containerd.events.TaskExit", &bytes);
        assert!(matches!(decoded, Some(ShimEvent::Exit { ref exec_id, exit_status: 3, .. }) if exec_id.is_empty()));
        exit.id = "exec-1".into();
        let bytes = exit.write_to_bytes().expect("encode");
        let decoded = decode("/tasks/exit", "containerd.events.TaskExit", &bytes);
        assert!(matches!(decoded, Some(ShimEvent::Exit { ref exec_id, .. }) if exec_id == "exec-1"));
        assert_eq!(decode("/tasks/start", "containerd.events.TaskStart", &[]), None);
    }
}
