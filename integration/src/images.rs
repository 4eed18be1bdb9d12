//! Test images built by hand from `busybox-static`: layers as tar streams with exactly
//! the entries a test needs (files with owners, modes and xattrs, directories,
//! symlinks, hard links, device nodes, whiteouts, opaque markers, and hostile entries
//! that a well-behaved tar tool would refuse to write), compressed with gzip, zstd or
//! nothing, wrapped in a config and a Docker or OCI manifest, and uploaded with
//! [`crate::registry::Registry`].
use std::io::Write;

use sha2::{Digest, Sha256};

use crate::registry::Registry;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn sha256(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("sha256:{hex}")
}

/// The host's architecture in OCI terms.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds one layer's tar stream entry by entry.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder::new()
    }
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder { tar: tar::Builder::new(Vec::new()) }
    }

    /// Appends an entry with a raw name (no checks, like a hostile tool).
    pub fn entry(mut self, name: &str, kind: tar::EntryType, data: &[u8], mode: u32, owner: (u64, u64), link: &str) -> Self {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(owner.0);
        header.set_gid(owner.1);
        header.set_mtime(1_600_000_000);
        header.set_size(data.len() as u64);
        let bytes = name.as_bytes();
        assert!(bytes.len() < 100, "test names stay short");
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        if !link.is_empty() {
            let link = link.as_bytes();
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        }
        header.set_cksum();
        self.tar.append(&header, data).expect("append to the test tar");
        self
    }

    pub fn dir(self, name: &str, mode: u32) -> Self {
        self.entry(name, tar::EntryType::Directory, &[], mode, (0, 0), "")
    }
    pub fn file(self, name: &str, data: &[u8], mode: u32) -> Self {
        self.entry(name, tar::EntryType::Regular, data, mode, (0, 0), "")
    }
    pub fn owned_file(self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        self.entry(name, tar::EntryType::Regular, data, mode, (uid, gid), "")
    }
    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Symlink, &[], 0o777, (0, 0), target)
    }
    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Link, &[], 0o644, (0, 0), target)
    }
    pub fn char_device(self, name: &str, major: u32, minor: u32) -> Self {
        let mut header = tar::Header::new_ustar();
        header.set_device_major(major).expect("major");
        header.set_device_minor(minor).expect("minor");
        let mut builder = self;
        header.set_entry_type(tar::EntryType::Char);
        header.set_mode(0o666);
        header.set_size(0);
        header.set_mtime(1_600_000_000);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.tar.append(&header, std::io::empty()).expect("append");
        builder
    }
    /// Deletes `path` from the layers below (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path.rsplit_once('/').map(|(d, n)| (format!("{d}/"), n)).unwrap_or((String::new(), path));
        self.file(&format!("{dir}.wh.{name}"), &[], 0o644)
    }
    /// Hides everything below `dir` in lower layers.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), &[], 0o644)
    }
    /// A file with an extended attribute (a PAX `SCHILY.xattr.` record).
    pub fn file_with_xattr(self, name: &str, data: &[u8], xattr: &str, value: &str) -> Self {
        let record_body = format!(" SCHILY.xattr.{xattr}={value}\n");
        let mut length = record_body.len() + 2;
        if format!("{length}{record_body}").len() != length {
            length += 1;
        }
        let record = format!("{length}{record_body}");
        self.entry(&format!("PaxHeaders/{name}"), tar::EntryType::XHeader, record.as_bytes(), 0o644, (0, 0), "")
            .file(name, data, 0o644)
    }
    /// The busybox binary with `sh` and `ls` as a symlink and a hard link.
    pub fn busybox(self) -> Self {
        let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
        self.dir("bin", 0o755)
            .file("bin/busybox", &busybox, 0o755)
            .symlink("bin/sh", "busybox")
            // A hard link's header carries its target's mode, as tar writes it: dockerd's
            // unpacker applies that mode to the linked file.
            .entry("bin/ls", tar::EntryType::Link, &[], 0o755, (0, 0), "bin/busybox")
            .dir("etc", 0o755)
            .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    }

    pub fn tar(self) -> Vec<u8> {
        self.tar.into_inner().expect("finish the test tar")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer blob and what describes it.
#[derive(Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub media_type: String,
    pub digest: String,
    pub diff_id: String,
}

impl Layer {
    pub fn new(tar: &[u8], compression: Compression) -> Layer {
        let (blob, media_type) = match compression {
            Compression::None => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(tar).expect("gzip");
                (encoder.finish().expect("gzip"), "application/vnd.oci.image.layer.v1.tar+gzip")
            }
            Compression::Zstd => (zstd::encode_all(tar, 3).expect("zstd"), "application/vnd.oci.image.layer.v1.tar+zstd"),
        };
        Layer { digest: sha256(&blob), diff_id: sha256(tar), blob, media_type: media_type.to_string() }
    }

    pub fn gzip(builder: LayerBuilder) -> Layer {
        Layer::new(&builder.tar(), Compression::Gzip)
    }
}

/// An image: layers plus a config, pushed with a manifest.
#[derive(Clone)]
pub struct TestImage {
    pub layers: Vec<Layer>,
    pub config: serde_json::Value,
    pub manifest_media_type: &'static str,
}

/// What was pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub manifest_digest: String,
    pub config_digest: String,
    pub manifest: Vec<u8>,
}

impl TestImage {
    pub fn new(layers: Vec<Layer>) -> TestImage {
        let diff_ids: Vec<&str> = layers.iter().map(|layer| layer.diff_id.as_str()).collect();
        let history: Vec<serde_json::Value> =
            (0..layers.len()).map(|n| serde_json::json!({"created_by": format!("layer {n}"), "created": "2026-01-01T00:00:00Z"})).collect();
        let config = serde_json::json!({
            "architecture": host_arch(), "os": "linux", "created": "2026-01-01T00:00:00Z",
            "config": {
                "User": "1000:1000", "Env": ["PATH=/bin", "GREETING=hello"], "Cmd": ["/bin/sh"],
                "Entrypoint": ["/bin/busybox"], "WorkingDir": "/work", "Labels": {"test": "berth"},
                "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGTERM"
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        TestImage { layers, config, manifest_media_type: OCI_MANIFEST }
    }

    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).expect("config json")
    }

    /// The manifest, with `edit` applied to its JSON before serializing.
    pub fn manifest_with(&self, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let docker = self.manifest_media_type == DOCKER_MANIFEST;
        let config_type = if docker { "application/vnd.docker.container.image.v1+json" } else { "application/vnd.oci.image.config.v1+json" };
        let config = self.config_bytes();
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|layer| {
                let media_type = if docker { layer.media_type.replace("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip") } else { layer.media_type.clone() };
                serde_json::json!({"mediaType": media_type, "digest": layer.digest, "size": layer.blob.len()})
            })
            .collect();
        let mut manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": self.manifest_media_type,
            "config": {"mediaType": config_type, "digest": sha256(&config), "size": config.len()},
            "layers": layers,
        });
        edit(&mut manifest);
        serde_json::to_vec(&manifest).expect("manifest json")
    }

    /// Uploads blobs and the manifest under `repository:tag`.
    pub fn push(&self, registry: &Registry, repository: &str, tag: &str) -> Pushed {
        self.push_with(registry, repository, tag, |_| {})
    }

    pub fn push_with(&self, registry: &Registry, repository: &str, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Pushed {
        for layer in &self.layers {
            registry.push_blob(repository, &layer.blob);
        }
        let config_digest = registry.push_blob(repository, &self.config_bytes());
        let manifest = self.manifest_with(edit);
        registry.push_manifest(repository, tag, self.manifest_media_type, &manifest);
        Pushed { manifest_digest: sha256(&manifest), config_digest, manifest }
    }
}

/// Uploads an index over already pushed manifests: `(architecture, pushed)`.
pub fn push_index(registry: &Registry, repository: &str, tag: &str, entries: &[(&str, &Pushed)]) -> String {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(arch, pushed)| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": pushed.manifest_digest, "size": pushed.manifest.len(),
                "platform": {"architecture": arch, "os": "linux"}
            })
        })
        .collect();
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})).expect("index");
    registry.push_manifest(repository, tag, OCI_INDEX, &index);
    sha256(&index)
}

/// A registry config that allows plain HTTP to the test registry, with `extra` TOML.
pub fn local_config(extra: &str) -> berth::image::RegistryConfig {
    let text = format!("[registry.\"{}\"]\ninsecure = true\n{extra}", crate::registry::ADDRESS);
    berth::image::RegistryConfig::from_toml(&text).expect("test config")
}

/// An image service over a fresh store in `root`.
pub fn open_service(root: &std::path::Path, config: berth::image::RegistryConfig) -> berth::image::ImageService {
    let store = berth::store::Store::open(&root.join("meta.redb")).expect("open the store");
    berth::image::ImageService::open(root, store, config).expect("open the image service")
}

/// Panics unless the service holds no image, name, blob, snapshot, ingest file or
/// snapshot directory.
#[track_caller]
pub fn assert_empty(service: &berth::image::ImageService) {
    assert_eq!(service.list().expect("list"), vec![], "images left");
    assert_eq!(service.content().list().expect("blobs"), Vec::<String>::new(), "blobs left");
    let snapshots: Vec<String> = service.snapshots().list().expect("snapshots").into_iter().map(|(key, _)| key).collect();
    assert_eq!(snapshots, Vec::<String>::new(), "snapshot records left");
    for dir in ["content/ingest", "snapshots"] {
        let left: Vec<_> = std::fs::read_dir(service.root().join(dir)).expect("read dir").map(|e| e.expect("entry").file_name()).collect();
        assert!(left.is_empty(), "{dir} not empty: {left:?}");
    }
}

/// An overlay (or bind) mount of a snapshot, unmounted on drop.
pub struct Mounted {
    pub target: std::path::PathBuf,
}

impl Mounted {
    pub fn new(mount: &berth::image::OverlayMount, target: &std::path::Path) -> Mounted {
        std::fs::create_dir_all(target).expect("mkdir mount target");
        mount.mount(target).unwrap_or_else(|error| panic!("mount {}: {error}", mount.options()));
        Mounted { target: target.to_path_buf() }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.target, nix::mount::MntFlags::MNT_DETACH);
    }
}
