//! The network module's typed errors, shaped so that each front door can map them once
//! (CRI: gRPC codes; Docker: HTTP statuses).
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{what} {name} not found")]
    NotFound { what: &'static str, name: String },
    #[error("{what} {name} already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Overlapping subnets, a host port already taken, a network still in use.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A subnet that overlaps another network's or a route of the host.
    #[error("{0}")]
    SubnetOverlap(String),
    /// A network that sandboxes are still attached to.
    #[error("network {network} id {id} has active endpoints")]
    InUse { network: String, id: String, sandboxes: Vec<String> },
    /// A fixed address that another endpoint (or the gateway) holds.
    #[error("Address already in use: {0}")]
    AddressInUse(std::net::Ipv4Addr),
    #[error("no free address left in subnet {subnet} of network {network}")]
    SubnetFull { network: String, subnet: String },
    #[error("CNI plugin {plugin}: {message}")]
    Plugin { plugin: String, message: String },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("nftables: {0}")]
    Nftables(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = NetworkError> = std::result::Result<T, E>;

impl NetworkError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NetworkError::Io { context: context.into(), source }
    }

    pub(crate) fn not_found(what: &'static str, name: impl Into<String>) -> Self {
        NetworkError::NotFound { what, name: name.into() }
    }
}

impl From<rtnetlink::Error> for NetworkError {
    fn from(error: rtnetlink::Error) -> Self {
        NetworkError::Netlink(error.to_string())
    }
}

impl From<nix::Error> for NetworkError {
    fn from(error: nix::Error) -> Self {
        NetworkError::io("system call", std::io::Error::from(error))
    }
}
