//! The harness protocol against the real binary: `POST /test` makes the
//! service call back with what it propagates, and the callback records it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_service() -> (Service, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_w3c-conformance"))
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start w3c-conformance");
    let stderr = child.stderr.take().expect("stderr");
    let address = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.split("listening on ").nth(1).map(str::to_owned))
        .expect("it announces its address");
    (Service(child), address)
}

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

async fn start_callback() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/callback",
        post(move |headers: HeaderMap| {
            let record = record.clone();
            async move { record.lock().unwrap().push(headers) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, seen)
}

/// What the service propagated when called with `headers`.
async fn propagated(service: &str, callback: &str, seen: &Seen, headers: &[(&str, &str)]) -> HeaderMap {
    seen.lock().unwrap().clear();
    let mut request = reqwest::Client::new()
        .post(format!("{service}/test"))
        .json(&serde_json::json!([{ "url": format!("{callback}/callback"), "arguments": [] }]));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    assert!(request.send().await.expect("POST /test").status().is_success());
    seen.lock().unwrap().pop().expect("the service called back")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_harness_protocol_continues_valid_traces_and_restarts_invalid_ones() {
    let (_service, service) = start_service();
    let (callback, seen) = start_callback().await;

    let continued = propagated(
        &service,
        &callback,
        &seen,
        &[("traceparent", CALLER), ("tracestate", "foo=1,bar=2")],
    )
    .await;
    let traceparent = header(&continued, "traceparent").expect("traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{CALLER_TRACE}-")),
        "{traceparent}"
    );
    assert!(
        traceparent.ends_with("-01"),
        "the sampled flag is kept: {traceparent}"
    );
    assert_eq!(traceparent.len(), 55);
    assert_eq!(header(&continued, "tracestate"), Some("foo=1,bar=2"));

    let future_version = propagated(
        &service,
        &callback,
        &seen,
        &[(
            "traceparent",
            &format!("cc-{CALLER_TRACE}-00f067aa0ba902b7-01-what-the-future-holds"),
        )],
    )
    .await;
    let traceparent = header(&future_version, "traceparent").expect("traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{CALLER_TRACE}-")),
        "a higher version is read and written as 00"
    );

    for invalid in [
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ] {
        let restarted = propagated(
            &service,
            &callback,
            &seen,
            &[("traceparent", invalid), ("tracestate", "foo=1")],
        )
        .await;
        let traceparent = header(&restarted, "traceparent").expect("a new trace is propagated");
        assert!(
            !traceparent.contains(CALLER_TRACE),
            "{invalid} must start a new trace"
        );
        assert_eq!(
            header(&restarted, "tracestate"),
            None,
            "{invalid} drops tracestate"
        );
    }

    let twice = propagated(
        &service,
        &callback,
        &seen,
        &[("traceparent", CALLER), ("traceparent", CALLER)],
    )
    .await;
    assert!(
        !header(&twice, "traceparent").unwrap().contains(CALLER_TRACE),
        "two traceparent headers are invalid"
    );

    let too_many: String = (0..33).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
    let discarded = propagated(
        &service,
        &callback,
        &seen,
        &[("traceparent", CALLER), ("tracestate", &too_many)],
    )
    .await;
    assert!(header(&discarded, "traceparent").unwrap().contains(CALLER_TRACE));
    assert_eq!(
        header(&discarded, "tracestate"),
        None,
        "33 tracestate members discard the header"
    );
}
