# expect: maintenance_apply must be "never", "dry-run" or "when-safe".
maintenance_apply = "always"
