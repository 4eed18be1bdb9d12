//! The shim's errors, and how they become ttrpc status codes that containerd maps
//! to its errdefs (NotFound, FailedPrecondition, ...).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ShimError {
    #[error("{0}")]
    Usage(String),
    #[error("container {0} not found")]
    NoContainer(String),
    #[error("process {exec_id} of container {id} not found")]
    NoProcess { id: String, exec_id: String },
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{command}: {message}")]
    External { command: String, message: String },
    #[error(transparent)]
    Seal(#[from] berth_runtime::sealed_exe::SealError),
}

impl ShimError {
    pub fn io(what: impl Into<String>, error: impl Into<std::io::Error>) -> ShimError {
        ShimError::Io(what.into(), error.into())
    }

    fn code(&self) -> ttrpc::Code {
        use berth_runtime::state::StateError;
        match self {
            ShimError::NoContainer(_) | ShimError::NoProcess { .. } => ttrpc::Code::NOT_FOUND,
            ShimError::Runtime(berth_runtime::RuntimeError::State(StateError::NotFound(_))) => ttrpc::Code::NOT_FOUND,
            ShimError::Exists(_) => ttrpc::Code::ALREADY_EXISTS,
            ShimError::Precondition(_) | ShimError::Runtime(berth_runtime::RuntimeError::WrongStatus { .. }) => {
                ttrpc::Code::FAILED_PRECONDITION
            }
            ShimError::Invalid(_) | ShimError::Usage(_) => ttrpc::Code::INVALID_ARGUMENT,
            ShimError::Unimplemented(_) => ttrpc::Code::UNIMPLEMENTED,
            ShimError::Runtime(_) | ShimError::Io(..) | ShimError::Seal(_) | ShimError::External { .. } => ttrpc::Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(error: ShimError) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(error.code(), error.to_string()))
    }
}

pub type ShimResult<T> = Result<T, ShimError>;
