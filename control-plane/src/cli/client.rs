//! The CLI's connection to the control plane (over TLS for `https://`), and
//! turning gRPC failures into one line a person can act on.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::tls::{self, CaFile, ClientTlsError};
use keyhole_proto::v1::debugger_service_client::DebuggerServiceClient;
use tokio_rustls::rustls;
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

/// How a call that lost its connection begins; [`Connection::explain`] adds to it.
const LOST_CONNECTION: &str = "lost the connection to the control plane";
/// What to do about a CA file that cannot be used, or a certificate not trusted.
const CA_FILE_HINT: &str =
    "set --ca-file or KEYHOLE_CA_FILE to the CA certificate (PEM) that signed the control plane's certificate";

pub struct Connection {
    addr: String,
    token: String,
    ca: Option<CaFile>,
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
        let ca = args
            .ca_file
            .as_ref()
            .map(CaFile::read)
            .transpose()
            .map_err(|e| tls_setup_failed(&e))?;
        Ok(Self {
            addr: args.addr.trim().to_owned(),
            token,
            ca,
        })
    }

    /// `error` from a call, with what the address suggests: an `http://`
    /// client whose connection drops at once may be talking to a TLS port.
    pub fn explain(&self, error: String) -> String {
        match self.addr.strip_prefix("http://") {
            Some(rest) if error.starts_with(LOST_CONNECTION) => {
                format!(
                    "{error}; if the control plane at {} serves TLS, use https://{rest}",
                    self.addr
                )
            }
            _ => error,
        }
    }
}

fn tls_setup_failed(error: &ClientTlsError) -> String {
    match error {
        ClientTlsError::CaFileWithoutHttps { .. } => {
            format!("{error}; use an https:// address, or no CA file for http://")
        }
        _ => format!("{error}; {CA_FILE_HINT}"),
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
        let endpoint = tls::secure(endpoint, connection.ca.as_ref()).map_err(|e| tls_setup_failed(&e))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(connection, &e))?;
        let bearer = BearerToken::new(&connection.token).map_err(|e| e.to_string())?;
        Ok(Self {
            debugger: DebuggerServiceClient::with_interceptor(channel, bearer),
        })
    }
}

/// Why connecting failed, with what to check: the address and the server, or
/// for TLS, the CA trusted.
fn unreachable(connection: &Connection, error: &(dyn std::error::Error + 'static)) -> String {
    let addr = &connection.addr;
    let cause = root_cause(error);
    match tls_failure(error) {
        Some(rustls::Error::InvalidCertificate(_)) => match &connection.ca {
            Some(ca) => format!(
                "the control plane at {addr} presented a certificate the CA file {} does not validate ({cause}); {CA_FILE_HINT}",
                ca.path().display()
            ),
            None => format!(
                "the control plane at {addr} presented a certificate this system does not trust ({cause}); {CA_FILE_HINT}"
            ),
        },
        Some(_) => format!(
            "cannot set up TLS with the control plane at {addr}: {cause}; does it serve TLS? (if not, use http://)"
        ),
        None => format!(
            "cannot reach the control plane at {addr}: {cause}; is `keyhole server` running there? (set KEYHOLE_ADDR)"
        ),
    }
}

/// The TLS error somewhere in `error`'s chain, if TLS is what failed.
fn tls_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // tokio-rustls reports TLS errors as `io::Error`s that wrap them.
        let wrapped = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if wrapped.is_some() {
            return wrapped;
        }
        cause = error.source();
    }
    None
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The connection failed under a call (tonic says only "transport error";
/// what failed is further down).
fn transport_failure(status: &Status) -> Option<&(dyn std::error::Error + 'static)> {
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        if error.is::<tonic::transport::Error>() {
            return Some(error);
        }
        cause = error.source();
    }
    None
}

/// A failed call as one line: the server's message, with a hint where the
/// code suggests one.
pub fn describe(status: &Status) -> String {
    let message = status.message();
    if let Some(transport) = transport_failure(status) {
        return format!("{LOST_CONNECTION}: {}", root_cause(transport));
    }
    match status.code() {
        Code::Unauthenticated => format!("{message} (set KEYHOLE_TOKEN to a valid token)"),
        Code::Unavailable
            if message.is_empty() || message.contains("transport") || message.contains("connect") =>
        {
            format!("{LOST_CONNECTION}: {message}")
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
