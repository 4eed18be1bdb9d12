//! berthctl's daemon verbs: version and info, and the image verbs that go through the
//! CRI ImageService (images, inspecti, rmi, imagefsinfo).
use k8s_cri::v1 as cri;

use super::client::{rpc_error, Clients};
use super::output::{self, Format};

pub async fn version(clients: &mut Clients) -> Result<(), String> {
    let version = clients.runtime.version(cri::VersionRequest { version: "v1".into() }).await.map_err(rpc_error)?.into_inner();
    println!("Version:  {}", version.version);
    println!("RuntimeName:  {}", version.runtime_name);
    println!("RuntimeVersion:  {}", version.runtime_version);
    println!("RuntimeApiVersion:  {}", version.runtime_api_version);
    Ok(())
}

pub async fn info(clients: &mut Clients) -> Result<(), String> {
    let status = clients.runtime.status(cri::StatusRequest { verbose: true }).await.map_err(rpc_error)?.into_inner();
    output::json(&status)
}

pub async fn images(clients: &mut Clients, format: Format) -> Result<(), String> {
    let images = clients.images.list_images(cri::ListImagesRequest::default()).await.map_err(rpc_error)?.into_inner().images;
    if format == Format::Json {
        return output::json(&images);
    }
    let mut rows = Vec::new();
    for image in &images {
        let names: Vec<(String, String)> = match image.repo_tags.is_empty() {
            true => vec![("<none>".into(), "<none>".into())],
            false => image.repo_tags.iter().map(|tag| split_tag(tag)).collect(),
        };
        for (repository, tag) in names {
            rows.push(vec![repository, tag, output::short_id(&image.id), output::size(image.size)]);
        }
    }
    output::table(&["IMAGE", "TAG", "IMAGE ID", "SIZE"], &rows);
    Ok(())
}

fn split_tag(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), tag.to_string()),
        _ => (reference.to_string(), "<none>".to_string()),
    }
}

pub async fn inspect_image(clients: &mut Clients, reference: &str) -> Result<(), String> {
    let request = cri::ImageStatusRequest { image: Some(cri::ImageSpec { image: reference.to_string(), ..Default::default() }), verbose: true };
    let response = clients.images.image_status(request).await.map_err(rpc_error)?.into_inner();
    if response.image.is_none() {
        return Err(format!("no such image {reference}"));
    }
    output::json(&response)
}

pub async fn remove_images(clients: &mut Clients, references: &[String]) -> Result<(), String> {
    for reference in references {
        let request = cri::RemoveImageRequest { image: Some(cri::ImageSpec { image: reference.clone(), ..Default::default() }) };
        clients.images.remove_image(request).await.map_err(rpc_error)?;
        println!("Deleted: {reference}");
    }
    Ok(())
}

/// Pulls through the daemon; a spinner shows that it is working (the CRI reports no
/// per-layer progress).
pub async fn pull(clients: &mut Clients, reference: &str, credentials: Option<String>) -> Result<(), String> {
    let auth = match credentials {
        Some(text) => {
            let (username, password) = text.split_once(':').ok_or("--creds must be USER:PASSWORD")?;
            Some(cri::AuthConfig { username: username.into(), password: password.into(), ..Default::default() })
        }
        None => None,
    };
    let request = cri::PullImageRequest { image: Some(cri::ImageSpec { image: reference.to_string(), ..Default::default() }), auth, sandbox_config: None };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("pulling {reference}"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let outcome = clients.images.pull_image(request).await;
    spinner.finish_and_clear();
    let image_ref = outcome.map_err(rpc_error)?.into_inner().image_ref;
    println!("Image is up to date for {image_ref}");
    Ok(())
}
