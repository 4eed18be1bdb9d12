//! `berthctl` image verbs, working directly on an image root (`--root`) with the
//! images library: pull (a progress bar per layer), images, inspect, rmi, tag, gc, df.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth::image::{Credentials, ImageError, ImageService, LayerState, PullProgress, RegistryConfig};
use berth::store::Store;
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum ImageVerb {
    /// Pull an image from a registry.
    Pull {
        reference: String,
        /// Credentials as `user:password`.
        #[arg(long)]
        user: Option<String>,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List images.
    Images,
    /// Show one image as JSON.
    Inspect { reference: String },
    /// Remove image names (and the images when no name is left).
    Rmi { references: Vec<String> },
    /// Give an image another name.
    Tag { source: String, target: String },
    /// Push an image to a registry as `target` (default: its own name).
    Push {
        source: String,
        target: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Write images to a docker-save / OCI layout archive.
    Save {
        #[arg(long, short)]
        output: PathBuf,
        references: Vec<String>,
    },
    /// Load the images of an archive.
    Load {
        #[arg(long, short)]
        input: PathBuf,
    },
    /// Remove unreferenced blobs and snapshots.
    Gc,
    /// Show the image filesystem's usage.
    Df,
}

fn open(root: &Path, config: &Path) -> Result<ImageService, String> {
    let config = match std::fs::read_to_string(config) {
        Ok(text) => RegistryConfig::from_toml(&text).map_err(|error| format!("{}: {error}", config.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => RegistryConfig::default(),
        Err(error) => return Err(format!("{}: {error}", config.display())),
    };
    std::fs::create_dir_all(root).map_err(|error| format!("{}: {error}", root.display()))?;
    let store = Store::open(&root.join("meta.redb")).map_err(|error| error.to_string())?;
    ImageService::open(root, store, config).map_err(|error| error.to_string())
}

/// Runs one image verb.
pub fn run(root: PathBuf, config: PathBuf, verb: ImageVerb) -> Result<(), String> {
    let service = open(&root, &config)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|error| error.to_string())?;
    let text = |error: ImageError| error.to_string();
    match verb {
        ImageVerb::Pull { reference, user, quiet } => runtime.block_on(pull(&service, &reference, user, quiet)),
        ImageVerb::Images => {
            println!("{:<60} {:<20} {:>12}", "NAME", "IMAGE ID", "SIZE");
            for image in service.list().map_err(text)? {
                let short = image.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                let names = if image.repo_tags.is_empty() { vec!["<none>".to_string()] } else { image.repo_tags.clone() };
                for name in names {
                    println!("{name:<60} {short:<20} {:>12}", image.size);
                }
            }
            Ok(())
        }
        ImageVerb::Inspect { reference } => {
            let image = service.get(&reference).map_err(text)?;
            println!("{image:#?}");
            Ok(())
        }
        ImageVerb::Rmi { references } => {
            for reference in references {
                let removed = service.remove(&reference).map_err(text)?;
                for name in removed.untagged {
                    println!("Untagged: {name}");
                }
                if let Some(id) = removed.deleted {
                    println!("Deleted: {id}");
                }
            }
            Ok(())
        }
        ImageVerb::Tag { source, target } => service.tag(&source, &target).map_err(text),
        ImageVerb::Push { source, target, user } => {
            let target = target.unwrap_or_else(|| source.clone());
            let digest = runtime.block_on(service.push(&source, &target, credentials(user))).map_err(text)?;
            println!("{target}: {digest}");
            Ok(())
        }
        ImageVerb::Save { output, references } => {
            let file = std::fs::File::create(&output).map_err(|error| format!("{}: {error}", output.display()))?;
            let references: Vec<&str> = references.iter().map(String::as_str).collect();
            service.export(&references, std::io::BufWriter::new(file)).map_err(text)
        }
        ImageVerb::Load { input } => {
            let file = std::fs::File::open(&input).map_err(|error| format!("{}: {error}", input.display()))?;
            for image in runtime.block_on(service.import(file)).map_err(text)? {
                println!("Loaded: {} {}", image.id, image.repo_tags.join(" "));
            }
            Ok(())
        }
        ImageVerb::Gc => {
            let report = service.gc().map_err(text)?;
            println!("removed {} blobs, {} snapshots, {} bytes", report.blobs_removed, report.snapshots_removed, report.bytes_freed);
            Ok(())
        }
        ImageVerb::Df => {
            let (bytes, inodes) = service.fs_usage().map_err(text)?;
            println!("{bytes} bytes, {inodes} inodes");
            Ok(())
        }
    }
}

fn credentials(user: Option<String>) -> Option<Credentials> {
    let user = user?;
    let (username, password) = user.split_once(':').unwrap_or((user.as_str(), ""));
    Some(Credentials::Basic { username: username.to_string(), password: password.to_string() })
}

async fn pull(service: &ImageService, reference: &str, user: Option<String>, quiet: bool) -> Result<(), String> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<PullProgress>(256);
    let bars = tokio::spawn(async move {
        let multi = if quiet { MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden()) } else { MultiProgress::new() };
        let mut layers: HashMap<String, ProgressBar> = HashMap::new();
        while let Some(update) = receiver.recv().await {
            let bar = layers.entry(update.layer.clone()).or_insert_with(|| new_bar(&multi, &update));
            show(bar, &update);
        }
    });
    let outcome = service.pull(reference, credentials(user), Some(sender)).await;
    let _ = bars.await;
    let image = outcome.map_err(|error| error.to_string())?;
    println!("{}: {}", image.repo_tags.first().map(String::as_str).unwrap_or(reference), image.id);
    Ok(())
}

fn new_bar(multi: &MultiProgress, update: &PullProgress) -> ProgressBar {
    let bar = multi.add(ProgressBar::new(update.total));
    let style = ProgressStyle::with_template("{prefix} {msg:<12} [{bar:30}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_prefix(update.layer.trim_start_matches("sha256:").chars().take(12).collect::<String>());
    bar
}

fn show(bar: &ProgressBar, update: &PullProgress) {
    bar.set_position(update.done);
    let message = match update.state {
        LayerState::Waiting => "waiting",
        LayerState::Downloading => "downloading",
        LayerState::Extracting => "extracting",
        LayerState::Exists => "exists",
        LayerState::Done => "done",
    };
    bar.set_message(message);
    if matches!(update.state, LayerState::Exists | LayerState::Done) {
        bar.finish();
    }
}
