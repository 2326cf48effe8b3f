"""The local-process substrate: ``madgroup up`` runs the group as plain processes on this
machine (no Docker, no cluster), in dependency order with readiness gates, supervised."""
