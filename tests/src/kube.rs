//! The answering side of kube-rs' `tower-test` mock service, for the tests of the in-cluster
//! runtime (the Kubernetes API is the one component not available here, so it is played by
//! the test: DESIGN.md, Tests).

use http::{Request, Response};
use kube::client::Body;
use serde_json::{json, Value};

/// The test's end of the mock API server: each request the client under test makes, with the
/// handle to answer it.
pub type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A client whose every request arrives at the returned handle.
pub fn mock_client() -> (kube::Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// A response with status `code` and `body` as JSON.
pub fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).expect("JSON")))
        .expect("a response")
}

/// A `Status` failure as the API server sends it (`NotFound`, `Conflict`, …).
pub fn failure(code: u16, reason: &str) -> Response<Body> {
    respond(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason,
                "reason": reason, "code": code}),
    )
}

/// An API object from a manifest in YAML (the tests write their objects as users do).
pub fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}
