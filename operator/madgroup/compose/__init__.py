"""The docker compose substrate: ``docker-compose.yml`` rendered from the shared topology."""
