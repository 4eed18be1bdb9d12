//! Links, addresses and routes over rtnetlink: the bridge, veth pairs and the interface
//! inside a sandbox. One rtnetlink connection serves the host namespace; work inside a
//! sandbox's namespace runs on a short-lived thread that `setns`es there first, since a
//! netlink socket acts in the namespace of the thread that opened it.
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoPortKind, InfoVeth};
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::error::{NetworkError, Result};

/// True when `error` is the kernel's answer `errno`.
pub(crate) fn is_errno(error: &rtnetlink::Error, errno: i32) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(message) if message.raw_code() == -errno)
}

/// Adds what was being done to an rtnetlink error.
fn failed(what: impl std::fmt::Display) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    move |e| NetworkError::Netlink(format!("{what}: {e}"))
}

/// Opens an rtnetlink connection in the calling thread's network namespace and drives
/// it on the current tokio runtime.
pub(crate) fn connect() -> Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| NetworkError::io("rtnetlink socket", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The host side: bridges and veth ends.
#[derive(Clone)]
pub(crate) struct HostLinks {
    handle: Handle,
}

/// What the sandbox end of a veth pair gets.
pub(crate) struct SandboxInterface<'a> {
    pub netns_path: &'a Path,
    pub name: &'a str,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub default_route: bool,
}

impl HostLinks {
    pub fn open() -> Result<HostLinks> {
        Ok(HostLinks { handle: connect()? })
    }

    pub async fn index_of(&self, name: &str) -> Result<Option<u32>> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the bridge unless it exists, gives it `gateway/prefix` and brings it up.
    pub async fn ensure_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8, mtu: u32) -> Result<u32> {
        let index = match self.index_of(name).await? {
            Some(index) => index,
            None => {
                let bridge = LinkBridge::new(name).mtu(mtu).up().build();
                match self.handle.link().add(bridge).execute().await {
                    Err(e) if !is_errno(&e, libc::EEXIST) => return Err(e.into()),
                    _ => {}
                }
                self.index_of(name).await?.ok_or_else(|| NetworkError::not_found("bridge", name))?
            }
        };
        let add = self.handle.address().add(index, IpAddr::V4(gateway), prefix).execute().await;
        match add {
            Err(e) if !is_errno(&e, libc::EEXIST) => return Err(e.into()),
            _ => {}
        }
        let up = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(up).execute().await.map_err(failed(format!("set {name} up")))?;
        Ok(index)
    }

    /// Deletes a link by name; a link that is already gone is not an error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let Some(index) = self.index_of(name).await? else { return Ok(()) };
        match self.handle.link().del(index).execute().await {
            Err(e) if !is_errno(&e, libc::ENODEV) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// One RTM_NEWLINK: the veth pair, the host end up and enslaved to the bridge, the
    /// sandbox end created directly inside the sandbox's namespace under its final name,
    /// with its MAC address (the kernel refuses to bring a peer up across namespaces
    /// in the same message: ENOTCONN).
    pub async fn create_veth(&self, host_name: &str, bridge: u32, mtu: u32, sandbox: &SandboxInterface<'_>) -> Result<()> {
        let netns = std::fs::File::open(sandbox.netns_path)
            .map_err(|e| NetworkError::io(format!("open {}", sandbox.netns_path.display()), e))?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(sandbox.name.to_string())
            .mtu(mtu)
            .address(sandbox.mac.to_vec())
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let veth = LinkVeth::new(host_name, "unused")
            .mtu(mtu)
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
        match self.handle.link().add(veth.build()).execute().await {
            Err(e) if is_errno(&e, libc::EEXIST) => {
                return Err(NetworkError::AlreadyExists {
                    what: "interface",
                    name: format!("{host_name} or {} in {}", sandbox.name, sandbox.netns_path.display()),
                })
            }
            other => other.map_err(failed(format!("create veth {host_name}")))?,
        }
        self.set_hairpin(host_name).await
    }

    /// Hairpin mode on a bridge port: with br_netfilter, a container's packets to its
    /// own published port are DNATed on the bridge and must leave by the port they
    /// came in on.
    async fn set_hairpin(&self, port: &str) -> Result<()> {
        let message = LinkMessageBuilder::<LinkBridgePort>::default()
            .name(port.to_string())
            .set_port_kind(InfoPortKind::Bridge)
            .hairpin(true)
            .build();
        let request = self.handle.link().set_port(message).execute().await;
        request.map_err(failed(format!("hairpin mode on {port}")))
    }

    /// The first IPv4 route of the host whose destination overlaps `subnet`, if any
    /// (the default route does not count).
    pub async fn overlapping_route(&self, subnet: Ipv4Net) -> Result<Option<String>> {
        let request = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build());
        let mut routes = request.execute();
        while let Some(route) = routes.try_next().await? {
            let prefix = route.header.destination_prefix_length;
            let destination = route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let (Some(destination), true) = (destination, prefix > 0) else { continue };
            let Ok(net) = Ipv4Net::new(destination, prefix) else { continue };
            if net.contains(&subnet.network()) || subnet.contains(&net.network()) {
                return Ok(Some(net.to_string()));
            }
        }
        Ok(None)
    }
}

/// Addresses `sandbox`'s interface, brings `lo` up and adds the default route, from a
/// thread inside the sandbox's namespace.
pub(crate) async fn configure_sandbox(sandbox: &SandboxInterface<'_>) -> Result<()> {
    let (name, ip, prefix, gateway, default_route) =
        (sandbox.name.to_string(), sandbox.ip, sandbox.prefix, sandbox.gateway, sandbox.default_route);
    inside_sandbox(sandbox.netns_path, move |handle| async move {
        configure_inside(&handle, &name, ip, prefix, gateway, default_route).await
    })
    .await
}

/// Makes `gateway` on the sandbox's interface `name` its default route (replacing one
/// there was), as after the interface that held it went away.
pub(crate) async fn set_default_route(netns_path: &Path, name: &str, gateway: Ipv4Addr) -> Result<()> {
    let name = name.to_string();
    inside_sandbox(netns_path, move |handle| async move {
        let index = index_inside(&handle, &name).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(index).build();
        handle.route().add(route).replace().execute().await.map_err(failed(format!("default route via {gateway}")))
    })
    .await
}

/// Runs `work` with a netlink handle of the namespace at `netns_path`, on a thread of its own.
async fn inside_sandbox<F, Fut>(netns_path: &Path, work: F) -> Result<()>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    let netns = std::fs::File::open(netns_path).map_err(|e| NetworkError::io(format!("open {}", netns_path.display()), e))?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = in_namespace(&netns, || async move { work(connect()?).await });
        let _ = sender.send(result);
    });
    receiver.await.map_err(|_| NetworkError::Netlink("sandbox configuration thread died".into()))?
}

async fn index_inside(handle: &Handle, name: &str) -> Result<u32> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    links
        .try_next()
        .await
        .map_err(failed(format!("find {name}")))?
        .map(|l| l.header.index)
        .ok_or_else(|| NetworkError::not_found("interface", name))
}

/// Runs `work` to completion on a fresh current-thread runtime after `setns` into `netns`.
/// Only for a thread of its own: it never returns to the caller's namespace.
pub(crate) fn in_namespace<F, Fut, T>(netns: &std::fs::File, work: F) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetworkError::io("tokio runtime", e))?;
    runtime.block_on(work())
}

async fn configure_inside(handle: &Handle, name: &str, ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr, default_route: bool) -> Result<()> {
    let lo_up = LinkUnspec::new_with_index(1).up().build();
    handle.link().set(lo_up).execute().await.map_err(failed("set lo up"))?;
    let index = index_inside(handle, name).await?;
    let add = handle.address().add(index, IpAddr::V4(ip), prefix).execute().await;
    add.map_err(failed(format!("add {ip}/{prefix} to {name}")))?;
    let up = LinkUnspec::new_with_index(index).up().build();
    handle.link().set(up).execute().await.map_err(failed(format!("set {name} up")))?;
    if default_route {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(index).build();
        handle.route().add(route).execute().await.map_err(failed(format!("default route via {gateway}")))?;
    }
    Ok(())
}

/// Writes a sysctl of the calling thread's network namespace (`/proc/sys` resolves
/// `net/` against the opening thread's namespace).
pub(crate) fn write_sysctl(path: &str, value: &str) -> Result<()> {
    let full = format!("/proc/sys/{path}");
    std::fs::write(&full, value).map_err(|e| NetworkError::io(format!("write {full}"), e))
}
