//! CNI mode (placeholder while the bridge driver lands).
use std::path::Path;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::config::NetworkConfig;
use super::driver::{AttachRequest, Attachment, CreateNetwork, NetworkDriver};
use super::error::{NetworkError, Result};
use super::records::NetworkRecord;
use crate::store::Store;

pub struct CniDriver {}

impl CniDriver {
    pub(crate) fn open(_store: Store, _config: NetworkConfig, _state: &Path) -> Result<CniDriver> {
        Ok(CniDriver {})
    }
}

fn unsupported() -> NetworkError {
    NetworkError::InvalidArgument("not in CNI mode".into())
}

impl NetworkDriver for CniDriver {
    fn attach<'a>(&'a mut self, _r: &'a AttachRequest) -> BoxFuture<'a, Result<Attachment>> {
        async { Err(unsupported()) }.boxed()
    }
    fn detach<'a>(&'a mut self, _s: &'a str) -> BoxFuture<'a, Result<()>> {
        async { Err(unsupported()) }.boxed()
    }
    fn status<'a>(&'a mut self, _s: &'a str) -> BoxFuture<'a, Result<Option<Attachment>>> {
        async { Err(unsupported()) }.boxed()
    }
    fn reconcile<'a>(&'a mut self, _l: &'a [String]) -> BoxFuture<'a, Result<()>> {
        async { Ok(()) }.boxed()
    }
    fn create_network<'a>(&'a mut self, _r: &'a CreateNetwork) -> BoxFuture<'a, Result<NetworkRecord>> {
        async { Err(unsupported()) }.boxed()
    }
    fn remove_network<'a>(&'a mut self, _n: &'a str) -> BoxFuture<'a, Result<()>> {
        async { Err(unsupported()) }.boxed()
    }
    fn list_networks(&mut self) -> Result<Vec<NetworkRecord>> {
        Ok(Vec::new())
    }
}
