//! smogwatch: remote emissions telematics for heavy diesel vehicles and non-road machinery.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("smogwatch.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("smogwatch_descriptor");
}
pub mod hj1239;
