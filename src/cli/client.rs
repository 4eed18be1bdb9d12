//! berthctl's connection to berthd: the CRI services over the daemon's unix socket.
use std::path::PathBuf;

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub struct Clients {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

pub async fn connect(socket: PathBuf) -> Result<Clients, String> {
    let shown = socket.display().to_string();
    let channel = Endpoint::try_from("http://berth.invalid")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { tokio::net::UnixStream::connect(socket).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
        .map_err(|error| format!("connecting to berthd at {shown}: {error} (is berthd running?)"))?;
    Ok(Clients { runtime: RuntimeServiceClient::new(channel.clone()), images: ImageServiceClient::new(channel) })
}

/// A gRPC error as berthctl prints it.
pub fn rpc_error(status: tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
