"""The Kubernetes substrate: the kopf operator, its objects and install manifests."""
