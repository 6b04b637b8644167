DROP TABLE kernel_usage;
DROP TABLE vfolder_invitations;
DROP TABLE vfolder_permissions;
DROP TABLE vfolders;
DROP TABLE session_dependencies;
DROP TABLE sgroups_for_keypairs;
DROP TABLE sgroups_for_groups;
DROP TABLE sgroups_for_domains;
