//! The shim daemon: detached from `start` by fork, it is the subreaper of its
//! containers and serves the Task API on its socket until Shutdown. It runs on one
//! thread (tokio's current-thread runtime), so the runtime can safely clone.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use crate::events::Publisher;
use crate::flags::Flags;
use crate::paths::Layout;
use crate::task::Shim;
use crate::{idle, reaper, service};

/// In the forked child: detaches, then serves until shutdown. Never returns.
pub fn run(listener: UnixListener, socket: PathBuf, flags: &Flags) -> ! {
    let _ = nix::unistd::setsid();
    redirect_stdio();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build();
    let code = match runtime {
        Ok(runtime) => match runtime.block_on(serve(listener, flags)) {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("berth-shim: {error}");
                1
            }
        },
        Err(error) => {
            eprintln!("berth-shim: starting the event loop: {error}");
            1
        }
    };
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(socket.with_extension("lock"));
    std::process::exit(code)
}

/// stdin and stdout to /dev/null (containerd reads `start`'s stdout until it closes);
/// stderr to the bundle's `log` FIFO when containerd provides one.
fn redirect_stdio() {
    use std::os::unix::fs::OpenOptionsExt;
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null");
    let log = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open("log");
    if let Ok(null) = &null {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
        let stderr = log.as_ref().unwrap_or(null);
        let _ = nix::unistd::dup2(stderr.as_raw_fd(), 2);
    }
}

async fn serve(listener: UnixListener, flags: &Flags) -> std::io::Result<()> {
    reaper::become_subreaper()?;
    let children = reaper::watch()?;
    let address = std::env::var("TTRPC_ADDRESS").ok().filter(|a| !a.is_empty());
    let publisher = Publisher::spawn(address, flags.namespace.clone());
    let shim = Arc::new(Shim::new(Layout::new(&flags.namespace), publisher));
    tokio::spawn(reaper::run(shim.clone(), children));
    tokio::spawn(idle::run(shim.activity.clone()));
    shim.activity.notify_one();
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let mut server = ttrpc::asynchronous::Server::new()
        .add_listener(listener.into())
        .register_service(service::services(shim.clone()));
    server.start().await.map_err(|e| std::io::Error::other(e.to_string()))?;
    shim.shutdown.notified().await;
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), server.shutdown()).await;
    Ok(())
}
