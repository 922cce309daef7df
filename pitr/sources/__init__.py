"""Sources of commits that pitr archives and restores into: the embedded store and etcd."""
