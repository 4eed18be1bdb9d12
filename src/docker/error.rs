//! The façade's error type and its HTTP form: a status and `{"message": ...}`, with
//! the wording dockerd uses, so that the CLI prints what users expect.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::core::CoreError;
use crate::image::ImageError;

#[derive(Debug)]
pub struct DockerError {
    pub status: StatusCode,
    pub message: String,
}

pub type DockerResult<T> = Result<T, DockerError>;

impl DockerError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> DockerError {
        DockerError { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> DockerError {
        DockerError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn no_such_container(name: &str) -> DockerError {
        DockerError::not_found(format!("No such container: {name}"))
    }
    pub fn no_such_image(name: &str) -> DockerError {
        DockerError::not_found(format!("No such image: {name}"))
    }
}

impl IntoResponse for DockerError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message });
        (self.status, [("content-type", "application/json")], body.to_string()).into_response()
    }
}

impl From<CoreError> for DockerError {
    fn from(error: CoreError) -> Self {
        let status = match &error {
            CoreError::NotFound(_) => StatusCode::NOT_FOUND,
            CoreError::AlreadyExists(_) | CoreError::FailedPrecondition(_) => StatusCode::CONFLICT,
            CoreError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            CoreError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            CoreError::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        DockerError::new(status, error.to_string())
    }
}

impl From<ImageError> for DockerError {
    fn from(error: ImageError) -> Self {
        let status = match &error {
            ImageError::NotFound(_) => StatusCode::NOT_FOUND,
            ImageError::InvalidReference { .. } => StatusCode::BAD_REQUEST,
            ImageError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ImageError::AlreadyExists(_) | ImageError::InUse(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        DockerError::new(status, error.to_string())
    }
}
