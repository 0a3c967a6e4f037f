//! Kith's contracts: the gRPC services and the events each service writes, generated at build
//! time from `proto/kith/**`. Nothing generated is checked in.
#![allow(unreachable_pub, missing_debug_implementations, clippy::all)]

/// The encoded `FileDescriptorSet` of every Kith proto, for gRPC reflection and for decoding
/// events by their type name.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kith_descriptor.bin"));

pub mod kith {
    pub mod platform {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/kith.platform.v1.rs"));
        }
    }
    pub mod membership {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/kith.membership.v1.rs"));
        }
    }
    pub mod cohorts {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/kith.cohorts.v1.rs"));
        }
    }
    pub mod messaging {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/kith.messaging.v1.rs"));
        }
    }
    pub mod notifications {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/kith.notifications.v1.rs"));
        }
    }
}

pub use kith::cohorts::v1 as cohorts;
pub use kith::membership::v1 as membership;
pub use kith::messaging::v1 as messaging;
pub use kith::notifications::v1 as notifications;
pub use kith::platform::v1 as platform;
