//! Pushing to a real registry: an image pulled from one repository is pushed to
//! another of the same registry (blobs mounted across repositories or uploaded, then
//! the manifest), and a fresh store pulls it back with the same image ID; pushing to a
//! registry that refuses the credentials fails as `Unauthorized`.
use berth::image::{Credentials, ImageError};
use berth_integration::images::{local_config, open_service, Layer, LayerBuilder, TestImage};
use berth_integration::registry::{in_netns, runtime, Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

#[test]
fn a_pushed_image_pulls_back_identical() {
    let registry = Registry::start(Auth::Basic { username: "tester".into(), password: "secret".into() });
    let image = TestImage::new(vec![Layer::gzip(LayerBuilder::new().busybox()), Layer::gzip(LayerBuilder::new().file("top", b"t", 0o644))]);
    image.push(&registry, "test/source", "v1");
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let credentials = Some(Credentials::Basic { username: "tester".into(), password: "secret".into() });
    let source = format!("{ADDRESS}/test/source:v1");
    let target = format!("{ADDRESS}/test/target:v2");
    let other = format!("{ADDRESS}/other/fresh:v3");
    let (pulled, digest, fresh_digest, refused) = in_netns(&registry.netns, || {
        let runtime = runtime();
        let pulled = runtime.block_on(service.pull(&source, credentials.clone(), None)).expect("pull");
        let digest = runtime.block_on(service.push(&source, &target, credentials.clone())).expect("push");
        let fresh = runtime.block_on(service.push(&target, &other, credentials.clone())).expect("second push");
        let wrong = Some(Credentials::Basic { username: "tester".into(), password: "wrong".into() });
        let refused = runtime.block_on(service.push(&source, &target, wrong));
        (pulled, digest, fresh, refused)
    });
    assert_eq!(digest, pulled.manifest_digest, "the manifest is pushed byte for byte");
    assert_eq!(fresh_digest, digest);
    assert!(matches!(refused, Err(ImageError::Unauthorized(_))), "{refused:?}");
    for layer in &image.layers {
        assert!(registry.has_blob("test/target", &layer.digest), "layer {} in the target repository", layer.digest);
        assert!(registry.has_blob("other/fresh", &layer.digest));
    }
    assert!(service.get(&target).unwrap().repo_tags.contains(&target), "the target name is tagged locally");
    let again = TempDir::new("images");
    let fresh = open_service(again.path(), local_config(""));
    let repulled = in_netns(&registry.netns, || runtime().block_on(fresh.pull(&target, credentials.clone(), None))).expect("pull back");
    assert_eq!(repulled.id, pulled.id);
    assert_eq!(repulled.manifest_digest, digest);
}
