//! The control API client the CLI uses: blocking calls over the data dir's Unix socket.
//!
//! Each call builds a small current-thread runtime, so the CLI stays synchronous and only this
//! crate knows tokio. Every call has a deadline ([`kith_proto::Limits::control_timeout_ms`]),
//! so a wedged node cannot hang the CLI.

use crate::api::ErrorBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixStream;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing is listening on the data dir's socket.
    #[error(
        "no node is running on data dir {data_dir}: start one in another terminal with \
         `kith up --data {data_dir}`, or, if a node already runs on another data dir, pass that \
         dir with --data (or KITH_DATA)"
    )]
    NotRunning {
        /// The data dir whose socket was tried.
        data_dir: String,
    },
    /// The node did not answer in time.
    #[error("the node on {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The node answered with an error (its message says what and why, for a person).
    #[error("{0}")]
    Refused(String),
    /// Transport or decoding failure.
    #[error("control API: {0}")]
    Protocol(String),
}

/// A client bound to one data dir's control socket.
#[derive(Debug, Clone)]
pub struct ControlClient {
    socket: PathBuf,
    data_dir: PathBuf,
    timeout: Duration,
}

impl ControlClient {
    /// A client for the node whose data dir is `data_dir`.
    pub fn new(data_dir: &Path, socket: PathBuf, timeout: Duration) -> ControlClient {
        ControlClient {
            socket,
            data_dir: data_dir.to_owned(),
            timeout,
        }
    }

    /// True when a node answers on the socket (a quick connect, no request).
    pub fn is_running(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
    }

    /// `GET path`, decoding the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ControlError> {
        self.call("GET", path, None)
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ControlError> {
        let body = serde_json::to_vec(body).map_err(|e| ControlError::Protocol(e.to_string()))?;
        self.call("POST", path, Some(body))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ControlError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ControlError::Protocol(e.to_string()))?;
        let request = self.request(method, path, body);
        runtime.block_on(async {
            tokio::time::timeout(self.timeout, request)
                .await
                .map_err(|_| {
                    ControlError::Timeout(self.data_dir.display().to_string(), self.timeout)
                })?
        })
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ControlError> {
        let not_running = || ControlError::NotRunning {
            data_dir: self.data_dir.display().to_string(),
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| not_running())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ControlError::Protocol(e.to_string()))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "kith")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ControlError::Protocol(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ControlError::Protocol(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ControlError::Protocol(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(ControlError::Refused(message));
        }
        serde_json::from_slice(&bytes).map_err(|e| ControlError::Protocol(e.to_string()))
    }
}
