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
use protobuf::{Message, MessageField};
use tokio::sync::mpsc;

use crate::timefmt;

/// A queue of events to publish; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::UnboundedSender<(&'static str, Any)>,
}

/// Wraps a message as containerd does, the type URL being the message's full name
/// (given by hand: asking protobuf's reflection for it would build its descriptor
/// pool, a few hundred KiB that an idle shim would keep).
pub fn to_any(message: &impl Message, full_name: &str) -> Any {
    let mut any = Any::new();
    any.type_url = full_name.to_string();
    any.value = message.write_to_bytes().unwrap_or_default();
    any
}

/// The event messages the shim publishes: their full names and topics.
pub trait TaskEvent: Message {
    const TYPE_URL: &'static str;
    const TOPIC: &'static str;
}

macro_rules! task_event {
    ($type:ident, $topic:ident) => {
        impl TaskEvent for $type {
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($type));
            const TOPIC: &'static str = topics::$topic;
        }
    };
}

task_event!(TaskCreate, TASK_CREATE_EVENT_TOPIC);
task_event!(TaskStart, TASK_START_EVENT_TOPIC);
task_event!(TaskExit, TASK_EXIT_EVENT_TOPIC);
task_event!(TaskDelete, TASK_DELETE_EVENT_TOPIC);
task_event!(TaskOOM, TASK_OOM_EVENT_TOPIC);
task_event!(TaskExecAdded, TASK_EXEC_ADDED_EVENT_TOPIC);
task_event!(TaskExecStarted, TASK_EXEC_STARTED_EVENT_TOPIC);
task_event!(TaskPaused, TASK_PAUSED_EVENT_TOPIC);
task_event!(TaskResumed, TASK_RESUMED_EVENT_TOPIC);

impl Publisher {
    /// Starts the sending task. With no address, events are dropped.
    pub fn spawn(address: Option<String>, namespace: String) -> Publisher {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(send_loop(address, namespace, receiver));
        Publisher { queue }
    }

    pub fn publish<E: TaskEvent>(&self, event: &E) {
        let _ = self.queue.send((E::TOPIC, to_any(event, E::TYPE_URL)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::MessageFull;

    #[test]
    fn names_match_the_descriptors() {
        assert_eq!(<TaskExit as TaskEvent>::TYPE_URL, TaskExit::descriptor().full_name());
        assert_eq!(<TaskOOM as TaskEvent>::TYPE_URL, TaskOOM::descriptor().full_name());
        assert_eq!(<TaskExecStarted as TaskEvent>::TYPE_URL, TaskExecStarted::descriptor().full_name());
        assert_eq!(TaskExit::TOPIC, "/tasks/exit");
    }
}
