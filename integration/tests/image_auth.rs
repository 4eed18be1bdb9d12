//! Registry authentication against the real registry: htpasswd basic auth and the
//! bearer-token flow through a token server, with credentials given per pull or from
//! the config file, and refused credentials reported as `Unauthorized` with nothing
//! left behind.
use berth::image::{Credentials, ImageError};
use berth_integration::images::{assert_empty, local_config, open_service, Layer, LayerBuilder, TestImage};
use berth_integration::registry::{in_netns, runtime, Auth, Registry, ADDRESS};
use berth_integration::tempdir::TempDir;

fn basic(username: &str, password: &str) -> Option<Credentials> {
    Some(Credentials::Basic { username: username.into(), password: password.into() })
}

fn check_auth(auth: Auth) {
    let registry = Registry::start(auth);
    TestImage::new(vec![Layer::gzip(LayerBuilder::new().busybox())]).push(&registry, "test/private", "v1");
    let dir = TempDir::new("images");
    let service = open_service(dir.path(), local_config(""));
    let reference = format!("{ADDRESS}/test/private:v1");
    let pull = |credentials: Option<Credentials>| in_netns(&registry.netns, || runtime().block_on(service.pull(&reference, credentials, None)));
    let anonymous = pull(None).expect_err("anonymous pull");
    assert!(matches!(anonymous, ImageError::Unauthorized(_)), "{anonymous:?}");
    let wrong = pull(basic("tester", "wrong")).expect_err("wrong password");
    assert!(matches!(wrong, ImageError::Unauthorized(_)), "{wrong:?}");
    assert_empty(&service);
    let pulled = pull(basic("tester", "secret")).expect("pull with the right password");
    assert_eq!(pulled.repo_tags, [reference.clone()]);
    service.remove(&reference).unwrap();
    assert_empty(&service);
    drop(service);

    let configured = local_config("username = \"tester\"\npassword = \"secret\"\n");
    let service = open_service(dir.path(), configured);
    in_netns(&registry.netns, || runtime().block_on(service.pull(&reference, None, None))).expect("credentials from the config");
}

#[test]
fn basic_auth_accepts_the_right_password_only() {
    check_auth(Auth::Basic { username: "tester".into(), password: "secret".into() });
}

#[test]
fn token_auth_accepts_the_right_password_only() {
    check_auth(Auth::Token { username: "tester".into(), password: "secret".into() });
}
