//! The `authorization: Bearer <token>` every call to the control plane carries.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// A tonic interceptor that adds the API token to every request.
///
/// ```
/// use keyhole_proto::bearer::BearerToken;
/// assert!(BearerToken::new("kh_0123_abcd").is_ok());
/// assert!(BearerToken::new("line\nbreak").is_err());
/// ```
#[derive(Clone)]
pub struct BearerToken(MetadataValue<Ascii>);

/// The token has characters that cannot go in an HTTP header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken;

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the API token contains characters that cannot be sent in a header")
    }
}

impl std::error::Error for InvalidToken {}

impl BearerToken {
    pub fn new(token: &str) -> Result<Self, InvalidToken> {
        format!("Bearer {}", token.trim())
            .parse()
            .map(Self)
            .map_err(|_| InvalidToken)
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}
