//! `shop-inventory`: answers `GET /stock/SKU` with what is in stock where.
//! An internal service: calls from loopback keep their trace and baggage.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde::Serialize;

#[derive(Parser)]
#[command(about = "The shop's inventory service")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

#[derive(Serialize, Clone, Copy)]
enum Region {
    Eu,
    Us,
}

#[derive(Serialize)]
struct Warehouse {
    name: &'static str,
    region: Region,
    open: bool,
}

#[derive(Serialize)]
struct Reservation {
    order: u64,
    quantity: u32,
}

#[derive(Serialize)]
struct Stock {
    sku: String,
    available: u32,
    warehouse: Warehouse,
    reservations: Vec<Reservation>,
    by_bin: BTreeMap<String, u32>,
}

fn lookup(sku: &str) -> Stock {
    let available = sku.bytes().map(u32::from).sum::<u32>() % 17;
    Stock {
        sku: sku.to_owned(),
        available,
        warehouse: Warehouse {
            name: "north",
            region: if available % 2 == 0 {
                Region::Eu
            } else {
                Region::Us
            },
            open: true,
        },
        reservations: (0..available % 4)
            .map(|i| Reservation {
                order: 1000 + u64::from(i),
                quantity: i + 1,
            })
            .collect(),
        by_bin: [
            ("A1".to_owned(), available / 2),
            ("B7".to_owned(), available - available / 2),
        ]
        .into(),
    }
}

async fn stock(Path(sku): Path<String>) -> Json<serde_json::Value> {
    let stock = lookup(&sku);
    keyhole::probe!("inventory.stock", sku, stock);
    Json(serde_json::json!({ "sku": stock.sku, "available": stock.available }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shop::init_logging();
    let args = Args::parse();
    let agent = shop::start_agent("shop-inventory");
    let layer = shop::keyhole_layer()
        .trust_cidrs(["127.0.0.0/8", "::1"])
        .expect("loopback networks are valid CIDRs");
    let app = Router::new().route("/stock/{sku}", get(stock)).layer(layer);
    match shop::serve("shop-inventory", args.listen, app, agent).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shop-inventory: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
