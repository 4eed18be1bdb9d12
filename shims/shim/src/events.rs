//! Publishing task events to whoever launched the shim: containerd's (or berthd's)
//! ttrpc events service at `$TTRPC_ADDRESS`, `containerd.services.events.ttrpc.v1.Events/Forward`.
//! Events are queued and sent in order by one task, so an RPC never waits on them.

use std::time::Duration;

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::EventsClient;
use containerd_shim_protos::topics;
use protobuf::well_known_types::any::Any;
use protobuf::{MessageDyn, MessageField};
use tokio::sync::mpsc;

use crate::timefmt;

/// A queue of events to publish; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::UnboundedSender<(&'static str, Any)>,
}

/// Wraps a message as containerd does: the type URL is the message's full name.
pub fn to_any(message: &dyn MessageDyn) -> Any {
    let mut any = Any::new();
    any.type_url = message.descriptor_dyn().full_name().to_string();
    any.value = message.write_to_bytes_dyn().unwrap_or_default();
    any
}

fn topic_of(message: &dyn MessageDyn) -> &'static str {
    match message.descriptor_dyn().name() {
        "TaskCreate" => topics::TASK_CREATE_EVENT_TOPIC,
        "TaskStart" => topics::TASK_START_EVENT_TOPIC,
        "TaskExit" => topics::TASK_EXIT_EVENT_TOPIC,
        "TaskDelete" => topics::TASK_DELETE_EVENT_TOPIC,
        "TaskOOM" => topics::TASK_OOM_EVENT_TOPIC,
        "TaskExecAdded" => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
        "TaskExecStarted" => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
        "TaskPaused" => topics::TASK_PAUSED_EVENT_TOPIC,
        "TaskResumed" => topics::TASK_RESUMED_EVENT_TOPIC,
        _ => topics::TASK_UNKNOWN_TOPIC,
    }
}

/// Marker for the event messages the shim publishes.
pub trait TaskEvent: MessageDyn {}
impl TaskEvent for TaskCreate {}
impl TaskEvent for TaskStart {}
impl TaskEvent for TaskExit {}
impl TaskEvent for TaskDelete {}
impl TaskEvent for TaskOOM {}
impl TaskEvent for TaskExecAdded {}
impl TaskEvent for TaskExecStarted {}
impl TaskEvent for TaskPaused {}
impl TaskEvent for TaskResumed {}

impl Publisher {
    /// Starts the sending task. With no address, events are dropped.
    pub fn spawn(address: Option<String>, namespace: String) -> Publisher {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_loop(address, namespace, receiver));
        Publisher { queue }
    }

    pub fn publish(&self, event: &dyn TaskEvent) {
        let _ = self.queue.send((topic_of(event), to_any(event)));
    }
}

async fn send_loop(address: Option<String>, namespace: String, mut receiver: mpsc::UnboundedReceiver<(&'static str, Any)>) {
    let mut client: Option<EventsClient> = None;
    while let Some((topic, event)) = receiver.recv().await {
        let Some(address) = address.as_deref() else { continue };
        let mut request = ForwardRequest::new();
        request.envelope = MessageField::some(Envelope {
            timestamp: MessageField::some(timefmt::timestamp(timefmt::now_nanos())),
            namespace: namespace.clone(),
            topic: topic.to_string(),
            event: MessageField::some(event),
            ..Envelope::default()
        });
        for attempt in 0..5u64 {
            if client.is_none() {
                client = connect(address).await;
            }
            let Some(events) = &client else {
                tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
                continue;
            };
            let mut context = ttrpc::context::with_timeout(5_000_000_000);
            context.add("containerd-namespace".to_string(), namespace.clone());
            match events.forward(context, &request).await {
                Ok(_) => break,
                Err(_) => client = None,
            }
        }
    }
}

async fn connect(address: &str) -> Option<EventsClient> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let stream = tokio::net::UnixStream::connect(path).await.ok()?;
    Some(EventsClient::new(ttrpc::asynchronous::Client::new(stream.into())))
}
