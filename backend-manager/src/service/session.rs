//! Compute sessions: create, start, execute, interrupt, restart and destroy.
