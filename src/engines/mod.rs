//! Pure functions over model types: pricing tables (and, as they land, classification, cost, graph,
//! baselines and anomalies). Nothing here does I/O except loading a user's pricing file.

pub mod pricing;
