//! The Docker Engine side (bollard): building and pushing the project's images, and the local
//! Docker backend (`backend = docker`).
