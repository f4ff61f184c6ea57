//! Nothing: this package holds the examples `agent_workflow` and `report` (see Cargo.toml).
