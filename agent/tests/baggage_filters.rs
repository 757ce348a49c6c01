//! A breakpoint's baggage filters: it captures only the requests of its session whose trusted
//! baggage holds every entry it names, and its snapshots say which entries those were.

use std::collections::BTreeMap;

use http::HeaderMap;
use keyhole::testing::{session_token, OfflineAgent};
use keyhole::{inbound_context, SESSION_BAGGAGE_KEY};
use keyhole_proto::token::SessionSigner;
use keyhole_proto::v1::{BaggageEntry, BaggageFilter, Breakpoint, CaptureLimits};
use opentelemetry::Context;

/// How long the test's session and breakpoints stay valid.
const VALID_SECONDS: u64 = 600;
const SESSION: &str = "ses-filters";
const PROBE: &str = "filters.checkout";

fn checkout(tenant: &str) {
    keyhole::probe!("filters.checkout", tenant);
}

fn breakpoint(id: &str, filters: &[(&str, &str)]) -> Breakpoint {
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        + (VALID_SECONDS * 1000) as i64;
    Breakpoint {
        id: id.into(),
        service: "filters".into(),
        probe_label: PROBE.into(),
        session_id: SESSION.into(),
        baggage_filters: filters
            .iter()
            .map(|(key, value)| BaggageFilter {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
        limits: Some(CaptureLimits::default()),
        max_hits: u32::MAX,
        rate_per_sec: 1e9,
        expires_at_unix_ms: expires,
        ..Default::default()
    }
}

/// Serves one request of the session, from a peer that is `trusted` or not, with `baggage` beside
/// the session's own.
fn serve(trusted: bool, token: &str, baggage: &str, tenant: &str) {
    let mut headers = HeaderMap::new();
    let value = if baggage.is_empty() {
        format!("{SESSION_BAGGAGE_KEY}={token}")
    } else {
        format!("{SESSION_BAGGAGE_KEY}={token},{baggage}")
    };
    headers.insert("baggage", value.parse().expect("header"));
    let _request = inbound_context(&Context::new(), &headers, trusted).attach();
    checkout(tenant);
}

#[test]
fn a_breakpoint_with_baggage_filters_captures_only_the_requests_whose_baggage_holds_them_all() {
    let signer = SessionSigner::new("k-filters", &[8; 32]).expect("key");
    let mut agent = OfflineAgent::trusting("filters", &signer).expect("offline agent");
    let refused = agent.install(vec![
        breakpoint("bp-acme", &[("tenant.id", "acme")]),
        breakpoint("bp-acme-eu", &[("tenant.id", "acme"), ("region", "eu")]),
        breakpoint("bp-any", &[]),
    ]);
    assert!(refused.is_empty(), "installed: {refused:?}");
    let token = session_token(&signer, SESSION, VALID_SECONDS).expect("token");

    serve(true, &token, "tenant.id=acme", "acme");
    serve(true, &token, "region=eu,tenant.id=acme", "acme-eu");
    serve(true, &token, "tenant.id=globex", "globex");
    serve(true, &token, "tenant.id=acmecorp", "acmecorp");
    serve(true, &token, "", "none");
    // Filters match trusted baggage only: an untrusted caller's entries are not the request's.
    serve(false, &token, "tenant.id=acme", "untrusted");

    let mut captured: BTreeMap<String, Vec<(String, Vec<BaggageEntry>)>> = BTreeMap::new();
    for snapshot in agent.drain() {
        let tenant = snapshot
            .variables
            .iter()
            .find(|variable| variable.name == "tenant")
            .map(|variable| format!("{:?}", variable.value))
            .unwrap_or_default();
        captured
            .entry(snapshot.breakpoint_id.clone())
            .or_default()
            .push((tenant, snapshot.baggage.clone()));
    }
    let tenants = |id: &str| -> Vec<String> {
        captured
            .get(id)
            .map(|hits| hits.iter().map(|(tenant, _)| tenant.clone()).collect())
            .unwrap_or_default()
    };
    let entry = |key: &str, value: &str| BaggageEntry {
        key: key.into(),
        value: value.into(),
    };
    assert_eq!(tenants("bp-acme").len(), 2, "acme's two requests: {captured:#?}");
    assert!(tenants("bp-acme")
        .iter()
        .all(|t| t.contains("acme") && !t.contains("acmecorp")));
    assert!(
        captured["bp-acme"]
            .iter()
            .all(|(_, baggage)| baggage == &[entry("tenant.id", "acme")]),
        "a snapshot names the entries its breakpoint matched on"
    );
    assert_eq!(tenants("bp-acme-eu").len(), 1, "every filter must match");
    assert!(tenants("bp-acme-eu")[0].contains("acme-eu"));
    assert_eq!(
        captured["bp-acme-eu"][0].1,
        [entry("tenant.id", "acme"), entry("region", "eu")]
    );
    assert_eq!(
        tenants("bp-any").len(),
        6,
        "no filter: every request of the session"
    );
    assert!(captured["bp-any"].iter().all(|(_, baggage)| baggage.is_empty()));
}
