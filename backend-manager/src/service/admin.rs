//! Administration of domains, groups, users, keypairs, resource policies and scaling groups.
