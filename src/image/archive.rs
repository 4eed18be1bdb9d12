//! Import and export of image archives (`docker save` and OCI layout).
