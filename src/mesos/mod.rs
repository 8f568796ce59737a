//! The Mesos wire boundary: protobuf types (`proto`), the RecordIO codec, the v1 scheduler
//! HTTP client, master detection, and the conversion between wire and domain types.

pub mod proto;
