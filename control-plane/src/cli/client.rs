//! The CLI's connection to the control plane, and turning gRPC failures into
//! one line a person can act on.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::v1::debugger_service_client::DebuggerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status, Streaming};

use super::GlobalArgs;
use crate::config::{ADMIN_TOKEN_FILE, DEFAULT_DATA_DIR};

/// Where the CLI looks for the control plane when `KEYHOLE_ADDR` is not set.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7070";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request (not a watch) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Connection {
    addr: String,
    token: String,
}

impl Connection {
    pub fn from_args(args: &GlobalArgs) -> Result<Self, String> {
        let token = match &args.token {
            Some(token) => token.trim().to_owned(),
            None => {
                let fallback = Path::new(DEFAULT_DATA_DIR).join(ADMIN_TOKEN_FILE);
                match std::fs::read_to_string(&fallback) {
                    Ok(token) => token.trim().to_owned(),
                    Err(_) => {
                        return Err(format!(
                            "no API token: set KEYHOLE_TOKEN (or --token), or run from the directory that holds {}",
                            fallback.display()
                        ))
                    }
                }
            }
        };
        if token.is_empty() {
            return Err(
                "the API token is empty: set KEYHOLE_TOKEN to a token from `keyhole token create`".into(),
            );
        }
        Ok(Self {
            addr: args.addr.trim().to_owned(),
            token,
        })
    }
}

pub struct Client {
    pub debugger: DebuggerServiceClient<InterceptedService<Channel, BearerToken>>,
}

impl Client {
    pub async fn connect(connection: &Connection) -> Result<Self, String> {
        let addr = &connection.addr;
        let endpoint = Endpoint::from_shared(addr.clone())
            .map_err(|_| {
                format!("KEYHOLE_ADDR {addr:?} is not a valid address; use a URL like {DEFAULT_ADDR}")
            })?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint.connect().await.map_err(|e| {
            format!(
                "cannot reach the control plane at {addr}: {}; is `keyhole server` running there? (set KEYHOLE_ADDR)",
                root_cause(&e)
            )
        })?;
        let bearer = BearerToken::new(&connection.token).map_err(|e| e.to_string())?;
        Ok(Self {
            debugger: DebuggerServiceClient::with_interceptor(channel, bearer),
        })
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A failed call as one line: the server's message, with a hint where the
/// code suggests one.
pub fn describe(status: &Status) -> String {
    let message = status.message();
    match status.code() {
        Code::Unauthenticated => format!("{message} (set KEYHOLE_TOKEN to a valid token)"),
        Code::Unavailable
            if message.is_empty() || message.contains("transport") || message.contains("connect") =>
        {
            format!("lost the connection to the control plane: {message}")
        }
        Code::DeadlineExceeded => "the control plane did not answer in time".into(),
        _ if message.is_empty() => format!("the control plane refused the request ({:?})", status.code()),
        _ => message.to_owned(),
    }
}

/// One unary call, bounded in time.
pub async fn call<T>(future: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(describe(&status)),
        Err(_) => Err("the control plane did not answer in time".into()),
    }
}

/// Opens a server stream (the stream itself is not bounded in time).
pub async fn call_stream<T>(
    future: impl Future<Output = Result<Response<Streaming<T>>, Status>>,
) -> Result<Streaming<T>, String> {
    call(future).await
}
