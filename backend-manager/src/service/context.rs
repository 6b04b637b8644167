//! What a request acts as: the owner keypair, its user, domain, group and resource policy, loaded once.
