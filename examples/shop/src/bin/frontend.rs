//! `shop-frontend`: `GET /checkout?user=NAME&sku=SKU&qty=N` prices a cart
//! and asks the inventory service for stock. An edge service: no caller is
//! trusted, only a verified debug session is honoured.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use keyhole::{RequestBuilderExt as _, Secret};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(about = "The shop's frontend service")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    inventory_url: String,
}

#[derive(Deserialize)]
struct CheckoutQuery {
    user: String,
    sku: String,
    #[serde(default = "one")]
    qty: u32,
}

fn one() -> u32 {
    1
}

#[derive(Serialize, Clone, Copy, PartialEq)]
enum Tier {
    Standard,
    Gold { since_year: u16 },
}

#[derive(Serialize)]
struct Customer {
    name: String,
    tier: Tier,
    email: String,
}

#[derive(Serialize)]
struct Line {
    sku: String,
    quantity: u32,
    unit_cents: u64,
}

#[derive(Serialize)]
struct Payment {
    method: &'static str,
    /// The card token: on the default list of sensitive names, never captured.
    token: String,
    /// Wrapped explicitly: captured as redacted whatever its name.
    card_last_digits: Secret<String>,
}

#[derive(Serialize)]
struct Cart {
    customer: Customer,
    lines: Vec<Line>,
    prices: HashMap<String, u64>,
    payment: Payment,
    total_cents: u64,
}

#[derive(Clone)]
struct Shop {
    inventory_url: String,
    http: reqwest::Client,
}

fn price_of(sku: &str) -> u64 {
    999 + (sku.bytes().map(u64::from).sum::<u64>() % 50) * 100
}

fn customer(name: &str) -> Customer {
    let tier = if name.starts_with('a') {
        Tier::Gold { since_year: 2019 }
    } else {
        Tier::Standard
    };
    Customer {
        name: name.to_owned(),
        tier,
        email: format!("{name}@example.com"),
    }
}

fn price(query: &CheckoutQuery) -> Cart {
    let unit = price_of(&query.sku);
    let customer = customer(&query.user);
    let discount = if customer.tier == Tier::Standard {
        0
    } else {
        unit * u64::from(query.qty) / 10
    };
    Cart {
        lines: vec![Line {
            sku: query.sku.clone(),
            quantity: query.qty,
            unit_cents: unit,
        }],
        prices: [(query.sku.clone(), unit)].into(),
        payment: Payment {
            method: "card",
            token: "tok_4f9a8c7e2b".to_owned(),
            card_last_digits: Secret("4242".to_owned()),
        },
        total_cents: unit * u64::from(query.qty) - discount,
        customer,
    }
}

async fn checkout(
    State(shop): State<Shop>,
    Query(query): Query<CheckoutQuery>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let cart = price(&query);
    keyhole::probe!("checkout.priced", cart, qty = query.qty);
    let url = format!("{}/stock/{}", shop.inventory_url.trim_end_matches('/'), query.sku);
    let stock: serde_json::Value = shop
        .http
        .get(&url)
        .propagate_context()
        .send()
        .await
        .and_then(|response| response.error_for_status())
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("inventory: {e}")))?
        .json()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("inventory: {e}")))?;
    let available = stock["available"].as_u64().unwrap_or(0);
    let in_stock = available >= u64::from(query.qty);
    keyhole::probe!(
        "checkout.decided",
        in_stock,
        available,
        total_cents = cart.total_cents
    );
    Ok(Json(serde_json::json!({
        "user": query.user,
        "sku": query.sku,
        "total_cents": cart.total_cents,
        "in_stock": in_stock,
    })))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shop::init_logging();
    let args = Args::parse();
    let agent = shop::start_agent("shop-frontend");
    let shop = Shop {
        inventory_url: args.inventory_url,
        http: reqwest::Client::new(),
    };
    let app = Router::new()
        .route("/checkout", get(checkout))
        .with_state(shop)
        .layer(shop::keyhole_layer());
    match shop::serve("shop-frontend", args.listen, app, agent).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop-frontend: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
