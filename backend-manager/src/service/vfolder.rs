//! Virtual folders: create, list, share, invite, files and transfers.
