//! Pushing images to a registry.
