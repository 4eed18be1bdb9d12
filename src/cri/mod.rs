//! The CRI v1 front door: RuntimeService and ImageService over gRPC. It translates CRI
//! messages into core calls and core errors into gRPC status codes, nothing else.
mod convert;
mod image;
mod runtime;

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tonic::Status;

use crate::core::{Core, CoreError};

/// Objects made through the CRI live in this namespace of the store.
pub const NAMESPACE: &str = "k8s";
pub const RUNTIME_NAME: &str = "berth";
pub const RUNTIME_API_VERSION: &str = "v1";

pub fn status(error: CoreError) -> Status {
    let message = error.to_string();
    match error {
        CoreError::NotFound(_) => Status::not_found(message),
        CoreError::AlreadyExists(_) => Status::already_exists(message),
        CoreError::InvalidArgument(_) => Status::invalid_argument(message),
        CoreError::FailedPrecondition(_) => Status::failed_precondition(message),
        CoreError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
        CoreError::Unimplemented(_) => Status::unimplemented(message),
        CoreError::Unauthenticated(_) => Status::unauthenticated(message),
        CoreError::Unavailable(_) => Status::unavailable(message),
        CoreError::Task(ref task) if task.is_not_found() => Status::not_found(message),
        CoreError::Network(ref network) => network_status(network, message),
        _ => Status::internal(message),
    }
}

fn network_status(error: &crate::network::NetworkError, message: String) -> Status {
    use crate::network::NetworkError::*;
    match error {
        NotFound { .. } => Status::not_found(message),
        AlreadyExists { .. } => Status::already_exists(message),
        InvalidArgument(_) => Status::invalid_argument(message),
        Conflict(_) | SubnetOverlap(_) | InUse { .. } | AddressInUse(_) | SubnetFull { .. } => Status::failed_precondition(message),
        _ => Status::internal(message),
    }
}

/// The gRPC server with both CRI services.
/// The largest gRPC message berthd reads or writes (the kubelet's own limit): a bigger
/// request is refused with ResourceExhausted before it is decoded.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

pub fn server(core: Arc<Core>, streaming: Arc<crate::streaming::Streaming>) -> tonic::transport::server::Router {
    let runtime = RuntimeServiceServer::new(runtime::Runtime::new(core.clone(), streaming))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let images = ImageServiceServer::new(image::Images::new(core))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder().add_service(runtime).add_service(images)
}
