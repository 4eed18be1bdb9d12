//! The in-process event bus: container life-cycle changes, fanned out to every
//! subscriber (the CRI's GetContainerEvents stream, later Docker's /events).
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    Created,
    Started,
    Stopped,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct ContainerEvent {
    pub namespace: String,
    pub container_id: String,
    pub sandbox_id: String,
    pub kind: LifecycleEvent,
    pub at_nanos: i64,
}

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<ContainerEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        EventBus { sender }
    }

    pub fn publish(&self, event: ContainerEvent) {
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ContainerEvent> {
        self.sender.subscribe()
    }
}
