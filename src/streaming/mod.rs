//! The streaming front door: the CRI's Exec, Attach and PortForward answer with a URL
//! of this HTTP(S) server holding a single-use token; the client then upgrades that URL
//! to SPDY/3.1 or WebSocket and the streams run here, over the core's processes and
//! pod network namespaces.
pub mod http;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod tokens;
pub mod transport_spdy;
pub mod transport_ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::core::task_io::StdioWanted;
use crate::core::Core;
use tokens::TokenCache;

/// The streaming server's settings (`[streaming]` in the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Address to listen on; port 0 picks a free port.
    pub address: String,
    /// With both set, the server speaks TLS with this PEM certificate chain and key.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// How long a URL handed out by Exec, Attach or PortForward stays valid.
    pub token_ttl_seconds: u64,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig { address: "127.0.0.1:0".into(), tls_cert_file: None, tls_key_file: None, token_ttl_seconds: 60 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("streaming address {0:?} is not a socket address")]
    Address(String),
    #[error("binding the streaming server on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("streaming TLS: {0}")]
    Tls(String),
}

/// What a token stands for.
#[derive(Debug, Clone)]
pub enum StreamRequest {
    Exec { container_id: String, command: Vec<String>, stdio: StdioWanted },
    Attach { container_id: String, stdio: StdioWanted },
    PortForward { pod_id: String },
}

impl StreamRequest {
    fn path_kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        }
    }
}

/// The running server: hands out URLs.
pub struct Streaming {
    base_url: String,
    tokens: Arc<TokenCache>,
}

impl Streaming {
    /// Binds the server and starts serving. `namespace` is the core namespace of the
    /// objects that tokens name.
    pub async fn start(config: &StreamingConfig, core: Arc<Core>, namespace: &'static str) -> Result<Arc<Streaming>, StreamingError> {
        let address: SocketAddr = config.address.parse().map_err(|_| StreamingError::Address(config.address.clone()))?;
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            (None, None) => None,
            _ => return Err(StreamingError::Tls("tls_cert_file and tls_key_file go together".into())),
        };
        let listener = tokio::net::TcpListener::bind(address).await.map_err(|source| StreamingError::Bind { address: config.address.clone(), source })?;
        let local = listener.local_addr().map_err(|source| StreamingError::Bind { address: config.address.clone(), source })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let tokens = Arc::new(TokenCache::new(Duration::from_secs(config.token_ttl_seconds.max(1))));
        let streaming = Arc::new(Streaming { base_url: format!("{scheme}://{local}"), tokens: tokens.clone() });
        tracing::info!(url = %streaming.base_url, "serving CRI streams");
        let context = Arc::new(Context { core, tokens, namespace });
        tokio::spawn(serve(listener, tls, context));
        Ok(streaming)
    }

    /// A fresh single-use URL for `request`.
    pub fn url_for(&self, request: StreamRequest) -> Result<String, crate::core::CoreError> {
        let kind = request.path_kind();
        let token = self.tokens.insert(request)?;
        Ok(format!("{}/{kind}/{token}", self.base_url))
    }
}

/// What every connection handler shares.
pub struct Context {
    pub core: Arc<Core>,
    pub tokens: Arc<TokenCache>,
    pub namespace: &'static str,
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<tokio_rustls::TlsAcceptor, StreamingError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| StreamingError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| StreamingError::Tls(format!("{}: {e}", key.display())))?;
    use tokio_rustls::rustls;
    let provider = rustls::crypto::CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamingError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StreamingError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(listener: tokio::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, context: Arc<Context>) {
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a streaming connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let context = context.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(socket).await {
                    Ok(stream) => handle(stream, context).await,
                    Err(error) => tracing::debug!(%error, "streaming TLS handshake"),
                },
                None => handle(socket, context).await,
            }
        });
    }
}

/// One connection: read the request, redeem the token, upgrade, run the streams.
async fn handle<IO>(mut io: IO, context: Arc<Context>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let request = match http::read_request(&mut io).await {
        Ok(request) => request,
        Err(error) => {
            let _ = http::respond(&mut io, error.status(), &error.to_string()).await;
            return;
        }
    };
    let Some((kind, token)) = request.route() else {
        let _ = http::respond(&mut io, 404, "no such streaming endpoint").await;
        return;
    };
    let stream_request = match context.tokens.redeem(token) {
        Some(found) if found.path_kind() == kind => found,
        _ => {
            let _ = http::respond(&mut io, 404, "unknown or expired streaming token").await;
            return;
        }
    };
    let io = http::Prefixed::new(request.leftover.clone(), io);
    if request.is_websocket() {
        transport_ws::serve(io, request, stream_request, context).await;
    } else if request.is_spdy() {
        transport_spdy::serve(io, request, stream_request, context).await;
    } else {
        let mut io = io;
        let _ = http::respond(&mut io, 400, "a streaming request must upgrade to SPDY/3.1 or websocket").await;
    }
}
