//! Replays of logged inbound deliveries.
