//! The demo serves without a control plane: missing keyhole settings only
//! turn debugging off.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn the_inventory_serves_stock_without_keyhole_configured() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shop-inventory"))
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("KEYHOLE_TOKEN")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shop-inventory");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let address = lines
        .find_map(|line| line.split("listening on ").nth(1).map(str::to_owned))
        .expect("it announces its address");
    let stock: serde_json::Value = reqwest::get(format!("{address}/stock/RED-SHOE"))
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(stock["sku"], "RED-SHOE");
    assert!(stock["available"].is_u64());
}
