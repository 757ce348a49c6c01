//! How a client (the agent, the CLI) trusts a control plane that serves
//! `https://`: the CA file it was given, or else the system's root
//! certificates.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::CertificateDer;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// The certificate authority a client trusts for the control plane's
/// certificate: a PEM file of one or more certificates, read and checked once.
///
/// ```no_run
/// use keyhole_proto::tls::{secure, CaFile};
/// use tonic::transport::Endpoint;
///
/// let ca = CaFile::read("ca.pem")?;
/// let endpoint = secure(Endpoint::from_static("https://keyhole.internal:7070"), Some(&ca))?;
/// # Ok::<(), keyhole_proto::tls::ClientTlsError>(())
/// ```
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
}

impl CaFile {
    /// Reads `path`; fails unless it holds at least one PEM certificate and
    /// nothing malformed.
    pub fn read(path: impl AsRef<Path>) -> Result<CaFile, ClientTlsError> {
        let path = path.as_ref().to_owned();
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(error) => return Err(ClientTlsError::UnreadableCaFile { path, error }),
        };
        let mut certificates = 0;
        for parsed in CertificateDer::pem_slice_iter(&pem) {
            match parsed {
                Ok(_) => certificates += 1,
                Err(error) => return Err(ClientTlsError::InvalidCaFile { path, error }),
            }
        }
        if certificates == 0 {
            return Err(ClientTlsError::InvalidCaFile {
                path,
                error: pem::Error::NoItemsFound,
            });
        }
        Ok(CaFile { path, pem })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Turns on TLS for an `https://` endpoint, trusting `ca` if given and the
/// system's root certificates if not. An `http://` endpoint is returned as it
/// is, unless a CA was given: that asks for TLS the address does not use.
pub fn secure(endpoint: Endpoint, ca: Option<&CaFile>) -> Result<Endpoint, ClientTlsError> {
    let uri = endpoint.uri();
    if uri.scheme_str() != Some("https") {
        return match ca {
            Some(ca) => Err(ClientTlsError::CaFileWithoutHttps {
                path: ca.path.clone(),
                address: uri.to_string(),
            }),
            None => Ok(endpoint),
        };
    }
    let config = match ca {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    endpoint
        .tls_config(config)
        .map_err(|error| ClientTlsError::NoSystemRoots {
            reason: root_cause(&error),
        })
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Why a client cannot set up TLS. The messages say what is wrong; callers
/// add how to name another CA file (a flag, a builder call, an environment
/// variable).
#[derive(Debug)]
pub enum ClientTlsError {
    UnreadableCaFile {
        path: PathBuf,
        error: std::io::Error,
    },
    InvalidCaFile {
        path: PathBuf,
        error: pem::Error,
    },
    /// A CA file was given for an `http://` address.
    CaFileWithoutHttps {
        path: PathBuf,
        address: String,
    },
    /// An `https://` address without a CA file, on a system whose root
    /// certificates cannot be loaded.
    NoSystemRoots {
        reason: String,
    },
}

impl fmt::Display for ClientTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientTlsError::UnreadableCaFile { path, error } => {
                write!(f, "cannot read the CA file {}: {error}", path.display())
            }
            ClientTlsError::InvalidCaFile {
                path,
                error: pem::Error::NoItemsFound,
            } => write!(
                f,
                "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
            ClientTlsError::InvalidCaFile { path, error } => {
                write!(f, "the CA file {} is not valid PEM: {error}", path.display())
            }
            ClientTlsError::CaFileWithoutHttps { path, address } => write!(
                f,
                "a CA file ({}) is given but the control plane address {address} is not https://",
                path.display()
            ),
            ClientTlsError::NoSystemRoots { reason } => write!(
                f,
                "an https:// address needs trusted CA certificates and this system has none ({reason})"
            ),
        }
    }
}

impl std::error::Error for ClientTlsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    #[test]
    fn a_missing_ca_file_is_named_in_the_error() {
        let error = CaFile::read("/nonexistent/keyhole-ca.pem").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read the CA file /nonexistent/keyhole-ca.pem: "),
            "{error}"
        );
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let (_dir, path) = file_with("not a certificate\n");
        let error = CaFile::read(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("holds no PEM certificate"), "{error}");
    }

    #[test]
    fn a_ca_file_with_a_broken_certificate_is_refused() {
        let (_dir, path) = file_with("-----BEGIN CERTIFICATE-----\nMIIB\n");
        let error = CaFile::read(&path).unwrap_err().to_string();
        assert!(error.contains("is not valid PEM"), "{error}");
    }

    #[test]
    fn a_ca_file_for_an_http_address_is_a_mistake() {
        let ca = CaFile {
            path: "ca.pem".into(),
            pem: Vec::new(),
        };
        let plain = Endpoint::from_static("http://127.0.0.1:7070");
        let error = secure(plain.clone(), Some(&ca)).unwrap_err().to_string();
        assert!(error.contains("not https://"), "{error}");
        assert!(secure(plain, None).is_ok(), "plain http without a CA is fine");
    }
}
