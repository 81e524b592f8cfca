//! smogwatch: remote emissions telematics for heavy diesel vehicles and non-road machinery.
//!
//! See ARCHITECTURE.md for the map of the code and the data flow.
pub mod auth;
pub mod clean;
pub mod config;
pub mod detect;
pub mod gateway;
pub mod geofence;
pub mod grpc;
pub mod http;
pub mod model;
pub mod pipeline;
pub mod query;
pub mod registry;
pub mod sample;
pub mod server;
pub mod store;
pub mod tls;
pub mod zones;

pub mod proto {
    //! Code generated from `proto/smogwatch/v1/smogwatch.proto`.
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("smogwatch.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("smogwatch_descriptor");
}
pub mod hj1239;
