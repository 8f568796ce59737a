//! The Docker Engine side (bollard): building and pushing the project's images, and the local
//! Docker backend (`backend = docker`).
//!
//! | module | role |
//! |---|---|
//! | [`ignore`] | `.dockerignore` matcher with the Docker CLI's rules |
//! | [`context`] | packs a build context into a tar, honouring `.dockerignore` |
//! | [`auth`] | image references and registry credentials for pulls and pushes |
//! | [`images`] | `images build` / `images push` through the Engine API, with progress |
//! | [`local`] | the local backend: tasks as containers with Mesos Docker-containerizer semantics |
//!
//! Every entry point connects with [`connect`], which negotiates the API version with the
//! engine (bollard speaks a newer API than many installed engines accept).

pub mod auth;
pub mod context;
pub mod ignore;
pub mod images;
pub mod local;

use bollard::Docker;

/// The Docker engine could not be reached or did not answer the version handshake.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Docker engine at {host}: {}", engine_message(source))]
pub struct ConnectError {
    /// Where it was looked for (`DOCKER_HOST`, else the default socket).
    pub host: String,
    #[source]
    pub source: bollard::errors::Error,
}

/// The docker CLI's default engine address.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The engine's address as the docker CLI finds it: `DOCKER_HOST` (`unix://`, `tcp://`,
/// `http://`), else the default socket.
pub fn engine_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

/// Connects to the Docker engine at [`engine_host`] and negotiates the API version, so that
/// older engines (e.g. 20.10, API 1.41) are spoken to in their own version.
pub async fn connect() -> Result<Docker, ConnectError> {
    let host = engine_host();
    let err = |source| ConnectError {
        host: host.clone(),
        source,
    };
    let docker = Docker::connect_with_host(&host).map_err(err)?;
    docker.negotiate_version().await.map_err(err)
}

/// The message of a bollard error, without the `Docker responded with status code ...`
/// wrapping where the engine gave its own message.
pub(crate) fn engine_message(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { message, .. } => message.trim().to_string(),
        E::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

/// True when the engine answered 404 (no such image, container ...).
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
